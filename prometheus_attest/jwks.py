"""Issuers' public keys from their JWKS endpoints: cached as HTTP says, retried, guarded by a circuit breaker.

- Keys are fetched only for trusted issuers, from a URL configured for each (default
  `<issuer>/.well-known/jwks.json`); a token never names where its key lives (no `jku`, see tokens.py).
- HTTPS only, except loopback hosts (a local issuer, tests, the demo). Redirects are never followed: a
  redirect is how a key set gets swapped for an attacker's (JWKS poisoning), so it is a failed fetch.
- A reply is at most MAX_JWKS_BYTES and MAX_KEYS keys; non-Ed25519 keys are remembered as such so a token
  naming one fails as key confusion, not as an unknown key.
- `Cache-Control: max-age` (else `Expires` - `Date`) sets how long a key set is fresh (clamped to
  MIN_TTL..MAX_TTL; DEFAULT_TTL without either); a refresh sends the set's `ETag` as `If-None-Match`, and a 304
  keeps it. An unknown `kid` refreshes the set at most once per REFRESH_INTERVAL (rotation without letting tokens
  with random kids turn the verifier into a fetch loop). When a refresh fails, the last good set is used for
  up to MAX_STALE, and a failing issuer is asked again at most once per REFRESH_INTERVAL; after
  FAILURES_TO_OPEN failed fetches in a row the breaker opens for OPEN_FOR seconds and no request is made.
  With nothing usable cached, verification fails with KeyUnavailable.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx

from . import errors
from .keys import PublicKey, public_from_jwk
from .observability import Observer

MAX_JWKS_BYTES = 64 * 1024
MAX_KEYS = 64
DEFAULT_TTL, MIN_TTL, MAX_TTL = 300.0, 30.0, 86_400.0
MAX_STALE = 86_400.0
REFRESH_INTERVAL = 30.0
FAILURES_TO_OPEN, OPEN_FOR = 5, 300.0


def default_jwks_url(issuer: str) -> str:
    return issuer.rstrip("/") + "/.well-known/jwks.json"


def check_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        _ = parts.port  # raises on a port that is not 0..65535
    except ValueError as e:
        raise errors.PolicyError(f"not a usable JWKS URL: {url!r} ({e})") from None
    if parts.scheme == "https" and host:
        return url
    if parts.scheme == "http" and _loopback(host):
        return url
    raise errors.PolicyError(f"a JWKS URL must be https:// (http:// only on a loopback host): {url!r}")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class _Entry:
    keys: dict[str, PublicKey] = field(default_factory=dict)
    other: set[str] = field(default_factory=set)  # kids of keys that are not Ed25519
    fetched_at: float = -1.0
    fresh_until: float = -1.0
    etag: str | None = None  # the validator of the set held: a refresh asks If-None-Match (304: still current)
    last_attempt: float = -1e18
    failures: int = 0
    open_until: float = -1.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class JWKSKeys:
    """Key lookup by (issuer, kid) for a `Verifier`, backed by each issuer's JWKS endpoint."""

    def __init__(self, issuers: dict[str, str | None], *, client: httpx.AsyncClient | None = None,
                 retries: int = 3, backoff: float = 0.1, timeout: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, observer: Observer | None = None) -> None:
        self.urls = {iss: check_url(url or default_jwks_url(iss)) for iss, url in issuers.items()}
        self._client = client or httpx.AsyncClient(follow_redirects=False, timeout=timeout)
        self.retries, self.backoff, self.clock = retries, backoff, clock
        self.deadline = timeout  # for a whole fetch: a server dripping a byte at a time does not hold a verifier
        self.observer = observer or Observer()
        self._entries = {iss: _Entry() for iss in self.urls}

    def cached(self, issuer: str, kid: str) -> PublicKey | None:
        """The key when a fresh set holds it: the path every verification takes between refreshes."""
        entry = self._entries.get(issuer)
        if entry is None or not self.clock() < entry.fresh_until:
            return None
        return entry.keys.get(kid)

    async def get(self, issuer: str, kid: str) -> PublicKey:
        entry = self._entries.get(issuer)
        if entry is None:
            raise errors.UntrustedIssuer(f"no JWKS is configured for {issuer!r}")
        if self._due(entry, kid):
            async with entry.lock:  # one fetch per issuer at a time; the others wait and reuse it
                if self._due(entry, kid):
                    await self._refresh(issuer, entry)
        if kid in entry.other:
            raise errors.KeyConfusion(f"{issuer!r} publishes key {kid!r} for another algorithm, not Ed25519")
        usable = entry.fetched_at >= 0 and self.clock() - entry.fetched_at <= MAX_STALE
        if not usable:
            raise errors.KeyUnavailable(f"the key set of {issuer!r} could not be fetched and none is cached")
        key = entry.keys.get(kid)
        if key is None:
            raise errors.UnknownKey(f"{issuer!r} publishes no key {kid!r}")
        return key

    def _due(self, entry: _Entry, kid: str) -> bool:
        """A fetch is due when the set is stale or lacks `kid`, at most once per REFRESH_INTERVAL (a failing or
        slow issuer is not asked again on every verification; the last good set serves meanwhile)."""
        now = self.clock()
        if now - entry.last_attempt < REFRESH_INTERVAL:
            return False
        return now >= entry.fresh_until or (kid not in entry.keys and kid not in entry.other)

    async def _refresh(self, issuer: str, entry: _Entry) -> None:
        now = self.clock()
        entry.last_attempt = now
        if now < entry.open_until:
            self.observer.jwks_fetch(issuer, "circuit_open")
            return
        url = self.urls[issuer]
        problem = ""
        for attempt in range(self.retries):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                etag = entry.etag if entry.fetched_at >= 0 else None
                keys, other, ttl, etag = await asyncio.wait_for(self._fetch(url, etag), self.deadline)
            except _NotModified as e:  # the set held is still the issuer's: fresh again
                entry.failures, entry.fetched_at, entry.fresh_until = 0, self.clock(), self.clock() + e.ttl
                self.observer.jwks_fetch(issuer, "not_modified")
                return
            except _Permanent as e:  # a redirect or a bad document: retrying gives the same answer
                problem = str(e)
                break
            except (httpx.HTTPError, _Transient, TimeoutError) as e:
                problem = str(e) or type(e).__name__
                continue
            except Exception as e:  # anything else a hostile or broken endpoint causes is a failed fetch too
                problem = f"{type(e).__name__}: {e}"
                break
            entry.keys, entry.other, entry.failures, entry.etag = keys, other, 0, etag
            entry.fetched_at, entry.fresh_until = self.clock(), self.clock() + ttl
            self.observer.jwks_fetch(issuer, "ok")
            return
        entry.failures += 1
        entry.etag = None  # the next attempt asks for the whole set
        if entry.failures >= FAILURES_TO_OPEN:
            entry.open_until = self.clock() + OPEN_FOR
        self.observer.jwks_fetch(issuer, "failed", problem=problem)

    async def _fetch(self, url: str, etag: str | None) -> tuple[dict[str, PublicKey], set[str], float, str | None]:
        headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
        if etag is not None:
            headers["If-None-Match"] = etag
        async with self._client.stream("GET", url, headers=headers) as reply:
            if reply.status_code == 304 and etag is not None:
                raise _NotModified(_freshness(reply.headers))
            if reply.headers.get("content-encoding", "identity").lower() != "identity":
                raise _Permanent(f"{url}: a compressed reply ({reply.headers['content-encoding']}) is not accepted")
            if reply.is_redirect:
                raise _Permanent(f"{url} answered with a redirect ({reply.status_code}); redirects are not followed")
            if reply.status_code >= 500 or reply.status_code == 429:
                raise _Transient(f"{url} answered {reply.status_code}")
            if reply.status_code != 200:
                raise _Permanent(f"{url} answered {reply.status_code}")
            body = bytearray()
            async for chunk in reply.aiter_raw():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise _Permanent(f"{url}: a key set larger than {MAX_JWKS_BYTES} bytes")
            ttl = _freshness(reply.headers)
            new_etag = reply.headers.get("etag")
        try:
            document = json.loads(bytes(body))
        except (ValueError, RecursionError):
            raise _Permanent(f"{url}: not JSON") from None
        listed = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(listed, list) or len(listed) > MAX_KEYS:
            raise _Permanent(f"{url}: not a JWK Set of at most {MAX_KEYS} keys")
        keys: dict[str, PublicKey] = {}
        other: set[str] = set()  # kids that must not verify anything: another key type, or published twice
        seen: set[str] = set()
        for jwk in listed:
            kid = jwk.get("kid") if isinstance(jwk, dict) else None
            try:
                key: PublicKey | None = public_from_jwk(jwk)
            except errors.KeyConfusion:
                key = None
            except errors.AttestationError:
                continue  # a malformed entry is skipped; the others still count
            name = key.kid if key is not None else kid
            if not isinstance(name, str):
                continue
            if name in seen or key is None:  # one kid, two keys (in either order), or not Ed25519: neither counts
                keys.pop(name, None)
                other.add(name)
            else:
                keys[name] = key
            seen.add(name)
        usable = new_etag is not None and len(new_etag) <= 256 and new_etag.isascii() and new_etag.isprintable()
        return keys, other, ttl, new_etag if usable else None  # sent back as a header: printable ASCII only

    async def aclose(self) -> None:
        await self._client.aclose()


class _Transient(Exception):
    pass


class _Permanent(Exception):
    pass


class _NotModified(Exception):
    def __init__(self, ttl: float) -> None:
        super().__init__("not modified")
        self.ttl = ttl


def _freshness(headers: httpx.Headers) -> float:
    """Seconds a reply is fresh (RFC 9111 §4.2.1): Cache-Control first, else Expires - Date; clamped."""
    cache_control = headers.get("cache-control", "")
    directives = cache_control.lower()
    if "expires" not in headers or any(d in directives for d in ("max-age", "no-store", "no-cache")):
        return _max_age(cache_control)
    try:
        expires = parsedate_to_datetime(headers["expires"])
        date = parsedate_to_datetime(headers["date"]) if "date" in headers else datetime.now(UTC)
        seconds = (expires - date).total_seconds()
    except (TypeError, ValueError, IndexError, OverflowError):
        return MIN_TTL  # an invalid Expires means already expired (RFC 9111 §5.3)
    return min(max(seconds, MIN_TTL), MAX_TTL)


def _max_age(cache_control: str) -> float:
    """Seconds the reply is fresh: `max-age` as delta-seconds (digits only, RFC 9111 §1.2.2), clamped."""
    directives = {d.strip().split("=")[0].lower(): d.strip() for d in cache_control.split(",") if d.strip()}
    if "no-store" in directives or "no-cache" in directives:
        return MIN_TTL
    if "max-age" in directives:
        value = directives["max-age"].partition("=")[2].strip().strip('"')
        if value.isascii() and value.isdigit():
            return min(max(float(int(value[:12])), MIN_TTL), MAX_TTL)
    return DEFAULT_TTL


class StaticKeys:
    """Keys given in configuration (tests, closed deployments): same interface as JWKSKeys."""

    def __init__(self, keys: dict[str, list[PublicKey]]) -> None:
        self._keys = {iss: {k.kid: k for k in ks} for iss, ks in keys.items()}

    def cached(self, issuer: str, kid: str) -> PublicKey | None:
        return self._keys.get(issuer, {}).get(kid)

    async def get(self, issuer: str, kid: str) -> PublicKey:
        key = self.cached(issuer, kid)
        if key is None:
            raise errors.UnknownKey(f"{issuer!r} has no key {kid!r}")
        return key

