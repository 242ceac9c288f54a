"""Typed canister clients built from the .did files the build recipe emits, over the HTTP interface."""

from __future__ import annotations

from pathlib import Path

import pytest

from ic_replica.principal import Principal
from ic_replica.replica import Replica
from prometheus_sdk import ConfigError, Network, connect, did
from prometheus_sdk.canister import CanisterClient
from testkit.http_helpers import running_server
from tests.conftest import ROOT, TEST_CANISTERS, wasms  # noqa: F401 - fixture

DIDS = ROOT / "build" / "test_canisters"


def test_typed_calls_and_queries(wasms: dict[str, bytes]) -> None:  # noqa: F811
    counter_iface = did.load(DIDS / "counter.did")
    assert counter_iface.methods["get"].is_query and not counter_iface.methods["inc"].is_query
    replica = Replica()
    counter = replica.create_canister()
    replica.install_code(counter, wasms["counter"], counter_iface.encode_init(10))
    relay = replica.create_canister()
    replica.install_code(relay, wasms["relay"], did.load(DIDS / "relay.did").encode_init())
    with running_server(replica) as server:
        conn = connect(Network("local", server.url))
        c = CanisterClient.from_did(conn, str(counter), DIDS / "counter.did")
        assert c.get() == 10 and c.inc() == 11 and c.get() == 11
        assert c.whoami() == Principal.anonymous()
        r = CanisterClient.from_did(conn, str(relay), DIDS / "relay.did")
        assert r.direct(counter, "inc") == {"ok": 12}
        total, module_hash, controllers = r.info(counter)
        assert total >= 1 and len(module_hash[0]) == 32 and controllers
        with pytest.raises(ConfigError, match="takes 2 argument"):
            r.direct(counter)
        with pytest.raises(ConfigError, match="do not match"):
            r.direct("not a principal", 5)
        with pytest.raises(AttributeError):
            r.no_such_method()


def test_did_parsing_recursive_types_and_errors(tmp_path: Path) -> None:
    iface = did.parse("type R = variant { leaf; node : vec R }; service : (nat) -> { f : (R) -> (R) query }")
    from prometheus_sdk import candid

    m = iface.methods["f"]
    value = {"node": [{"leaf": None}, {"node": []}]}
    assert candid.decode(candid.encode(m.args, [value]), m.rets) == [value]
    with pytest.raises(ConfigError, match="invalid Candid"):
        did.parse("service : { broken")
    with pytest.raises(ConfigError, match="cannot read"):
        did.load(tmp_path / "missing.did")
    _ = TEST_CANISTERS
