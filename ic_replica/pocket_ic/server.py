"""PocketIC's REST API over embedded replica instances, on the standard library's `ThreadingHTTPServer` (bounded
as the IC HTTP interface's: `ic_replica.http_server.BoundedServer`).

Server routes: `GET /status`, `GET|POST /instances`, `DELETE /instances/<id>`, `POST /blobstore`,
`GET /blobstore/<hex id>`, `GET|POST /http_gateway`, `POST /http_gateway/<id>/stop`. Instance routes
(`/instances/<id>/...`): `read/{topology,get_time,get_subnet,get_controllers,pub_key,get_cycles,
get_stable_memory,query,ingress_status,get_canister_http}`, `update/{set_time,set_certified_time,tick,
add_cycles,set_stable_memory,submit_ingress_message,await_ingress_message,execute_ingress_message}`,
`auto_progress` (GET and POST), `stop_progress`, `_/topology`, `_/dashboard`, and the IC HTTP interface
`api/v2/status`, `api/v2|v3|v4/canister/<ecid>/{call,query,read_state}`, `api/v2|v3/subnet/<sid>/read_state`.

Every operation completes before its response (never `202 Started`), so a client never needs
`/read_graph`. Failures are HTTP 400 (404 for an unknown instance) with `{"message": ...}` as on PocketIC.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
import threading
import time
import zlib
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from ic_replica.http_server import (
    MAX_CONNECTIONS,
    READ_TIMEOUT_S,
    STOP_POLL_S,
    BoundedServer,
    BufferedHandler,
    HttpError,
)
from ic_replica.pocket_ic import gateway, rest
from ic_replica.pocket_ic.gateway import HttpGateway
from ic_replica.pocket_ic.instance import Instance
from ic_replica.pocket_ic.rest import ApiError, CanisterCall, Effective

MAX_BODY_BYTES = 256 * 1024 * 1024  # blobs (wasm, stable memory) can be large
API_BODY_LIMIT = gateway.API_BODY_LIMIT  # the instance's IC HTTP interface (PocketIC's RequestBodyLimitLayer)
MAX_TRAILER_LINES = 100
_INSTANCE = re.compile(r"^/instances/(\d+)(?:/(.*))?$")
_INSTANCE_API = re.compile(r"^/instances/\d+/api/")
_CHUNK_SIZE = re.compile(rb"^[0-9A-Fa-f]{1,16}$")
MAX_ID_DIGITS = 20  # ids are usize on PocketIC
_log = logging.getLogger(__name__)


MAX_GUNZIPPED_BLOB = 1 << 30  # what a gzip blob may expand to: this server keeps stable memory and wasm in RAM


_INFLATING = threading.BoundedSemaphore(2)  # gzip blobs expanded at once: each may take MAX_GUNZIPPED_BLOB


def _gunzip(data: bytes, blob_id: bytes) -> bytes:
    """A gzip blob's content, refused past MAX_GUNZIPPED_BLOB (a small bomb must not take the server's memory;
    PocketIC decompresses without a limit)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, MAX_GUNZIPPED_BLOB + 1)
    except zlib.error as exc:
        raise ApiError(f"BlobDecompressionFailed({blob_id.hex()}): {exc}") from exc
    if len(out) > MAX_GUNZIPPED_BLOB:
        raise ApiError(f"BlobDecompressionFailed({blob_id.hex()}): it expands to more than "
                       f"{MAX_GUNZIPPED_BLOB >> 20} MiB")
    if not inflater.eof:
        raise ApiError(f"BlobDecompressionFailed({blob_id.hex()}): truncated gzip data")
    return out


class PocketIcServer:
    """The server's state: instances, blobs, HTTP gateways, and the time of the last request (for TTL)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, max_connections: int = MAX_CONNECTIONS) -> None:
        self.instances: dict[int, Instance | None] = {}  # None: deleted (listed as "Deleted", as on PocketIC)
        self.blobs: dict[bytes, tuple[bytes, bool]] = {}  # id -> (data as sent, gzip-compressed)
        self.gateways: dict[int, HttpGateway] = {}
        self._instance_ids, self._gateway_ids = itertools.count(), itertools.count()
        self.lock = threading.Lock()
        self.last_request = time.monotonic()
        self.active = 0  # requests being answered (a long one must not let the TTL expire under it)
        handler = type("PocketIcHandler", (_Handler,), {"server_state": self})
        # As the IC HTTP interface: a thread per connection, at most `max_connections` (more get a 503 at once),
        # and a client that goes silent is dropped after READ_TIMEOUT_S instead of holding its thread forever.
        self.httpd = BoundedServer((host, port), handler, max_connections)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def idle_for(self) -> float:
        """Seconds since the last request ended (0 while one is being answered)."""
        with self.lock:
            return 0.0 if self.active else time.monotonic() - self.last_request

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=STOP_POLL_S)

    def shutdown(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        for gw in list(self.gateways.values()):
            gw.stop()
        for inst in list(self.instances.values()):
            if inst is not None:
                inst.close()

    # ------------------------------------------------------------ server routes

    def create_instance(self, body: Any) -> tuple[int, Any]:
        with self.lock:
            instance_id = next(self._instance_ids)
            self.instances[instance_id] = None  # reserve the id
        try:
            inst = Instance(instance_id, body)
        except ApiError as exc:  # the id stays listed ("Deleted"): `GET /instances` is indexed by id
            return HTTPStatus.BAD_REQUEST, {"Error": {"message": exc.message}}
        with self.lock:
            self.instances[instance_id] = inst
        return HTTPStatus.CREATED, {"Created": {"instance_id": instance_id, "topology": inst.topology,
                                                "http_gateway_info": None}}

    def list_instances(self) -> list[str]:
        """A list indexed by instance id, as PocketIC's `list_instance_states` (deleted and failed ids keep
        their place as "Deleted")."""
        with self.lock:
            return ["Available" if self.instances.get(i) is not None else "Deleted"
                    for i in range(max(self.instances, default=-1) + 1)]

    def list_gateways(self) -> list[dict[str, Any]]:
        """The running gateways (PocketIC lists no stopped one)."""
        with self.lock:
            return [{"instance_id": g.gateway_id, "port": g.port,
                     "forward_to": {"PocketIcInstance": g.instance.instance_id}, "domains": None, "https_config": None}
                    for g in self.gateways.values()]

    def delete_instance(self, instance_id: int) -> None:
        """Delete an instance: its progress thread ends and its gateways stop (and are no longer listed)."""
        with self.lock:
            inst = self.instances.get(instance_id)
            if instance_id in self.instances:
                self.instances[instance_id] = None
            gateways = [self.gateways.pop(i) for i, g in list(self.gateways.items()) if g.instance is inst]
        for gw in gateways:
            gw.stop()
        if inst is not None:
            inst.close()

    def instance(self, instance_id: int) -> Instance:
        with self.lock:
            if instance_id not in self.instances:
                raise ApiError(f"Instance with ID {instance_id} was not found.", status=HTTPStatus.NOT_FOUND)
            inst = self.instances[instance_id]
        if inst is None:
            raise ApiError(f"Instance with ID {instance_id} was deleted.", status=HTTPStatus.BAD_REQUEST)
        return inst

    def put_blob(self, data: bytes, gzipped: bool) -> str:
        blob_id = hashlib.sha256(data).digest()
        with self.lock:
            self.blobs[blob_id] = (data, gzipped)
        return blob_id.hex()

    def blob_loader(self, blob_id: bytes) -> Callable[[], bytes]:
        """The blob's content, to be read when the operation that uses it has checked its other arguments: a
        1 MiB gzip blob may expand to 1 GiB. Raises BlobNotFound now, as PocketIC checks the blob first."""
        with self.lock:
            entry = self.blobs.get(blob_id)
        if entry is None:
            raise ApiError(f"BlobNotFound({blob_id.hex()})")
        data, gzipped = entry
        if not gzipped:
            return lambda: data

        def inflate() -> bytes:
            with _INFLATING:
                return _gunzip(data, blob_id)

        return inflate

    def create_gateway(self, body: Any) -> tuple[int, Any]:
        forward = body.get("forward_to") if isinstance(body, dict) else None
        if not isinstance(forward, dict) or "PocketIcInstance" not in forward:
            return HTTPStatus.BAD_REQUEST, {"Error": {"message": "only `forward_to: {\"PocketIcInstance\": <id>}` "
                                                                 "is supported by this server"}}
        if body.get("https_config") is not None:
            return HTTPStatus.BAD_REQUEST, {"Error": {"message": "HTTPS gateways are not supported"}}
        target, host, port = forward["PocketIcInstance"], body.get("ip_addr") or "127.0.0.1", body.get("port") or 0
        if not _is_int(target) or not _is_int(port) or not 0 <= port <= 65535 or not isinstance(host, str):
            return HTTPStatus.BAD_REQUEST, {"Error": {"message": "Failed to deserialize the JSON body: "
                                                                 "`PocketIcInstance` and `port` must be integers, "
                                                                 "`ip_addr` a string"}}
        try:
            inst = self.instance(target)
            with self.lock:
                gateway_id = next(self._gateway_ids)
            gw = HttpGateway(gateway_id, inst, host, port)
        except (ApiError, OSError, ValueError, OverflowError) as exc:
            return HTTPStatus.BAD_REQUEST, {"Error": {"message": str(exc)}}
        with self.lock:  # the same critical section as `delete_instance`'s: a gateway never outlives its instance
            alive = self.instances.get(target) is inst
            if alive:
                self.gateways[gateway_id] = gw
        if not alive:
            gw.stop()
            return HTTPStatus.BAD_REQUEST, {"Error": {"message": f"Instance with ID {target} was deleted."}}
        return HTTPStatus.CREATED, {"Created": {"instance_id": gateway_id, "port": gw.port}}

    # ------------------------------------------------------------ instance routes

    def instance_get(self, inst: Instance, route: str) -> Any:
        if route in ("read/topology", "_/topology"):
            return inst.topology
        if route == "read/get_time":
            return {"nanos_since_epoch": inst.get_time()}
        if route == "auto_progress":
            return inst.auto_progress_enabled()
        if route == "read/get_canister_http":
            return inst.canister_http()
        raise ApiError(f"unknown endpoint GET /instances/{inst.instance_id}/{route}", status=HTTPStatus.NOT_FOUND)

    def instance_post(self, inst: Instance, route: str, body: Any) -> Any:
        handler = _POST.get(route)
        if handler is None:
            raise ApiError(f"unknown endpoint POST /instances/{inst.instance_id}/{route}",
                           status=HTTPStatus.NOT_FOUND)
        return handler(self, inst, body)


def _set_time(_: PocketIcServer, inst: Instance, body: Any) -> None:
    inst.set_time(rest.nat_field(body, "nanos_since_epoch", rest.U64_MAX))


def _set_certified_time(_: PocketIcServer, inst: Instance, body: Any) -> None:
    inst.set_time(rest.nat_field(body, "nanos_since_epoch", rest.U64_MAX), certified=True)


def _tick(_: PocketIcServer, inst: Instance, body: Any) -> None:
    inst.tick()


def _get_subnet(_: PocketIcServer, inst: Instance, body: Any) -> Any:
    subnet = inst.get_subnet(rest.principal_field(body, "canister_id"))
    return None if subnet is None else {"subnet_id": rest.b64(subnet)}


def _controllers(_: PocketIcServer, inst: Instance, body: Any) -> Any:
    return [{"principal_id": rest.b64(c)} for c in inst.controllers(rest.principal_field(body, "canister_id"))]


def _pub_key(_: PocketIcServer, inst: Instance, body: Any) -> Any:
    return list(inst.pub_key(rest.principal_field(body, "subnet_id")))


def _cycles(_: PocketIcServer, inst: Instance, body: Any) -> Any:
    return {"cycles": inst.cycles(rest.principal_field(body, "canister_id"))}


def _add_cycles(_: PocketIcServer, inst: Instance, body: Any) -> Any:
    amount = rest.nat_field(body, "amount", rest.U128_MAX)
    return {"cycles": inst.add_cycles(rest.principal_field(body, "canister_id"), amount)}


def _get_stable(_: PocketIcServer, inst: Instance, body: Any) -> Any:
    return {"blob": rest.b64(inst.stable_memory(rest.principal_field(body, "canister_id")))}


def _set_stable(server: PocketIcServer, inst: Instance, body: Any) -> None:
    blob_id = rest.unb64(body.get("blob_id") if isinstance(body, dict) else None, "blob_id")
    inst.set_stable_memory(rest.principal_field(body, "canister_id"), server.blob_loader(blob_id))


def _query(_: PocketIcServer, inst: Instance, body: Any) -> Any:
    return inst.query(CanisterCall.parse(body))


def _submit(_: PocketIcServer, inst: Instance, body: Any) -> Any:
    return inst.submit(CanisterCall.parse(body))


def _message_id(body: Any) -> tuple[Effective, bytes]:
    if not isinstance(body, dict):
        raise ApiError("Failed to deserialize the JSON body: expected a RawMessageId object")
    return Effective.parse(body.get("effective_principal", "None")), rest.unb64(body.get("message_id"), "message_id")


def _await(_: PocketIcServer, inst: Instance, body: Any) -> Any:
    return inst.await_message(*_message_id(body))


def _execute(_: PocketIcServer, inst: Instance, body: Any) -> Any:
    submitted = inst.submit(CanisterCall.parse(body))
    if "Err" in submitted:
        return submitted
    return inst.await_message(*_message_id(submitted["Ok"]))


def _ingress_status(_: PocketIcServer, inst: Instance, body: Any) -> Any:
    if not isinstance(body, dict):
        raise ApiError("Failed to deserialize the JSON body: expected RawIngressStatusArgs")
    effective, message_id = _message_id(body.get("raw_message_id"))
    caller_field = body.get("raw_caller")
    caller = None
    if isinstance(caller_field, dict):
        caller = rest.principal_field(caller_field, "principal_id")
    elif isinstance(caller_field, str):  # PicJS sends the principal itself
        caller = rest.unb64(caller_field, "raw_caller")
    return inst.ingress_status(effective, message_id, caller)


def _auto_progress(_: PocketIcServer, inst: Instance, body: Any) -> None:
    inst.auto_progress(body)


def _stop_progress(_: PocketIcServer, inst: Instance, body: Any) -> None:
    inst.stop_progress()


def _mock_http(_: PocketIcServer, inst: Instance, body: Any) -> None:
    inst.mock_canister_http(body)


_POST = {
    "update/set_time": _set_time, "update/set_certified_time": _set_certified_time, "update/tick": _tick,
    "read/get_subnet": _get_subnet, "read/get_controllers": _controllers, "read/pub_key": _pub_key,
    "read/get_cycles": _cycles, "update/add_cycles": _add_cycles, "read/get_stable_memory": _get_stable,
    "update/set_stable_memory": _set_stable, "read/query": _query, "update/submit_ingress_message": _submit,
    "update/await_ingress_message": _await, "update/execute_ingress_message": _execute,
    "read/ingress_status": _ingress_status, "auto_progress": _auto_progress, "stop_progress": _stop_progress,
    "update/mock_canister_http": _mock_http,
}


class _Handler(BufferedHandler):
    timeout = READ_TIMEOUT_S  # socket timeout: a slow or silent client cannot hold a thread forever
    server_state: PocketIcServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json",
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Access-Control-Allow-Origin", "*")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if body and self.command != "HEAD":  # a HEAD reply has the headers of the GET reply, never its body
            self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode())

    def _fail_body(self, status: int, message: str) -> ApiError:
        """A body that cannot be read whole: answered, and the connection closed (its rest is unread)."""
        self.close_connection = True
        return ApiError(message, status=status)

    def _body(self, limit: int) -> bytes:
        """The request body, at most `limit` bytes, checked before reading: a Content-Length body or a chunked
        one (whose total is capped the same way)."""
        coding = self.headers.get("Transfer-Encoding")
        if coding is not None and coding.strip().lower() != "chunked":
            raise self._fail_body(HTTPStatus.LENGTH_REQUIRED, f"Transfer-Encoding {coding[:40]!r} is not accepted: "
                                                              "send a Content-Length or a chunked body")
        if coding is not None:
            return self._chunked_body(limit)
        length = (self.headers.get("Content-Length") or "").strip()
        if not length:
            return b""
        if not length.isdigit() or len(length) > 20:
            raise self._fail_body(HTTPStatus.BAD_REQUEST, f"invalid Content-Length {length[:40]!r}")
        if int(length) > limit:
            raise self._fail_body(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                  f"request body of {length} bytes, at most {limit}")
        body = self.rfile.read(int(length))
        if len(body) != int(length):
            raise self._fail_body(HTTPStatus.BAD_REQUEST, f"the body ended after {len(body)} of {length} bytes")
        return body

    def _chunked_body(self, limit: int) -> bytes:
        chunks, total = [], 0
        while True:
            line = self.rfile.readline(1024)
            size_text = line.split(b";")[0].strip()
            if not _CHUNK_SIZE.match(size_text):
                raise self._fail_body(HTTPStatus.BAD_REQUEST, f"malformed chunk size {size_text[:40]!r}")
            size = int(size_text, 16)
            if size == 0:
                break
            total += size
            if total > limit:
                raise self._fail_body(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"chunked request body over {limit} bytes")
            chunk = self.rfile.read(size)
            if len(chunk) != size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise self._fail_body(HTTPStatus.BAD_REQUEST, "malformed chunked body")
            chunks.append(chunk)
        for _ in range(MAX_TRAILER_LINES):  # trailers, up to the empty line
            if self.rfile.readline(8192) in (b"\r\n", b"\n", b""):
                return b"".join(chunks)
        raise self._fail_body(HTTPStatus.BAD_REQUEST, "too many trailer lines in the chunked body")

    def _dispatch(self) -> None:
        state = self.server_state
        with state.lock:
            state.active += 1
            state.last_request = time.monotonic()
        path = urlsplit(self.path).path.rstrip("/") or "/"
        try:
            try:
                body = self._body(API_BODY_LIMIT if _INSTANCE_API.match(path) else MAX_BODY_BYTES)
            except (TimeoutError, ConnectionError):  # the client went silent or away mid-body: nothing to answer
                self.close_connection = True
                return
            self._route(state, self.command, path, body)
        except ApiError as exc:
            self._json(exc.status, {"message": exc.message})
        except HttpError as exc:
            self._send(exc.status, (exc.message + "\n").encode(), "text/plain")
        except Exception as exc:  # the server keeps serving whatever one request does
            _log.exception("internal error answering %s %s", self.command, self.path)
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"message": f"internal error: {type(exc).__name__}: {exc}"})
        finally:
            with state.lock:
                state.active -= 1
                state.last_request = time.monotonic()

    def _route(self, state: PocketIcServer, method: str, path: str, body: bytes) -> None:
        if path == "/status" and method in ("GET", "HEAD"):
            self._send(HTTPStatus.OK, b"", "text/plain")
            return
        if path == "/instances":
            if method == "GET":
                self._json(HTTPStatus.OK, state.list_instances())
            elif method == "POST":
                self._json(*state.create_instance(_parse_json(body)))
            else:
                raise ApiError("method not allowed", status=HTTPStatus.METHOD_NOT_ALLOWED)
            return
        if path == "/blobstore" and method == "POST":
            gzipped = self.headers.get("Content-Encoding", "").lower() == "gzip"
            self._send(HTTPStatus.OK, state.put_blob(body, gzipped).encode(), "text/plain")
            return
        if path.startswith("/blobstore/") and method == "GET":
            try:
                blob_id = bytes.fromhex(path.rsplit("/", 1)[1])
            except ValueError as exc:
                raise ApiError("the blob id must be hex") from exc
            with state.lock:
                entry = state.blobs.get(blob_id)
            if entry is None:
                raise ApiError(f"BlobNotFound({blob_id.hex()})", status=HTTPStatus.NOT_FOUND)
            self._send(HTTPStatus.OK, entry[0], "application/octet-stream",
                       {"Content-Encoding": "gzip"} if entry[1] else None)
            return
        if path == "/http_gateway":
            if method == "POST":
                self._json(*state.create_gateway(_parse_json(body)))
            else:
                self._json(HTTPStatus.OK, state.list_gateways())
            return
        gw_stop = re.match(r"^/http_gateway/(\d+)/stop$", path)
        if gw_stop and method == "POST":
            with state.lock:
                gw = state.gateways.pop(_path_id(gw_stop.group(1)), None)
            if gw is not None:
                gw.stop()
            self._json(HTTPStatus.OK, None)
            return
        match = _INSTANCE.match(path)
        if match is None:
            raise ApiError(f"unknown endpoint {method} {path}", status=HTTPStatus.NOT_FOUND)
        instance_id, route = _path_id(match.group(1)), match.group(2) or ""
        if route == "":
            if method != "DELETE":
                raise ApiError("method not allowed", status=HTTPStatus.METHOD_NOT_ALLOWED)
            state.delete_instance(instance_id)
            self._send(HTTPStatus.OK, b"")
            return
        inst = state.instance(instance_id)
        if route == "api/v2/status" and method == "GET":
            self._send(HTTPStatus.OK, gateway.status(inst), "application/cbor")
        elif route.startswith("api/") and method == "POST":
            status, payload = gateway.handle_api(inst, "/" + route, body)
            self._send(status, payload, "application/cbor")
        elif route == "_/dashboard" and method == "GET":
            self._send(HTTPStatus.OK, _dashboard(inst).encode(), "text/html; charset=utf-8")
        elif method == "GET":
            self._json(HTTPStatus.OK, state.instance_get(inst, route))
        elif method == "POST":
            self._json(HTTPStatus.OK, state.instance_post(inst, route, _parse_json(body)))
        else:
            raise ApiError("method not allowed", status=HTTPStatus.METHOD_NOT_ALLOWED)

    def do_OPTIONS(self) -> None:  # noqa: N802 - CORS preflight (browsers running PicJS-like clients)
        self._send(HTTPStatus.OK, b"", "text/plain", {"Access-Control-Allow-Methods": "GET, POST, DELETE",
                                                      "Access-Control-Allow-Headers": "*"})

    do_GET = do_POST = do_DELETE = do_HEAD = _dispatch  # noqa: N815


MAX_JSON_DEPTH = 127  # serde_json's recursion limit (PocketIC's server parses with it): 128 levels are refused
# A string runs to its closing quote or, unterminated, to the end of the text. Every match succeeds without
# backtracking, and the possessive repeat keeps no state per escape, so the scan is linear in time and constant
# in memory (with a required closing quote, a text of escaped quotes `"\"\"\"...` failed and was rescanned from each
# quote: 80 KB took 26 s; without `*+` each escape held ~120 bytes of matcher state: 40 MB took 2.5 GB).
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*+"?|[\[\]{},]', re.DOTALL)
MAX_JSON_TOKENS = 100_000  # strings, brackets and commas: PocketIC's requests hold a few dozen (blobs are base64)


def _json_depth(text: str) -> int:
    """How deep a JSON text's arrays and objects nest (strings skipped), found by a loop in linear time:
    refused before `json.loads` recurses, so no RecursionError is raised deep in the stack. Raises ApiError
    past MAX_JSON_TOKENS: parsed, `[{},{},...]` takes about 25 times its size in memory."""
    depth = deepest = 0
    for count, token in enumerate(_JSON_TOKEN.finditer(text)):
        if count >= MAX_JSON_TOKENS:
            raise ApiError(f"Failed to parse the request body as JSON: more than {MAX_JSON_TOKENS} strings, "
                           "arrays, objects and elements")
        char = token.group()[0]
        if char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_JSON_DEPTH:
                    break
        elif char in "]}":
            depth -= 1
            if depth < 0:  # not JSON: json.loads refuses it at once
                break
    return deepest


def _parse_json(body: bytes) -> Any:
    """The body as JSON, which is UTF-8 (as serde_json reads it): `json.loads` would also take UTF-16 and
    UTF-32, in which a character's bytes can hold a quote that hides the brackets after it from the scan."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(f"Failed to parse the request body as JSON: not UTF-8 ({exc.reason} at byte "
                       f"{exc.start})") from exc
    if not text.strip():
        return None
    if _json_depth(text) > MAX_JSON_DEPTH:
        raise ApiError(f"Failed to parse the request body as JSON: recursion limit exceeded (more than "
                       f"{MAX_JSON_DEPTH} levels)")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: only if the scan above missed a nesting
        raise ApiError(f"Failed to parse the request body as JSON: {type(exc).__name__}: {exc}") from exc


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _path_id(text: str) -> int:
    """An id in a URL path (digits): one longer than a u64 is refused as PocketIC's path extractor does."""
    if len(text) > MAX_ID_DIGITS or int(text) > rest.U64_MAX:
        raise ApiError(f"Invalid URL: Cannot parse `{text[:40]}` to a `u64`")
    return int(text)


def _dashboard(inst: Instance) -> str:
    rows = []
    for s in inst.subnets:
        for cid in s.replica.canister_ids():
            rows.append(f"<tr><td>{rest.text(s.subnet_id)}</td><td>{s.plan.kind}</td><td>{cid}</td></tr>")
    return (f"<html><body><h1>Instance {inst.instance_id}</h1><p>time {inst.get_time()} ns</p>"
            f"<table><tr><th>subnet</th><th>kind</th><th>canister</th></tr>{''.join(rows)}</table></body></html>")
