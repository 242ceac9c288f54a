"""Root keys and certificate verification, one trusted key per connection.

icp-py-core's `Certificate.read_root_key()` returns its built-in mainnet key (it ignores `Agent(root_key=...)`).
We make it read a context variable instead, which a connection sets only around its own verification
(`trusting`). Context variables are per thread, so connections to networks with different keys, used from
several threads at once, never see each other's key; outside `trusting` only the mainnet key is trusted.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import cbor2
import httpx
from icp_certificate import certificate as _certificate  # type: ignore[import-not-found]

from prometheus_sdk import bls
from prometheus_sdk.errors import CertificateError, TransportError

MAINNET_ROOT_KEY: bytes = _certificate.IC_ROOT_KEY
_TRUSTED: ContextVar[bytes] = ContextVar("prometheus_trusted_root_key", default=MAINNET_ROOT_KEY)


def _read_root_key(self: Any) -> bytes:
    return _TRUSTED.get()


_certificate.Certificate.read_root_key = _read_root_key  # also used for delegations' parent certificates
bls.install()


@contextmanager
def trusting(root_key: bytes) -> Iterator[None]:
    """Within this block (in this thread only), certificates must be signed by `root_key`."""
    token = _TRUSTED.set(root_key)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def untag(value: Any) -> Any:
    """Drop the CBOR self-describe tag (55799) some encoders put around a value."""
    while isinstance(value, cbor2.CBORTag) and value.tag == 55799:
        value = value.value
    return value


def verify(raw: bytes, root_key: bytes, effective_canister_id: str, max_age_ns: int) -> Any:
    """The decoded certificate, once its signature chains to `root_key` and it is at most `max_age_ns` old;
    anything else (malformed, wrong key, stale) is a `CertificateError`: its content must not be used."""
    try:
        certificate = _certificate.Certificate(untag(cbor2.loads(raw)))
        with trusting(root_key):
            certificate.assert_certificate_valid(effective_canister_id)
        certificate.verify_cert_timestamp(max_age_ns)
    except Exception as exc:  # icp-py-core raises ValueError, its own errors, cbor2 errors...
        raise CertificateError(f"certificate refused: {exc}") from exc
    return certificate


def fetch_root_key(url: str, timeout: float = 5.0) -> bytes:
    """The root key a (local) replica announces at `/api/v2/status`."""
    from prometheus_sdk.transport import http  # (transport imports this module)

    try:
        response = http(url).get(f"{url}/api/v2/status", timeout=timeout)
    except httpx.HTTPError as exc:
        raise TransportError(f"cannot reach {url}: {exc}") from exc
    if response.status_code != 200:
        raise TransportError(f"{url}/api/v2/status answered HTTP {response.status_code}", status=response.status_code)
    try:
        status = untag(cbor2.loads(response.content))
    except Exception as exc:
        raise TransportError(f"{url}/api/v2/status is not CBOR: {exc}", transient=False) from exc
    key = status.get("root_key") if hasattr(status, "get") else None
    if not isinstance(key, bytes):
        raise TransportError(f"{url}/api/v2/status has no root key", transient=False)
    return key
