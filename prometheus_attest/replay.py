"""Replay caches: a token id (`jti`, scoped by its issuer) is accepted once until the token expires.

`MemoryReplayCache` serves one process: a dict for the check and a ring of one-second buckets for expiry, so
each check and each expiry is O(1) amortized (the reference rebuilt its whole dict on every check). It has a
capacity and refuses, never evicts, when full: forgetting a live id would let that token be replayed.
`RedisReplayCache` serves several server processes: one `SET key 1 NX EXAT exp` per check, atomic in Redis.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any, Protocol

from . import errors


class ReplayCache(Protocol):
    async def check_and_add(self, scope: str, jti: str, expires_at: int) -> bool:
        """True the first time (scope, jti) is seen before `expires_at`; False for a replay."""
        ...


def _key(scope: str, jti: str) -> str:
    # issuer and jti are attacker-chosen text: a fixed-size digest keeps keys bounded and unambiguous
    return hashlib.sha256(f"{len(scope)}:{scope}|{jti}".encode()).hexdigest()


class MemoryReplayCache:
    def __init__(self, capacity: int = 1_000_000, horizon: int = 3600,
                 clock: Callable[[], float] = time.time) -> None:
        self.capacity, self.horizon, self.clock = capacity, horizon, clock
        self._expiry: dict[str, int] = {}
        self._buckets: dict[int, list[str]] = {}  # second -> keys expiring then
        self._swept_to = int(clock())

    def __len__(self) -> int:
        return len(self._expiry)

    def _sweep(self, now: int) -> None:
        if now - self._swept_to > self.horizon:  # idle for longer than any entry lives: everything has gone
            live = {s: keys for s, keys in self._buckets.items() if s >= now}
            for s in self._buckets.keys() - live.keys():
                for k in self._buckets[s]:
                    self._expiry.pop(k, None)
            self._buckets = live
        else:
            for s in range(self._swept_to, now):
                for k in self._buckets.pop(s, ()):
                    self._expiry.pop(k, None)
        self._swept_to = max(self._swept_to, now)

    def check_and_add_sync(self, scope: str, jti: str, expires_at: int) -> bool:
        now = int(self.clock())
        if now > self._swept_to:
            self._sweep(now)
        key = _key(scope, jti)
        if key in self._expiry:
            return False
        if len(self._expiry) >= self.capacity:
            raise errors.ReplayCacheFull(f"{self.capacity} live token ids: refusing rather than forgetting one")
        if expires_at > now + self.horizon:  # forgetting it before it expires would let it be replayed
            raise errors.PolicyError(f"an id valid until {expires_at} outlives this cache's {self.horizon} s horizon")
        expires_at = max(expires_at, now)
        self._expiry[key] = expires_at
        self._buckets.setdefault(expires_at, []).append(key)
        return True

    async def check_and_add(self, scope: str, jti: str, expires_at: int) -> bool:
        return self.check_and_add_sync(scope, jti, expires_at)


class RedisReplayCache:
    """Shared by every process that talks to the same Redis; `client` is a `redis.asyncio.Redis`."""

    def __init__(self, client: Any, prefix: str = "prometheus-attest:jti:") -> None:
        self.client, self.prefix = client, prefix

    async def check_and_add(self, scope: str, jti: str, expires_at: int) -> bool:
        try:
            stored = await self.client.set(self.prefix + _key(scope, jti), b"1", nx=True,
                                           exat=max(expires_at, int(time.time()) + 1))
        except Exception as e:  # a cache that cannot answer must not let a token through twice
            raise errors.ReplayCacheUnavailable(f"the replay cache (Redis) did not answer: {e}") from None
        return bool(stored)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisReplayCache:
        import redis.asyncio

        return cls(redis.asyncio.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2), **kwargs)
