"""Request ids (representation-independent hashing) and sender authentication for HTTP requests:
Ed25519 and ECDSA (secp256k1, P-256) signatures, delegation chains, anonymous senders."""

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


class AuthError(ValueError):
    """The request is not authentic (HTTP 400 with this message)."""


def hash_value(value: Any) -> bytes:
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
        key = ecdsa.VerifyingKey.from_der(public_key_der, hashfunc=hashlib.sha256)
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


def authenticate(envelope: dict[str, Any], now_ns: int, target: bytes | None, *, is_call: bool) -> bytes:
    """Check the envelope's sender, signature and delegations; returns the request id.

    `target` is the canister the request is addressed to (None for read_state, checked per path by the caller).
    """
    content = envelope.get("content")
    if not isinstance(content, dict):
        raise AuthError("the envelope has no content map")
    sender = content.get("sender")
    if not isinstance(sender, (bytes, bytearray)) or len(sender) > 29:
        raise AuthError("content.sender is missing or not a principal")
    rid = request_id(content)
    pubkey, sig, delegations = (envelope.get("sender_pubkey"), envelope.get("sender_sig"),
                                envelope.get("sender_delegation"))
    if bytes(sender) == ANONYMOUS.raw:
        if pubkey is not None or sig is not None or delegations is not None:
            raise AuthError("an anonymous request must not carry a public key, signature or delegation")
        return rid
    if not isinstance(pubkey, (bytes, bytearray)) or not isinstance(sig, (bytes, bytearray)):
        raise AuthError("a signed request needs sender_pubkey and sender_sig")
    if Principal.self_authenticating(bytes(pubkey)).raw != bytes(sender):
        raise AuthError(f"sender {Principal(bytes(sender))} is not derived from sender_pubkey")
    key = bytes(pubkey)
    seen = {key}
    chain = delegations or []
    if not isinstance(chain, list) or len(chain) > MAX_DELEGATIONS:
        raise AuthError(f"sender_delegation must be a list of at most {MAX_DELEGATIONS} delegations")
    for signed in chain:
        delegation = signed.get("delegation") if isinstance(signed, dict) else None
        if not isinstance(delegation, dict) or not isinstance(signed.get("signature"), (bytes, bytearray)):
            raise AuthError("malformed delegation")
        if not verify_signature(key, bytes(signed["signature"]), DELEGATION_SEPARATOR + hash_of_map(delegation)):
            raise AuthError("invalid delegation signature")
        if not isinstance(delegation.get("expiration"), int) or delegation["expiration"] < now_ns:
            raise AuthError("delegation has expired")
        targets = delegation.get("targets")
        if targets is not None:
            if not isinstance(targets, list) or len(targets) > MAX_TARGETS:
                raise AuthError("malformed delegation targets")
            if target is not None and target not in [bytes(t) for t in targets]:
                raise AuthError(f"the delegation does not allow requests to {Principal(target)}")
        permissions = delegation.get("permissions")
        if permissions not in (None, "all", "queries") or (permissions == "queries" and is_call):
            raise AuthError("the delegation does not permit this request")
        key = bytes(delegation["pubkey"])
        if key in seen:
            raise AuthError("delegation chain repeats a key")
        seen.add(key)
    if not verify_signature(key, bytes(sig), REQUEST_SEPARATOR + rid):
        raise AuthError("invalid signature")
    return rid
