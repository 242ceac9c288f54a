"""Request ids (representation-independent hashing) and sender authentication for HTTP requests:
Ed25519 and ECDSA (secp256k1, P-256) signatures, delegation chains, anonymous senders.

Everything here treats the envelope as hostile: every field is type-checked before it is used (a blob is a
blob of bounded size, an expiration a nat64, targets a bounded list of principals), hashing is linear in the
size of what it hashes (LEB128 of big integers included), and every failure is an `AuthError` (HTTP 400).
"""

from __future__ import annotations

import hashlib
from typing import Any

import ecdsa
import nacl.exceptions
import nacl.signing

from ic_replica.candid import leb, sleb
from ic_replica.certification import ED25519_DER_PREFIX
from ic_replica.principal import ANONYMOUS, Principal

REQUEST_SEPARATOR = b"\x0aic-request"
DELEGATION_SEPARATOR = b"\x1aic-request-auth-delegation"
MAX_DELEGATIONS = 20
MAX_TARGETS = 1000
MAX_KEY_BYTES = 1024  # the DER keys we verify are under 100 bytes
MAX_SIGNATURE_BYTES = 1024
MAX_PRINCIPAL_BYTES = 29
NAT64_LIMIT = 1 << 64


class AuthError(ValueError):
    """The request is not authentic (HTTP 400 with this message)."""


def hash_value(value: Any) -> bytes:
    """The spec's representation-independent hash of one value (linear in its size)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return hashlib.sha256(bytes(value)).digest()
    if isinstance(value, str):
        return hashlib.sha256(value.encode()).digest()
    if isinstance(value, bool):
        raise AuthError("booleans have no representation-independent hash")
    if isinstance(value, int):
        return hashlib.sha256(leb(value) if value >= 0 else sleb(value)).digest()
    if isinstance(value, list):
        return hashlib.sha256(b"".join(hash_value(v) for v in value)).digest()
    if isinstance(value, dict):
        return hash_of_map(value)
    raise AuthError(f"cannot hash a value of type {type(value).__name__}")


def hash_of_map(mapping: dict[str, Any]) -> bytes:
    if not all(isinstance(k, str) for k in mapping):
        raise AuthError("map keys must be text")
    parts = sorted(hashlib.sha256(k.encode()).digest() + hash_value(v) for k, v in mapping.items())
    return hashlib.sha256(b"".join(parts)).digest()


def request_id(content: dict[str, Any]) -> bytes:
    return hash_of_map(content)


def verify_signature(public_key_der: bytes, signature: bytes, message: bytes) -> bool:
    """Ed25519 or ECDSA (secp256k1 / P-256, SHA-256, r||s) over `message`."""
    if public_key_der.startswith(ED25519_DER_PREFIX) and len(public_key_der) == len(ED25519_DER_PREFIX) + 32:
        try:
            nacl.signing.VerifyKey(public_key_der[len(ED25519_DER_PREFIX):]).verify(message, signature)
            return True
        except (nacl.exceptions.BadSignatureError, ValueError):
            return False
    try:
        key = ecdsa.VerifyingKey.from_der(public_key_der, hashfunc=hashlib.sha256,
                                          valid_curve_encodings=["named_curve"])
    except Exception as exc:  # ecdsa raises several error types for malformed DER
        raise AuthError(f"unsupported or malformed public key: {exc}") from exc
    if key.curve not in (ecdsa.SECP256k1, ecdsa.NIST256p):
        raise AuthError(f"unsupported ECDSA curve {key.curve.name}")
    if len(signature) != 64:
        return False
    if key.curve is ecdsa.SECP256k1 and int.from_bytes(signature[32:], "big") > ecdsa.SECP256k1.order // 2:
        return False  # the IC accepts only low-S (normalized) secp256k1 signatures
    try:
        return bool(key.verify(signature, message, hashfunc=hashlib.sha256, sigdecode=ecdsa.util.sigdecode_string))
    except (ecdsa.BadSignatureError, ecdsa.MalformedPointError, AssertionError):
        return False


def _blob(value: Any, what: str, max_bytes: int) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) > max_bytes:
        raise AuthError(f"{what} must be a blob of at most {max_bytes} bytes")
    return bytes(value)


def _nat64(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < NAT64_LIMIT:
        raise AuthError(f"{what} must be a nat64")
    return value


def _delegation(signed: Any, index: int) -> tuple[dict[str, Any], bytes, bytes, int, list[bytes] | None]:
    """One signed delegation, type-checked: (the delegation map, its signature, pubkey, expiration, targets)."""
    where = f"sender_delegation[{index}]"
    if not isinstance(signed, dict) or not isinstance(signed.get("delegation"), dict):
        raise AuthError(f"{where} must be a map with a delegation map")
    delegation = signed["delegation"]
    signature = _blob(signed.get("signature"), f"{where}.signature", MAX_SIGNATURE_BYTES)
    pubkey = _blob(delegation.get("pubkey"), f"{where}.delegation.pubkey", MAX_KEY_BYTES)
    expiration = _nat64(delegation.get("expiration"), f"{where}.delegation.expiration")
    raw_targets = delegation.get("targets")
    targets = None
    if raw_targets is not None:
        if not isinstance(raw_targets, list) or len(raw_targets) > MAX_TARGETS:
            raise AuthError(f"{where}.delegation.targets must be a list of at most {MAX_TARGETS} principals")
        targets = [_blob(t, f"{where}.delegation.targets[]", MAX_PRINCIPAL_BYTES) for t in raw_targets]
    return delegation, signature, pubkey, expiration, targets


def authenticate(envelope: dict[str, Any], now_ns: int, target: bytes | None, *, is_call: bool) -> bytes:
    """Check the envelope's sender, signature and delegations; returns the request id.

    `target` is the canister the request is addressed to (None for read_state, checked per path by the caller).
    """
    content = envelope.get("content")
    if not isinstance(content, dict):
        raise AuthError("the envelope has no content map")
    sender = _blob(content.get("sender"), "content.sender", MAX_PRINCIPAL_BYTES)
    rid = request_id(content)
    pubkey, sig, delegations = (envelope.get("sender_pubkey"), envelope.get("sender_sig"),
                                envelope.get("sender_delegation"))
    if sender == ANONYMOUS.raw:
        if pubkey is not None or sig is not None or delegations is not None:
            raise AuthError("an anonymous request must not carry a public key, signature or delegation")
        return rid
    if pubkey is None or sig is None:
        raise AuthError("a signed request needs sender_pubkey and sender_sig")
    key = _blob(pubkey, "sender_pubkey", MAX_KEY_BYTES)
    signature = _blob(sig, "sender_sig", MAX_SIGNATURE_BYTES)
    if Principal.self_authenticating(key).raw != sender:
        raise AuthError(f"sender {Principal(sender)} is not derived from sender_pubkey")
    chain = [] if delegations is None else delegations
    if not isinstance(chain, list) or len(chain) > MAX_DELEGATIONS:
        raise AuthError(f"sender_delegation must be a list of at most {MAX_DELEGATIONS} delegations")
    parsed = [_delegation(signed, i) for i, signed in enumerate(chain)]  # every type checked before any crypto
    seen = {key}
    for delegation, delegation_sig, delegated_key, expiration, targets in parsed:
        if not verify_signature(key, delegation_sig, DELEGATION_SEPARATOR + hash_of_map(delegation)):
            raise AuthError("invalid delegation signature")
        if expiration < now_ns:
            raise AuthError("delegation has expired")
        if targets is not None and target is not None and target not in targets:
            raise AuthError(f"the delegation does not allow requests to {Principal(target)}")
        permissions = delegation.get("permissions")
        if permissions not in (None, "all", "queries") or (permissions == "queries" and is_call):
            raise AuthError("the delegation does not permit this request")
        if delegated_key in seen:
            raise AuthError("delegation chain repeats a key")
        seen.add(delegated_key)
        key = delegated_key
    if not verify_signature(key, signature, REQUEST_SEPARATOR + rid):
        raise AuthError("invalid signature")
    return rid
