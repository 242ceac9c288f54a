"""Agent attestation for MCP (seed 003): who an agent is and who vouches for it, as short-lived Ed25519-signed
JWTs an agent presents in MCP's `experimental` capability and servers verify (docs/attest.md).

Layers, one module each: `keys` (Ed25519 JWKs), `tokens` (make and check, the strict profile), `jwks` (issuers'
key sets over HTTP), `replay` (spent token ids: memory or Redis), `verifier` (the checks in order),
`observability` (metrics, events), `mcp` (client session and server extension on the official SDK),
`attacks` (the attack suite), `errors` (one exception tree).
"""

from .errors import AttestationError
from .jwks import JWKSKeys, StaticKeys
from .keys import PublicKey, SigningKey
from .replay import MemoryReplayCache, RedisReplayCache
from .tokens import Issuer, Policy, Verified, make_proof
from .verifier import Verifier

__all__ = ["AttestationError", "Issuer", "JWKSKeys", "MemoryReplayCache", "Policy", "PublicKey",
           "RedisReplayCache", "SigningKey", "StaticKeys", "Verified", "Verifier", "make_proof"]
