"""Fixtures for the hostile-client tests: a counter canister served over HTTP, with a signer that controls it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from ic_replica.http_server import IcHttpServer
from ic_replica.principal import Principal
from ic_replica.replica import Replica
from testkit.http_helpers import Ed25519Signer, running_server
from tests.conftest import ALICE, nat_arg


@dataclass
class Served:
    server: IcHttpServer
    cid: Principal
    signer: Ed25519Signer  # a controller of `cid`

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture
def served(wasms: dict[str, bytes]) -> Iterator[Served]:
    """A replica with the counter canister (count 5), controlled by ALICE and `signer`, served on loopback."""
    signer = Ed25519Signer()
    replica = Replica()
    cid = replica.create_canister(controllers=[ALICE, signer.principal], sender=ALICE)
    replica.install_code(cid, wasms["counter"], nat_arg(5), sender=ALICE)
    with running_server(replica) as server:
        yield Served(server, cid, signer)
