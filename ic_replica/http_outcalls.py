"""HTTPS outcalls: the management canister's `http_request` (the interface specification's "IC method
http_request"), with the limits, reject codes and caller of the transform that the IC's acceptance tests check.

A canister's request is checked when it is made (URL, headers, sizes, the transform it names, the cycles it
attached: at least the IC's price, though nothing is kept, as for every cost on this replica); then it waits, as
on PocketIC, in one of two modes:
- `manual` (a `Replica`'s default, PocketIC without auto progress): the request is listed in `pending` and
  answered by `mock(...)` (PocketIC's `get_canister_http` / `mock_canister_http_response`);
- `live` (the localnet, PocketIC in live mode): a worker thread makes the request, outside the replica lock, so
  a slow server never holds up a round (nor, while it waits, a caller of `await_call`); the answer is
  delivered in a later round.
Either way the response goes through the canister's transform function (a query, called by the management
canister) before the caller sees it, and every size limit applies to what a remote server sent.

Written here rather than taken from an HTTP client library's canister-side helpers: the replica must not share
code with the clients that test it; httpx only moves the bytes.
"""

from __future__ import annotations

import itertools
import ssl
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from ic_replica import candid
from ic_replica.candid import BLOB, BOOL, NAT, NAT64, NULL, TEXT, Func, Opt, Record, Variant, Vec
from ic_replica.errors import Reject, RejectCode

if TYPE_CHECKING:
    from ic_replica.replica import Replica

MAX_URL_BYTES = 8192
MAX_REQUEST_BYTES = 2_000_000  # header names and values plus the body
MAX_RESPONSE_BYTES = 2_000_000  # the most `max_response_bytes` may be, and its default
MAX_HEADERS = 64
MAX_HEADER_PART_BYTES = 8 * 1024  # a header's name, or its value
MAX_HEADERS_TOTAL_BYTES = 48 * 1024
SUBNET_NODES = 13  # an application subnet's size: the price is per node
DEFAULT_TIMEOUT_S = 30.0  # a live request's whole duration (connect, headers, body), as the IC's adapter
TIMEOUT_NS = 60 * 1_000_000_000  # an unanswered request is rejected after a minute of replica time, as on the IC
MAX_IN_FLIGHT = 3000  # requests waiting for an answer, as the IC's limit per subnet
WORKERS = 8

HEADER = Record.of(name=TEXT, value=TEXT)
RESULT = Record.of(status=NAT, headers=Vec(HEADER), body=BLOB)
TRANSFORM_ARGS = Record.of(response=RESULT, context=BLOB)
TRANSFORM = Record.of(function=Func(args=(TRANSFORM_ARGS,), rets=(RESULT,), modes=("query",)), context=BLOB)
ARGS = Record.of(url=TEXT, max_response_bytes=Opt(NAT64), method=Variant.of(get=NULL, head=NULL, post=NULL),
                 headers=Vec(HEADER), body=Opt(BLOB), transform=Opt(TRANSFORM), is_replicated=Opt(BOOL))
Headers = list[tuple[str, str]]


class Refused(Exception):
    """A request the management canister refuses, with the reject the caller gets."""

    def __init__(self, code: RejectCode, message: str) -> None:
        super().__init__(message)
        self.reject = Reject(code, message)


def cost(request_bytes: int, max_response_bytes: int) -> int:
    """The IC's price of one outcall on a 13-node subnet (cycles): a base fee, then per request byte and per
    byte of the response allowed (`max_response_bytes`, not what comes back)."""
    n = SUBNET_NODES
    return (3_000_000 + 60_000 * n) * n + 400 * n * request_bytes + 800 * n * max_response_bytes


@dataclass
class Outcall:
    """One request waiting for its response."""

    request_id: int
    canister: bytes
    origin: tuple  # ("canister", caller, callback id): where the answer goes
    url: str
    method: str  # GET | HEAD | POST
    headers: Headers
    body: bytes
    max_response_bytes: int
    transform: tuple[str, bytes] | None  # (query method of the caller, context)
    refund: int  # the cycles returned with the answer
    asked_max_response_bytes: int | None = None  # as the canister gave it (PocketIC lists it so)
    made_at_ns: int = 0  # the replica's time when the call was made


@dataclass
class HttpResult:
    status: int
    headers: Headers
    body: bytes = b""


def _header_bytes(headers: Sequence[tuple[str, str]]) -> int:
    return sum(len(n.encode()) + len(v.encode()) for n, v in headers)


def _check_headers(headers: Sequence[tuple[str, str]], code: RejectCode, whose: str) -> None:
    if len(headers) > MAX_HEADERS:
        raise Refused(code, f"The number of {whose} headers {len(headers)} exceeds the limit of {MAX_HEADERS}.")
    for name, value in headers:
        for what, part in (("name", name), ("value", value)):
            if len(part.encode()) > MAX_HEADER_PART_BYTES:
                raise Refused(code, f"A {whose} header {what} is {len(part.encode())} bytes, more than the limit "
                                    f"of {MAX_HEADER_PART_BYTES}.")
    total = _header_bytes(headers)
    if total > MAX_HEADERS_TOTAL_BYTES:
        raise Refused(code, f"The {whose} headers total {total} bytes, more than the limit of "
                            f"{MAX_HEADERS_TOTAL_BYTES}.")


def parse(replica: Replica, caller: bytes, arg: dict[str, Any], cycles: int, origin: tuple,
          request_id: int) -> Outcall:
    """A canister's `http_request`, checked as the IC checks it when the call is made."""
    url: str = arg["url"]
    if len(url.encode()) > MAX_URL_BYTES:
        raise Refused(RejectCode.CANISTER_REJECT, f"url is longer than {MAX_URL_BYTES} bytes")
    max_response = arg["max_response_bytes"][0] if arg["max_response_bytes"] else MAX_RESPONSE_BYTES
    if max_response > MAX_RESPONSE_BYTES:
        raise Refused(RejectCode.CANISTER_REJECT, f"max_response_bytes={max_response} is larger than the "
                                                  f"maximum of {MAX_RESPONSE_BYTES}")
    headers = [(h["name"], h["value"]) for h in arg["headers"]]
    _check_headers(headers, RejectCode.CANISTER_REJECT, "request")
    body: bytes = arg["body"][0] if arg["body"] else b""
    request_bytes = _header_bytes(headers) + len(body)
    if request_bytes > MAX_REQUEST_BYTES:
        raise Refused(RejectCode.CANISTER_REJECT, f"The request is {request_bytes} bytes (header names and values "
                                                  f"and body), more than the limit of {MAX_REQUEST_BYTES}.")
    transform = None
    if arg["transform"]:
        (principal, method), context = arg["transform"][0]["function"], arg["transform"][0]["context"]
        if principal.raw != caller:
            raise Refused(RejectCode.CANISTER_REJECT, "transform needs to be exported by the calling canister, "
                                                      f"not {principal}")
        canister = replica.canisters.get(caller)
        if canister is None or canister.runtime is None or not canister.runtime.has_export(f"canister_query {method}"):
            raise Refused(RejectCode.DESTINATION_INVALID, f"the transform function {method!r} is not a query "
                                                          "method of the calling canister")
        transform = (method, context)
        request_bytes += len(method.encode()) + len(context)
    price = cost(len(url.encode()) + request_bytes, max_response)
    if cycles < price:
        raise Refused(RejectCode.CANISTER_REJECT, f"http_request request sent with {cycles} cycles, but {price} "
                                                  "cycles are required.")
    # The IC keeps the price; this replica charges nothing (as for threshold signatures): all is refunded.
    if len(replica.outcalls.pending) >= MAX_IN_FLIGHT:
        raise Refused(RejectCode.CANISTER_REJECT, f"max number ({MAX_IN_FLIGHT}) of http requests in-flight reached.")
    return Outcall(request_id, caller, origin, url, next(iter(arg["method"])).upper(), headers, body, max_response,
                   transform, cycles, arg["max_response_bytes"][0] if arg["max_response_bytes"] else None,
                   replica.time_ns)


@dataclass
class HttpOutcalls:
    """The replica's outcalls: pending requests, and answers waiting for the next round."""

    mode: str = "manual"  # or "live"
    timeout_s: float = DEFAULT_TIMEOUT_S
    pending: dict[int, Outcall] = field(default_factory=dict)
    _ready: deque[tuple[int, list[HttpResult | Reject]]] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count = field(default_factory=itertools.count)
    _pool: ThreadPoolExecutor | None = None
    _tls: ssl.SSLContext | None = None  # without a CA file, made at the first request (loading CAs: 10-20 ms)
    _answered: threading.Event = field(default_factory=threading.Event)
    _fetching: set[int] = field(default_factory=set)  # live requests a worker is making
    _mocked: set[int] = field(default_factory=set)  # answered by `mock`, delivered at the next round

    def go_live(self, ca_file: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        """Make requests for real from now on (and those already waiting). `ca_file` adds certificate authorities
        to the system's (a test's own CA); the standard `SSL_CERT_FILE` works too."""
        tls = None
        if ca_file:  # made now, so a file that cannot be read is refused here
            tls = ssl.create_default_context()
            tls.load_verify_locations(ca_file)
        with self._lock:
            self.mode, self.timeout_s, self._tls = "live", timeout_s, tls
            if self._pool is None:
                self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="http-outcall")
            pool = self._pool
            waiting = [o for o in self.pending.values() if o.request_id not in self._fetching | self._mocked]
            self._fetching.update(o.request_id for o in waiting)
        for outcall in waiting:
            pool.submit(self._fetch, outcall)

    def next_id(self) -> int:
        return next(self._ids)

    def submit(self, outcall: Outcall) -> None:
        with self._lock:
            self.pending[outcall.request_id] = outcall
            pool = self._pool if self.mode == "live" else None
            if pool is not None:
                self._fetching.add(outcall.request_id)
        if pool is not None:
            pool.submit(self._fetch, outcall)

    def waiting(self) -> list[Outcall]:
        """Requests with no answer yet (what PocketIC's `get_canister_http` lists), oldest first."""
        with self._lock:
            return sorted((o for o in self.pending.values() if o.request_id not in self._mocked),
                          key=lambda o: o.request_id)

    def mock(self, request_id: int, answer: HttpResult | Reject, others: Sequence[HttpResult | Reject] = ()) -> None:
        """Answer a pending request as if the remote server had (PocketIC's `mock_canister_http_response`);
        `others` are what the subnet's other replicas saw: after the transform they must all agree."""
        with self._lock:
            if request_id not in self.pending or request_id in self._mocked:
                raise KeyError(f"no pending canister HTTP request {request_id}")
            self._mocked.add(request_id)
            self._ready.append((request_id, [answer, *others]))
            self._answered.set()

    def has_answers(self) -> bool:
        return bool(self._ready)

    def wait_live(self) -> None:
        """Wait (up to the request timeout) for a live request's answer; at once if none is being made."""
        if self._fetching and not self._ready:
            self._answered.wait(self.timeout_s + 1)

    def take_answers(self) -> list[tuple[Outcall, list[HttpResult | Reject]]]:
        """Answers for requests still pending (each request is answered once), in the order they came."""
        out = []
        with self._lock:
            self._answered.clear()
            while self._ready:
                request_id, answer = self._ready.popleft()
                outcall = self.pending.pop(request_id, None)
                self._mocked.discard(request_id)
                if outcall is not None:
                    out.append((outcall, answer))
        return out

    def expire(self, now_ns: int) -> list[Outcall]:
        """Requests unanswered for a minute of replica time: removed (a late answer is dropped)."""
        with self._lock:
            old = [o for o in self.pending.values() if now_ns - o.made_at_ns >= TIMEOUT_NS
                   and o.request_id not in self._mocked]
            for o in old:
                del self.pending[o.request_id]
        return old

    def close(self) -> None:
        with self._lock:
            pool, self._pool, self.mode = self._pool, None, "manual"
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------ live requests (worker threads)

    def _fetch(self, outcall: Outcall) -> None:
        try:
            answer: HttpResult | Reject = self._request(outcall)
        except Refused as exc:
            answer = exc.reject
        except Exception as exc:  # noqa: BLE001 - whatever the network does, the canister gets an answer
            answer = Reject(RejectCode.SYS_TRANSIENT, f"Request to {outcall.url} failed: {type(exc).__name__}")
        with self._lock:
            self._fetching.discard(outcall.request_id)
            if outcall.request_id in self.pending and outcall.request_id not in self._mocked:
                self._ready.append((outcall.request_id, [answer]))
                self._answered.set()

    def _tls_context(self) -> ssl.SSLContext:
        with self._lock:
            if self._tls is None:
                self._tls = ssl.create_default_context()
            return self._tls

    def _request(self, outcall: Outcall) -> HttpResult:
        if not outcall.url.isascii():
            raise Refused(RejectCode.SYS_FATAL, "the URL is not ASCII")
        parts = urlsplit(outcall.url)
        if parts.scheme != "https" or not parts.hostname:
            raise Refused(RejectCode.SYS_FATAL, f"Url need to specify https scheme: {outcall.url}")
        deadline = time.monotonic() + self.timeout_s  # the whole request, however slowly a server sends
        try:
            with httpx.Client(verify=self._tls_context(), timeout=self.timeout_s, follow_redirects=False,
                              trust_env=False) as client:
                client.headers.clear()  # only the canister's headers (httpx adds Host and Content-Length)
                request = client.build_request(outcall.method, outcall.url, headers=outcall.headers,
                                               content=outcall.body or None)
                response = client.send(request, stream=True)
                try:
                    return _read(outcall, response, deadline)
                finally:
                    response.close()
        except httpx.TimeoutException:
            raise Refused(RejectCode.SYS_TRANSIENT, f"Timeout expired requesting {outcall.url}") from None
        except httpx.HTTPError as exc:
            raise Refused(RejectCode.SYS_TRANSIENT, f"Connecting to {parts.hostname} failed: {exc}") from None


def _read(outcall: Outcall, response: httpx.Response, deadline: float) -> HttpResult:
    """The response as the IC's adapter passes it on: header names lowercased, the body as sent (not
    decompressed), every limit checked on what arrives (a body is read only as far as it may go)."""
    headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in response.headers.raw]
    _check_headers(headers, RejectCode.SYS_FATAL, "response")
    room = outcall.max_response_bytes - _header_bytes(headers)
    if room < 0:
        raise Refused(RejectCode.SYS_FATAL, f"Header size exceeds specified response size limit "
                                            f"{outcall.max_response_bytes}")
    body = bytearray()
    for chunk in response.iter_raw():
        body += chunk
        if len(body) > room:
            raise Refused(RejectCode.SYS_FATAL, f"Http body exceeds size limit of {room} bytes.")
        if time.monotonic() > deadline:
            raise Refused(RejectCode.SYS_TRANSIENT, f"Timeout expired requesting {outcall.url}")
    return HttpResult(response.status_code, headers, bytes(body))


def _value(result: HttpResult) -> dict[str, Any]:
    """`http_request_result` as the Candid codec takes it."""
    return {"status": result.status, "body": result.body,
            "headers": [{"name": n, "value": v} for n, v in result.headers]}



def response_size(result: HttpResult) -> int:
    return _header_bytes(result.headers) + len(result.body)


def deliver(replica: Replica) -> None:
    """Answer the requests whose responses came (a round's first work): size limits, then the transform."""
    for outcall in replica.outcalls.expire(replica.time_ns):
        replica.respond(outcall.origin, reject=Reject(RejectCode.SYS_TRANSIENT, "Canister http request timed out"),
                        refund=outcall.refund)
    for outcall, answers in replica.outcalls.take_answers():
        outcomes = [_outcome(replica, outcall, a) for a in answers]
        if any(o != outcomes[0] for o in outcomes[1:]):
            replica.respond(outcall.origin, reject=Reject(RejectCode.SYS_TRANSIENT, "No consensus could be reached. "
                                                          "Replicas had different responses."), refund=outcall.refund)
        elif isinstance(outcomes[0], Reject):
            replica.respond(outcall.origin, reject=outcomes[0], refund=outcall.refund)
        else:
            replica.respond(outcall.origin, reply=outcomes[0], refund=outcall.refund)


def _outcome(replica: Replica, outcall: Outcall, answer: HttpResult | Reject) -> bytes | Reject:
    """What the caller gets from one replica's answer: the transformed response (Candid), or a reject."""
    try:
        if isinstance(answer, Reject):
            return answer
        if response_size(answer) > outcall.max_response_bytes:
            raise Refused(RejectCode.SYS_FATAL, f"The response is {response_size(answer)} bytes, more than "
                                                f"max_response_bytes={outcall.max_response_bytes}.")
        if outcall.transform is not None:
            return _transform(replica, outcall, answer)
        return candid.encode([RESULT], [_value(answer)])
    except Refused as exc:
        return exc.reject


def _transform(replica: Replica, outcall: Outcall, result: HttpResult) -> bytes:
    """The caller's transform query, called by the management canister (as on the IC); its reply goes to the
    caller as it is, if its Candid bytes fit `max_response_bytes`."""
    from ic_replica.canister import Status, execute
    from ic_replica.context import ExecutionContext, Kind
    from ic_replica.principal import MANAGEMENT

    method, context = outcall.transform  # type: ignore[misc]
    canister = replica.canisters.get(outcall.canister)
    if canister is None or canister.runtime is None or canister.status is not Status.RUNNING:
        raise Refused(RejectCode.SYS_TRANSIENT, "the calling canister cannot run its transform function now")
    if not canister.runtime.has_export(f"canister_query {method}"):
        raise Refused(RejectCode.DESTINATION_INVALID, f"the transform function {method!r} is gone")
    arg = candid.encode([TRANSFORM_ARGS], [{"context": context, "response": _value(result)}])
    ctx = ExecutionContext(Kind.QUERY, caller=MANAGEMENT.raw, arg=arg, needs_to_respond=True)
    trap = execute(canister, f"canister_query {method}", ctx, replica.limits.query, persist=False)
    if trap is not None:
        raise Refused(RejectCode.CANISTER_ERROR, f"the transform function trapped: {trap.message}")
    if ctx.response is None or ctx.response[0] != "reply":
        raise Refused(RejectCode.CANISTER_REJECT, "the transform function did not reply")
    out = ctx.response[1]
    if len(out) > outcall.max_response_bytes:
        raise Refused(RejectCode.SYS_FATAL, f"Transformed http response exceeds limit: {len(out)} bytes, "
                                            f"max_response_bytes={outcall.max_response_bytes}.")
    return out
