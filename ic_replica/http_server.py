"""The IC HTTP interface over a `Replica`, on loopback: status, call (v2 async, v3/v4 sync), query (v2/v3)
and read_state (v2/v3, canister and subnet forms), with CBOR envelopes, signature checks, ingress expiry,
certificates signed by the network's BLS key and query responses signed by the node key.

Run one: `python -m ic_replica.http_server --port 4943 --state-dir DIR` (or `prometheus localnet start`).

Hostile clients: a body needs a numeric `Content-Length` of at most `MAX_BODY_BYTES` (checked before a byte is
read; chunked bodies are refused) and must arrive within `READ_TIMEOUT_S`. CBOR is walked before it is decoded
(`_scan_cbor`: no indefinite lengths, no tags but self-describe, no floats, integers within 64 bits, nesting and
item count bounded, every declared length within the body), then every envelope field is type-checked
(`_check_content`, `request_auth`), so a malformed request is a 4xx with a reason, never a 500 or a stall.
All of this, and the Candid decoding of management arguments for the effective-canister check, happens
outside the replica lock. The round ticker survives any error (logged).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cbor2

from ic_replica import hash_tree, http_gateway, management, state_tree
from ic_replica.candid import CandidError
from ic_replica.certification import CBOR_SELF_DESCRIBE, cbor_dumps
from ic_replica.errors import CallRejected, IngressExpired, Reject
from ic_replica.principal import MANAGEMENT, MAX_PRINCIPAL_BYTES, InvalidPrincipal, Principal
from ic_replica.replica import INGRESS_EXPIRY_WINDOW_NS, Replica
from ic_replica.request_auth import NAT64_LIMIT, AuthError, authenticate, hash_of_map

MAX_BODY_BYTES = 5 * 1024 * 1024
READ_TIMEOUT_S = 30  # a client must send its request (headers and body) within this (socket timeout)
MAX_CONNECTIONS = 128  # connections served at once (a thread each); more are answered 503 and closed
MAX_CBOR_DEPTH = 16  # an envelope nests 6 deep (envelope > sender_delegation > ... > targets > blob)
MAX_CBOR_ITEMS = 200_000  # 1000 read_state paths of up to 127 labels fit
MAX_PATHS, MAX_PATH_LABELS = 1000, 127
MAX_NONCE_BYTES = 32
SYNC_CALL_TIMEOUT_S = 10.0
STOP_POLL_S = 0.05  # how often serve_forever looks for shutdown(): stop() waits up to this long
MAX_SYNC_CALL_ROUNDS = 100  # rounds one synchronous call may run (as PocketIC's await_ingress_message)
RESPONSE_SEPARATOR = b"\x0bic-response"
IC_API_VERSION = "0.18.0"
_ROUTE = re.compile(r"^/api/(v2|v3|v4)/(canister|subnet)/([0-9a-z-]+)/(call|query|read_state)$")
_ALLOWED = {("v2", "canister", "call"), ("v3", "canister", "call"), ("v4", "canister", "call"),
            ("v2", "canister", "query"), ("v3", "canister", "query"), ("v2", "canister", "read_state"),
            ("v3", "canister", "read_state"), ("v2", "subnet", "read_state"), ("v3", "subnet", "read_state")}


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class BoundedServer(ThreadingHTTPServer):
    """A thread per connection, at most `limit` at once: a client that opens thousands of idle connections
    gets an immediate 503 for each extra one instead of exhausting the process's threads and memory."""

    daemon_threads = True
    _BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], limit: int) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(limit)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            try:
                request.sendall(self._BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()  # no thread will release it
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class IcHttpServer:
    """Serves one replica; `start()` runs the server and a round ticker in background threads."""

    def __init__(self, replica: Replica, host: str = "127.0.0.1", port: int = 0,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self.replica = replica
        replica.live_time = True
        replica.sync_clock()
        handler = type("BoundHandler", (_Handler,), {"ic": self})
        self.httpd = BoundedServer((host, port), handler, max_connections)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> IcHttpServer:
        if self.replica.outcalls.mode != "live":  # rounds run on their own: so do canisters' HTTPS outcalls
            self.replica.outcalls.go_live()
        serve = functools.partial(self.httpd.serve_forever, poll_interval=STOP_POLL_S)
        for target in (serve, self._ticker):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _ticker(self) -> None:
        """Rounds happen on their own in live mode: often while there is work, about once a second otherwise.
        Whatever a round raises is logged and the ticker goes on (a dead ticker would leave calls pending)."""
        while not self._stop.is_set():
            busy = False
            try:
                busy = self.replica.has_work()
                if busy:
                    self.replica.tick()
                else:
                    self.replica.sync_clock()
            except Exception:  # noqa: BLE001 - the ticker must survive anything
                _log.exception("internal error in a round; the ticker goes on")
            self._stop.wait(0.02 if busy else 0.5)

    # ------------------------------------------------------------ endpoints

    def status(self) -> bytes:
        return cbor_dumps({"ic_api_version": IC_API_VERSION, "root_key": self.replica.root_key_der,
                           "impl_version": "prometheus-embedded-replica", "replica_health_status": "healthy"})

    def describe(self) -> bytes:
        """JSON for tooling: canisters, time, subnet and root key (not part of the IC interface)."""
        with self.replica.lock:
            info = {"canisters": [str(c) for c in self.replica.canister_ids()], "time_ns": self.replica.get_time(),
                    "subnet_id": str(Principal(self.replica.subnet_id)), "root_key": self.replica.root_key_der.hex()}
        return json.dumps(info).encode()

    def check_routing(self, kind: str, effective_text: str) -> None:
        """What the IC's boundary does before a request reaches a node: an effective canister id outside this
        subnet's canister ranges (`Replica.canister_ranges`, which cover every canister it hosts), or a subnet
        id that is not this subnet's, cannot be routed and is answered HTTP 400 -- never with a reply signed by
        this node, whose key a client rightly refuses for a canister outside the subnet's ranges. The
        management canister's id is accepted as an effective canister id (local tools send
        provisional_create_canister_with_cycles there). A canister id inside the ranges that does not exist
        reaches the replica and is rejected there (IC0301, signed)."""
        try:
            raw = Principal.from_text(effective_text).raw
        except InvalidPrincipal:
            return  # `handle` answers 400 with the reason
        if kind == "subnet":
            if raw != self.replica.subnet_id:
                raise HttpError(HTTPStatus.BAD_REQUEST, f"subnet_not_found: subnet {effective_text} is not known "
                                                        f"here (this subnet is {Principal(self.replica.subnet_id)})")
            return
        if raw != MANAGEMENT.raw and not self.replica.hosts(raw):  # a dict lookup and a comparison: no lock
            ranges = ", ".join(f"{Principal(lo)} to {Principal(hi)}" for lo, hi in self.replica.canister_ranges())
            raise HttpError(HTTPStatus.BAD_REQUEST,
                            f"canister_not_found: the effective canister id {effective_text} is not in the canister "
                            f"ranges of any subnet here ({ranges})")

    def handle(self, version: str, kind: str, effective_text: str, endpoint: str, body: bytes) -> tuple[int, bytes]:
        if (version, kind, endpoint) not in _ALLOWED:
            raise HttpError(HTTPStatus.NOT_FOUND, f"unknown endpoint /api/{version}/{kind}/.../{endpoint}")
        try:
            effective = Principal.from_text(effective_text).raw
        except InvalidPrincipal as exc:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"invalid effective {kind} id: {exc}") from exc
        envelope = _decode_envelope(body)
        content = envelope["content"]
        _check_content(content, endpoint)
        now = self.replica.observed_time()  # no lock taken before the request is known to be well-formed
        self._check_expiry(content, now, anonymous_ok=endpoint != "call")
        target = content["canister_id"] if endpoint != "read_state" else None
        try:
            rid = authenticate(envelope, now, target, is_call=endpoint == "call")
        except AuthError as exc:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"Failed to authenticate request: {exc}") from exc
        sender = content["sender"]
        if endpoint == "call":
            return self._call(version, content, rid, sender, effective)
        if endpoint == "query":
            return self._query(content, rid, sender, effective)
        return self._read_state(content, sender, effective, subnet_form=kind == "subnet")

    def _check_expiry(self, content: dict[str, Any], now: int, anonymous_ok: bool) -> None:
        expiry = content["ingress_expiry"]
        if anonymous_ok and content["sender"] == b"\x04":
            return
        if expiry < now or expiry > now + INGRESS_EXPIRY_WINDOW_NS:
            raise HttpError(HTTPStatus.BAD_REQUEST,
                            f"Specified ingress_expiry not within expected range: minimum {now}, maximum "
                            f"{now + INGRESS_EXPIRY_WINDOW_NS}, provided {expiry}")

    def _check_target(self, canister_id: bytes, method: str, arg: bytes, effective: bytes) -> None:
        if canister_id != MANAGEMENT.raw:
            if canister_id != effective:
                raise HttpError(HTTPStatus.BAD_REQUEST,
                                f"Specified CanisterId {Principal(canister_id)} does not match effective canister id "
                                f"{Principal(effective)}")
            return
        if method in ("provisional_create_canister_with_cycles", "create_canister") or method not in (
                management.METHOD_NAMES):
            return
        try:
            args = management.decode_args(method, arg)
        except (management.ManagementError, CandidError):
            return  # the management canister rejects it with a proper reject
        target = management.target_of(args)
        if target is not None and target != effective:
            raise HttpError(HTTPStatus.BAD_REQUEST,
                            f"the effective canister id {Principal(effective)} must be the canister named in the "
                            f"argument ({Principal(target)})")

    def _call(self, version: str, content: dict[str, Any], rid: bytes, sender: bytes,
              effective: bytes) -> tuple[int, bytes]:
        canister_id, method, arg = content["canister_id"], content["method_name"], content["arg"]
        self._check_target(canister_id, method, arg, effective)
        try:
            self.replica.submit_call(canister_id, method, arg, sender, message_id=rid,
                                     effective_canister_id=effective, ingress_expiry=content["ingress_expiry"])
        except IngressExpired as exc:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"Specified ingress_expiry has passed: {exc}") from exc
        except CallRejected as exc:
            rejection = _reject_fields(exc.reject)
            if version == "v2":
                return HTTPStatus.OK, cbor_dumps(rejection)
            return HTTPStatus.OK, cbor_dumps({"status": "non_replicated_rejection", **rejection})
        if version == "v2":
            return HTTPStatus.ACCEPTED, b""
        return self._await_synchronously(rid)

    def _await_synchronously(self, rid: bytes) -> tuple[int, bytes]:
        """v3/v4: run rounds until the call is final, within `SYNC_CALL_TIMEOUT_S` and at most
        `MAX_SYNC_CALL_ROUNDS` rounds (a call that never completes must not keep the replica busy-ticking);
        otherwise 202, as the IC answers a call not done in time (the agent then polls read_state)."""
        deadline = time.monotonic() + SYNC_CALL_TIMEOUT_S
        for rounds in range(MAX_SYNC_CALL_ROUNDS + 1):
            with self.replica.lock:  # certified in the same critical section, before any pruning
                status = self.replica.ingress_status(rid)
                if status is None or status.final:
                    certificate = self._certificate([[b"request_status", rid], [b"time"]], {rid})
                    return HTTPStatus.OK, cbor_dumps({"status": "replied", "certificate": certificate})
                if rounds == MAX_SYNC_CALL_ROUNDS or time.monotonic() >= deadline:
                    break
                self.replica.tick()
        return HTTPStatus.ACCEPTED, b""

    def _query(self, content: dict[str, Any], rid: bytes, sender: bytes, effective: bytes) -> tuple[int, bytes]:
        canister_id, method, arg = content["canister_id"], content["method_name"], content["arg"]
        self._check_target(canister_id, method, arg, effective)
        timestamp = self.replica.get_time()
        try:
            reply = self.replica.query_call(canister_id, method, arg, sender, effective_canister_id=effective)
            signed: dict[str, Any] = {"status": "replied", "reply": {"arg": reply}}
        except CallRejected as exc:
            signed = {"status": "rejected", **_reject_fields(exc.reject)}
        to_sign = {**signed, "timestamp": timestamp, "request_id": rid}
        signature = self.replica.keys.node_sign(RESPONSE_SEPARATOR + hash_of_map(to_sign))
        node = {"timestamp": timestamp, "signature": signature, "identity": self.replica.keys.node_id.raw}
        return HTTPStatus.OK, cbor_dumps({**signed, "signatures": [node]})

    def _read_state(self, content: dict[str, Any], sender: bytes, effective: bytes, *,
                    subnet_form: bool) -> tuple[int, bytes]:
        paths = content["paths"]  # checked by _check_content
        with self.replica.lock:
            try:
                state_tree.check_paths(self.replica, paths, sender, effective, subnet_form=subnet_form)
            except state_tree.PathRejected as exc:
                raise HttpError(HTTPStatus.FORBIDDEN, str(exc)) from exc
            rids = {p[1] for p in paths if p[0] == b"request_status" and len(p) > 1}
            certificate = self._certificate(paths + [[b"time"]], rids)
        return HTTPStatus.OK, cbor_dumps({"certificate": certificate})

    def _certificate(self, paths: list[list[bytes]], request_ids: set[bytes]) -> bytes:
        with self.replica.lock:
            self.replica.sync_clock()
            state = state_tree.build(self.replica, request_ids)
            return self.replica.keys.certificate(hash_tree.witness(state, paths))


def _scan_cbor(data: bytes) -> None:
    """Walk the CBOR item headers without building anything, and refuse what could make decoding costly or
    produce values an envelope never holds: indefinite lengths, tags other than self-describe (55799; so no
    bignums, shared references, dates...), floats and simple values other than false/true/null, nesting
    deeper than MAX_CBOR_DEPTH, more than MAX_CBOR_ITEMS items, declared lengths beyond the body, and trailing
    bytes. Integers are then within 64 bits by construction. Costs at most MAX_CBOR_ITEMS steps."""
    pos, end, items = 0, len(data), 0
    pending = [1]  # items still to read in each open container
    while pending:
        if pending[-1] == 0:
            pending.pop()
            continue
        pending[-1] -= 1
        items += 1
        if items > MAX_CBOR_ITEMS:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"the CBOR body has more than {MAX_CBOR_ITEMS} items")
        if pos >= end:
            raise HttpError(HTTPStatus.BAD_REQUEST, "the CBOR body ends too early")
        major, info = data[pos] >> 5, data[pos] & 0x1F
        pos += 1
        if info < 24:
            arg = info
        elif info < 28:
            size = 1 << (info - 24)
            if pos + size > end:
                raise HttpError(HTTPStatus.BAD_REQUEST, "the CBOR body ends too early")
            arg = int.from_bytes(data[pos : pos + size], "big")
            pos += size
        else:
            raise HttpError(HTTPStatus.BAD_REQUEST, "indefinite-length or reserved CBOR items are not accepted")
        if major in (2, 3):  # byte and text strings
            if arg > end - pos:
                raise HttpError(HTTPStatus.BAD_REQUEST, f"a CBOR string declares {arg} bytes, more than the body has")
            pos += arg
        elif major in (4, 5):  # arrays and maps: every item takes at least one byte
            count = arg if major == 4 else 2 * arg
            if count > end - pos:
                raise HttpError(HTTPStatus.BAD_REQUEST, f"a CBOR container declares {count} items, more than the "
                                                        "body has")
            if len(pending) >= MAX_CBOR_DEPTH:
                raise HttpError(HTTPStatus.BAD_REQUEST, f"CBOR nested deeper than {MAX_CBOR_DEPTH}")
            pending.append(count)
        elif major == 6:
            if arg != CBOR_SELF_DESCRIBE:
                raise HttpError(HTTPStatus.BAD_REQUEST, f"CBOR tag {arg} is not accepted in an envelope")
            pending[-1] += 1  # the tagged item follows
        elif major == 7 and arg not in (20, 21, 22):
            raise HttpError(HTTPStatus.BAD_REQUEST, "CBOR floats and simple values other than false, true and null "
                                                    "are not accepted")
    if pos != end:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"{end - pos} bytes after the CBOR item")


def _decode_envelope(body: bytes) -> dict[str, Any]:
    _scan_cbor(body)
    try:
        value = cbor2.loads(body, max_depth=2 * MAX_CBOR_DEPTH, allow_indefinite=False,
                            allow_duplicate_keys=False, strict_hashable_types=True)
    except Exception as exc:  # cbor2 raises several error types for garbage
        raise HttpError(HTTPStatus.BAD_REQUEST, f"Could not parse body as CBOR: {exc}") from exc
    value = _thaw(value)
    if not isinstance(value, dict) or not isinstance(value.get("content"), dict):
        raise HttpError(HTTPStatus.BAD_REQUEST, "the body must be a CBOR map with a content map")
    return value


def _thaw(value: Any) -> Any:
    """Plain dicts (text keys only), lists and bytes from whatever cbor2 produced (tags 55799 dropped, frozen
    maps thawed)."""
    if isinstance(value, cbor2.CBORTag):
        return _thaw(value.value) if value.tag == CBOR_SELF_DESCRIBE else value
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise HttpError(HTTPStatus.BAD_REQUEST, "CBOR map keys must be text")
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thaw(v) for v in value]
    return value


def _check_content(content: dict[str, Any], endpoint: str) -> None:
    """Type-check the content fields the endpoint uses (the IC's types), so nothing later meets a surprise."""
    if content.get("request_type") != endpoint:
        raise HttpError(HTTPStatus.BAD_REQUEST,
                        f"request_type must be {endpoint!r} here, got {_short(content.get('request_type'))}")
    _blob(content.get("sender"), "sender", MAX_PRINCIPAL_BYTES)
    expiry = content.get("ingress_expiry")
    if isinstance(expiry, bool) or not isinstance(expiry, int) or not 0 <= expiry < NAT64_LIMIT:
        raise HttpError(HTTPStatus.BAD_REQUEST, "content.ingress_expiry must be a nat64")
    if content.get("nonce") is not None:
        _blob(content["nonce"], "nonce", MAX_NONCE_BYTES)
    if endpoint in ("call", "query"):
        _blob(content.get("canister_id"), "canister_id", MAX_PRINCIPAL_BYTES)
        if not isinstance(content.get("method_name"), str):
            raise HttpError(HTTPStatus.BAD_REQUEST, "content.method_name must be text")
        _blob(content.get("arg"), "arg", MAX_BODY_BYTES)
        return
    paths = content.get("paths")
    if not isinstance(paths, list) or len(paths) > MAX_PATHS:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"content.paths must be a list of at most {MAX_PATHS} paths")
    for path in paths:
        if not isinstance(path, list) or len(path) > MAX_PATH_LABELS or not all(isinstance(x, bytes) for x in path):
            raise HttpError(HTTPStatus.BAD_REQUEST, f"each path must be a list of at most {MAX_PATH_LABELS} blobs")


def _blob(value: Any, name: str, max_bytes: int) -> bytes:
    if not isinstance(value, bytes) or len(value) > max_bytes:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"content.{name} must be a blob of at most {max_bytes} bytes")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _reject_fields(reject: Reject) -> dict[str, Any]:
    fields: dict[str, Any] = {"reject_code": int(reject.code), "reject_message": reject.message}
    if reject.error_code:
        fields["error_code"] = reject.error_code
    return fields


_CONTENT_LENGTH = re.compile(r"^[0-9]+$")
_log = logging.getLogger(__name__)


class BufferedHandler(BaseHTTPRequestHandler):
    """A reply's headers and body leave in one write (the buffer is flushed after each request), with no
    40 ms delayed-ACK stalls; the interim `100 Continue` leaves at once, or a client that sends
    `Expect: 100-continue` (curl, for bodies over 1 MB) waits a second before sending its body."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024

    def handle_expect_100(self) -> bool:
        ok = super().handle_expect_100()
        self.wfile.flush()
        return ok


class _Handler(BufferedHandler):
    timeout = READ_TIMEOUT_S  # socket timeout: a slow or silent client cannot hold a thread forever
    ic: IcHttpServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/cbor") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if self.path == "/api/v2/status":
            self._send(HTTPStatus.OK, self.ic.status())
        elif self.path == "/_/replica":  # local-only extension for `prometheus localnet status`
            self._send(HTTPStatus.OK, self.ic.describe(), "application/json")
        elif not self.path.startswith("/api/"):  # everything else is the HTTP gateway's (ic_replica.http_gateway)
            http_gateway.serve(self, self.ic.replica)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    def _gateway(self) -> None:
        http_gateway.serve(self, self.ic.replica)

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _gateway  # noqa: N815 - stdlib naming

    def _read_body(self) -> bytes:
        """The body, after its declared length was checked: numeric, present, at most MAX_BODY_BYTES."""
        if self.headers.get("Transfer-Encoding") is not None:
            raise HttpError(HTTPStatus.LENGTH_REQUIRED, "Transfer-Encoding is not accepted: send a Content-Length")
        declared = self.headers.get_all("Content-Length") or []
        if not declared:
            raise HttpError(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
        if len({v.strip() for v in declared}) != 1 or not _CONTENT_LENGTH.match(declared[0].strip()):
            raise HttpError(HTTPStatus.BAD_REQUEST, f"invalid Content-Length {_short(declared)}")
        digits = declared[0].strip()
        length = int(digits) if len(digits) <= 12 else MAX_BODY_BYTES + 1
        if length > MAX_BODY_BYTES:
            raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                            f"request body is {digits if len(digits) <= 20 else digits[:20] + '...'} bytes, "
                            f"at most {MAX_BODY_BYTES}")
        body = self.rfile.read(length)  # at most `length` bytes, within the socket timeout
        if len(body) != length:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"the body ended after {len(body)} of {length} bytes")
        return body

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        try:
            body = self._read_body()
        except HttpError as exc:  # the rest of the body, if any, is not read: this connection is done
            self.close_connection = True
            self._send(exc.status, (exc.message + "\n").encode(), "text/plain")
            return
        match = _ROUTE.match(self.path)
        if match is None and not self.path.startswith("/api/"):
            http_gateway.serve(self, self.ic.replica, body)
            return
        if match is None:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
            return
        try:
            version, kind, effective, endpoint = match.groups()
            if (version, kind, endpoint) in _ALLOWED:
                self.ic.check_routing(kind, effective)
            status, payload = self.ic.handle(version, kind, effective, endpoint, body)
            self._send(status, payload)
        except HttpError as exc:
            self._send(exc.status, (exc.message + "\n").encode(), "text/plain")
        except Exception as exc:  # the server keeps serving whatever one request does (no input should get here)
            _log.exception("internal error answering POST %s", self.path)
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(exc).__name__}: {exc}\n".encode(),
                       "text/plain")


def default_module_cache() -> Path:
    """`$XDG_CACHE_HOME/ic_replica/modules` (compiling a 1–2 MB canister takes a second; a new or reset localnet
    should not pay it again for code this user already ran)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ic_replica" / "modules"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ic_replica.http_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4943)
    parser.add_argument("--state-dir", type=Path, default=None, help="persist canisters and keys here")
    parser.add_argument("--module-cache", type=Path, default=default_module_cache(),
                        help="keep compiled wasm here, shared by every localnet of this user (default: %(default)s)")
    args = parser.parse_args(argv)
    replica = Replica(args.state_dir, live_time=True, module_cache_dir=args.module_cache)
    try:
        server = IcHttpServer(replica, args.host, args.port).start()
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(f"IC HTTP interface at {server.url} (root key {replica.root_key_der.hex()[-16:]}...)", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    stopped.wait()
    server.stop()
    replica.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
