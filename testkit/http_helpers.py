"""Test helpers for the HTTP interface: a running server, hand-built signed envelopes, a tampering proxy,
a recording proxy that can lose replies."""

from __future__ import annotations

import functools
import hashlib
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import cbor2
import ecdsa
import httpx
import httpx2
import nacl.signing
import trustme

from ic_replica.certification import ED25519_DER_PREFIX
from ic_replica.http_server import IcHttpServer, _thaw
from ic_replica.principal import ANONYMOUS, Principal
from ic_replica.replica import Replica
from ic_replica.request_auth import DELEGATION_SEPARATOR, REQUEST_SEPARATOR, hash_of_map, request_id


@functools.cache
def shared_tls() -> ssl.SSLContext:
    """One TLS context for the tests' own HTTP clients: an httpx client made without one loads the system's CA
    store (10-20 ms), and the helpers below make one per request they relay or poll."""
    return ssl.create_default_context()


class Ed25519Signer:
    def __init__(self) -> None:
        self.key = nacl.signing.SigningKey.generate()
        self.der = ED25519_DER_PREFIX + bytes(self.key.verify_key)
        self.principal = Principal.self_authenticating(self.der)

    def sign(self, message: bytes) -> bytes:
        return self.key.sign(message).signature


class Secp256k1Signer:
    def __init__(self) -> None:
        self.key = ecdsa.SigningKey.generate(curve=ecdsa.SECP256k1, hashfunc=hashlib.sha256)
        self.der = self.key.get_verifying_key().to_der()
        self.principal = Principal.self_authenticating(self.der)

    def sign(self, message: bytes, low_s: bool = True) -> bytes:
        sig = self.key.sign_deterministic(message, hashfunc=hashlib.sha256, sigencode=ecdsa.util.sigencode_string)
        r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
        n = ecdsa.SECP256k1.order
        s = min(s, n - s) if low_s else max(s, n - s)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def content(kind: str, canister: Principal, method: str = "", arg: bytes = b"", sender: Principal = ANONYMOUS,
            expiry_s: float = 120, **extra: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"request_type": kind, "sender": sender.raw,
                         "ingress_expiry": time.time_ns() + int(expiry_s * 1e9)}
    if kind != "read_state":
        c.update(canister_id=canister.raw, method_name=method, arg=arg)
    c.update(extra)
    return c


def envelope(c: dict[str, Any], signer: Any = None, delegations: list[dict[str, Any]] | None = None,
             key_signer: Any = None) -> bytes:
    """A CBOR envelope; `signer` signs the request id, `key_signer` (default: signer) owns sender_pubkey."""
    env: dict[str, Any] = {"content": c}
    if signer is not None:
        owner = key_signer or signer
        env["sender_pubkey"] = owner.der
        env["sender_sig"] = signer.sign(REQUEST_SEPARATOR + request_id(c))
        if delegations:
            env["sender_delegation"] = delegations
    return cbor2.dumps(cbor2.CBORTag(55799, env))


def delegation(issuer: Any, to: Any, expiration_ns: int, targets: list[Principal] | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"pubkey": to.der, "expiration": expiration_ns}
    if targets is not None:
        d["targets"] = [t.raw for t in targets]
    return {"delegation": d, "signature": issuer.sign(DELEGATION_SEPARATOR + hash_of_map(d))}


def decode(body: bytes) -> Any:
    return _thaw(cbor2.loads(body))


@contextmanager
def running_server(replica: Replica | None = None) -> Iterator[IcHttpServer]:
    server = IcHttpServer(replica or Replica()).start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def serve_on_loopback(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Run an HTTP handler on a free loopback port in a background thread; yields its base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up mid-response (as the replica does past `max_response_bytes`) is no error here."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


@contextmanager
def serve_https_on_loopback(handler: type[BaseHTTPRequestHandler]) -> Iterator[tuple[str, str]]:
    """`serve_on_loopback` over TLS, with a certificate for 127.0.0.1 and localhost from a throwaway CA; yields
    the base URL and the CA's PEM file (what a client must trust). The handshake happens in the request's thread,
    so a client that never completes one holds up nobody."""
    ca = trustme.CA()
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(tls)
    httpd = _QuietServer(("127.0.0.1", 0), handler)
    httpd.socket = tls.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        with ca.cert_pem.tempfile() as ca_file:
            yield f"https://127.0.0.1:{httpd.server_address[1]}", ca_file
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextmanager
def custom_domain(gateway_url: str, canister_id: str) -> Iterator[str]:
    """A canister's site at a domain of its own, as boundary nodes serve custom domains: requests to the yielded
    `http://127.0.0.1:<port>` reach the gateway as `<canister_id>.localhost` (for clients that cannot resolve
    `*.localhost`, e.g. Node's fetch)."""
    host = f"{canister_id}.localhost:{urlsplit(gateway_url).port}"

    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _relay(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length",
                                                                                  "connection")}
            answer = httpx.request(self.command, gateway_url + self.path, content=body,
                                   headers={**headers, "Host": host}, timeout=60)
            self.send_response(answer.status_code)
            for name, value in answer.headers.multi_items():
                if name.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        do_GET = do_POST = do_OPTIONS = _relay  # noqa: N815

    with serve_on_loopback(Proxy) as url:
        yield url


@contextmanager
def tampering_proxy(upstream: str) -> Iterator[str]:
    """Forwards to `upstream`, flipping one bit of every certificate signature and query node signature."""

    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _relay(self, method: str) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            upstream_response = httpx.request(method, upstream + self.path, content=body, verify=shared_tls(),
                                              headers={"Content-Type": "application/cbor"})
            payload = upstream_response.content
            if payload and upstream_response.headers.get("content-type") == "application/cbor":
                payload = _tamper(payload)
            self.send_response(upstream_response.status_code)
            self.send_header("Content-Type", upstream_response.headers.get("content-type", "application/cbor"))
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:  # noqa: N802
            self._relay("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._relay("POST")

    with serve_on_loopback(Proxy) as url:
        yield url


def _flip(b: bytes) -> bytes:
    return b[:-1] + bytes([b[-1] ^ 0x01])


def _tamper(payload: bytes) -> bytes:
    value = decode(payload)
    if not isinstance(value, dict):
        return payload
    if "certificate" in value:
        cert = decode(value["certificate"])
        cert["signature"] = _flip(cert["signature"])
        value["certificate"] = cbor2.dumps(cbor2.CBORTag(55799, cert))
    for sig in value.get("signatures", []):
        sig["signature"] = _flip(sig["signature"])
    return cbor2.dumps(cbor2.CBORTag(55799, value))


@dataclass
class Seen:
    """One request a `recording_proxy` received."""

    method: str
    path: str
    body: bytes

    @property
    def endpoint(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass
class RecordingProxy:
    """A live `recording_proxy`: its URL, what it saw, where it forwards (may be changed), faults still to come."""

    url: str
    upstream: str
    call_faults: list[str]
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


CALL_FAULTS = ("close-after", "502-after", "202-after", "close-before", "503-before", "202-before")


@contextmanager
def recording_proxy(upstream: str, call_faults: Sequence[str] = ()) -> Iterator[RecordingProxy]:
    """Forwards every request to `proxy.upstream` and records it. The n-th `call` request meets
    `call_faults[n]` (later ones pass): `close-after` / `502-after` / `202-after` forward it, then close the
    connection without an answer / answer 502 / answer 202 (the reply is lost); `close-before` /
    `503-before` / `202-before` close the connection / answer 503 / answer 202 without forwarding it."""
    assert all(f in CALL_FAULTS for f in call_faults), call_faults
    proxy = RecordingProxy("", upstream, list(call_faults))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _relay(self, method: str) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with proxy.lock:
                proxy.seen.append(Seen(method, self.path, body))
                fault = proxy.call_faults.pop(0) if self.path.endswith("/call") and proxy.call_faults else None
                upstream = proxy.upstream
            if fault is not None and fault.endswith("-before"):
                return self._fail(fault)
            answer = httpx.request(method, upstream + self.path, content=body, verify=shared_tls(),
                                   headers={"Content-Type": "application/cbor"}, timeout=60)
            if fault is not None:
                return self._fail(fault)
            self._send(answer.status_code, answer.content, answer.headers.get("content-type", "application/cbor"))

        def _fail(self, fault: str) -> None:
            if fault.startswith("close"):
                self.close_connection = True
            else:
                self._send(int(fault[:3]), b"" if fault.startswith("202") else b"upstream lost\n", "text/plain")

        def _send(self, status: int, payload: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:  # noqa: N802
            self._relay("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._relay("POST")

    with serve_on_loopback(Handler) as url:
        proxy.url = url
        yield proxy


class LocalhostSubdomains(httpx.HTTPTransport):
    """Sends `http://<name>.localhost:<port>/...` to 127.0.0.1, the Host header unchanged: what browsers do for
    `*.localhost` (RFC 6761), which this machine's resolver does not. The gateway routes by that Host header."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("verify", shared_tls())
        super().__init__(**options)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host.endswith(".localhost"):
            request.url = request.url.copy_with(host="127.0.0.1")
        return super().handle_request(request)


class AsyncLocalhostSubdomains(httpx2.AsyncHTTPTransport):
    """`LocalhostSubdomains` for the `mcp` SDK's HTTP client (httpx2, httpx's fork with the same transports)."""

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.host.endswith(".localhost"):
            request.url = request.url.copy_with(host="127.0.0.1")
        return await super().handle_async_request(request)
