"""Talk to canisters through icp-py-core with verified certificates.

`connect(network, identity)` returns a `Connection` whose `call` / `query` take and return Candid bytes
and raise the SDK's exceptions. For a local network the root key is fetched from `/api/v2/status` and
trusted; for any other network icp-py-core's built-in mainnet key is used and nothing is fetched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import cbor2
import httpx
from icp_agent import agent as _agent_module  # type: ignore[import-not-found]
from icp_agent import client as _client_module  # type: ignore[import-not-found]
from icp_agent.agent import Agent  # type: ignore[import-not-found]
from icp_agent.client import Client  # type: ignore[import-not-found]
from icp_certificate import certificate as _certificate  # type: ignore[import-not-found]
from icp_identity.identity import Identity  # type: ignore[import-not-found]

from prometheus_sdk import bls
from prometheus_sdk.errors import CallRejectedError, CertificateError, SdkError, TransportError
from prometheus_sdk.network import Network

T = TypeVar("T")
_MAINNET_ROOT_KEY = _certificate.IC_ROOT_KEY
_trusted_root_key: bytes = _MAINNET_ROOT_KEY


def _root_key(self: Any) -> bytes:
    return _trusted_root_key


_certificate.Certificate.read_root_key = _root_key  # icp-py-core ignores Agent(root_key=...) here
bls.install()


class _PooledHttpx:
    """icp-py-core calls `httpx.post` per request (a new TLS context and connection each time, ~20 ms);
    route its synchronous requests through one pooled client instead."""

    def __init__(self) -> None:
        self._client = httpx.Client(limits=httpx.Limits(max_keepalive_connections=16))

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self._client.post(url, **kwargs)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self._client.get(url, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(httpx, name)


_client_module.httpx = _PooledHttpx()


def fetch_root_key(url: str, timeout: float = 5.0) -> bytes:
    """The root key a (local) replica announces at `/api/v2/status`."""
    try:
        response = httpx.get(f"{url}/api/v2/status", timeout=timeout)
    except httpx.HTTPError as exc:
        raise TransportError(f"cannot reach {url}: {exc}") from exc
    if response.status_code != 200:
        raise TransportError(f"{url}/api/v2/status answered HTTP {response.status_code}", status=response.status_code)
    status = cbor2.loads(response.content)
    status = status.value if isinstance(status, cbor2.CBORTag) else status
    key = status.get("root_key") if hasattr(status, "get") else None
    if not isinstance(key, bytes):
        raise TransportError(f"{url}/api/v2/status has no root key")
    return key


@dataclass
class Connection:
    """An agent bound to one network and one identity."""

    network: Network
    agent: Any
    retries: int = 3

    @property
    def principal(self) -> str:
        return str(self.agent.identity.sender())

    def call(self, canister_id: str, method: str, arg: bytes, *, effective_canister_id: str | None = None) -> bytes:
        """An update call; returns the certified reply."""
        return self._with_retry(lambda: self.agent.update_raw(
            canister_id, method, arg, effective_canister_id=effective_canister_id, return_type=_RAW))

    def query(self, canister_id: str, method: str, arg: bytes, *, effective_canister_id: str | None = None) -> bytes:
        return self._with_retry(lambda: self.agent.query_raw(
            canister_id, method, arg, effective_canister_id=effective_canister_id, return_type=_RAW))

    def module_hash(self, canister_id: str) -> bytes | None:
        """The sha256 of the module a canister runs, from a verified read_state certificate (None if empty)."""
        from icp_principal import Principal as IcpPrincipal  # type: ignore[import-not-found]

        path = [b"canister", IcpPrincipal.from_str(canister_id).bytes, b"module_hash"]
        certificate = self._with_retry(lambda: self.agent.read_state_raw(canister_id, [path]))
        value = certificate.lookup(path)
        return bytes(value) if value is not None else None

    def _with_retry(self, fn: Callable[[], T]) -> T:
        delay = 0.2
        for attempt in range(self.retries + 1):
            try:
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
    """An agent for `network`; local networks get their root key from the replica itself."""
    global _trusted_root_key
    _trusted_root_key = fetch_root_key(network.url) if network.is_local else _MAINNET_ROOT_KEY
    agent = Agent(identity or Identity(anonymous=True), Client(network.url), root_key=_trusted_root_key)
    return Connection(network, agent)
