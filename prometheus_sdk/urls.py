"""The one repository-URL policy: what a verifier will fetch, so `init`/`submit` refuse exactly that first.

- `https://` on a public host: always.
- A loopback repository (`localhost`, 127.0.0.0/8, ::1; `http://` or `https://`): only when the network is
  local — the whole protocol then runs on this machine.
- `http://` or private/link-local hosts elsewhere: only with the operator's explicit test-fleet setting
  (the worker's `ALLOW_LOCAL_REPOS`).
- Never: other schemes, credentials in the URL, a leading `-`, whitespace/control characters, more than
  512 bytes (the registry's limit for `repo`).

A host name is checked by its resolved addresses too (`resolve_host`): a verifier must not be made to probe
its own network. Resolution failure is the caller's to judge (the worker retries; the CLI lets it pass).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlparse

MAX_REPO_BYTES = 512  # the registry's Limits.MAX_REPO_BYTES


class RepoUrlRefused(ValueError):
    """The URL is one a verifier would refuse; the message says why."""


class HostUnresolved(RepoUrlRefused):
    """The host name does not resolve (now): not a verdict on the URL itself."""


@dataclass(frozen=True)
class RepoPolicy:
    local_network: bool = False  # loopback repositories are fine: the network is this machine
    allow_private: bool = False  # operator's test-fleet setting: http and private hosts anywhere


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None


def is_loopback_host(host: str) -> bool:
    address = _address(host)
    return host.lower() in ("localhost", "localhost.") if address is None else address.is_loopback


def _resolved(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise HostUnresolved(f"cannot resolve repository host {host}: {exc}") from exc
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def check_repo_url(url: str, policy: RepoPolicy, resolve_host: bool = False) -> str:
    """`url` if a verifier under `policy` would fetch it, else `RepoUrlRefused` whose message is the reason
    (without the URL: callers say which URL)."""
    parsed = urlparse(url)
    if (url.startswith("-") or any(c in url for c in "\x00\n\r\t ") or parsed.username or parsed.password
            or not parsed.hostname):
        raise RepoUrlRefused("not a plain https:// URL (no credentials, spaces or leading '-')")
    if len(url.encode()) > MAX_REPO_BYTES:
        raise RepoUrlRefused(f"longer than {MAX_REPO_BYTES} bytes (the registry's limit)")
    if parsed.scheme not in ("https", "http"):
        raise RepoUrlRefused(f"verifiers fetch https:// only, not {parsed.scheme or 'a scheme-less URL'}")
    host = parsed.hostname
    if policy.allow_private:
        return url
    loopback = is_loopback_host(host)
    if loopback and policy.local_network:
        return url
    if loopback:
        raise RepoUrlRefused(f"host {host} is a non-public address (loopback): verifiers fetch it only when the "
                             "network is local")
    if parsed.scheme != "https":
        raise RepoUrlRefused("verifiers fetch https:// only, not http:// (except loopback on a local network)")
    address = _address(host)
    addresses = [address] if address is not None else (_resolved(host) if resolve_host else [])
    if any(not a.is_global for a in addresses):
        raise RepoUrlRefused(f"host {host} resolves to a non-public address: verifiers refuse it")
    return url
