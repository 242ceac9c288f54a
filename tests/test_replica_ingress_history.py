"""The ingress history is bounded (pruned by rounds and size as well as by expiry) without ever giving up
replay protection; the clock may go backwards; error codes; effective canister ids outside the subnet's
ranges are answered like the IC's boundary (HTTP 400), not with a node-signed reject.

Nothing here is timed: the tests check the sizes of the structures (`Replica.ingress_counts`)."""

from __future__ import annotations

from typing import Any

import cbor2
import httpx
import pytest
import wasmtime
from icp_identity.identity import Identity  # type: ignore[import-not-found]

from ic_replica import candid, hash_tree
from ic_replica import replica as replica_module
from ic_replica.errors import CallRejected, IngressExpired, ReplicaError
from ic_replica.messages import IngressState
from ic_replica.principal import ANONYMOUS, Principal, canister_id_from_index
from ic_replica.replica import CANISTER_RANGE, INGRESS_EXPIRY_WINDOW_NS, Replica
from ic_replica.request_auth import request_id
from prometheus_sdk import CallRejectedError, Network, TransportError, connect
from testkit.http_helpers import Ed25519Signer, content, decode, envelope, running_server

SECOND = 1_000_000_000
T0 = 1_700_000_000 * SECOND
OWNER = Principal(b"\x0a" * 29)
NO_ARGS = candid.encode([], [])

# A canister whose heap never grows: `inc` counts executions (reply: the count, 4 bytes little-endian),
# `get` reads it, `boom` traps.
COUNTER_WAT = """
(module
  (import "ic0" "msg_reply" (func $reply))
  (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
  (import "ic0" "trap" (func $trap (param i32 i32)))
  (memory 1)
  (global $n (mut i32) (i32.const 0))
  (data (i32.const 16) "boom")
  (func (export "canister_update inc")
    (global.set $n (i32.add (global.get $n) (i32.const 1)))
    (i32.store (i32.const 0) (global.get $n))
    (call $append (i32.const 0) (i32.const 4)) (call $reply))
  (func (export "canister_query get")
    (i32.store (i32.const 0) (global.get $n))
    (call $append (i32.const 0) (i32.const 4)) (call $reply))
  (func (export "canister_update boom") (call $trap (i32.const 16) (i32.const 4))))
"""


def counter_wasm() -> bytes:
    return bytes(wasmtime.wat2wasm(COUNTER_WAT))


def fresh() -> tuple[Replica, Principal]:
    r = Replica(time_ns=T0)
    cid = r.create_canister(controllers=[OWNER], sender=OWNER)
    r.install_code(cid, counter_wasm(), sender=OWNER)
    return r, cid


def count(r: Replica, cid: Principal) -> int:
    return int.from_bytes(r.query_call(cid, "get"), "little")


def test_the_history_stays_bounded_by_rounds_on_the_deterministic_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replica_module, "INGRESS_HISTORY_ROUNDS", 50)
    r, cid = fresh()
    start = r.get_time()
    for _ in range(2_000):
        r.update_call(cid, "inc")
    assert count(r, cid) == 2_000
    assert r.get_time() - start < SECOND  # the clock barely moved: nothing expired
    sizes = r.ingress_counts()
    # every call took one round: only the last 50 rounds' statuses are kept, and no replay entry is needed
    # for ids the replica made up itself
    assert sizes["statuses"] <= 51 and sizes["answered_queue"] <= 51, sizes
    assert sizes["replay"] == 0 and sizes["expiry_heap"] == 0, sizes


def test_a_pruned_signed_request_reads_done_and_is_never_executed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replica_module, "INGRESS_HISTORY_ROUNDS", 20)
    r, cid = fresh()
    expiry = r.get_time() + 4 * 60 * SECOND
    rid = r.submit_call(cid, "inc", message_id=b"s" * 32, ingress_expiry=expiry, sender=OWNER)
    assert r.await_call(rid) == (1).to_bytes(4, "little")
    for _ in range(500):  # many more rounds than the history keeps, in little IC time
        r.update_call(cid, "inc")
    status = r.ingress_status(rid)
    assert status is not None and status.state is IngressState.DONE and status.reply is None
    assert status.sender == OWNER.raw and status.effective_canister_id == cid.raw
    sizes = r.ingress_counts()
    assert sizes["replay"] == 1 and sizes["statuses"] <= 21, sizes
    # replayed while within its expiry: recognised, not queued, not executed
    assert r.submit_call(cid, "inc", message_id=b"s" * 32, ingress_expiry=expiry, sender=OWNER) == rid
    r.tick(3)
    assert count(r, cid) == 501
    with pytest.raises(ReplicaError, match="pruned"):
        r.await_call(rid)
    # once its expiry has passed it is refused as expired, and only then forgotten
    r.set_time(expiry + 1)
    with pytest.raises(IngressExpired):
        r.submit_call(cid, "inc", message_id=b"s" * 32, ingress_expiry=expiry, sender=OWNER)
    r.tick()
    assert r.ingress_status(rid) is None and r.ingress_counts()["replay"] == 0
    assert count(r, cid) == 501


def test_replies_over_the_byte_budget_are_pruned_oldest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replica_module, "INGRESS_HISTORY_MAX_BYTES", 40)  # ten 4-byte replies
    r, cid = fresh()
    ids = [r.submit_call(cid, "inc", message_id=bytes([i]) * 32) for i in range(30)]
    r.tick()
    sizes = r.ingress_counts()
    assert sizes["history_bytes"] <= 40 and sizes["replay"] == 20, sizes
    assert r.ingress_status(ids[0]).state is IngressState.DONE  # type: ignore[union-attr]
    assert r.ingress_status(ids[-1]).reply == (30).to_bytes(4, "little")  # type: ignore[union-attr]


def test_time_can_be_set_backwards_without_opening_a_replay_window() -> None:
    r, cid = fresh()
    expiry = T0 + 60 * SECOND
    rid = r.submit_call(cid, "inc", message_id=b"b" * 32, ingress_expiry=expiry)
    r.await_call(rid)
    r.set_time(T0 + 10 * 60 * SECOND)
    r.tick()  # the expiry has passed: the id is forgotten
    assert r.ingress_status(rid) is None
    r.set_time(T0)  # backwards: the forgotten request would be within its expiry again
    assert r.get_time() == T0
    with pytest.raises(IngressExpired, match="forgotten"):
        r.submit_call(cid, "inc", message_id=b"b" * 32, ingress_expiry=expiry)
    assert count(r, cid) == 1
    # a new request whose expiry is later than anything forgotten is accepted; so is any unsigned call
    r.await_call(r.submit_call(cid, "inc", message_id=b"c" * 32, ingress_expiry=expiry + 1))
    r.update_call(cid, "inc")
    assert count(r, cid) == 3
    # certified time follows the clock: a data certificate carries the time just set
    r.set_time(T0 - 3600 * SECOND)
    cert = cbor2.loads(r.certify_data(cid.raw))
    found, value = hash_tree.lookup(hash_tree.from_cbor(cert["tree"]), [b"time"])
    assert found == "found" and value == candid.leb(T0 - 3600 * SECOND)
    with pytest.raises(ReplicaError):
        r.set_time(-1)


def test_error_codes_match_the_ic() -> None:
    r, cid = fresh()
    empty = r.create_canister(controllers=[OWNER], sender=OWNER)
    missing = canister_id_from_index(CANISTER_RANGE[0] + 5_000)

    def rejected(fn: Any, *args: Any) -> tuple[int, str | None]:
        with pytest.raises(CallRejected) as info:
            fn(*args)
        return int(info.value.code), info.value.error_code

    assert rejected(r.update_call, missing, "inc") == (3, "IC0301")
    assert rejected(r.query_call, missing, "get") == (3, "IC0301")
    assert rejected(r.update_call, empty, "inc") == (5, "IC0537")
    assert rejected(r.query_call, empty, "get") == (5, "IC0537")
    assert rejected(r.update_call, cid, "nope") == (5, "IC0536")
    assert rejected(r.query_call, cid, "nope") == (5, "IC0536")
    assert rejected(r.update_call, cid, "boom") == (5, "IC0503")
    r.stop_canister(cid, sender=OWNER)
    assert rejected(r.update_call, cid, "inc") == (5, "IC0508")
    assert rejected(r.query_call, cid, "get") == (5, "IC0508")


# ------------------------------------------------------------ HTTP: routing like the IC's boundary


def test_effective_ids_outside_the_ranges_get_http_400_and_unknown_ids_inside_a_signed_ic0301() -> None:
    r, cid = fresh()
    outside = Principal.from_text("ryjl3-tyaaa-aaaaa-aaaba-cai")  # index 2: not in this subnet's range
    inside = canister_id_from_index(CANISTER_RANGE[0] + 7_777)
    signer = Ed25519Signer()
    with running_server(r) as server:
        for endpoint in ("query", "call", "read_state"):
            c = content(endpoint, outside, "get", NO_ARGS, signer.principal)
            if endpoint == "read_state":
                c = content("read_state", outside, sender=signer.principal, paths=[[b"time"]])
            response = httpx.post(f"{server.url}/api/v3/canister/{outside}/{endpoint}",
                                   content=envelope(c, signer), headers={"Content-Type": "application/cbor"})
            assert response.status_code == 400 and "canister_not_found" in response.text, response.text
        response = httpx.post(f"{server.url}/api/v3/subnet/{outside}/read_state",
                              content=envelope(content("read_state", outside, sender=signer.principal,
                                                       paths=[[b"time"]]), signer),
                              headers={"Content-Type": "application/cbor"})
        assert response.status_code == 400 and "subnet_not_found" in response.text
        # inside the ranges: the replica answers, with a reject signed by its node key
        q = content("query", inside, "get", NO_ARGS, signer.principal)
        body = decode(httpx.post(f"{server.url}/api/v3/canister/{inside}/query", content=envelope(q, signer),
                                 headers={"Content-Type": "application/cbor"}).content)
        assert body["status"] == "rejected" and body["error_code"] == "IC0301" and body["signatures"]

        conn = connect(Network("local", server.url), Identity())
        with pytest.raises(TransportError) as info:
            conn.query(str(outside), "get", NO_ARGS)
        assert info.value.status == 400 and "canister_not_found" in str(info.value)
        with pytest.raises(TransportError) as info:
            conn.call(str(outside), "inc", NO_ARGS)
        assert info.value.status == 400
        with pytest.raises(CallRejectedError) as rejected:  # the node signature is accepted: the real reason
            conn.query(str(inside), "get", NO_ARGS)
        assert rejected.value.code == 3 and rejected.value.error_code == "IC0301"
        assert int.from_bytes(conn.query(str(cid), "get", NO_ARGS), "little") == 0


def test_a_signed_call_pruned_to_done_is_certified_done_over_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replica_module, "INGRESS_HISTORY_ROUNDS", 5)
    r, cid = fresh()
    signer = Ed25519Signer()
    with running_server(r) as server:
        c = content("call", cid, "inc", NO_ARGS, signer.principal)
        signed = envelope(c, signer)
        path = f"{server.url}/api/v3/canister/{cid}/call"
        first = httpx.post(path, content=signed, headers={"Content-Type": "application/cbor"})
        assert first.status_code == 200 and decode(first.content)["status"] == "replied"
        with r.lock:
            r.tick(10)
        rid = request_id(c)
        assert r.ingress_status(rid).state is IngressState.DONE  # type: ignore[union-attr]
        again = httpx.post(path, content=signed, headers={"Content-Type": "application/cbor"})  # replayed
        assert again.status_code == 200
        tree = hash_tree.from_cbor(decode(decode(again.content)["certificate"])["tree"])
        assert hash_tree.lookup(tree, [b"request_status", rid, b"status"]) == ("found", b"done")
        r.tick(3)
        assert count(r, cid) == 1
        # the request stays known until its own expiry (within the window): then it is refused as expired
        assert r.ingress_status(rid).expiry <= r.get_time() + INGRESS_EXPIRY_WINDOW_NS  # type: ignore[union-attr]


def test_a_canister_created_outside_the_range_is_advertised_and_routed() -> None:
    r, _ = fresh()
    mainnet_id = Principal.from_text("ryjl3-tyaaa-aaaaa-aaaba-cai")  # e.g. the ledger, created at its mainnet id
    created = r.create_canister(controllers=[OWNER], sender=OWNER, specified_id=mainnet_id)
    assert created == mainnet_id
    r.install_code(created, counter_wasm(), sender=OWNER)
    assert r.hosts(mainnet_id.raw) and (mainnet_id.raw, mainnet_id.raw) in r.canister_ranges()
    with running_server(r) as server:
        conn = connect(Network("local", server.url), Identity())
        conn.call(str(mainnet_id), "inc", NO_ARGS)
        assert int.from_bytes(conn.query(str(mainnet_id), "get", NO_ARGS), "little") == 1  # node signature checked
        c = content("read_state", mainnet_id, sender=ANONYMOUS, paths=[[b"canister_ranges", r.subnet_id]])
        response = httpx.post(f"{server.url}/api/v3/subnet/{Principal(r.subnet_id)}/read_state",
                              content=envelope(c), headers={"Content-Type": "application/cbor"})
        tree = hash_tree.from_cbor(decode(decode(response.content)["certificate"])["tree"])
        found, ranges = hash_tree.lookup(tree, [b"canister_ranges", r.subnet_id, mainnet_id.raw])
        assert found == "found" and [mainnet_id.raw, mainnet_id.raw] in decode(ranges)  # type: ignore[arg-type]


def test_done_entries_survive_a_restart(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setattr(replica_module, "INGRESS_HISTORY_ROUNDS", 3)
    r = Replica(tmp_path / "state", time_ns=T0)
    cid = r.create_canister(controllers=[OWNER], sender=OWNER)
    r.install_code(cid, counter_wasm(), sender=OWNER)
    expiry = T0 + 60 * SECOND
    rid = r.submit_call(cid, "inc", message_id=b"p" * 32, ingress_expiry=expiry, sender=OWNER)
    r.await_call(rid)
    r.tick(5)
    assert r.ingress_status(rid).state is IngressState.DONE  # type: ignore[union-attr]
    r.close()
    restarted = Replica(tmp_path / "state")
    status = restarted.ingress_status(rid)
    assert status is not None and status.state is IngressState.DONE and status.sender == OWNER.raw
    assert restarted.submit_call(cid, "inc", message_id=b"p" * 32, ingress_expiry=expiry, sender=OWNER) == rid
    restarted.tick(2)
    assert count(restarted, cid) == 1
    restarted.set_time(expiry + 1)
    restarted.tick()
    assert restarted.ingress_status(rid) is None
    restarted.set_time(T0)  # back again: the forgotten id is refused, not executed
    with pytest.raises(IngressExpired):
        restarted.submit_call(cid, "inc", message_id=b"p" * 32, ingress_expiry=expiry, sender=OWNER)
    assert count(restarted, cid) == 1
