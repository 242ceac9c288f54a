"""Attestation tokens: compact JWS (RFC 7515) JWTs signed with Ed25519, made and checked in one strict profile.

Why not a general JOSE library: this is the hot path of every attested MCP session (docs/benchmarks.md) and a
profile with one algorithm family is easier to prove closed than a library's options. The profile, whole:

- header: exactly `alg` ("Ed25519", RFC 9864; "EdDSA", RFC 8037, accepted), `typ` = TOKEN_TYPE (explicit typing,
  RFC 8725 §3.11: no other JWT from the same issuer passes for an attestation), `kid`; any other header member
  (`jku`, `x5u`, `jwk`, `crit`, ...) is refused, so a token can never point the verifier at a key;
- strict base64url, at most MAX_TOKEN_BYTES, claims a JSON object with typed `iss`, `sub`, `aud`, `iat`,
  `nbf`, `exp`, `jti`, `agent_identity` and optional `attestation_metadata`, `agent_integrity`, `cnf`;
- a token with `cnf.jwk` is bound to the agent's key: it counts only with a proof of possession, a second JWS
  (`typ` = PROOF_TYPE) signed by that key over the server's audience, a fresh `iat`, a `jti` of its own (spent),
  the token's hash (`ath`) and, for a tool call, the tool and a hash of its arguments (`tool`, `args`); the agent
  proves possession on every request (as DPoP does, RFC 9449), so neither a copied token, nor a hijacked
  session, nor a captured proof is worth anything without the key.

The signatures are libsodium's Ed25519 (PyNaCl, keys.py); without it nothing is made or accepted.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import rfc8785

from . import errors
from .keys import ALGORITHMS, PublicKey, SigningKey, b64url, check_kid, public_from_jwk, unb64url

TOKEN_TYPE = "agent-attestation+jwt"
PROOF_TYPE = "agent-attestation-pop+jwt"
VERSION = "0.1.0"
MAX_TOKEN_BYTES = 8 * 1024
MAX_PROOF_BYTES = 2 * 1024
MAX_AUDIENCES = 16
MAX_TEXT = 512  # iss, sub, aud entries, jti
_HEADER_KEYS = frozenset({"alg", "typ", "kid"})
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode


@dataclass(frozen=True)
class Policy:
    """What a verifier accepts. There is no default audience: a token is always checked for this server."""

    trusted_issuers: frozenset[str]
    audience: str
    leeway: int = 30  # seconds of clock skew tolerated on iat, nbf and exp
    max_lifetime: int = 600  # exp - iat above this is refused (short-lived tokens only)
    required_claims: tuple[str, ...] = ("agent_identity",)
    require_proof: bool = False  # refuse tokens that are not bound to a key (cnf)
    max_token_bytes: int = MAX_TOKEN_BYTES

    def __post_init__(self) -> None:
        if not self.audience or not isinstance(self.audience, str):
            raise errors.PolicyError("a verifier needs its own audience (the server's URL or name)")
        if not self.trusted_issuers or not all(isinstance(i, str) and i for i in self.trusted_issuers):
            raise errors.PolicyError("a verifier needs at least one trusted issuer")
        if not 0 <= self.leeway <= 300 or self.max_lifetime <= 0:
            raise errors.PolicyError("leeway is 0..300 s and max_lifetime positive")


@dataclass(frozen=True)
class Verified:
    """A token that passed every check: who vouches (issuer, key), for whom (subject, identity), until when."""

    issuer: str
    subject: str
    kid: str
    jti: str
    issued_at: int
    expires_at: int
    identity: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    integrity: dict[str, Any] = field(default_factory=dict)
    holder: PublicKey | None = field(default=None, repr=False)  # the cnf key: each use needs its proof

    @property
    def key_bound(self) -> bool:
        return self.holder is not None

    def as_dict(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "subject": self.subject, "kid": self.kid, "jti": self.jti,
                "issued_at": self.issued_at, "expires_at": self.expires_at, "identity": self.identity,
                "metadata": self.metadata, "integrity": self.integrity, "key_bound": self.key_bound}


@dataclass(frozen=True)
class Proof:
    jti: str
    expires_at: int  # when its jti may be forgotten


@dataclass(frozen=True)
class Request:
    """What a proof of possession is for: one tool call (its name and arguments)."""

    tool: str
    arguments: Mapping[str, Any] | None

    def digest(self) -> str:
        """base64url(sha256(RFC 8785 canonical JSON of the arguments)): the same bytes in any language. RFC 8785
        stops at integers of 2^53 (I-JSON); larger ones (64-bit ids) are written as their decimal digits."""
        big: dict[str, str] = {}

        def safe(value: Any) -> Any:
            if isinstance(value, bool) or not isinstance(value, int | dict | list | tuple):
                return value
            if isinstance(value, int):
                if -(2**53) < value < 2**53:
                    return value
                big[marker := f"\u0000int:{len(big)}\u0000"] = str(value)
                return marker
            if isinstance(value, dict):
                return {k: safe(v) for k, v in value.items()}
            return [safe(v) for v in value]

        try:
            canonical = rfc8785.dumps(safe(dict(self.arguments or {})))
        except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as e:
            raise errors.BadProof(f"the tool's arguments have no canonical JSON form (RFC 8785): {e}") from None
        for marker, digits in big.items():
            canonical = canonical.replace(json.dumps(marker).encode(), digits.encode(), 1)
        return b64url(hashlib.sha256(canonical).digest())


@dataclass(frozen=True)
class Parsed:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes

    @property
    def kid(self) -> str:
        return str(self.header["kid"])


# ---------------------------------------------------------------- making tokens


class Issuer:
    """Signs attestation tokens for agents (a model provider's or an enterprise's service)."""

    def __init__(self, issuer: str, key: SigningKey, lifetime: int = 300,
                 clock: Callable[[], float] = time.time) -> None:
        if not issuer or len(issuer) > MAX_TEXT:
            raise errors.PolicyError("an issuer is a URL of 1..512 characters")
        self.issuer, self.key, self.lifetime, self.clock = issuer, key, lifetime, clock
        self._header = b64url(_dumps({"alg": "Ed25519", "typ": TOKEN_TYPE, "kid": key.kid}).encode())

    def issue(self, audience: str | list[str], identity: Mapping[str, Any], *, subject: str | None = None,
              metadata: Mapping[str, Any] | None = None, integrity: Mapping[str, Any] | None = None,
              holder: PublicKey | None = None, lifetime: int | None = None, now: int | None = None) -> str:
        """A token for `audience`; with `holder`, bound to that key (the agent proves possession per use)."""
        at = int(self.clock()) if now is None else now
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject or f"agent:{identity.get('provider', 'unknown')}/{identity.get('model_version', '')}",
            "aud": audience, "iat": at, "nbf": at, "exp": at + (lifetime or self.lifetime),
            "jti": secrets.token_urlsafe(16),
            "agent_identity": dict(identity),
            "attestation_metadata": {"attestation_version": VERSION, **(metadata or {})},
        }
        if integrity:
            claims["agent_integrity"] = dict(integrity)
        if holder is not None:
            claims["cnf"] = {"jwk": holder.jwk()}
        return sign(self.key, self._header, claims)


def sign(key: SigningKey, header_b64: str, claims: Mapping[str, Any]) -> str:
    signing_input = f"{header_b64}.{b64url(_dumps(claims).encode())}"
    return f"{signing_input}.{b64url(key.sign(signing_input.encode('ascii')))}"


def make_proof(holder: SigningKey, token: str, audience: str, now: int | None = None,
               request: Request | None = None) -> str:
    """The holder's proof of possession for one presentation of `token` to `audience` (for `request`: one tool
    call, so a captured proof cannot carry other arguments or another tool)."""
    header = b64url(_dumps({"alg": "Ed25519", "typ": PROOF_TYPE}).encode())
    claims: dict[str, Any] = {"aud": audience, "iat": int(time.time()) if now is None else now,
                              "jti": secrets.token_urlsafe(16), "ath": _token_hash(token)}
    if request is not None:
        claims["tool"], claims["args"] = request.tool, request.digest()
    return sign(holder, header, claims)


def _token_hash(token: str) -> str:
    return b64url(hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest())


# ---------------------------------------------------------------- checking tokens


def parse(token: object, max_bytes: int = MAX_TOKEN_BYTES, typ: str = TOKEN_TYPE, kid_required: bool = True) -> Parsed:
    """Structure only: size, three strict base64url parts, the header profile, a JSON object of claims."""
    if not isinstance(token, str):
        raise errors.Malformed("a token is a string")
    if len(token) > max_bytes:
        raise errors.Oversized(f"a token of {len(token)} bytes (at most {max_bytes})")
    if not token.isascii():
        raise errors.Malformed("a token is ASCII")
    parts = token.split(".")
    if len(parts) != 3:
        raise errors.Malformed("a compact JWS has three dot-separated parts")
    header = _json_object(unb64url(parts[0], "the header"), "the header")
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise errors.UnsupportedAlgorithm(f"alg {alg!r} is not accepted (only {' or '.join(ALGORITHMS)})")
    extra = header.keys() - _HEADER_KEYS
    if extra:
        raise errors.Malformed(f"header members {sorted(extra)} are not accepted (only alg, typ, kid)")
    if header.get("typ") != typ:
        raise errors.WrongType(f"typ {header.get('typ')!r} is not {typ!r}")
    if kid_required or "kid" in header:
        check_kid(header.get("kid"))
    claims = _json_object(unb64url(parts[1], "the claims"), "the claims")
    signature = unb64url(parts[2], "the signature")
    if len(signature) != 64:
        raise errors.BadSignature("an Ed25519 signature is 64 bytes")
    return Parsed(header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), signature)


def check(parsed: Parsed, key: PublicKey, policy: Policy, now: int) -> Verified:
    """Signature, then every claim against `policy` at time `now`. Replay and proofs are the caller's (stateful)."""
    if not key.verify(parsed.signature, parsed.signing_input):
        raise errors.BadSignature(f"the signature does not verify with key {key.kid!r}")
    c = parsed.claims
    iss, sub, jti = _text(c, "iss"), _text(c, "sub"), _text(c, "jti")
    iat = _int(c, "iat")
    nbf, exp = _int(c, "nbf", iat), _int(c, "exp")
    aud = c.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list) or not 0 < len(audiences) <= MAX_AUDIENCES or \
            not all(isinstance(a, str) and len(a) <= MAX_TEXT for a in audiences):
        raise errors.Malformed(f"aud is a string or a list of 1..{MAX_AUDIENCES} strings")
    if policy.audience not in audiences:
        raise errors.WrongAudience(f"the token is for {audiences}, not {policy.audience!r}")
    if iat > now + policy.leeway:
        raise errors.ClockSkew(f"issued {iat - now} s in the future (tolerance {policy.leeway} s)")
    if exp - iat > policy.max_lifetime:
        raise errors.ClockSkew(f"valid for {exp - iat} s; this server accepts at most {policy.max_lifetime} s")
    check_expiry(exp, policy, now)
    if now < nbf - policy.leeway:
        raise errors.NotYetValid(f"valid in {nbf - now} s")
    for name in policy.required_claims:
        if name not in c:
            raise errors.MissingClaim(f"the claim {name!r} is required")
    identity, metadata, integrity = (_object(c, n) for n in ("agent_identity", "attestation_metadata",
                                                               "agent_integrity"))
    holder = None
    if "cnf" in c:
        try:
            holder = public_from_jwk(_object(c, "cnf").get("jwk"))
        except errors.AttestationError as e:
            raise errors.BadProof(f"the token's cnf key is unusable: {e.message}") from None
    elif policy.require_proof:
        raise errors.ProofRequired("this server accepts only tokens bound to the agent's key (cnf)")
    return Verified(iss, sub, parsed.kid, jti, iat, exp, identity, metadata, integrity, holder)


def check_expiry(exp: int, policy: Policy, now: int) -> None:
    if now >= exp + policy.leeway:
        raise errors.Expired(f"expired {now - exp} s ago")


PROOF_WINDOW = 60  # seconds a proof of possession is fresh on either side of `now` (plus the leeway)


def check_proof(proof: str | None, agent: Verified, token: str, policy: Policy, now: int,
                request: Request | None = None) -> Proof:
    """The holder's proof for this presentation of `token` to this server (and, given `request`, for that tool
    call: tool name and arguments must match); its jti is the caller's to spend."""
    if agent.holder is None:
        raise errors.BadProof("the token is not bound to a key")
    if proof is None:
        raise errors.ProofRequired("the token is bound to the agent's key (cnf): a proof of possession is needed")
    try:
        p = parse(proof, MAX_PROOF_BYTES, PROOF_TYPE, kid_required=False)
    except errors.AttestationError as e:
        raise errors.BadProof(f"the proof of possession is unusable: {e.message}") from None
    if not agent.holder.verify(p.signature, p.signing_input):
        raise errors.BadProof("the proof of possession is not signed by the token's cnf key")
    if p.claims.get("ath") != _token_hash(token):
        raise errors.BadProof("the proof of possession is for another token")
    if request is not None and (p.claims.get("tool") != request.tool or p.claims.get("args") != request.digest()):
        raise errors.BadProof("the proof of possession is for another tool call (tool or arguments differ)")
    if p.claims.get("aud") != policy.audience:
        raise errors.BadProof(f"the proof of possession is for {str(p.claims.get('aud'))[:200]!r}, not this server")
    at = p.claims.get("iat")
    window = PROOF_WINDOW + policy.leeway
    if not isinstance(at, int) or isinstance(at, bool) or now - at > window or at > now + policy.leeway:
        raise errors.BadProof("the proof of possession is not fresh (made more than 60 s ago, or in the future)")
    try:
        jti = _text(p.claims, "jti")
    except errors.AttestationError:
        raise errors.BadProof("the proof of possession needs a jti of 1..512 characters") from None
    return Proof(jti, at + window + 1)  # remembered through the last second in which it is fresh


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise errors.Malformed(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise errors.Malformed(f"{what} is not a JSON object")
    return value


def _text(c: Mapping[str, Any], name: str) -> str:
    v = c.get(name)
    if not isinstance(v, str) or not 0 < len(v) <= MAX_TEXT:
        raise errors.MissingClaim(f"the claim {name!r} must be text of 1..{MAX_TEXT} characters")
    try:
        v.encode("utf-8")  # JSON allows lone surrogates; they identify nothing here
    except UnicodeEncodeError:
        raise errors.Malformed(f"the claim {name!r} is not valid Unicode") from None
    return v


def _int(c: Mapping[str, Any], name: str, default: int | None = None) -> int:
    v = c.get(name, default)
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << 53:
        raise errors.MissingClaim(f"the claim {name!r} must be a NumericDate (whole seconds)")
    return v


def _object(c: Mapping[str, Any], name: str) -> dict[str, Any]:
    v = c.get(name, {})
    if not isinstance(v, dict):
        raise errors.Malformed(f"the claim {name!r} must be a JSON object")
    return v


def inspect(token: str) -> dict[str, Any]:
    """Header and claims without any check (for `prometheus attest inspect`): never a verdict."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise errors.Malformed("a compact JWS has three dot-separated parts")
    return {"header": _json_object(unb64url(parts[0], "the header"), "the header"),
            "claims": _json_object(unb64url(parts[1], "the claims"), "the claims"),
            "signature_bytes": len(unb64url(parts[2], "the signature"))}
