"""The IC HTTP interface of an instance (`/instances/<id>/api/v2|v3|v4/...`), reusing
`ic_replica.http_server`'s request handling on the replica of the subnet a request is for, and the HTTP
gateway (`POST /http_gateway`): a listener that serves that interface at `/api/...` and answers every other
request with `ic_replica.http_gateway` (the canister's `http_request` by `<canister id>.localhost` host or
`?canisterId=`, response verification against the instance's root key, `<id>.raw.localhost` for uncertified
access, streaming callbacks, `http_request_update` on upgrade) on the subnet hosting the canister.
"""

from __future__ import annotations

import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ic_replica.certification import cbor_dumps
from ic_replica.http_gateway import MAX_REQUEST_BODY, GatewayError, read_body, resolve_canister, wire_value
from ic_replica.http_gateway import HttpGateway as IcGateway
from ic_replica.http_server import (
    IC_API_VERSION,
    MAX_CONNECTIONS,
    READ_TIMEOUT_S,
    STOP_POLL_S,
    BoundedServer,
    HttpError,
    IcHttpServer,
)
from ic_replica.principal import InvalidPrincipal, Principal
from ic_replica.replica import Replica

if TYPE_CHECKING:
    from ic_replica.pocket_ic.instance import Instance

API_BODY_LIMIT = 4 * 1024 * 1024  # PocketIC's RequestBodyLimitLayer on the IC API routes (the boundary node's)
API_ROUTE = re.compile(r"^/api/(v2|v3|v4)/(canister|subnet)/([0-9a-z-]+)/(call|query|read_state)$")


class _SubnetApi(IcHttpServer):
    """`IcHttpServer`'s request handling for one subnet's replica, without a listener or ticker of its own."""

    def __init__(self, replica: Replica) -> None:  # noqa: D107 - deliberately no super().__init__ (no socket)
        self.replica = replica


def status(instance: Instance) -> bytes:
    return cbor_dumps({"ic_api_version": IC_API_VERSION, "root_key": instance.root_key_der,
                       "impl_version": "prometheus-pocket-ic", "replica_health_status": "healthy"})


def handle_api(instance: Instance, path: str, body: bytes) -> tuple[int, bytes]:
    """Answer POST /api/... for an instance: (status, CBOR or text body)."""
    match = API_ROUTE.match(path)
    if match is None:
        raise HttpError(HTTPStatus.NOT_FOUND, f"unknown endpoint {path}")
    version, kind, target, endpoint = match.groups()
    try:
        raw = Principal.from_text(target).raw
    except InvalidPrincipal as exc:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"invalid effective {kind} id: {exc}") from exc
    subnet = instance.subnet_by_id(raw) if kind == "subnet" else instance.subnet_hosting(raw)
    if subnet is None:
        raise HttpError(HTTPStatus.BAD_REQUEST,
                        f"the effective {kind} id {target} is not hosted by any subnet of instance "
                        f"{instance.instance_id}")
    return _SubnetApi(subnet.replica).handle(version, kind, target, endpoint, body)


def http_request(instance: Instance, method: str, host: str, target: str, headers: list[tuple[str, str]],
                 body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """Serve one HTTP request with `ic_replica.http_gateway` on the subnet hosting the named canister."""
    try:
        canister_id, _ = resolve_canister(host, target)
    except GatewayError as exc:
        return exc.status, [("content-type", "text/plain")], (exc.message + "\n").encode()
    subnet = instance.subnet_hosting(canister_id) if canister_id is not None else None
    if canister_id is not None and subnet is None:
        return 400, [("content-type", "text/plain")], (
            f"canister {Principal(canister_id)} is not in the canister ranges of any subnet of instance "
            f"{instance.instance_id}\n").encode()
    replica = subnet.replica if subnet is not None else instance.default_subnet().replica
    return IcGateway(replica).handle(method, host, target, headers, body)


class HttpGateway:
    """`POST /http_gateway`: a listener forwarding to one instance."""

    def __init__(self, gateway_id: int, instance: Instance, host: str, port: int) -> None:
        self.gateway_id = gateway_id
        self.instance = instance
        handler = type("GatewayHandler", (_GatewayHandler,), {"gateway": self})
        self.httpd = BoundedServer((host, port), handler, MAX_CONNECTIONS)  # as the REST server's listener
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": STOP_POLL_S},
                                        daemon=True, name=f"pocket-ic-gateway-{gateway_id}")
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _GatewayHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = READ_TIMEOUT_S  # socket timeout: a slow or silent client cannot hold a thread forever
    gateway: HttpGateway

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, wire_value(value))
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _serve(self) -> None:
        instance = self.gateway.instance
        path = urlsplit(self.path).path
        try:
            body = read_body(self, API_BODY_LIMIT if path.startswith("/api/") else MAX_REQUEST_BODY)
        except GatewayError as exc:  # checked before reading: an oversized body is never buffered
            self._reply(exc.status, [("content-type", "text/plain")], (exc.message + "\n").encode())
            return
        try:
            if path == "/api/v2/status" and self.command == "GET":
                self._reply(200, [("content-type", "application/cbor")], status(instance))
                return
            if path.startswith("/api/") and self.command == "POST":
                code, payload = handle_api(instance, path, body)
                self._reply(code, [("content-type", "application/cbor")], payload)
                return
        except HttpError as exc:
            self._reply(exc.status, [("content-type", "text/plain")], (exc.message + "\n").encode())
            return
        code, out_headers, out = http_request(instance, self.command, self.headers.get("Host", ""), self.path,
                                              list(self.headers.items()), body)
        self._reply(code, out_headers, out)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _serve  # noqa: N815
