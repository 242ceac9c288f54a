"""Update calls that are signed once, and verified read_state.

An update whose reply is lost may still have executed. Signing it again would make a new request (new
expiry, new request id) that the replica executes a second time, so after a failure we only ever ask the
replica for the status of the request id we sent (a verified `read_state`), and send the very same signed
bytes again when it has not seen them (the replica deduplicates by request id). Reads may be re-signed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2
import httpx
from icp_agent.agent import sign_request  # type: ignore[import-not-found]
from icp_principal import Principal  # type: ignore[import-not-found]

from prometheus_sdk.certificates import untag, verify
from prometheus_sdk.errors import CallRejectedError, CertificateError, SdkError, TransportError

CALL_PATH = "/api/v4/canister/{}/call"  # the endpoint versions icp-py-core's Client uses
READ_STATE_PATH = "/api/v3/canister/{}/read_state"
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)  # failures that prove the body never left

_clients: dict[bool, httpx.Client] = {}  # by "is https": the pooled clients every connection shares
_clients_lock = threading.Lock()


def http(url: str) -> httpx.Client:
    """The pooled HTTP client for `url` (a new client per request costs a TLS context and a connection). Plain
    http gets a client without a TLS context: loading the CA bundle takes ~0.1 s, a tenth of a CLI command on
    a local network, for nothing. It follows no redirect, so it never reaches an https URL."""
    secure = not url.startswith("http://")
    with _clients_lock:
        client = _clients.get(secure)
        if client is None:
            client = _clients[secure] = httpx.Client(
                limits=httpx.Limits(max_keepalive_connections=16), timeout=httpx.Timeout(60.0, connect=5.0),
                verify=secure, follow_redirects=False)
        return client


@dataclass(frozen=True)
class SignedCall:
    """One update call, signed once: the only bytes ever sent for it."""

    request_id: bytes
    body: bytes
    expiry_ns: int
    effective_canister_id: str
    method: str


@dataclass
class Transport:
    """Signed-once updates and verified read_state for one agent (identity) on one network (URL, root key)."""

    url: str
    agent: Any
    root_key: bytes
    retries: int = 3
    poll_timeout: float = 300.0

    def update(self, canister_id: str, method: str, arg: bytes, effective_canister_id: str | None = None) -> bytes:
        """The certified reply of an update call; raises `CallRejectedError` when it is rejected."""
        call = self.sign_call(canister_id, method, arg, effective_canister_id or canister_id)
        delay, maybe_sent = 0.2, False
        failure = TransportError("no attempt made")
        for attempt in range(self.retries + 1):
            try:
                response = self._post(CALL_PATH.format(call.effective_canister_id), call.body)
            except TransportError as exc:
                failure = exc  # a 4xx was refused, a connect error never sent: anything else may have arrived
                maybe_sent = maybe_sent or (exc.transient and not isinstance(exc.__cause__, _NOT_SENT))
            else:
                return self._answer(call, response)
            if maybe_sent and self._known(call):
                return self._poll(call)  # it arrived: wait for its outcome rather than send it again
            if not failure.transient:
                raise failure
            if attempt < self.retries:
                time.sleep(delay)
                delay *= 2
        if not maybe_sent:
            raise failure
        raise TransportError(f"no answer for {method} (request id {call.request_id.hex()}), which may still "
                             f"execute: {failure}", transient=False, status=failure.status)

    def sign_call(self, canister_id: str, method: str, arg: bytes, effective_canister_id: str) -> SignedCall:
        content = {"request_type": "call", "sender": self.agent.identity.sender().bytes,
                   "canister_id": Principal.from_str(str(canister_id)).bytes, "method_name": method, "arg": arg,
                   "ingress_expiry": self.agent.get_expiry_date()}
        request_id, body = sign_request(content, self.agent.identity)
        return SignedCall(request_id, body, content["ingress_expiry"], effective_canister_id, method)

    def read_state(self, effective_canister_id: str, paths: list[list[bytes]]) -> Any:
        """A verified certificate for `paths` (a fresh request each time: reads change nothing)."""
        content = {"request_type": "read_state", "sender": self.agent.identity.sender().bytes, "paths": paths,
                   "ingress_expiry": self.agent.get_expiry_date()}
        _, body = sign_request(content, self.agent.identity)
        response = self._post(READ_STATE_PATH.format(effective_canister_id), body)
        answer = _decode(response.content)
        if response.status_code != 200 or not isinstance(answer, Mapping) or "certificate" not in answer:
            raise TransportError(f"read_state answered HTTP {response.status_code} without a certificate",
                                 transient=False, status=response.status_code)
        return verify(answer["certificate"], self.root_key, effective_canister_id, self._max_age_ns)

    @property
    def _max_age_ns(self) -> int:
        return int(self.agent.ingress_expiry * 1_000_000_000)

    def _post(self, path: str, body: bytes) -> httpx.Response:
        try:
            response = http(self.url).post(self.url + path, content=body, headers={"Content-Type": "application/cbor"})
        except httpx.TransportError as exc:
            raise TransportError(f"network error on {self.url}{path}: {exc!r}") from exc
        if response.status_code in (200, 202):
            return response
        status = response.status_code
        raise TransportError(f"HTTP {status} from {self.url}{path}: {response.text.strip()[:300]}",
                             transient=status >= 500 or status == 429, status=status)

    def _answer(self, call: SignedCall, response: httpx.Response) -> bytes:
        """Interpret the call endpoint's answer: a certificate (v3/v4 sync call), 202 (poll) or a rejection."""
        if response.status_code == 202:
            return self._poll(call)
        answer = _decode(response.content)
        status = answer.get("status") if isinstance(answer, Mapping) else None
        if status == "non_replicated_rejection":
            raise CallRejectedError(int(answer.get("reject_code", 0)), str(answer.get("reject_message", "")),
                                    answer.get("error_code"))
        if status == "accepted":
            return self._poll(call)
        if status != "replied" or not isinstance(answer.get("certificate"), bytes):
            if self._known(call):  # a garbled answer, but the call arrived: its status is what counts
                return self._poll(call)
            raise TransportError(f"unexpected answer to {call.method}: {response.content[:200]!r}", transient=False)
        certificate = verify(answer["certificate"], self.root_key, call.effective_canister_id, self._max_age_ns)
        certified = certificate.lookup_request_status(call.request_id)
        reply = _outcome(call, bytes(certified).decode() if certified is not None else None, certificate)
        return reply if reply is not None else self._poll(call)

    def _request_status(self, call: SignedCall) -> tuple[str | None, Any]:
        """The certified status of `call` (None: the replica does not know it) and its certificate."""
        certificate = self.read_state(call.effective_canister_id, [[b"request_status", call.request_id]])
        status = certificate.lookup_request_status(call.request_id)
        return (bytes(status).decode() if status is not None else None), certificate

    def _known(self, call: SignedCall) -> bool:
        try:
            return self._request_status(call)[0] is not None
        except TransportError:
            return False  # cannot tell: sending the same bytes again is safe anyway

    def _poll(self, call: SignedCall) -> bytes:
        """Read the request's certified status until it is final, or until it can no longer execute."""
        deadline, delay = time.monotonic() + self.poll_timeout, 0.05
        while True:
            try:
                status, certificate = self._request_status(call)
            except TransportError:
                pass  # reads may fail and be repeated; only the deadline ends the wait
            else:
                if status is not None:
                    reply = _outcome(call, status, certificate)
                    if reply is not None:
                        return reply
                elif certificate.lookup_time() > call.expiry_ns:
                    raise TransportError(f"{call.method} (request id {call.request_id.hex()}) expired before the "
                                         "replica received it: it will never execute")
            if time.monotonic() > deadline:
                raise TransportError(f"{call.method} (request id {call.request_id.hex()}) has no final status after "
                                     f"{self.poll_timeout:.0f} s", transient=False)
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)


def _outcome(call: SignedCall, status: str | None, certificate: Any) -> bytes | None:
    """The reply in a verified certificate, a raised `CallRejectedError`, or None while still pending."""
    if status == "replied":
        reply = certificate.lookup_reply(call.request_id)
        if reply is None:
            raise CertificateError(f"the certificate says {call.method} replied but holds no reply")
        return bytes(reply)
    if status == "rejected":
        rejection = certificate.lookup_request_rejection(call.request_id)
        raise CallRejectedError(int(rejection["reject_code"] or 0), rejection["reject_message"] or "",
                                rejection["error_code"])
    if status == "done":
        raise SdkError(f"{call.method} (request id {call.request_id.hex()}) completed but its reply was pruned")
    return None


def _decode(content: bytes) -> Any:
    try:
        return untag(cbor2.loads(content)) if content else None
    except Exception:
        return None
