"""Talk to canisters through icp-py-core with verified certificates.

`connect(network, identity)` returns a `Connection` whose `call` / `query` take and return Candid bytes
and raise the SDK's exceptions. Each connection trusts one root key: a local network's, fetched once from
its `/api/v2/status` at connect, or for any other network the mainnet key (nothing fetched). Updates are
signed once and never re-signed on retry (`transport.py`); queries and reads may be re-sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from icp_agent import agent as _agent_module  # type: ignore[import-not-found]
from icp_agent import client as _client_module  # type: ignore[import-not-found]
from icp_agent.agent import Agent  # type: ignore[import-not-found]
from icp_agent.client import Client  # type: ignore[import-not-found]
from icp_identity.identity import Identity  # type: ignore[import-not-found]

from prometheus_sdk.certificates import MAINNET_ROOT_KEY, fetch_root_key, trusting
from prometheus_sdk.errors import CallRejectedError, CertificateError, SdkError, TransportError
from prometheus_sdk.network import Network
from prometheus_sdk.transport import Transport, http

__all__ = ["MAINNET_ROOT_KEY", "Connection", "connect", "fetch_root_key"]
T = TypeVar("T")


class _PooledHttpx:
    """icp-py-core calls `httpx.post` per request (a new TLS context and connection each time, ~20 ms);
    route its synchronous requests through the SDK's one pooled client instead."""

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return http(url).post(url, **kwargs)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return http(url).get(url, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(httpx, name)


_client_module.httpx = _PooledHttpx()


@dataclass
class Connection:
    """An agent bound to one network, one identity and the one root key its certificates must chain to."""

    network: Network
    agent: Any
    root_key: bytes = MAINNET_ROOT_KEY
    retries: int = 3

    @property
    def principal(self) -> str:
        return str(self.agent.identity.sender())

    @property
    def identity(self) -> Any:
        """The icp-py-core identity that signs this connection's calls (and, for a verifier, its statements)."""
        return self.agent.identity

    @property
    def transport(self) -> Transport:
        return Transport(self.network.url, self.agent, self.root_key, self.retries)

    def call(self, canister_id: str, method: str, arg: bytes, *, effective_canister_id: str | None = None) -> bytes:
        """An update call; returns the certified reply. Signed once: a retry never executes it twice."""
        return self.transport.update(canister_id, method, arg, effective_canister_id)

    def query(self, canister_id: str, method: str, arg: bytes, *, effective_canister_id: str | None = None) -> bytes:
        return self._with_retry(lambda: self.agent.query_raw(
            canister_id, method, arg, effective_canister_id=effective_canister_id, return_type=_RAW))

    def module_hash(self, canister_id: str) -> bytes | None:
        """The sha256 of the module a canister runs, from a verified read_state certificate (None if empty)."""
        from icp_principal import Principal as IcpPrincipal  # type: ignore[import-not-found]

        path = [b"canister", IcpPrincipal.from_str(canister_id).bytes, b"module_hash"]
        certificate = self._with_retry(lambda: self.transport.read_state(canister_id, [path]))
        value = certificate.lookup(path)
        return bytes(value) if value is not None else None

    def _with_retry(self, fn: Callable[[], T]) -> T:
        """Retry transient failures of reads (each attempt is a newly signed request: reads change nothing)."""
        delay = 0.2
        for attempt in range(self.retries + 1):
            try:
                with trusting(self.root_key):
                    return _translate(fn)
            except TransportError as exc:
                if not exc.transient or attempt == self.retries:
                    raise
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")


class _Raw:
    """Marker: ask icp-py-core for the reply bytes undecoded (Candid is decoded by the caller's types)."""


_RAW = _Raw
_decode_reply = _agent_module.decode
_agent_module.decode = lambda data, return_type=None: (
    bytes(data) if return_type is _RAW else _decode_reply(data, return_type))


def _translate(fn: Callable[[], T]) -> T:
    """Run an icp-py-core call, raising the SDK's exceptions instead of icp-py-core's and httpx's."""
    from icp_core.errors import ReplicaReject  # type: ignore[import-not-found]
    from icp_core.errors import TransportError as IcpTransportError

    try:
        return fn()
    except ReplicaReject as exc:
        raise CallRejectedError(int(getattr(exc, "reject_code", 0) or 0), str(getattr(exc, "reject_message", exc)),
                                getattr(exc, "error_code", None)) from exc
    except IcpTransportError as exc:
        cause = getattr(exc, "original_error", None)
        if isinstance(cause, httpx.HTTPStatusError):
            status = cause.response.status_code
            raise TransportError(f"HTTP {status} from {getattr(exc, 'url', '?')}: {cause.response.text.strip()[:300]}",
                                 transient=status >= 500 or status == 429, status=status) from exc
        raise TransportError(f"cannot reach {getattr(exc, 'url', '?')}: {cause or exc}") from exc
    except httpx.TransportError as exc:
        raise TransportError(f"network error: {exc}") from exc
    except httpx.HTTPStatusError as exc:
        status = exc.response.status_code
        raise TransportError(f"HTTP {status}: {exc.response.text.strip()[:300]}",
                             transient=status >= 500 or status == 429, status=status) from exc
    except SdkError:
        raise
    except Exception as exc:
        text = str(exc)
        if "Signature" in type(exc).__name__ or "signature" in text or "Certificate" in text:
            raise CertificateError(text) from exc
        raise


def connect(network: Network, identity: Identity | None = None) -> Connection:
    """An agent for `network` that trusts one root key: a local network's own (asked once, here), else mainnet's."""
    root_key = fetch_root_key(network.url) if network.is_local else MAINNET_ROOT_KEY
    agent = Agent(identity or Identity(anonymous=True), Client(network.url), root_key=root_key)
    return Connection(network, agent, root_key)
