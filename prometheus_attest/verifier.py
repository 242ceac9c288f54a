"""The verifier an MCP server runs: structure, issuer allowlist, key, signature, claims, then replay.

The order is the point. The issuer is checked before any key is looked up (keys are fetched for trusted
issuers only); replay caches are written last, so only a token that passed everything else spends an id
(garbage never fills the cache, and a token refused for a fixable reason is not burned).

A token is established once (`establish`: every check of the token itself; a bearer token's `jti` is spent
then) and used once per request (`use`: still unexpired; a key-bound token needs a fresh proof of possession
for that request, whose own `jti` is spent). A key-bound token's `jti` is never spent: its holder may present
it on several sessions or server processes, each request with a new proof (as DPoP does); without the key it
is worth nothing. `verify` is both, for one use.
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
        needed = max(policy.max_lifetime, 2 * tokens.PROOF_WINDOW) + 2 * policy.leeway  # tokens' and proofs' ids
        if replay is None:
            replay = MemoryReplayCache(horizon=needed, clock=clock)
        elif isinstance(replay, MemoryReplayCache) and replay.horizon < needed:
            raise errors.PolicyError(f"the replay cache remembers ids for {replay.horizon} s but tokens and proofs "
                                     f"may live {needed} s: one could be accepted twice")
        self.replay = replay
        self.observer = observer or getattr(keys, "observer", None) or Observer()
        if hasattr(keys, "observer"):  # one set of metrics for the verifier and its key fetches
            keys.observer = self.observer

    async def verify(self, token: object, proof: str | None = None,
                     request: tokens.Request | None = None) -> tokens.Verified:
        """One use of a token: the verified agent, or the AttestationError saying why not (counted and logged)."""
        started = time.perf_counter()
        try:
            agent = await self.establish(token)
            await self.use(agent, str(token), proof, request)
        except errors.AttestationError as e:
            self.observer.refused(started, e.code, e.message, _claimed_issuer(token))
            raise
        self.observer.verified(started, agent.issuer, agent.subject, agent.jti)
        return agent

    async def establish(self, token: object) -> tokens.Verified:
        """Every check of the token itself; a bearer token's id is spent here (it is good for one session)."""
        if token is None or token == "":
            raise errors.MissingToken("no attestation token was presented")
        parsed = tokens.parse(token, self.policy.max_token_bytes)
        claimed = parsed.claims.get("iss")
        if not isinstance(claimed, str) or claimed not in self.policy.trusted_issuers:
            raise errors.UntrustedIssuer(f"issuer {str(claimed)[:200]!r} is not trusted here")
        key = self.keys.cached(claimed, parsed.kid) or await self.keys.get(claimed, parsed.kid)
        agent = tokens.check(parsed, key, self.policy, int(self.clock()))
        if not agent.key_bound and not await self.replay.check_and_add(agent.issuer, agent.jti,
                                                                       agent.expires_at + self.policy.leeway):
            raise errors.Replay(f"token {agent.jti!r} was already presented")
        return agent

    async def use(self, agent: tokens.Verified, token: str, proof: str | None,
                  request: tokens.Request | None = None) -> None:
        """One request with an established token: unexpired, and for a key-bound token a fresh, unseen proof
        (for `request`, when given: the tool and its arguments)."""
        now = int(self.clock())
        tokens.check_expiry(agent.expires_at, self.policy, now)
        if agent.key_bound:
            pop = tokens.check_proof(proof, agent, token, self.policy, now, request)
            if not await self.replay.check_and_add(PROOF_SCOPE + agent.issuer, pop.jti, pop.expires_at):
                raise errors.Replay(f"proof {pop.jti!r} was already presented")


def _claimed_issuer(token: object) -> str | None:
    try:
        if not isinstance(token, str) or len(token) > tokens.MAX_TOKEN_BYTES:
            return None
        issuer = tokens.inspect(token)["claims"].get("iss")
    except errors.AttestationError:
        return None
    return issuer if isinstance(issuer, str) else None
