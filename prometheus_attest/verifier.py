"""The verifier an MCP server runs: structure, issuer allowlist, key, signature, claims, proof, then replay.

The order is the point. The issuer is checked before any key is looked up (keys are fetched for trusted
issuers only); the replay cache is written last, so only a token that passed everything else spends its
`jti` (garbage never fills the cache, and a token refused for a fixable reason, e.g. a missing proof, is
not burned). A key-bound token's later uses (`prove`) need a fresh proof each, whose own `jti` is spent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from . import errors, tokens
from .keys import PublicKey, require_crypto
from .observability import Observer
from .replay import MemoryReplayCache, ReplayCache

PROOF_SCOPE = "proof-of-possession:"  # proofs' ids live beside tokens' ids, never colliding with an issuer's


class KeySource(Protocol):
    def cached(self, issuer: str, kid: str) -> PublicKey | None: ...

    async def get(self, issuer: str, kid: str) -> PublicKey: ...


class Verifier:
    def __init__(self, policy: tokens.Policy, keys: KeySource, replay: ReplayCache | None = None,
                 observer: Observer | None = None, clock: Callable[[], float] = time.time) -> None:
        require_crypto()  # fail at start-up, not on the first agent
        self.policy, self.keys, self.clock = policy, keys, clock
        needed = policy.max_lifetime + 2 * policy.leeway
        if replay is None:
            replay = MemoryReplayCache(horizon=needed)
        elif isinstance(replay, MemoryReplayCache) and replay.horizon < needed:
            raise errors.PolicyError(f"the replay cache remembers ids for {replay.horizon} s but tokens may live "
                                     f"{needed} s (max_lifetime + 2 x leeway): a token could be accepted twice")
        self.replay = replay
        self.observer = observer or getattr(keys, "observer", None) or Observer()
        if hasattr(keys, "observer"):  # one set of metrics for the verifier and its key fetches
            keys.observer = self.observer

    async def verify(self, token: object, proof: str | None = None) -> tokens.Verified:
        """The verified agent, or the AttestationError saying why not (counted and logged either way)."""
        started = time.perf_counter()
        claimed: object = None
        try:
            if token is None or token == "":
                raise errors.MissingToken("no attestation token was presented")
            parsed = tokens.parse(token, self.policy.max_token_bytes)
            claimed = parsed.claims.get("iss")
            if not isinstance(claimed, str) or claimed not in self.policy.trusted_issuers:
                raise errors.UntrustedIssuer(f"issuer {str(claimed)[:200]!r} is not trusted here")
            key = self.keys.cached(claimed, parsed.kid) or await self.keys.get(claimed, parsed.kid)
            now = int(self.clock())
            agent = tokens.check(parsed, key, self.policy, now)
            pop = tokens.check_proof(proof, agent, str(token), self.policy, now) if agent.key_bound else None
            if not await self.replay.check_and_add(agent.issuer, agent.jti, agent.expires_at + self.policy.leeway):
                raise errors.Replay(f"token {agent.jti!r} was already presented")
            if pop is not None and not await self.replay.check_and_add(PROOF_SCOPE + agent.issuer, pop.jti,
                                                                       pop.expires_at):
                raise errors.Replay(f"proof {pop.jti!r} was already presented")
        except errors.AttestationError as e:
            self.observer.refused(started, e.code, e.message, claimed)
            raise
        self.observer.verified(started, agent.issuer, agent.subject, agent.jti)
        return agent

    async def prove(self, agent: tokens.Verified, token: str, proof: str | None) -> None:
        """A later use of a verified key-bound token (a session's next call, a stateless request): still
        unexpired, and with a fresh proof of possession never seen before."""
        started = time.perf_counter()
        try:
            now = int(self.clock())
            tokens.check_expiry(agent.expires_at, self.policy, now)
            pop = tokens.check_proof(proof, agent, token, self.policy, now)
            if not await self.replay.check_and_add(PROOF_SCOPE + agent.issuer, pop.jti, pop.expires_at):
                raise errors.Replay(f"proof {pop.jti!r} was already presented")
        except errors.AttestationError as e:
            self.observer.refused(started, e.code, e.message, agent.issuer)
            raise

    def still_valid(self, agent: tokens.Verified) -> None:
        """A bearer token verified earlier in this session: refused once it expires (sessions outlive tokens)."""
        tokens.check_expiry(agent.expires_at, self.policy, int(self.clock()))
