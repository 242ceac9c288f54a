"""The attack suite (`prometheus attest attack`): forged, altered, replayed and misdirected tokens against a real
verifier whose issuer serves its JWK Set over HTTP on loopback. Each attack names the error it must meet;
"detected" means refused, "as expected" means refused for that reason.

The reference implementation's eight (model spoofing, provenance forgery, replay, tampering, issuer
typosquatting, downgrade, audience mismatch, safety downgrade) come first, then the ones it does not test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from . import errors, tokens
from .jwks import JWKSKeys
from .jwks_server import JWKS_PATH, JWKSServer, Route
from .keys import SigningKey, b64url, jwks
from .replay import MemoryReplayCache
from .verifier import Verifier

ISSUER = "https://issuer.example.com"
SERVER = "https://tools.example.net/mcp"
OTHER_SERVER = "https://other.example.net/mcp"
IDENTITY = {"model_family": "claude-4", "model_version": "claude-sonnet-4", "provider": "anthropic"}


@dataclass(frozen=True)
class Result:
    name: str
    description: str
    expected: str
    got: str | None  # the error code the verifier answered with; None: the token was accepted

    @property
    def detected(self) -> bool:
        return self.got is not None

    @property
    def as_expected(self) -> bool:
        return self.got == self.expected

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "expected": self.expected, "got": self.got,
                "detected": self.detected, "as_expected": self.as_expected}


class World:
    """An issuer with a JWKS endpoint, a verifier for SERVER that trusts it, and an attacker's own key."""

    def __init__(self, server: JWKSServer) -> None:
        self.key = SigningKey.generate()
        self.attacker = SigningKey.generate()
        self.issuer = tokens.Issuer(ISSUER, self.key)
        self.http = server
        server.routes[JWKS_PATH] = Route.jwks(jwks([self.key.public]))
        server.routes["/moved.json"] = Route.redirect(server.url("/attacker.json"))
        server.routes["/attacker.json"] = Route.jwks(jwks([self.attacker.public]))
        server.routes["/mixed.json"] = Route.jwks({"keys": [
            self.key.public.jwk(),
            {"kty": "RSA", "kid": "rsa-1", "n": b64url(b"\x01" * 256), "e": "AQAB"},
            {"kty": "oct", "kid": "hmac-1", "k": b64url(b"secret")},
        ]})

    def verifier(self, jwks_path: str = JWKS_PATH, audience: str = SERVER, **policy: Any) -> Verifier:
        keys = JWKSKeys({ISSUER: self.http.url(jwks_path)}, retries=1)
        return Verifier(tokens.Policy(frozenset({ISSUER}), audience, **policy), keys, MemoryReplayCache())

    def token(self, **kwargs: Any) -> str:
        return self.issuer.issue(kwargs.pop("audience", SERVER), IDENTITY, **kwargs)


def forge(key: SigningKey, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    h = b64url(json.dumps(header or {"alg": "Ed25519", "typ": tokens.TOKEN_TYPE, "kid": key.kid}).encode())
    return tokens.sign(key, h, claims)


def claims_of(token: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))


def resign_payload(token: str, change: Callable[[dict[str, Any]], None]) -> str:
    """The token with its claims changed and the original signature kept (what an attacker without the key can do)."""
    h, _, s = token.split(".")
    claims = claims_of(token)
    change(claims)
    return f"{h}.{b64url(json.dumps(claims).encode())}.{s}"


def header_swap(token: str, header: dict[str, Any], signature: bytes | None = None) -> str:
    _, p, s = token.split(".")
    h = b64url(json.dumps(header).encode())
    if signature is None:
        return f"{h}.{p}.{s}"
    return f"{h}.{p}.{b64url(signature)}"


Attack = Callable[[World], Awaitable[str | None]]
ATTACKS: list[tuple[str, str, str, Attack]] = []


def attack(name: str, description: str, expected: type[errors.AttestationError]) -> Callable[[Attack], Attack]:
    def register(fn: Attack) -> Attack:
        ATTACKS.append((name, description, expected.code, fn))
        return fn
    return register


async def refused(verifier: Verifier, token: object, proof: str | None = None,
                  request: tokens.Request | None = None) -> str | None:
    return await code_of(verifier.verify(token, proof, request))


async def code_of(step: Awaitable[object]) -> str | None:
    """The error code a verification step refused with; None when it accepted."""
    try:
        await step
    except errors.AttestationError as e:
        return e.code
    return None


# ---------------------------------------------------------------- the reference implementation's eight


@attack("model_spoofing", "the attacker signs a claim to be the provider's model with its own key",
        errors.UnknownKey)
async def _model_spoofing(w: World) -> str | None:
    return await refused(w.verifier(), tokens.Issuer(ISSUER, w.attacker).issue(SERVER, IDENTITY))


@attack("provenance_forgery", "a token from an issuer this server does not trust", errors.UntrustedIssuer)
async def _provenance_forgery(w: World) -> str | None:
    return await refused(w.verifier(), tokens.Issuer("https://evil-llm.example", w.attacker).issue(SERVER, IDENTITY))


@attack("token_replay", "a captured token presented a second time", errors.Replay)
async def _replay(w: World) -> str | None:
    v, t = w.verifier(), w.token()
    await v.verify(t)
    return await refused(v, t)


@attack("token_tampering", "the expiry pushed a year ahead, signature kept", errors.BadSignature)
async def _tampering(w: World) -> str | None:
    return await refused(w.verifier(), resign_payload(w.token(), lambda c: c.update(exp=c["exp"] + 365 * 86400)))


@attack("issuer_typosquatting", "a look-alike issuer: .org for .com", errors.UntrustedIssuer)
async def _typosquat(w: World) -> str | None:
    return await refused(w.verifier(), tokens.Issuer("https://issuer.example.org", w.attacker).issue(SERVER, IDENTITY))


@attack("downgrade", "no token at all against a server that requires one", errors.MissingToken)
async def _downgrade(w: World) -> str | None:
    return await refused(w.verifier(), None)


@attack("audience_mismatch", "a token made for another server", errors.WrongAudience)
async def _audience(w: World) -> str | None:
    return await refused(w.verifier(), w.token(audience=OTHER_SERVER))


@attack("safety_downgrade", "the safety level in the metadata lowered, signature kept", errors.BadSignature)
async def _safety(w: World) -> str | None:
    t = w.token(metadata={"safety_level": "enhanced"})
    return await refused(w.verifier(), resign_payload(t, lambda c: c["attestation_metadata"].update(
        safety_level="minimal")))


# ---------------------------------------------------------------- beyond the reference


@attack("forged_with_the_issuers_kid", "the attacker's signature under the issuer's own kid", errors.BadSignature)
async def _forged_kid(w: World) -> str | None:
    claims = claims_of(w.token())
    return await refused(w.verifier(), forge(w.attacker, claims, {"alg": "Ed25519", "typ": tokens.TOKEN_TYPE,
                                                                  "kid": w.key.kid}))


@attack("alg_none", "alg none and an empty signature", errors.UnsupportedAlgorithm)
async def _alg_none(w: World) -> str | None:
    t = w.token()
    h, p, _ = t.split(".")
    none = b64url(json.dumps({"alg": "none", "typ": tokens.TOKEN_TYPE, "kid": w.key.kid}).encode())
    return await refused(w.verifier(), f"{none}.{p}.")


@attack("alg_substitution_hs256", "HS256 with the issuer's public key as the HMAC secret (key confusion)",
        errors.UnsupportedAlgorithm)
async def _hs256(w: World) -> str | None:
    claims = claims_of(w.token())
    h = b64url(json.dumps({"alg": "HS256", "typ": tokens.TOKEN_TYPE, "kid": w.key.kid}).encode())
    p = b64url(json.dumps(claims).encode())
    mac = hmac.new(w.key.public.raw, f"{h}.{p}".encode(), hashlib.sha256).digest()
    return await refused(w.verifier(), f"{h}.{p}.{b64url(mac)}")


@attack("alg_case_variant", "alg 'eddsa' (a case variant a lax parser might map to EdDSA)",
        errors.UnsupportedAlgorithm)
async def _alg_case(w: World) -> str | None:
    return await refused(w.verifier(), header_swap(w.token(), {"alg": "eddsa", "typ": tokens.TOKEN_TYPE,
                                                               "kid": w.key.kid}))


@attack("kid_injection", "a kid that is a path traversal: keys are looked up, never loaded by kid",
        errors.UnknownKey)
async def _kid_injection(w: World) -> str | None:
    evil = SigningKey(kid="../../../../etc/passwd", seed=w.attacker.seed)
    return await refused(w.verifier(), tokens.Issuer(ISSUER, evil).issue(SERVER, IDENTITY))


@attack("embedded_key_header", "a jwk header carrying the attacker's own key (self-signed token)", errors.Malformed)
async def _embedded_jwk(w: World) -> str | None:
    claims = claims_of(w.token())
    return await refused(w.verifier(), forge(w.attacker, claims, {
        "alg": "Ed25519", "typ": tokens.TOKEN_TYPE, "kid": w.attacker.kid, "jwk": w.attacker.public.jwk()}))


@attack("jku_header", "a jku header pointing the verifier at the attacker's key set", errors.Malformed)
async def _jku(w: World) -> str | None:
    claims = claims_of(w.token())
    return await refused(w.verifier(), forge(w.attacker, claims, {
        "alg": "Ed25519", "typ": tokens.TOKEN_TYPE, "kid": w.attacker.kid, "jku": w.http.url("/attacker.json")}))


@attack("jwks_poisoning_via_redirect", "the issuer's JWKS URL redirects to a key set holding the attacker's key",
        errors.KeyUnavailable)
async def _redirect(w: World) -> str | None:
    return await refused(w.verifier("/moved.json"), tokens.Issuer(ISSUER, w.attacker).issue(SERVER, IDENTITY))


@attack("key_confusion_rsa_kid", "a token naming a kid the issuer publishes as an RSA key", errors.KeyConfusion)
async def _rsa_kid(w: World) -> str | None:
    claims = claims_of(w.token())
    return await refused(w.verifier("/mixed.json"), forge(w.attacker, claims, {
        "alg": "Ed25519", "typ": tokens.TOKEN_TYPE, "kid": "rsa-1"}))


@attack("token_substitution_across_audiences", "a token this issuer made for a sibling server, replayed here",
        errors.WrongAudience)
async def _substitution(w: World) -> str | None:
    other = w.verifier(audience=OTHER_SERVER)
    t = w.token(audience=OTHER_SERVER)
    await other.verify(t)  # the sibling accepted it; the attacker who saw it tries here
    return await refused(w.verifier(), t)


@attack("typ_confusion", "another JWT of the same issuer (typ JWT, e.g. an ID token) offered as an attestation",
        errors.WrongType)
async def _typ(w: World) -> str | None:
    claims = claims_of(w.token())
    return await refused(w.verifier(), forge(w.key, claims, {"alg": "Ed25519", "typ": "JWT", "kid": w.key.kid}))


@attack("cnf_without_proof", "a key-bound token stolen without its key, presented with no proof", errors.ProofRequired)
async def _cnf_none(w: World) -> str | None:
    holder = SigningKey.generate()
    return await refused(w.verifier(), w.token(holder=holder.public))


@attack("cnf_proof_by_another_key", "a key-bound token with a proof the thief signed with its own key",
        errors.BadProof)
async def _cnf_other(w: World) -> str | None:
    holder = SigningKey.generate()
    t = w.token(holder=holder.public)
    return await refused(w.verifier(), t, tokens.make_proof(w.attacker, t, SERVER))


@attack("cnf_proof_replayed_from_another_token", "the holder's real proof for one token, presented with another",
        errors.BadProof)
async def _cnf_swap(w: World) -> str | None:
    holder = SigningKey.generate()
    first, second = w.token(holder=holder.public), w.token(holder=holder.public)
    return await refused(w.verifier(), second, tokens.make_proof(holder, first, SERVER))


@attack("cnf_proof_reused", "the holder's proof captured on one request and replayed with the token on another",
        errors.Replay)
async def _cnf_reuse(w: World) -> str | None:
    holder = SigningKey.generate()
    v = w.verifier()
    t = w.token(holder=holder.public)
    proof = tokens.make_proof(holder, t, SERVER)
    agent = await v.verify(t, proof)
    return await code_of(v.use(agent, t, proof))


@attack("cnf_proof_for_another_tool_call", "the holder's proof for balance() presented with transfer(1000000)",
        errors.BadProof)
async def _cnf_other_call(w: World) -> str | None:
    holder = SigningKey.generate()
    t = w.token(holder=holder.public)
    proof = tokens.make_proof(holder, t, SERVER, request=tokens.Request("balance", {}))
    return await refused(w.verifier(), t, proof, tokens.Request("transfer", {"amount": 1_000_000}))


@attack("expired", "a token past its expiry and the skew tolerance", errors.Expired)
async def _expired(w: World) -> str | None:
    return await refused(w.verifier(), w.token(now=int(time.time()) - 400))


@attack("not_yet_valid", "a token whose nbf is ten minutes ahead", errors.NotYetValid)
async def _nbf(w: World) -> str | None:
    claims = claims_of(w.token())
    claims["nbf"] = claims["iat"] + 600
    return await refused(w.verifier(), forge(w.key, claims))


@attack("issued_in_the_future", "iat ten minutes ahead: a clock too far off", errors.ClockSkew)
async def _future(w: World) -> str | None:
    return await refused(w.verifier(), w.token(now=int(time.time()) + 600))


@attack("long_lived_token", "a token valid for a year", errors.ClockSkew)
async def _long(w: World) -> str | None:
    return await refused(w.verifier(), w.token(lifetime=365 * 86400))


@attack("issuer_lookalike_subdomain", "https://issuer.example.com.attacker.net", errors.UntrustedIssuer)
async def _subdomain(w: World) -> str | None:
    return await refused(w.verifier(), tokens.Issuer(ISSUER + ".attacker.net", w.attacker).issue(SERVER, IDENTITY))


@attack("issuer_homoglyph", "the issuer with a Cyrillic 'е' (U+0435)", errors.UntrustedIssuer)
async def _homoglyph(w: World) -> str | None:
    return await refused(w.verifier(), tokens.Issuer(ISSUER.replace("e", "\u0435", 1), w.attacker).issue(
        SERVER, IDENTITY))


@attack("oversized_claims", "a 1 MiB claim (memory and CPU amplification)", errors.Oversized)
async def _oversized(w: World) -> str | None:
    return await refused(w.verifier(), w.issuer.issue(SERVER, {**IDENTITY, "padding": "x" * (1 << 20)}))


@attack("crit_header", "a crit header naming an extension the verifier would ignore", errors.Malformed)
async def _crit(w: World) -> str | None:
    claims = claims_of(w.token())
    return await refused(w.verifier(), forge(w.key, claims, {"alg": "Ed25519", "typ": tokens.TOKEN_TYPE,
                                                             "kid": w.key.kid, "crit": ["exp"]}))


@attack("non_canonical_encoding", "the same token with base64 padding added (a second spelling)", errors.Malformed)
async def _padding(w: World) -> str | None:
    h, p, s = w.token().split(".")
    return await refused(w.verifier(), f"{h}==.{p}.{s}")


@attack("missing_identity", "a validly signed token without agent_identity", errors.MissingClaim)
async def _missing(w: World) -> str | None:
    claims = claims_of(w.token())
    del claims["agent_identity"]
    return await refused(w.verifier(), forge(w.key, claims))


async def run_all() -> list[Result]:
    with JWKSServer() as server:
        world = World(server)
        return [Result(name, description, expected, await fn(world)) for name, description, expected, fn in ATTACKS]


def summary(results: list[Result]) -> dict[str, Any]:
    detected = sum(r.detected for r in results)
    return {"attacks": len(results), "detected": detected, "as_expected": sum(r.as_expected for r in results),
            "detection_rate": detected / len(results) if results else 0.0}
