"""One exception tree for every way an attestation can fail (docs/attest.md lists them).

Each failure is its own class with a stable `code` (what logs, metrics, JSON output and MCP error data
carry) and a JSON-RPC error number in the range MCP servers use for application errors. Verification never
falls back: whatever is not proven is one of these.
"""

from __future__ import annotations


class AttestationError(Exception):
    """Base class: `code` names the failure, `rpc_code` is what an MCP server answers with."""

    code = "attestation_error"
    rpc_code = -32002

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message}


class CryptoUnavailable(AttestationError):
    code = "crypto_unavailable"


class MissingToken(AttestationError):
    code = "attestation_required"
    rpc_code = -32001


class Oversized(AttestationError):
    code = "oversized"


class Malformed(AttestationError):
    code = "malformed"


class UnsupportedAlgorithm(AttestationError):
    code = "unsupported_algorithm"


class WrongType(AttestationError):
    code = "wrong_type"


class UntrustedIssuer(AttestationError):
    code = "untrusted_issuer"
    rpc_code = -32005


class UnknownKey(AttestationError):
    code = "unknown_key"


class KeyConfusion(AttestationError):
    code = "key_confusion"


class KeyUnavailable(AttestationError):
    """The issuer's JWKS could not be fetched and no usable copy is cached."""

    code = "jwks_unavailable"


class BadSignature(AttestationError):
    code = "bad_signature"


class WrongAudience(AttestationError):
    code = "wrong_audience"


class Expired(AttestationError):
    code = "expired"
    rpc_code = -32003


class NotYetValid(AttestationError):
    code = "not_yet_valid"


class ClockSkew(AttestationError):
    """Issued in the future beyond the tolerated skew, or valid for longer than the policy allows."""

    code = "clock_skew"


class MissingClaim(AttestationError):
    code = "missing_claim"
    rpc_code = -32006


class ProofRequired(AttestationError):
    """The token binds a key (`cnf`) and no proof of possession came with it."""

    code = "proof_required"


class BadProof(AttestationError):
    code = "bad_proof"


class Replay(AttestationError):
    code = "replay"
    rpc_code = -32004


class ReplayCacheFull(AttestationError):
    """The in-memory replay cache is at capacity: refuse rather than forget a live token id."""

    code = "replay_cache_full"


class ReplayCacheUnavailable(AttestationError):
    code = "replay_cache_unavailable"


class PolicyError(AttestationError):
    """A configuration that would accept more than intended (e.g. no audience)."""

    code = "policy_error"


ALL: tuple[type[AttestationError], ...] = (
    CryptoUnavailable, MissingToken, Oversized, Malformed, UnsupportedAlgorithm, WrongType, UntrustedIssuer,
    UnknownKey, KeyConfusion, KeyUnavailable, BadSignature, WrongAudience, Expired, NotYetValid, ClockSkew,
    MissingClaim, ProofRequired, BadProof, Replay, ReplayCacheFull, ReplayCacheUnavailable, PolicyError,
)
