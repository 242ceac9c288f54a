"""Networks: the local replica (or PocketIC), mainnet, or any URL."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlparse

from prometheus_sdk import localnet
from prometheus_sdk.errors import ConfigError

MAINNET_URL = "https://icp-api.io"
DEFAULT_LOCAL_PORT = 4943


@dataclass(frozen=True)
class Network:
    """Where to send requests; `local` networks have their root key fetched from `/api/v2/status`."""

    name: str
    url: str

    @property
    def is_local(self) -> bool:
        host = urlparse(self.url).hostname or ""
        return host in ("localhost", "::1") or host.startswith("127.")


def local_url() -> str:
    """`$PROMETHEUS_LOCAL_URL`, else the running `prometheus localnet` wherever it listens, else port 4943."""
    if os.environ.get("PROMETHEUS_LOCAL_URL"):
        return os.environ["PROMETHEUS_LOCAL_URL"]
    info = localnet.running()
    if info is not None and info.get("url"):
        return str(info["url"])
    return f"http://127.0.0.1:{DEFAULT_LOCAL_PORT}"


def resolve(spec: str | None) -> Network:
    """`local` (default: the running localnet, see `local_url`), `ic`, or an http(s) URL."""
    spec = spec or os.environ.get("PROMETHEUS_NETWORK", "local")
    if spec == "local":
        return Network("local", local_url())
    if spec == "ic":
        return Network("ic", MAINNET_URL)
    parsed = urlparse(spec)
    if parsed.scheme in ("http", "https") and parsed.hostname:
        return Network(spec, spec.rstrip("/"))
    raise ConfigError(f"unknown network {spec!r}: use 'local', 'ic' or an http(s):// URL")
