"""`prometheus-pocket-ic` under hostile or careless clients (review 12): races of auto progress, request bodies
without bounds, malformed JSON and numbers, streaming replies, time as PocketIC keeps it, `specified_id` outside
every subnet, user calls of canister-only methods, bounded logs, v3 calls that never complete. The server runs in
this process (its threads are visible) and is driven over HTTP, as clients drive it."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cbor2
import pytest
import wasmtime

from ic_replica import candid, management
from ic_replica.pocket_ic import server as server_module
from ic_replica.pocket_ic.server import PocketIcServer
from ic_replica.principal import Principal

ANON = b"\x04"
ALICE = bytes(range(1, 30))
APP = {"subnet_config_set": {"application": [{"state_config": "New", "instruction_config": "Production"}]}}
# store_a / store_b keep two replies (http_request's and the streaming callback's); time/qtime answer ic0.time;
# hang calls itself forever (a message that never completes); log prints its argument.
WAT = r'''(module
 (import "ic0" "msg_arg_data_size" (func $as (result i32)))
 (import "ic0" "msg_arg_data_copy" (func $ac (param i32 i32 i32)))
 (import "ic0" "msg_reply_data_append" (func $ra (param i32 i32)))
 (import "ic0" "msg_reply" (func $r))
 (import "ic0" "time" (func $t (result i64)))
 (import "ic0" "debug_print" (func $dp (param i32 i32)))
 (import "ic0" "call_new" (func $cn (param i32 i32 i32 i32 i32 i32 i32 i32)))
 (import "ic0" "call_perform" (func $cp (result i32)))
 (import "ic0" "canister_self_copy" (func $sc (param i32 i32 i32)))
 (import "ic0" "canister_self_size" (func $ss (result i32)))
 (memory 100)
 (table 1 funcref)
 (elem (i32.const 0) $cb)
 (func $cb (param i32) (call $r))
 (data (i32.const 100) "hang")
 (func (export "canister_update store_a") (i32.store (i32.const 0) (call $as))
   (call $ac (i32.const 0x10000) (i32.const 0) (call $as)) (call $r))
 (func (export "canister_update store_b") (i32.store (i32.const 4) (call $as))
   (call $ac (i32.const 0x200000) (i32.const 0) (call $as)) (call $r))
 (func (export "canister_query http_request") (call $ra (i32.const 0x10000) (i32.load (i32.const 0))) (call $r))
 (func (export "canister_query cb") (call $ra (i32.const 0x200000) (i32.load (i32.const 4))) (call $r))
 (func $time (i64.store (i32.const 8) (call $t)) (call $ra (i32.const 8) (i32.const 8)) (call $r))
 (export "canister_update time" (func $time))
 (export "canister_query qtime" (func $time))
 (func (export "canister_update log") (call $ac (i32.const 0x400000) (i32.const 0) (call $as))
   (call $dp (i32.const 0x400000) (call $as)) (call $r))
 (func (export "canister_update hang")
   (call $sc (i32.const 200) (i32.const 0) (call $ss))
   (call $cn (i32.const 200) (call $ss) (i32.const 100) (i32.const 4) (i32.const 0) (i32.const 0) (i32.const 0)
         (i32.const 0))
   (drop (call $cp))))'''


@pytest.fixture(scope="module")
def wasm() -> bytes:
    return bytes(wasmtime.wat2wasm(WAT))


@contextmanager
def serving(server: PocketIcServer) -> Iterator[PocketIcServer]:
    """`server` answering on its port from a thread, shut down on exit."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def srv() -> Iterator[PocketIcServer]:
    """A server in this process, on a free port."""
    with serving(PocketIcServer()) as server:
        yield server


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def req(srv: PocketIcServer, method: str, path: str, body: Any = None, raw: bytes | None = None,
        timeout: float = 60) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(f"http://127.0.0.1:{srv.port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            status, out = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            status, out = exc.code, exc.read()
    try:
        return status, json.loads(out) if out else None
    except ValueError:
        return status, out


def raw_http(port: int, request: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes, return what comes back until the server closes the connection (or a timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading everything: read its answer
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return out


def new_instance(srv: PocketIcServer, config: Any = None) -> int:
    status, created = req(srv, "POST", "/instances", config or APP)
    assert status == 201, created
    return int(created["Created"]["instance_id"])


def call(srv: PocketIcServer, inst: int, canister: bytes, method: str, payload: bytes, sender: bytes = ALICE,
         eff: Any = "None", query: bool = False) -> tuple[int, Any]:
    body = {"sender": b64(sender), "canister_id": b64(canister), "effective_principal": eff, "method": method,
            "payload": b64(payload)}
    if query:
        return req(srv, "POST", f"/instances/{inst}/read/query", body)
    status, submitted = req(srv, "POST", f"/instances/{inst}/update/submit_ingress_message", body)
    if status != 200 or "Err" in submitted:
        return status, submitted
    return req(srv, "POST", f"/instances/{inst}/update/await_ingress_message", submitted["Ok"])


def reply(result: tuple[int, Any]) -> bytes:
    status, out = result
    assert status == 200 and "Ok" in out, result
    return base64.b64decode(out["Ok"])


def create(srv: PocketIcServer, inst: int, specified: bytes | None = None) -> bytes:
    arg = candid.encode([management.PROVISIONAL_CREATE_ARGS],
                        [{"amount": [10**13], "specified_id": [Principal(specified)] if specified else []}])
    eff = {"CanisterId": b64(specified)} if specified else "None"
    out = reply(call(srv, inst, b"", "provisional_create_canister_with_cycles", arg, eff=eff))
    return bytes(candid.decode(out, [management.CREATE_RESULT])[0]["canister_id"].raw)


def install(srv: PocketIcServer, inst: int, wasm: bytes) -> bytes:
    cid = create(srv, inst)
    arg = candid.encode([management.INSTALL_CODE_ARGS], [{"mode": {"install": None}, "canister_id": Principal(cid),
                                                          "wasm_module": wasm, "arg": b""}])
    reply(call(srv, inst, b"", "install_code", arg, eff={"CanisterId": b64(cid)}))
    return cid


def progress_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("pocket-ic-progress-") and t.is_alive()]


# ------------------------------------------------------------------ 1. auto progress


def test_auto_progress_race_never_fails_nor_leaks_a_thread(srv: PocketIcServer) -> None:
    inst = new_instance(srv)
    assert req(srv, "POST", f"/instances/{inst}/auto_progress", {"artificial_delay_ms": 10})[0] == 200
    # a second request while it runs: PocketIC's 400
    assert req(srv, "POST", f"/instances/{inst}/auto_progress", {}) == (
        400, {"message": "Auto progress mode has already been enabled."})
    statuses: set[int] = set()

    def hammer(route: str, body: Any) -> None:  # a fixed amount of racing work, not a duration
        for _ in range(150):
            statuses.add(req(srv, "POST", f"/instances/{inst}/{route}", body)[0])

    workers = [threading.Thread(target=hammer, args=("auto_progress", {"artificial_delay_ms": 10}))
               for _ in range(2)] + [threading.Thread(target=hammer, args=("stop_progress", None)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert statuses <= {200, 400}, statuses
    assert len(progress_threads()) <= 1
    assert req(srv, "POST", f"/instances/{inst}/auto_progress", {})[0] in (200, 400)
    assert req(srv, "DELETE", f"/instances/{inst}")[0] == 200
    assert progress_threads() == []
    assert req(srv, "GET", f"/instances/{inst}/auto_progress")[0] == 400  # deleted


def test_stop_progress_without_auto_progress_and_bad_delays(srv: PocketIcServer) -> None:
    inst = new_instance(srv)
    assert req(srv, "POST", f"/instances/{inst}/stop_progress") == (200, None)
    for delay in ("10", -1, 1.5, 1 << 64, [1]):
        status, out = req(srv, "POST", f"/instances/{inst}/auto_progress", {"artificial_delay_ms": delay})
        assert status == 400 and "artificial_delay_ms" in out["message"], (delay, status, out)
    assert progress_threads() == []


# ------------------------------------------------------------------ 2. request bodies


def _chunks_over(mib: int) -> bytes:
    """`mib` chunks of 1 MiB, then the size line of one more: the server refuses it having read all that came."""
    chunk = b"x" * (1 << 20)
    return b"".join(b"%x\r\n" % len(chunk) + chunk + b"\r\n" for _ in range(mib)) + b"%x\r\n" % len(chunk)


def test_rest_bodies_are_bounded_chunked_or_not(srv: PocketIcServer, monkeypatch: pytest.MonkeyPatch) -> None:
    inst = new_instance(srv)
    head = f"POST /instances/{inst}/api/v2/canister/aaaaa-aa/call HTTP/1.1\r\nHost: x\r\n"
    # an IC API route: 4 MiB, as PocketIC's RequestBodyLimitLayer; refused before anything is read
    out = raw_http(srv.port, (head + f"Content-Length: {4 * 1024 * 1024 + 1}\r\n\r\n").encode())
    assert out.startswith(b"HTTP/1.1 413")
    out = raw_http(srv.port, (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + _chunks_over(4))
    assert out.startswith(b"HTTP/1.1 413")
    # elsewhere: MAX_BODY_BYTES, for chunked bodies too
    monkeypatch.setattr(server_module, "MAX_BODY_BYTES", 2 * 1024 * 1024)
    out = raw_http(srv.port, b"POST /blobstore HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + _chunks_over(2))
    assert out.startswith(b"HTTP/1.1 413")
    for bad in (b"zz\r\n", b"-5\r\n", b"FFFFFFFFFFFFFFFFFFFF\r\n"):
        out = raw_http(srv.port, b"POST /blobstore HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + bad)
        assert out.startswith(b"HTTP/1.1 400"), (bad, out[:80])
    for length in (b"-1", b"abc", b"1" * 30):
        out = raw_http(srv.port, b"POST /instances HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 400"), (length, out[:80])
    out = raw_http(srv.port, b"POST /blobstore HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 411")
    small = b"3\r\nabc\r\n0\r\n\r\n"
    out = raw_http(srv.port, b"POST /blobstore HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                             b"Connection: close\r\n\r\n" + small)
    assert out.startswith(b"HTTP/1.1 200")
    assert req(srv, "GET", "/status")[0] == 200


def test_gateway_checks_content_length_before_reading(srv: PocketIcServer) -> None:
    inst = new_instance(srv)
    port = req(srv, "POST", "/http_gateway", {"forward_to": {"PocketIcInstance": inst}})[1]["Created"]["port"]
    started = time.monotonic()
    out = raw_http(port, b"POST / HTTP/1.1\r\nHost: x.localhost\r\nContent-Length: 400000000\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413") and time.monotonic() - started < 5
    for length in (b"-1", b"abc"):
        out = raw_http(port, b"POST / HTTP/1.1\r\nHost: x.localhost\r\nContent-Length: " + length + b"\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 400"), (length, out[:80])
    out = raw_http(port, b"POST / HTTP/1.1\r\nHost: x.localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 411")



def test_a_silent_client_of_a_gateway_listener_is_dropped(srv: PocketIcServer,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A gateway listener serves browsers beside the REST routes: a client that goes silent mid-request held
    its thread forever there too."""
    from ic_replica.pocket_ic import gateway

    assert gateway._GatewayHandler.timeout is not None and gateway._GatewayHandler.timeout <= 60
    monkeypatch.setattr(gateway._GatewayHandler, "timeout", 1)  # the same mechanism, faster (read per connection)
    inst = new_instance(srv)
    port = req(srv, "POST", "/http_gateway", {"forward_to": {"PocketIcInstance": inst}})[1]["Created"]["port"]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as silent:
        silent.sendall(b"POST /api/v2/status HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        start = time.monotonic()
        assert silent.recv(1024) == b""  # closed by the server, not answered after 1000 bytes
        assert time.monotonic() - start < 5

# ------------------------------------------------------------------ 3, 11. gateway replies


HEADER = candid.Tuple(candid.TEXT, candid.TEXT)
PLAIN_CALLBACK_REPLY = candid.Record.of(body=candid.BLOB, token=candid.Opt(candid.NAT))


def _http_response(callback_reply: candid.Type,
                   headers: list[tuple[str, str]] | None = None) -> tuple[candid.Type, dict[str, Any]]:
    """An HttpResponse type whose streaming callback returns `callback_reply`, and a value without strategy."""
    strategy = candid.Opt(candid.Variant.of(Callback=candid.Record.of(
        callback=candid.Func((candid.NAT,), (callback_reply,), ("query",)), token=candid.NAT)))
    t = candid.Record.of(status_code=candid.NAT16, headers=candid.Vec(HEADER), body=candid.BLOB,
                         upgrade=candid.Opt(candid.BOOL), streaming_strategy=strategy)
    return t, {"status_code": 200, "headers": headers or [], "body": b"HELLO ", "upgrade": [],
               "streaming_strategy": []}


def _gateway_get(port: int, cid: bytes) -> bytes:
    return raw_http(port, f"GET / HTTP/1.1\r\nHost: {Principal(cid)}.raw.localhost\r\nConnection: close\r\n\r\n"
                    .encode(), timeout=30)


def test_streaming_callback_replies_plain_or_opt_and_never_truncated(srv: PocketIcServer, wasm: bytes) -> None:
    inst = new_instance(srv)
    cid = install(srv, inst, wasm)
    port = req(srv, "POST", "/http_gateway", {"forward_to": {"PocketIcInstance": inst}})[1]["Created"]["port"]
    cases: list[tuple[candid.Type, Any, bytes]] = [
        (PLAIN_CALLBACK_REPLY, {"body": b"WORLD", "token": []}, b"200 OK"),  # the spec's type
        (candid.Opt(PLAIN_CALLBACK_REPLY), [{"body": b"WORLD", "token": []}], b"200 OK"),  # the asset canister's
        (candid.NAT, 7, b"502"),  # neither: an error, not the end of the body
    ]
    for cb_type, cb_value, expected in cases:
        t, value = _http_response(cb_type)
        value["streaming_strategy"] = [{"Callback": {"callback": (Principal(cid), "cb"), "token": 1}}]
        reply(call(srv, inst, cid, "store_a", candid.encode([t], [value])))
        reply(call(srv, inst, cid, "store_b", candid.encode([cb_type], [cb_value])))
        out = _gateway_get(port, cid)
        assert expected in out.split(b"\r\n", 1)[0], out[:200]
        if expected == b"200 OK":
            assert out.endswith(b"\r\n\r\nHELLO WORLD")


def test_non_latin1_header_values_are_served_as_utf8(srv: PocketIcServer, wasm: bytes) -> None:
    inst = new_instance(srv)
    cid = install(srv, inst, wasm)
    port = req(srv, "POST", "/http_gateway", {"forward_to": {"PocketIcInstance": inst}})[1]["Created"]["port"]
    t, value = _http_response(PLAIN_CALLBACK_REPLY, headers=[("x-price", "5 €"), ("x-name", "日本")])
    reply(call(srv, inst, cid, "store_a", candid.encode([t], [value])))
    out = _gateway_get(port, cid)
    assert out.startswith(b"HTTP/1.1 200")
    assert "x-price: 5 €\r\n".encode() in out and "x-name: 日本\r\n".encode() in out


# ------------------------------------------------------------------ 4. time


def test_time_follows_pocket_ic_set_time_tick_and_certified_time(srv: PocketIcServer, wasm: bytes) -> None:
    inst = new_instance(srv)
    cid = install(srv, inst, wasm)

    def get_time() -> int:
        return int(req(srv, "GET", f"/instances/{inst}/read/get_time")[1]["nanos_since_epoch"])

    def query_time() -> int:
        return int.from_bytes(reply(call(srv, inst, cid, "qtime", b"DIDL\x00\x00", query=True)), "little")

    before = query_time()
    target = get_time() + 3600 * 10**9
    assert req(srv, "POST", f"/instances/{inst}/update/set_time", {"nanos_since_epoch": target})[0] == 200
    assert get_time() == target
    assert query_time() == before  # not certified yet: queries see the last round's time
    req(srv, "POST", f"/instances/{inst}/update/tick", {})
    assert get_time() == target and query_time() == target  # the round ran at exactly the time set
    req(srv, "POST", f"/instances/{inst}/update/tick", {})
    assert get_time() == target + 1 and query_time() == target + 1
    certified = target + 7200 * 10**9
    req(srv, "POST", f"/instances/{inst}/update/set_certified_time", {"nanos_since_epoch": certified})
    assert get_time() == certified and query_time() == certified  # visible at once
    req(srv, "POST", f"/instances/{inst}/update/tick", {})
    assert get_time() == certified + 1 and query_time() == certified + 1
    status, out = req(srv, "POST", f"/instances/{inst}/update/set_time", {"nanos_since_epoch": target})
    assert status == 400 and out["message"] == f"SettingTimeIntoPast(({certified + 1}, {target}))"


# ------------------------------------------------------------------ 5, 12. instances, ids, JSON


def test_instance_list_is_indexed_by_id(srv: PocketIcServer) -> None:
    first = new_instance(srv)
    assert req(srv, "POST", "/instances", {"subnet_config_set": {}})[0] == 400  # consumes an id, as a placeholder
    second = new_instance(srv)
    listed = req(srv, "GET", "/instances")[1]
    assert len(listed) == second + 1 and listed[first] == listed[second] == "Available"
    assert listed[second - 1] == "Deleted"
    req(srv, "DELETE", f"/instances/{first}")
    assert req(srv, "GET", "/instances")[1][first] == "Deleted"


def test_malformed_requests_are_400_not_500(srv: PocketIcServer) -> None:
    inst = new_instance(srv)
    assert req(srv, "POST", "/instances", raw=b"[" * 100_000 + b"]" * 100_000)[0] == 400
    assert req(srv, "GET", "/instances/" + "9" * 5000 + "/read/get_time")[0] == 400
    assert req(srv, "GET", f"/instances/{10**30}/read/get_time")[0] == 400
    assert req(srv, "POST", "/http_gateway/" + "9" * 5000 + "/stop")[0] == 400
    for spec in ({"instruction_config": "Fast"}, {"instruction_config": 5}, {"dts_flag": "Maybe"}, "New", 3):
        status, out = req(srv, "POST", "/instances", {"subnet_config_set": {"application": [spec]}})
        assert status == 400 and "message" in out["Error"], spec
    assert req(srv, "POST", "/http_gateway", {"forward_to": {"PocketIcInstance": [inst]}})[0] == 400
    assert req(srv, "POST", "/http_gateway", {"forward_to": {"PocketIcInstance": inst}, "port": 1 << 70})[0] == 400


def test_a_body_of_escaped_quotes_is_refused_without_stalling_the_server(srv: PocketIcServer) -> None:
    """A JSON body's nesting is measured before parsing: a string of escaped quotes that never closes was
    rescanned from every quote (quadratic: 80 KB took 26 s), so 2 MB stalled the server for hours."""
    bad = b'{"subnet_config_set": "' + b'\\"' * 1_000_000 + b"}"
    assert req(srv, "POST", "/instances", raw=bad, timeout=60)[0] == 400
    assert req(srv, "GET", "/instances", timeout=10)[0] == 200


def test_json_nesting_is_refused_past_serde_jsons_limit_in_any_encoding(srv: PocketIcServer) -> None:
    """serde_json refuses 128 levels; JSON is UTF-8 (a UTF-16 character's bytes can hold a quote that hid the
    brackets after it from the depth scan, and json.loads then raised RecursionError: a 500)."""
    def message(raw: bytes) -> tuple[int, str]:
        status, out = req(srv, "POST", "/instances", raw=raw)
        return status, json.dumps(out)

    assert "recursion limit" not in message(b"[" * 127 + b"]" * 127)[1]
    status, text = message(b"[" * 128 + b"]" * 128)
    assert status == 400 and "recursion limit" in text
    for encoding in ("utf-16-le", "utf-16-be", "utf-32"):
        # As bytes, U+0122 holds a quote (0x22): with the quotes around it, an odd number, the last one opens a
        # string that hides every bracket after it from a scan of the bytes.
        status, text = message(('["\u0122",' + "[" * 100_000).encode(encoding))
        assert status == 400 and "RecursionError" not in text and "internal error" not in text, (encoding, text)


def test_a_json_body_of_many_small_values_is_refused_before_it_is_parsed(srv: PocketIcServer) -> None:
    """Parsed, `[{},{},...]` takes about 25 times its size in memory (a 100 MB body took 2.6 GB and 24 s): past
    MAX_JSON_TOKENS strings, brackets and commas a body is refused by the linear scan, before `json.loads`."""
    limit = server_module.MAX_JSON_TOKENS
    for item in (b"{}", b'"a"', b"1"):
        body = b"[" + b",".join([item] * limit) + b"]"
        status, out = req(srv, "POST", "/instances", raw=body)
        assert status == 400 and f"more than {limit}" in json.dumps(out), (item, status, out)
    status, out = req(srv, "POST", "/instances", raw=b"[" + b",".join([b"1"] * (limit // 3)) + b"]")
    assert status == 400 and "more than" not in json.dumps(out)  # refused for its shape, not its size


def test_a_head_reply_has_no_body(srv: PocketIcServer) -> None:
    """A body after a HEAD reply would be read as the start of the next reply on the connection."""
    for path in ("/instances", "/status", "/nowhere"):
        answer = raw_http(srv.port, f"HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        assert answer.endswith(b"\r\n\r\n") and b"Content-Length" in answer, (path, answer)


def test_expect_100_continue_is_answered_at_once(srv: PocketIcServer) -> None:
    """Replies are buffered until a request is answered; the interim `100 Continue` is not (curl sends
    `Expect: 100-continue` for bodies over 1 MB and otherwise waits a second for it)."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"POST /blobstore HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 100 Continue")  # a socket timeout if it is held back
        s.sendall(b"abc")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")


def test_a_silent_client_is_dropped(srv: PocketIcServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that sends part of a request and goes silent held its thread forever."""
    assert server_module._Handler.timeout is not None and server_module._Handler.timeout <= 60
    monkeypatch.setattr(server_module._Handler, "timeout", 1)  # the same mechanism, faster (read per connection)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as silent:
        silent.sendall(b"POST /instances HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        start = time.monotonic()
        assert silent.recv(1024) == b""  # closed by the server, not answered after 1000 bytes
        assert time.monotonic() - start < 5


def test_the_test_backend_sees_a_connection_the_server_dropped(srv: PocketIcServer,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """testkit's PocketIC backend keeps one connection alive; it must notice the server closed it (here, idle
    past the read timeout) before it sends on it, or the next call fails."""
    import http.client

    from testkit.backends import _dropped

    monkeypatch.setattr(server_module._Handler, "timeout", 1)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.request("GET", "/status")
    assert conn.getresponse().read() == b"" and not _dropped(conn)
    time.sleep(1.5)  # the server drops the idle connection
    assert _dropped(conn)
    conn.close()


def test_idle_connections_beyond_the_cap_get_503_and_the_server_recovers() -> None:
    """Each connection takes a thread: past the cap an extra one is answered 503 at once, and once the idle
    ones go the server answers again."""
    with serving(PocketIcServer(max_connections=4)) as server:
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(4)]
        try:
            time.sleep(0.2)  # the server has accepted them and given each a thread
            for _ in range(10):
                with socket.create_connection(("127.0.0.1", server.port), timeout=10) as extra:
                    assert extra.recv(1024).startswith(b"HTTP/1.1 503")
        finally:
            for s in idle:
                s.close()
        time.sleep(0.2)  # their threads see the close and end
        answer = raw_http(server.port, b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200"), answer


def test_times_are_u64_and_cycles_u128(srv: PocketIcServer, wasm: bytes) -> None:
    inst = new_instance(srv)
    cid = install(srv, inst, wasm)
    for value in (1 << 64, -1, 1.5, "5", None, True):
        for route in ("set_time", "set_certified_time"):
            status, out = req(srv, "POST", f"/instances/{inst}/update/{route}", {"nanos_since_epoch": value})
            assert status == 400 and "u64" in out["message"], (route, value, out)
    status, out = req(srv, "POST", f"/instances/{inst}/update/add_cycles",
                      {"canister_id": b64(cid), "amount": 1 << 128})
    assert status == 400 and "u128" in out["message"]
    for _ in range(2):  # the balance saturates at the u128 maximum, as a nat128 must
        status, out = req(srv, "POST", f"/instances/{inst}/update/add_cycles",
                          {"canister_id": b64(cid), "amount": (1 << 128) - 1})
        assert status == 200 and out == {"cycles": (1 << 128) - 1}
    status, out = req(srv, "POST", "/instances", {**APP, "initial_time": {"Timestamp": {"nanos_since_epoch": 1 << 64}}})
    assert status == 400


# ------------------------------------------------------------------ 6. specified_id outside every range


def test_specified_id_outside_every_subnet_gets_a_new_subnet(srv: PocketIcServer, wasm: bytes) -> None:
    inst = new_instance(srv)
    before = req(srv, "GET", f"/instances/{inst}/read/topology")[1]["subnet_configs"]
    mainnet = Principal.from_text("rimrc-piaaa-aaaao-aaljq-cai").raw
    bitcoin = Principal.from_text("ghsi2-tqaaa-aaaan-aaaca-cai").raw
    assert create(srv, inst, mainnet) == mainnet
    assert create(srv, inst, bitcoin) == bitcoin
    after = req(srv, "GET", f"/instances/{inst}/read/topology")[1]["subnet_configs"]
    subnets = {}
    for cid in (mainnet, bitcoin):
        got = req(srv, "POST", f"/instances/{inst}/read/get_subnet", {"canister_id": b64(cid)})[1]
        subnets[cid] = Principal(base64.b64decode(got["subnet_id"])).to_text()
        assert subnets[cid] not in before and subnets[cid] in after
    assert subnets[mainnet] != subnets[bitcoin]
    assert after[subnets[mainnet]]["subnet_kind"] == "Application"
    assert after[subnets[bitcoin]]["subnet_kind"] == "Bitcoin"
    # a canister there works
    arg = candid.encode([management.INSTALL_CODE_ARGS], [{"mode": {"install": None}, "canister_id": Principal(mainnet),
                                                          "wasm_module": wasm, "arg": b""}])
    reply(call(srv, inst, b"", "install_code", arg, eff={"CanisterId": b64(mainnet)}))
    assert len(reply(call(srv, inst, mainnet, "time", b"DIDL\x00\x00"))) == 8


# ------------------------------------------------------------------ 7, 8. management canister


def test_users_cannot_call_canister_info(srv: PocketIcServer, wasm: bytes) -> None:
    inst = new_instance(srv)
    cid = install(srv, inst, wasm)
    arg = candid.encode([management.CANISTER_INFO_ARGS], [{"canister_id": Principal(cid)}])
    for query in (True, False):
        for sender in (ANON, ALICE):
            status, out = call(srv, inst, b"", "canister_info", arg, sender=sender, eff={"CanisterId": b64(cid)},
                               query=query)
            assert status == 200 and out["Err"]["reject_code"] == "CanisterReject", out
            assert out["Err"]["error_code"] == "CanisterRejectedMessage"
            assert out["Err"]["reject_message"] == "Only canisters can call ic00 method canister_info"


def _logs(srv: PocketIcServer, inst: int, cid: bytes) -> list[dict[str, Any]]:
    arg = candid.encode([management.FETCH_LOGS_ARGS], [{"canister_id": Principal(cid)}])
    out = reply(call(srv, inst, b"", "fetch_canister_logs", arg, eff={"CanisterId": b64(cid)}, query=True))
    return list(candid.decode(out, [management.FETCH_LOGS_RESULT])[0]["canister_log_records"])


def _status(srv: PocketIcServer, inst: int, cid: bytes) -> dict[str, Any]:
    arg = candid.encode([management.CANISTER_ID_ARGS], [{"canister_id": Principal(cid)}])
    out = reply(call(srv, inst, b"", "canister_status", arg, eff={"CanisterId": b64(cid)}))
    return dict(candid.decode(out, [management.CANISTER_STATUS_RESULT])[0])


def test_canister_logs_keep_the_newest_records_within_log_memory_limit(srv: PocketIcServer, wasm: bytes) -> None:
    inst = new_instance(srv)
    cid = install(srv, inst, wasm)
    for i in range(50):
        reply(call(srv, inst, cid, "log", f"{i:03d}".encode() * 50))  # 150 bytes each
    status = _status(srv, inst, cid)
    limit = status["settings"]["log_memory_limit"]
    records = _logs(srv, inst, cid)
    stored = sum(len(r["content"]) for r in records)
    assert stored <= limit < stored + 150 and status["memory_metrics"]["log_memory_store_size"] == stored
    assert records[-1]["content"].startswith(b"049") and [r["idx"] for r in records] == list(
        range(records[0]["idx"], 50))
    arg = candid.encode([management.UPDATE_SETTINGS_ARGS], [{"canister_id": Principal(cid),
                                                             "settings": {"log_memory_limit": [1000]}}])
    reply(call(srv, inst, b"", "update_settings", arg, eff={"CanisterId": b64(cid)}))
    records = _logs(srv, inst, cid)
    assert len(records) == 6 and records[-1]["content"].startswith(b"049")
    assert _status(srv, inst, cid)["memory_metrics"]["log_memory_store_size"] == 900
    reply(call(srv, inst, cid, "log", b"y" * 5000))  # one record over the limit: cut to it
    assert [len(r["content"]) for r in _logs(srv, inst, cid)] == [1000]


# ------------------------------------------------------------------ 9, 12. messages that never complete


def test_a_v3_call_that_never_completes_runs_bounded_rounds_then_202(srv: PocketIcServer, wasm: bytes) -> None:
    inst = new_instance(srv)
    cid = install(srv, inst, wasm)
    t0 = req(srv, "GET", f"/instances/{inst}/read/get_time")[1]["nanos_since_epoch"]
    envelope = cbor2.dumps({"content": {"request_type": "call", "sender": ANON, "canister_id": cid,
                                        "method_name": "hang", "arg": b"DIDL\x00\x00",
                                        "ingress_expiry": t0 + 60 * 10**9, "nonce": os.urandom(8)}})
    request = urllib.request.Request(
        f"http://127.0.0.1:{srv.port}/instances/{inst}/api/v3/canister/{Principal(cid)}/call", data=envelope,
        method="POST", headers={"Content-Type": "application/cbor"})
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=60) as resp:
        assert resp.status == 202
    assert time.monotonic() - started < 8
    rounds = req(srv, "GET", f"/instances/{inst}/read/get_time")[1]["nanos_since_epoch"] - t0
    assert 1 <= rounds <= 101


def test_await_ingress_message_gives_up_after_100_rounds(srv: PocketIcServer, wasm: bytes) -> None:
    inst = new_instance(srv)
    cid = install(srv, inst, wasm)
    body = {"sender": b64(ANON), "canister_id": b64(cid), "effective_principal": "None", "method": "hang",
            "payload": b64(b"DIDL\x00\x00")}
    submitted = req(srv, "POST", f"/instances/{inst}/update/submit_ingress_message", body)[1]["Ok"]
    t0 = req(srv, "GET", f"/instances/{inst}/read/get_time")[1]["nanos_since_epoch"]
    status, out = req(srv, "POST", f"/instances/{inst}/update/await_ingress_message", submitted)
    message_id = base64.b64decode(submitted["message_id"]).hex()
    assert (status, out) == (400, {"message": f'BadIngressMessage("Failed to answer to ingress 0x{message_id} '
                                              'after 100 rounds.")'})
    assert req(srv, "GET", f"/instances/{inst}/read/get_time")[1]["nanos_since_epoch"] - t0 == 100


# ------------------------------------------------------------------ 12. the rest


def test_set_stable_memory_sizes_the_memory_to_the_blob(srv: PocketIcServer, wasm: bytes) -> None:
    inst = new_instance(srv)
    cid = install(srv, inst, wasm)
    for data, pages in ((b"a" * (3 * 65536 + 1), 4), (b"x", 1), (b"", 0)):
        blob_id = req(srv, "POST", "/blobstore", raw=data)[1]
        blob_id = blob_id.decode() if isinstance(blob_id, bytes) else str(blob_id)
        assert req(srv, "POST", f"/instances/{inst}/update/set_stable_memory",
                   {"canister_id": b64(cid), "blob_id": b64(bytes.fromhex(blob_id))})[0] == 200
        memory = base64.b64decode(req(srv, "POST", f"/instances/{inst}/read/get_stable_memory",
                                      {"canister_id": b64(cid)})[1]["blob"])
        assert len(memory) == pages * 65536 and memory[: len(data)] == data


def test_gateways_of_a_deleted_instance_are_not_listed(srv: PocketIcServer) -> None:
    kept, deleted = new_instance(srv), new_instance(srv)
    for inst in (kept, deleted):
        assert req(srv, "POST", "/http_gateway", {"forward_to": {"PocketIcInstance": inst}})[0] == 201
    req(srv, "DELETE", f"/instances/{deleted}")
    listed = req(srv, "GET", "/http_gateway")[1]
    assert [g["forward_to"] for g in listed] == [{"PocketIcInstance": kept}]


def test_port_file_is_removed_at_exit_only_if_it_names_this_server(tmp_path: Path) -> None:
    port_file = tmp_path / "pic.port"
    proc = subprocess.Popen([sys.executable, "-m", "ic_replica.pocket_ic.cli", "--port-file", str(port_file)],
                            cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if port_file.exists() and port_file.read_text().endswith("\n"):
                break
            time.sleep(0.1)
        port_file.write_text("1\n")  # taken over by another server meanwhile
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert port_file.read_text() == "1\n"


def test_a_gzip_blob_is_expanded_only_for_a_canister_that_exists(srv: PocketIcServer) -> None:
    """A 1 MiB gzip blob may expand to 1 GiB: `set_stable_memory` checks the blob exists, then the canister,
    and only then expands it (broken gzip data shows which came first)."""
    inst = new_instance(srv)
    request = urllib.request.Request(f"http://127.0.0.1:{srv.port}/blobstore", data=b"\x1f\x8b not gzip",
                                     method="POST", headers={"Content-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=60) as resp:
        blob_id = bytes.fromhex(resp.read().decode())
    nowhere = b64(bytes.fromhex("00000000000000ff0101"))
    status, out = req(srv, "POST", f"/instances/{inst}/update/set_stable_memory",
                      {"canister_id": nowhere, "blob_id": b64(blob_id)})
    assert status == 400 and "Decompression" not in json.dumps(out) and "Canister" in json.dumps(out), out
    status, out = req(srv, "POST", f"/instances/{inst}/update/set_stable_memory",
                      {"canister_id": nowhere, "blob_id": b64(b"\x00" * 32)})
    assert status == 400 and "BlobNotFound" in json.dumps(out), out


def test_a_gzip_blob_may_not_expand_past_the_limit(srv: PocketIcServer, wasm: bytes,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A gzip bomb in the blob store is refused when used, before it takes the server's memory (PocketIC
    decompresses without a limit); a blob within the limit still works."""
    import zlib

    monkeypatch.setattr(server_module, "MAX_GUNZIPPED_BLOB", 1 << 20)
    inst = new_instance(srv)
    cid = install(srv, inst, wasm)

    def gzip_blob(size: int) -> str:
        deflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        data = deflater.compress(bytes(size)) + deflater.flush()
        request = urllib.request.Request(f"http://127.0.0.1:{srv.port}/blobstore", data=data, method="POST",
                                         headers={"Content-Encoding": "gzip"})
        with urllib.request.urlopen(request, timeout=60) as resp:
            return str(resp.read().decode())

    for size, expected in ((1 << 20, 200), ((1 << 20) + 1, 400)):
        status, out = req(srv, "POST", f"/instances/{inst}/update/set_stable_memory",
                          {"canister_id": b64(cid), "blob_id": b64(bytes.fromhex(gzip_blob(size)))})
        assert status == expected, out
    assert "expands to more than 1 MiB" in str(out)
