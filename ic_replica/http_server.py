"""The IC HTTP interface over a `Replica`, on loopback: status, call (v2 async, v3/v4 sync), query (v2/v3)
and read_state (v2/v3, canister and subnet forms), with CBOR envelopes, signature checks, ingress expiry,
certificates signed by the network's BLS key and query responses signed by the node key.

Run one: `python -m ic_replica.http_server --port 4943 --state-dir DIR` (or `prometheus localnet start`).
"""

from __future__ import annotations

import argparse
import json
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

from ic_replica import hash_tree, management, state_tree
from ic_replica.candid import CandidError
from ic_replica.certification import CBOR_SELF_DESCRIBE, cbor_dumps
from ic_replica.errors import CallRejected, Reject
from ic_replica.principal import MANAGEMENT, InvalidPrincipal, Principal
from ic_replica.replica import Replica
from ic_replica.request_auth import AuthError, authenticate, hash_of_map

MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_EXPIRY_AHEAD_NS = (5 * 60 + 30) * 1_000_000_000  # 5 minutes, plus clock skew
SYNC_CALL_TIMEOUT_S = 10.0
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


class IcHttpServer:
    """Serves one replica; `start()` runs the server and a round ticker in background threads."""

    def __init__(self, replica: Replica, host: str = "127.0.0.1", port: int = 0) -> None:
        self.replica = replica
        replica.live_time = True
        replica.sync_clock()
        handler = type("BoundHandler", (_Handler,), {"ic": self})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> IcHttpServer:
        for target in (self.httpd.serve_forever, self._ticker):
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
        """Rounds happen on their own in live mode: often while there is work, about once a second otherwise."""
        while not self._stop.is_set():
            busy = self.replica.has_work()
            if busy:
                self.replica.tick()
            else:
                self.replica.sync_clock()
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

    def handle(self, version: str, kind: str, effective_text: str, endpoint: str, body: bytes) -> tuple[int, bytes]:
        if (version, kind, endpoint) not in _ALLOWED:
            raise HttpError(HTTPStatus.NOT_FOUND, f"unknown endpoint /api/{version}/{kind}/.../{endpoint}")
        try:
            effective = Principal.from_text(effective_text).raw
        except InvalidPrincipal as exc:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"invalid effective {kind} id: {exc}") from exc
        envelope = _decode_envelope(body)
        content = envelope["content"]
        expected_type = {"call": "call", "query": "query", "read_state": "read_state"}[endpoint]
        if content.get("request_type") != expected_type:
            got = content.get("request_type")
            raise HttpError(HTTPStatus.BAD_REQUEST, f"request_type must be {expected_type!r} here, got {got!r}")
        self.replica.sync_clock()
        now = self.replica.get_time()
        self._check_expiry(content, now, anonymous_ok=endpoint != "call")
        target = _bytes(content.get("canister_id"), "canister_id") if endpoint != "read_state" else None
        try:
            rid = authenticate(envelope, now, target, is_call=endpoint == "call")
        except AuthError as exc:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"Failed to authenticate request: {exc}") from exc
        sender = bytes(content["sender"])
        if endpoint == "call":
            return self._call(version, content, rid, sender, effective)
        if endpoint == "query":
            return self._query(content, rid, sender, effective)
        return self._read_state(content, sender, effective, subnet_form=kind == "subnet")

    def _check_expiry(self, content: dict[str, Any], now: int, anonymous_ok: bool) -> None:
        expiry = content.get("ingress_expiry")
        if not isinstance(expiry, int) or isinstance(expiry, bool):
            raise HttpError(HTTPStatus.BAD_REQUEST, "content.ingress_expiry is missing or not a nat")
        if anonymous_ok and bytes(content.get("sender", b"")) == b"\x04":
            return
        if expiry < now or expiry > now + MAX_EXPIRY_AHEAD_NS:
            raise HttpError(HTTPStatus.BAD_REQUEST,
                            f"Specified ingress_expiry not within expected range: minimum {now}, maximum "
                            f"{now + MAX_EXPIRY_AHEAD_NS}, provided {expiry}")

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
        canister_id = _bytes(content.get("canister_id"), "canister_id")
        method, arg = _text(content.get("method_name"), "method_name"), _bytes(content.get("arg"), "arg")
        nonce = content.get("nonce")
        if nonce is not None and (not isinstance(nonce, bytes) or len(nonce) > 32):
            raise HttpError(HTTPStatus.BAD_REQUEST, "nonce must be a blob of at most 32 bytes")
        self._check_target(canister_id, method, arg, effective)
        try:
            self.replica.submit_call(canister_id, method, arg, sender, message_id=rid,
                                     effective_canister_id=effective)
        except CallRejected as exc:
            rejection = _reject_fields(exc.reject)
            if version == "v2":
                return HTTPStatus.OK, cbor_dumps(rejection)
            return HTTPStatus.OK, cbor_dumps({"status": "non_replicated_rejection", **rejection})
        if version == "v2":
            return HTTPStatus.ACCEPTED, b""
        deadline = time.monotonic() + SYNC_CALL_TIMEOUT_S
        while time.monotonic() < deadline:
            with self.replica.lock:
                status = self.replica.ingress_status(rid)
                if status is None or status.final:
                    break
                self.replica.tick()
        else:
            return HTTPStatus.ACCEPTED, b""
        certificate = self._certificate([[b"request_status", rid], [b"time"]], {rid})
        return HTTPStatus.OK, cbor_dumps({"status": "replied", "certificate": certificate})

    def _query(self, content: dict[str, Any], rid: bytes, sender: bytes, effective: bytes) -> tuple[int, bytes]:
        canister_id = _bytes(content.get("canister_id"), "canister_id")
        method, arg = _text(content.get("method_name"), "method_name"), _bytes(content.get("arg"), "arg")
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
        raw_paths = content.get("paths")
        if not isinstance(raw_paths, list) or len(raw_paths) > 1000:
            raise HttpError(HTTPStatus.BAD_REQUEST, "paths must be a list of at most 1000 paths")
        paths = []
        for path in raw_paths:
            if not isinstance(path, list) or len(path) > 127 or not all(isinstance(x, bytes) for x in path):
                raise HttpError(HTTPStatus.BAD_REQUEST, "each path must be a list of at most 127 blobs")
            paths.append([bytes(x) for x in path])
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


def _decode_envelope(body: bytes) -> dict[str, Any]:
    try:
        value = cbor2.loads(body)
    except Exception as exc:  # cbor2 raises several error types for garbage
        raise HttpError(HTTPStatus.BAD_REQUEST, f"Could not parse body as CBOR: {exc}") from exc
    value = _thaw(value)
    if not isinstance(value, dict) or not isinstance(value.get("content"), dict):
        raise HttpError(HTTPStatus.BAD_REQUEST, "the body must be a CBOR map with a content map")
    return value


def _thaw(value: Any) -> Any:
    """Plain dicts, lists and bytes from whatever cbor2 produced (tags 55799 dropped, frozen maps thawed)."""
    if isinstance(value, cbor2.CBORTag):
        return _thaw(value.value) if value.tag == CBOR_SELF_DESCRIBE else value
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thaw(v) for v in value]
    return value


def _bytes(value: Any, name: str) -> bytes:
    if not isinstance(value, bytes):
        raise HttpError(HTTPStatus.BAD_REQUEST, f"content.{name} must be a blob")
    return value


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise HttpError(HTTPStatus.BAD_REQUEST, f"content.{name} must be text")
    return value


def _reject_fields(reject: Reject) -> dict[str, Any]:
    fields: dict[str, Any] = {"reject_code": int(reject.code), "reject_message": reject.message}
    if reject.error_code:
        fields["error_code"] = reject.error_code
    return fields


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once: no 40 ms delayed-ACK stalls
    wbufsize = 64 * 1024
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
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            self._send(HTTPStatus.BAD_REQUEST, b"invalid Content-Length\n", "text/plain")
            return
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                       f"request body is {length} bytes, at most {MAX_BODY_BYTES}\n".encode(), "text/plain")
            return
        body = self.rfile.read(length)
        match = _ROUTE.match(self.path)
        if match is None:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
            return
        try:
            version, kind, effective, endpoint = match.groups()
            status, payload = self.ic.handle(version, kind, effective, endpoint, body)
            self._send(status, payload)
        except HttpError as exc:
            self._send(exc.status, (exc.message + "\n").encode(), "text/plain")
        except Exception as exc:  # the server keeps serving whatever one request does
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(exc).__name__}: {exc}\n".encode(),
                       "text/plain")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ic_replica.http_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4943)
    parser.add_argument("--state-dir", type=Path, default=None, help="persist canisters and keys here")
    args = parser.parse_args(argv)
    replica = Replica(args.state_dir, live_time=True)
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
