"""The HTTP gateway of the localnet (the HTTP Gateway Protocol Specification): browsers and plain HTTP
clients reach a canister's `http_request` at `http://<canister id>.localhost:<port>/...` or
`http://localhost:<port>/...?canisterId=<canister id>`.

`HttpGateway.handle(method, host, target, headers, body) -> (status, headers, body)` does not depend on the
HTTP server (tests call it directly; `http_server` delegates every request that is not `/api/...`):

- the canister: the first label from the right of the host that is a canister id, else `?canisterId=`;
- `http_request` as an anonymous query with `certificate_version = opt 2`; `upgrade = opt true` makes it an
  anonymous ingress update to `http_request_update`, awaited (its reply is certified by consensus, so it is
  served without response verification, as the IC's gateways do);
- `streaming_strategy = opt variant { Callback }`: the callback (a query of the same canister) is called with
  the token, re-encoded at the token's own wire type, until it returns no token; its reply is the spec's
  `StreamingCallbackHttpResponse` record or an `opt` of one (anything else is 502, never a truncated body);
- response verification v2 and legacy v1 (`response_verification.py`) on the assembled body, against the
  network's root key and the replica's clock; a response that does not verify is answered
  503 with `response verification failed: <why>`;
- raw access (uncertified): a `raw` label in the host (`<id>.raw.localhost`), when the gateway allows it
  (`allow_raw`, on by default on the localnet), or every request with `verify=False`.

Limits: request bodies over `MAX_REQUEST_BODY` (413, from `Content-Length`, before reading), request header
names/values that are not valid HTTP (400), response headers a canister sends that are not valid HTTP (502), a
streamed body over `MAX_STREAMED_BODY` or more than `MAX_CALLBACKS` callbacks (502). Response header values go out
as UTF-8 bytes (`wire_value`). No traceback reaches the client.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ic_replica import candid
from ic_replica.certification import NetworkKeys
from ic_replica.errors import CallRejected
from ic_replica.principal import InvalidPrincipal, Principal
from ic_replica.replica import Replica
from ic_replica.response_verification import VerificationError, verify

MAX_REQUEST_BODY = 2 * 1024 * 1024
MAX_REQUEST_HEADERS = 100
MAX_STREAMED_BODY = 100 * 1024 * 1024
MAX_CALLBACKS = 1000
HEADER_FIELD = candid.Tuple(candid.TEXT, candid.TEXT)
HTTP_REQUEST = candid.Record.of(method=candid.TEXT, url=candid.TEXT, headers=candid.Vec(HEADER_FIELD),
                                body=candid.BLOB, certificate_version=candid.Opt(candid.NAT16))
HTTP_UPDATE_REQUEST = candid.Record.of(method=candid.TEXT, url=candid.TEXT, headers=candid.Vec(HEADER_FIELD),
                                       body=candid.BLOB)
# The response with its streaming strategy read as `reserved`: the token's type is the canister's own, read
# separately at its wire type (`_streaming`).
HTTP_RESPONSE = candid.Record.of(status_code=candid.NAT16, headers=candid.Vec(HEADER_FIELD), body=candid.BLOB,
                                 upgrade=candid.Opt(candid.BOOL))
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_METHOD = re.compile(r"^[A-Z]{1,20}$")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer"}
_log = logging.getLogger(__name__)
Response = tuple[int, list[tuple[str, str]], bytes]


class GatewayError(Exception):
    """Answered with `status` and a text body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _text(status: int, message: str) -> Response:
    return status, [("content-type", "text/plain; charset=utf-8")], (message + "\n").encode()


def resolve_canister(host: str, target: str) -> tuple[bytes | None, bool]:
    """(canister id or None, raw?): the first label from the right of the host that is a canister id, else
    the `canisterId` query parameter; raw when a host label is `raw`."""
    name = host.strip().lower()
    if name.startswith("["):  # an IPv6 literal: no labels
        name = ""
    name = name.rsplit(":", 1)[0] if ":" in name else name
    labels = [label for label in name.split(".") if label]
    raw = "raw" in labels
    for label in reversed(labels):
        if label.endswith("-cai"):
            try:
                return Principal.from_text(label).raw, raw
            except InvalidPrincipal:
                continue
    names = parse_qs(urlsplit(target).query).get("canisterId") or []
    if names:
        try:
            return Principal.from_text(names[0]).raw, raw
        except InvalidPrincipal as exc:
            raise GatewayError(400, f"canisterId {names[0][:80]!r} is not a canister id: {exc}") from None
    return None, raw


def _wire_types(data: bytes) -> list[candid.Type]:
    """The argument types a Candid message declares on the wire, as `candid.Type`s (fields named by id), so a
    value read at them re-encodes to the same type (the streaming token, whose type only the canister knows)."""
    d = candid._Decoder(bytes(data))  # noqa: SLF001 - the replica's own codec
    refs = d.header()
    recs = [candid.Rec() for _ in d.table]

    def conv(ref: int) -> Any:
        return candid._PRIMS[ref] if ref < 0 else recs[ref]  # noqa: SLF001

    modes = {1: "query", 2: "oneway", 3: "composite_query"}
    for i, wt in enumerate(d.table):
        t: candid.Type
        if wt.opcode == -18:
            t = candid.Opt(conv(wt.inner))
        elif wt.opcode == -19:
            t = candid.Vec(conv(wt.inner))
        elif wt.opcode == -20:
            t = candid.Record(tuple((fid, conv(r)) for fid, r in wt.fields))
        elif wt.opcode == -21:
            t = candid.Variant(tuple((fid, conv(r)) for fid, r in wt.fields))
        elif wt.opcode == -22:
            args, rets, mode_bytes = wt.extra
            t = candid.Func(tuple(conv(a) for a in args), tuple(conv(r) for r in rets),
                            tuple(modes[m] for m in mode_bytes))
        else:
            t = candid.Service(tuple((name, conv(r)) for name, r in wt.extra))
        recs[i].define(t)
    return [conv(r) for r in refs]


def _field(t: candid.Type, value: Any, name: str) -> tuple[candid.Type, Any] | None:
    """Field `name` of a record or the case `name` of a variant (type and value), read at wire types."""
    t = candid._deref(t)  # noqa: SLF001
    if not isinstance(t, (candid.Record, candid.Variant)) or not isinstance(value, dict):
        return None
    h = candid.idl_hash(name)
    for fid, ft in t.fields:
        if fid == h and h in value:
            return ft, value[h]
    return None


def _opt(t: candid.Type, value: Any) -> tuple[candid.Type, Any] | None:
    t = candid._deref(t)  # noqa: SLF001
    if isinstance(t, candid.Opt) and isinstance(value, list) and value:
        return t.inner, value[0]
    return None


def _streaming(reply: bytes, canister_id: bytes) -> tuple[str, candid.Type, Any] | None:
    """(callback method, token type, token) of a response's `streaming_strategy`, if it has one."""
    types = _wire_types(reply)
    if not types:
        return None
    value = candid.decode(reply, types[:1])[0]
    strategy = _field(types[0], value, "streaming_strategy")
    inner = _opt(*strategy) if strategy else None
    callback = _field(*inner, "Callback") if inner else None
    if callback is None:
        return None
    func, token = _field(*callback, "callback"), _field(*callback, "token")
    if func is None or token is None:
        raise GatewayError(502, "the streaming strategy lacks its callback or token")
    principal, method = func[1]
    if bytes(principal.raw) != canister_id:
        raise GatewayError(502, f"the streaming callback {principal}.{method} is not a method of the canister")
    return method, token[0], token[1]


def _callback_response(out: bytes) -> tuple[candid.Type, Any] | None:
    """A streaming callback's reply, as (record type, value), or None for `null` (no more chunks). The spec's
    type is `StreamingCallbackHttpResponse`, a record; some canisters (the asset canister) return
    `opt StreamingCallbackHttpResponse`. Anything else is an error, never a silent end of the body."""
    try:
        types = _wire_types(out)
        value = candid.decode(out, types[:1])[0] if types else None
    except candid.CandidError as exc:
        raise GatewayError(502, f"the streaming callback's reply does not decode: {exc}") from None
    wire = candid._deref(types[0]) if types else None  # noqa: SLF001
    if isinstance(wire, candid.Record):
        return types[0], value
    if isinstance(wire, candid.Opt):
        return _opt(types[0], value)
    raise GatewayError(502, "the streaming callback's reply is not a StreamingCallbackHttpResponse record "
                            "(nor an opt of one)")


def _check_headers(headers: Sequence[tuple[str, str]], who: str, status: int) -> None:
    for name, value in headers:
        if not _TOKEN.match(name) or len(name) > 256:
            raise GatewayError(status, f"{who} header name {name[:60]!r} is not a valid HTTP header name")
        if _BAD_VALUE.search(value) or len(value) > 64 * 1024:
            raise GatewayError(status, f"{who} header {name!r} has a value that is not valid in HTTP")


class HttpGateway:
    """Serves HTTP requests from canisters' `http_request` (see the module docstring)."""

    def __init__(self, replica: Replica, keys: NetworkKeys | None = None, allow_raw: bool = True,
                 verify: bool = True) -> None:
        self.replica = replica
        self.keys = keys if keys is not None else replica.keys
        self.allow_raw = allow_raw
        self.verify = verify

    def handle(self, method: str, host: str, target: str, headers: Sequence[tuple[str, str]],
               body: bytes) -> Response:
        """Answer one HTTP request: (status, headers, body). Never raises."""
        try:
            return self._handle(method, host, target, list(headers), body)
        except GatewayError as exc:
            return _text(exc.status, exc.message)
        except Exception as exc:  # noqa: BLE001 - no traceback reaches the client
            _log.exception("internal error in the HTTP gateway answering %s %s", method, target[:200])
            return _text(500, f"internal error in the HTTP gateway: {type(exc).__name__}")

    def _handle(self, method: str, host: str, target: str, headers: list[tuple[str, str]],
                body: bytes) -> Response:
        if len(body) > MAX_REQUEST_BODY:
            raise GatewayError(413, f"request body of {len(body)} bytes, at most {MAX_REQUEST_BODY}")
        if not _METHOD.match(method):
            raise GatewayError(400, f"invalid method {method[:30]!r}")
        if not target.startswith("/") or _BAD_VALUE.search(target) or len(target) > 8192:
            raise GatewayError(400, "invalid request target")
        if len(headers) > MAX_REQUEST_HEADERS:
            raise GatewayError(431, f"more than {MAX_REQUEST_HEADERS} request headers")
        _check_headers(headers, "request", 400)
        canister_id, raw = resolve_canister(host, target)
        if canister_id is None:
            raise GatewayError(400, "no canister named: use http://<canister id>.localhost:<port>/... or "
                                    "?canisterId=<canister id>")
        if raw and not self.allow_raw:
            raise GatewayError(403, "raw (uncertified) access is disabled on this gateway")
        cid_text = str(Principal(canister_id))
        arg = candid.encode([HTTP_REQUEST], [{"method": method, "url": target, "headers": headers, "body": body,
                                              "certificate_version": [2]}])
        reply = self._call(canister_id, "http_request", arg, query=True)
        response = self._decode(reply)
        upgraded = response["upgrade"] == [True]
        if upgraded:
            arg = candid.encode([HTTP_UPDATE_REQUEST], [{"method": method, "url": target, "headers": headers,
                                                         "body": body}])
            reply = self._call(canister_id, "http_request_update", arg, query=False)
            response = self._decode(reply)
        status = int(response["status_code"])
        out_headers = [(str(k), str(v)) for k, v in response["headers"]]
        _check_headers(out_headers, "the canister's response", 502)
        if not 100 <= status <= 999:
            raise GatewayError(502, f"the canister answered status code {status}, not an HTTP status")
        out_body = self._stream(canister_id, reply, bytes(response["body"]))
        if self.verify and not raw and not upgraded:
            with self.replica.lock:
                now = self.replica.get_time()
                canister = self.replica.canisters.get(canister_id)
                module = canister.module if canister is not None else None
                versions = module.public_metadata.get("supported_certificate_versions") if module else None
            try:
                verify(canister_id=canister_id, root_public_key=self.keys.root_public_key, now_ns=now,
                       method=method, url=target, request_headers=headers, request_body=body, status=status,
                       headers=out_headers, body=out_body,
                       supported_versions=versions.decode(errors="replace") if versions is not None else None)
            except VerificationError as exc:
                raise GatewayError(503, f"response verification failed for canister {cid_text}: {exc} "
                                        f"(uncertified access: http://{cid_text}.raw.localhost:<port>/...)") from None
        served = [(k, v) for k, v in out_headers if k.lower() not in _HOP_BY_HOP]
        return status, served, out_body

    def _call(self, canister_id: bytes, method: str, arg: bytes, *, query: bool) -> bytes:
        try:
            if query:
                return self.replica.query_call(canister_id, method, arg)
            return self.replica.update_call(canister_id, method, arg)
        except CallRejected as exc:
            cid = Principal(canister_id)
            if int(exc.code) == 3:
                raise GatewayError(404, f"canister {cid} not found: {exc}") from None
            raise GatewayError(502, f"canister {cid} rejected {method}: {exc}") from None

    @staticmethod
    def _decode(reply: bytes) -> dict[str, Any]:
        try:
            return candid.decode(reply, [HTTP_RESPONSE])[0]  # type: ignore[no-any-return]
        except candid.CandidError as exc:
            raise GatewayError(502, f"the canister's reply is not an HttpResponse: {exc}") from None

    def _stream(self, canister_id: bytes, reply: bytes, body: bytes) -> bytes:
        try:
            strategy = _streaming(reply, canister_id)
        except candid.CandidError as exc:
            raise GatewayError(502, f"the canister's streaming strategy does not decode: {exc}") from None
        if strategy is None:
            return body
        method, token_type, token = strategy
        chunks = [body]
        total = len(body)
        for _ in range(MAX_CALLBACKS):
            arg = candid.encode([token_type], [token])
            out = self._call(canister_id, method, arg, query=True)
            resp = _callback_response(out)
            if resp is None:  # `null`: no more chunks
                return b"".join(chunks)
            chunk = _field(*resp, "body")
            if chunk is None or not isinstance(chunk[1], bytes):
                raise GatewayError(502, "the streaming callback's reply has no body blob")
            total += len(chunk[1])
            if total > MAX_STREAMED_BODY:
                raise GatewayError(502, f"the streamed body exceeds {MAX_STREAMED_BODY} bytes")
            chunks.append(chunk[1])
            next_token = _field(*resp, "token")
            following = _opt(*next_token) if next_token else None
            if following is None:
                return b"".join(chunks)
            token_type, token = following
        raise GatewayError(502, f"the streaming callback was called {MAX_CALLBACKS} times without an end")


def read_body(handler: BaseHTTPRequestHandler, limit: int = MAX_REQUEST_BODY) -> bytes:
    """The request body, its Content-Length checked before anything is read (a body over `limit` is refused
    with 413 unread; a missing length means no body, a malformed one is 400, chunked bodies are 411)."""
    if handler.headers.get("Transfer-Encoding") is not None:
        handler.close_connection = True
        raise GatewayError(411, "Transfer-Encoding is not accepted: send a Content-Length")
    declared = (handler.headers.get("Content-Length") or "0").strip()
    if not declared.isdigit() or len(declared) > 12:
        handler.close_connection = True
        raise GatewayError(400, "invalid Content-Length")
    if int(declared) > limit:
        handler.close_connection = True
        raise GatewayError(413, f"request body of {declared} bytes, at most {limit}")
    body = handler.rfile.read(int(declared)) if int(declared) else b""
    if len(body) != int(declared):
        handler.close_connection = True
        raise GatewayError(400, f"the body ended after {len(body)} of {declared} bytes")
    return body


def wire_value(value: str) -> str:
    """A response header value as `BaseHTTPRequestHandler.send_header` must get it (it encodes Latin-1): the
    value's UTF-8 bytes, one character per byte. RFC 9110 allows octets 0x80-0xFF (obs-text) in field values
    and the IC's gateways (Rust `http::HeaderValue::from_bytes`, hyper) pass a canister's UTF-8 through as
    bytes, so a non-Latin-1 value is served, not a dropped connection."""
    return value.encode("utf-8").decode("latin-1")


def serve(handler: BaseHTTPRequestHandler, replica: Replica, body: bytes | None = None) -> None:
    """Answer the request `handler` holds (its body already read, or read here) with the gateway: the hook
    `http_server` calls for every request that is not the IC HTTP interface."""
    try:
        if body is None:
            body = read_body(handler)
        status, headers, out = HttpGateway(replica).handle(
            handler.command, handler.headers.get("Host", ""), handler.path, list(handler.headers.items()), body)
    except GatewayError as exc:
        status, headers, out = _text(exc.status, exc.message)
    except Exception as exc:  # noqa: BLE001 - no traceback reaches the client
        _log.exception("internal error in the HTTP gateway")
        status, headers, out = _text(500, f"internal error in the HTTP gateway: {type(exc).__name__}")
    handler.send_response(status)
    for name, value in headers:
        handler.send_header(name, wire_value(value))
    handler.send_header("Content-Length", str(len(out)))
    handler.end_headers()
    if out and handler.command != "HEAD":
        handler.wfile.write(out)
