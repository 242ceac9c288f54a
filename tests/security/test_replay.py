"""Attack 1: a signed update replayed later must never execute again. The replica remembers a request id
until that request's own ingress_expiry has passed (after which the request is refused as expired), also
across a restart from its state directory."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from ic_replica import hash_tree
from ic_replica.http_server import IcHttpServer
from ic_replica.replica import Replica
from ic_replica.request_auth import request_id
from testkit.http_helpers import Ed25519Signer, content, decode, envelope, running_server
from tests.conftest import ALICE, nat_arg, no_args
from tests.security.support import counter_value

SECOND = 1_000_000_000


def call(server: IcHttpServer, path: str, body: bytes) -> httpx.Response:
    return httpx.post(server.url + path, content=body, headers={"Content-Type": "application/cbor"}, timeout=30)


def replied_certificate(server: IcHttpServer, response: httpx.Response, rid: bytes) -> bytes:
    assert response.status_code == 200, response.text
    body = decode(response.content)
    assert body["status"] == "replied", body
    tree = hash_tree.from_cbor(decode(body["certificate"])["tree"])
    found, reply = hash_tree.lookup(tree, [b"request_status", rid, b"reply"])
    assert found == "found" and isinstance(reply, bytes)
    return reply


def test_a_replayed_call_executes_once_even_after_the_history_is_pruned(served) -> None:  # type: ignore[no-untyped-def]
    server, cid, signer = served.server, served.cid, served.signer
    c = content("call", cid, "inc", no_args(), signer.principal, expiry_s=5 * 60 + 20)  # within the window
    signed = envelope(c, signer)
    path = f"/api/v3/canister/{cid}/call"
    replied_certificate(server, call(server, path, signed), request_id(c))
    assert counter_value(server, cid) == 6
    # 5 minutes and a second later the call's expiry has not passed yet; pruning must keep it
    server.replica.advance_time(5 * 60 * SECOND + SECOND)
    with server.replica.lock:
        server.replica._prune_ingress()
    replied_certificate(server, call(server, path, signed), request_id(c))  # the identical bytes, replayed
    server.replica.tick(3)
    assert counter_value(server, cid) == 6, "the replayed call was executed a second time"
    # once its expiry has passed, the request is refused as expired (and only then forgotten)
    server.replica.advance_time(30 * SECOND)
    response = call(server, path, signed)
    assert response.status_code == 400 and "ingress_expiry" in response.text
    with server.replica.lock:
        server.replica._prune_ingress()
        assert server.replica.ingress_status(request_id(c)) is None
    assert counter_value(server, cid) == 6


def test_a_call_replayed_after_a_restart_is_not_executed_again(wasms: dict[str, bytes], tmp_path: Path) -> None:
    state = tmp_path / "state"
    replica = Replica(state)
    signer = Ed25519Signer()
    cid = replica.create_canister(controllers=[ALICE], sender=ALICE)
    replica.install_code(cid, wasms["counter"], nat_arg(5), sender=ALICE)
    c = content("call", cid, "inc", no_args(), signer.principal)
    signed = envelope(c, signer)
    path = f"/api/v3/canister/{cid}/call"
    with running_server(replica) as server:
        first = replied_certificate(server, call(server, path, signed), request_id(c))
    replica.close()
    restarted = Replica(state)
    with running_server(restarted) as server:
        assert counter_value(server, cid) == 6
        again = replied_certificate(server, call(server, path, signed), request_id(c))
        restarted.tick(3)
        assert counter_value(server, cid) == 6, "the call was executed again after the restart"
        assert again == first  # the remembered reply, certified again
    restarted.close()


def test_the_replica_refuses_an_expired_message_and_keeps_ids_until_their_expiry(wasms: dict[str, bytes]) -> None:
    from ic_replica.errors import IngressExpired
    from ic_replica.replica import INGRESS_EXPIRY_WINDOW_NS

    replica = Replica(time_ns=10**18)
    cid = replica.create_canister(controllers=[ALICE], sender=ALICE)
    replica.install_code(cid, wasms["counter"], nat_arg(0), sender=ALICE)
    with pytest.raises(IngressExpired):
        replica.submit_call(cid, "inc", no_args(), message_id=b"x" * 32, ingress_expiry=replica.get_time() - 1)
    rid = replica.submit_call(cid, "inc", no_args(), message_id=b"y" * 32,
                              ingress_expiry=replica.get_time() + INGRESS_EXPIRY_WINDOW_NS)
    replica.await_call(rid)
    for _ in range(1200):  # more than the prune threshold, so rounds prune
        replica.submit_call(cid, "get", no_args())
    replica.advance_time(INGRESS_EXPIRY_WINDOW_NS - SECOND)
    replica.tick()
    assert replica.ingress_status(rid) is not None
    assert replica.submit_call(cid, "inc", no_args(), message_id=rid,
                               ingress_expiry=replica.get_time() + SECOND) == rid
    replica.tick(2)
    assert replica.query_call(cid, "get", no_args()) == nat_arg(1)
