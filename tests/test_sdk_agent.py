"""The SDK's connections over the real HTTP interface: one trusted root key per connection (several replicas,
threads, mainnet), and update calls that are signed once, so a lost reply never makes them execute twice."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
from icp_identity.identity import Identity  # type: ignore[import-not-found]

from ic_replica import candid
from ic_replica.http_server import IcHttpServer
from ic_replica.principal import Principal
from ic_replica.replica import Replica
from ic_replica.request_auth import request_id
from prometheus_sdk import CallRejectedError, CertificateError, Connection, Network, TransportError, connect, resolve
from prometheus_sdk.agent import MAINNET_ROOT_KEY
from testkit.http_helpers import RecordingProxy, decode, recording_proxy, running_server
from tests.conftest import wasms  # noqa: F401 - fixture

NO_ARGS = candid.encode([], [])


@contextmanager
def served_counter(wasm: bytes, initial: int = 0) -> Iterator[tuple[IcHttpServer, Principal]]:
    """A fresh replica (so a fresh root key) running the counter canister, served on loopback."""
    replica = Replica()
    cid = replica.create_canister()
    replica.install_code(cid, wasm, candid.encode([candid.NAT], [initial]))
    try:
        with running_server(replica) as server:
            yield server, cid
    finally:
        replica.close()


def inc(conn: Connection, cid: Principal) -> int:
    return int(candid.decode(conn.call(str(cid), "inc", NO_ARGS))[0])


def get(conn: Connection, cid: Principal) -> int:
    return int(candid.decode(conn.query(str(cid), "get", NO_ARGS))[0])


def count(server: IcHttpServer, cid: Principal) -> int:
    """The counter read inside the replica, not through the SDK under test."""
    return int(candid.decode(server.replica.query_call(cid, "get", NO_ARGS))[0])


@pytest.fixture
def two(wasms: dict[str, bytes]) -> Iterator[tuple[tuple[IcHttpServer, Principal], tuple[IcHttpServer, Principal]]]:  # noqa: F811
    with ExitStack() as stack:
        a = stack.enter_context(served_counter(wasms["counter"], 0))
        b = stack.enter_context(served_counter(wasms["counter"], 100))
        assert a[0].replica.root_key_der != b[0].replica.root_key_der
        yield a, b


def test_two_replicas_with_two_root_keys_in_one_process(two: Any, wasms: dict[str, bytes]) -> None:  # noqa: F811
    (server_a, ca), (server_b, cb) = two
    conn_a = connect(Network("local", server_a.url), Identity())
    conn_b = connect(Network("local", server_b.url), Identity())  # used to replace conn_a's key process-wide
    assert conn_a.root_key == server_a.replica.root_key_der and conn_b.root_key == server_b.replica.root_key_der
    assert conn_a.agent.root_key == conn_a.root_key and conn_b.agent.root_key == conn_b.root_key
    module_hash = hashlib.sha256(wasms["counter"]).digest()
    for i in range(1, 4):  # interleaved: certificates of each replica verify against its own key
        assert inc(conn_a, ca) == i and inc(conn_b, cb) == 100 + i
        assert conn_a.module_hash(str(ca)) == module_hash == conn_b.module_hash(str(cb))

    def job(i: int) -> int:
        """Like the verifier's jobs: a thread uses a shared connection and connects anew, to either replica."""
        shared, server, cid = (conn_a, server_a, ca) if i % 2 == 0 else (conn_b, server_b, cb)
        inc(shared, cid)
        fresh = connect(Network("local", server.url))
        assert fresh.module_hash(str(cid)) == module_hash
        return inc(fresh, cid)

    start = threading.Barrier(4)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: (start.wait(), job(i))[1], range(4)))
        results += list(pool.map(job, range(4, 12)))
    assert len(results) == 12
    assert count(server_a, ca) == get(conn_a, ca) == 3 + 12 and count(server_b, cb) == get(conn_b, cb) == 103 + 12


def test_a_certificate_from_another_replica_is_refused(two: Any) -> None:
    (server_a, ca), (server_b, cb) = two
    assert ca == cb  # the same canister id on both: only the certificate tells them apart
    with recording_proxy(server_a.url) as proxy:
        conn = connect(Network("local", proxy.url))  # trusts A's root key
        assert conn.root_key == server_a.replica.root_key_der
        assert inc(conn, ca) == 1
        proxy.upstream = server_b.url  # B now answers at A's address
        with pytest.raises(CertificateError):
            conn.call(str(ca), "inc", NO_ARGS)
        with pytest.raises(CertificateError):
            conn.module_hash(str(ca))
        assert [s.endpoint for s in proxy.seen].count("status") == 1  # the key was fetched once, at connect
    assert inc(connect(Network("local", server_b.url)), cb) == 102  # B's own connection trusts B's key
    assert inc(connect(Network("local", server_a.url)), ca) == 2


def test_a_non_local_network_trusts_only_the_mainnet_key(two: Any) -> None:
    (server_a, ca), (server_b, cb) = two
    assert connect(resolve("ic")).root_key == MAINNET_ROOT_KEY  # nothing fetched: connect does no I/O here
    local = connect(Network("local", server_a.url))
    with recording_proxy(server_b.url) as proxy:
        # 0.0.0.0 reaches the loopback proxy, but is not a local network name: the replica is "remote"
        remote_network = Network("remote", proxy.url.replace("127.0.0.1", "0.0.0.0"))
        assert not remote_network.is_local
        remote = connect(remote_network)
        assert remote.root_key == MAINNET_ROOT_KEY and remote.agent.root_key == MAINNET_ROOT_KEY
        with pytest.raises(CertificateError):  # a replica's own key is never trusted for a non-local network
            remote.call(str(cb), "inc", NO_ARGS)
        connect(Network("local", server_b.url))  # a later local connect changes nothing either
        with pytest.raises(CertificateError):
            remote.module_hash(str(cb))
        endpoints = [s.endpoint for s in proxy.seen]
        assert "status" not in endpoints and "call" in endpoints and "read_state" in endpoints
    assert inc(local, ca) == 1


def request_ids(proxy: RecordingProxy) -> tuple[set[bytes], set[bytes]]:
    """The request ids of the calls the proxy forwarded, and those whose status was read."""
    calls, polled = set(), set()
    for seen in proxy.seen:
        if seen.endpoint == "call":
            calls.add(request_id(decode(seen.body)["content"]))
        elif seen.endpoint == "read_state":
            paths = decode(seen.body)["content"]["paths"]
            polled |= {path[1] for path in paths if path[0] == b"request_status"}
    return calls, polled


@pytest.mark.parametrize("fault", ["close-after", "502-after", "202-after"])
def test_a_lost_reply_is_recovered_without_executing_twice(wasms: dict[str, bytes], fault: str) -> None:  # noqa: F811
    with served_counter(wasms["counter"], 7) as (server, cid), \
            recording_proxy(server.url, call_faults=[fault]) as proxy:
        conn = connect(Network("local", proxy.url), Identity())
        assert inc(conn, cid) == 8  # the call executed behind the proxy, which lost its reply
        assert count(server, cid) == 8  # exactly once
        call_bodies = [s.body for s in proxy.seen if s.endpoint == "call"]
        assert len(call_bodies) >= 1 and len(set(call_bodies)) == 1  # any resubmission is byte-identical
        assert {s.endpoint for s in proxy.seen} <= {"status", "call", "read_state"}
        calls, polled = request_ids(proxy)
        assert len(calls) == 1 and polled == calls  # one request id, recovered by reading its status


def test_a_call_that_never_arrived_is_resent_byte_identical(wasms: dict[str, bytes]) -> None:  # noqa: F811
    with served_counter(wasms["counter"], 0) as (server, cid), \
            recording_proxy(server.url, call_faults=["503-before", "close-before"]) as proxy:
        conn = connect(Network("local", proxy.url), Identity())
        assert inc(conn, cid) == 1 and count(server, cid) == 1
        call_bodies = [s.body for s in proxy.seen if s.endpoint == "call"]
        assert len(call_bodies) == 3 and len(set(call_bodies)) == 1
        assert len(request_ids(proxy)[0]) == 1

        proxy.call_faults[:] = ["503-before"] * 4  # never delivered: give up, but name the request
        with pytest.raises(TransportError, match="request id") as err:
            inc(conn, cid)
        assert not err.value.transient and count(server, cid) == 1
        call_bodies = [s.body for s in proxy.seen if s.endpoint == "call"][3:]
        assert len(call_bodies) == conn.retries + 1 and len(set(call_bodies)) == 1

        conn.agent.ingress_expiry = 2  # "accepted" but never forwarded: polled until its expiry has passed
        proxy.call_faults[:] = ["202-before"]
        with pytest.raises(TransportError, match="will never execute") as err:
            inc(conn, cid)
        assert err.value.transient and count(server, cid) == 1


@pytest.mark.parametrize("fault", [None, "202-after"])
def test_a_rejected_call_is_reported_and_not_retried(wasms: dict[str, bytes], fault: str | None) -> None:  # noqa: F811
    with served_counter(wasms["counter"], 5) as (server, cid), \
            recording_proxy(server.url, call_faults=[fault] if fault else []) as proxy:
        conn = connect(Network("local", proxy.url), Identity())
        with pytest.raises(CallRejectedError) as err:  # certified rejection: a trap rolls the increment back
            conn.call(str(cid), "incThenTrap", NO_ARGS)
        assert err.value.code == 5 and err.value.error_code == "IC0503"
        with pytest.raises(CallRejectedError) as err:  # refused at submission (non_replicated_rejection)
            conn.call(str(cid), "noSuchMethod", NO_ARGS)
        assert err.value.error_code == "IC0536"
        with pytest.raises(TransportError) as refused:  # a 400 (wrong effective canister id): not resent either
            conn.call(str(cid), "inc", NO_ARGS, effective_canister_id=str(Principal.management()))
        assert refused.value.status == 400 and not refused.value.transient
        assert [s.endpoint for s in proxy.seen].count("call") == 3
        assert count(server, cid) == 5
