"""`localnet deploy` / `deploy-protocol` upgrade canisters in place: when the new code cannot read the running
code's state, the user gets one clear error naming the way out, and the canister keeps running unchanged."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from icp_identity.identity import Identity  # type: ignore[import-not-found]

from ic_replica import Replica
from ic_replica.http_server import IcHttpServer
from prometheus_cli.deploy import create_canister, install
from prometheus_cli.output import UserError
from prometheus_sdk import Network, connect
from prometheus_sdk import candid as sdk_candid


@pytest.fixture
def conn() -> Iterator[Any]:
    server = IcHttpServer(Replica()).start()
    try:
        yield connect(Network("local", server.url), Identity())
    finally:
        server.stop()


def test_an_upgrade_onto_incompatible_state_is_one_clear_error(conn: Any, wasms: dict[str, bytes]) -> None:
    counter, incompatible = wasms["counter"], wasms["incompatible"]
    cid = create_canister(conn)
    assert install(conn, cid, counter, sdk_candid.encode([sdk_candid.NAT], [7]), None) == "installed"
    with pytest.raises(UserError) as caught:
        install(conn, cid, incompatible, sdk_candid.encode([sdk_candid.TEXT], ["x"]),
                hashlib.sha256(counter).digest())
    assert "cannot be upgraded in place" in str(caught.value) and "localnet reset" in (caught.value.hint or "")
    assert str(caught.value).startswith("canister (")  # no name given: the id alone
    assert conn.query(cid, "get", sdk_candid.encode([], []))[-1] == 7  # still the counter, state kept
