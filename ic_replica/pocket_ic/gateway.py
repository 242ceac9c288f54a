"""The IC HTTP interface of an instance (`/instances/<id>/api/v2|v3|v4/...`), reusing
`ic_replica.http_server`'s request handling on the replica of the subnet a request is for, and the HTTP
gateway (`POST /http_gateway`): a listener that serves that interface at `/api/...` and answers every other
request with the canister's `http_request` (named by `?canisterId=` or a `<canister id>.localhost` host).

The gateway does not verify response certification (`ic-response-verification`) and does not follow
streaming callbacks; `upgrade = opt true` is honoured with `http_request_update`.
"""

from __future__ import annotations

import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from ic_replica import candid
from ic_replica.certification import cbor_dumps
from ic_replica.errors import CallRejected
from ic_replica.http_server import IC_API_VERSION, HttpError, IcHttpServer
from ic_replica.principal import InvalidPrincipal, Principal
from ic_replica.replica import Replica

if TYPE_CHECKING:
    from ic_replica.pocket_ic.instance import Instance

API_ROUTE = re.compile(r"^/api/(v2|v3|v4)/(canister|subnet)/([0-9a-z-]+)/(call|query|read_state)$")
HTTP_REQUEST = candid.Record.of(method=candid.TEXT, url=candid.TEXT,
                                headers=candid.Vec(candid.Tuple(candid.TEXT, candid.TEXT)), body=candid.BLOB,
                                certificate_version=candid.Opt(candid.NAT16))
HTTP_UPDATE_REQUEST = candid.Record.of(method=candid.TEXT, url=candid.TEXT,
                                       headers=candid.Vec(candid.Tuple(candid.TEXT, candid.TEXT)),
                                       body=candid.BLOB)
HTTP_RESPONSE = candid.Record.of(status_code=candid.NAT16,
                                 headers=candid.Vec(candid.Tuple(candid.TEXT, candid.TEXT)), body=candid.BLOB,
                                 upgrade=candid.Opt(candid.BOOL))
_HOST_CANISTER = re.compile(r"^([a-z0-9]{5}(?:-[a-z0-9]{5}){3}-cai)(?:\.raw)?\.")


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


def canister_of(path: str, host: str) -> bytes | None:
    query = parse_qs(urlsplit(path).query)
    names = query.get("canisterId") or []
    match = _HOST_CANISTER.match(host.lower())
    text = names[0] if names else (match.group(1) if match else None)
    if text is None:
        return None
    try:
        return Principal.from_text(text).raw
    except InvalidPrincipal:
        return None


def http_request(instance: Instance, canister_id: bytes, method: str, url: str, headers: list[tuple[str, str]],
                 body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """Serve one HTTP request with the canister's `http_request` (and `http_request_update` on upgrade)."""
    subnet = instance.subnet_hosting(canister_id)
    if subnet is None:
        return 400, [("content-type", "text/plain")], b"canister id not in any subnet of this instance\n"
    arg = candid.encode([HTTP_REQUEST], [{"method": method, "url": url, "headers": headers, "body": body,
                                          "certificate_version": [2]}])
    try:
        reply = subnet.replica.query_call(canister_id, "http_request", arg)
        response = candid.decode(reply, [HTTP_RESPONSE])[0]
        if response["upgrade"] == [True]:
            arg = candid.encode([HTTP_UPDATE_REQUEST], [{"method": method, "url": url, "headers": headers,
                                                         "body": body}])
            with instance.lock:
                reply = subnet.replica.update_call(canister_id, "http_request_update", arg)
            response = candid.decode(reply, [HTTP_RESPONSE])[0]
    except CallRejected as exc:
        return 502, [("content-type", "text/plain")], f"canister rejected the request: {exc}\n".encode()
    except candid.CandidError as exc:
        why = f"the canister's response is not an HttpResponse: {exc}\n"
        return 502, [("content-type", "text/plain")], why.encode()
    return int(response["status_code"]), [tuple(h) for h in response["headers"]], bytes(response["body"])  # type: ignore[misc]


class HttpGateway:
    """`POST /http_gateway`: a listener forwarding to one instance."""

    def __init__(self, gateway_id: int, instance: Instance, host: str, port: int) -> None:
        self.gateway_id = gateway_id
        self.instance = instance
        handler = type("GatewayHandler", (_GatewayHandler,), {"gateway": self})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                        name=f"pocket-ic-gateway-{gateway_id}")
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _GatewayHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    gateway: HttpGateway

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        instance = self.gateway.instance
        body = self._body()
        path = urlsplit(self.path).path
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
        canister_id = canister_of(self.path, self.headers.get("Host", ""))
        if canister_id is None:
            self._reply(400, [("content-type", "text/plain")],
                        b"name the canister: ?canisterId=<id> or a <canister id>.localhost host\n")
            return
        headers = [(k, v) for k, v in self.headers.items()]
        code, out_headers, out = http_request(instance, canister_id, self.command, self.path, headers, body)
        self._reply(code, out_headers, out)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _serve  # noqa: N815
