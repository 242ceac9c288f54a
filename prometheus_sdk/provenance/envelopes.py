"""DSSE envelopes (securesystemslib's `Envelope`: PAE, JSON form) signed with a verifier's IC identity.

An envelope carries one signature; its `keyid` is the signer's principal, which is the SHA-224 of the DER
public key (self-authenticating) -- so checking a signature against an on-chain principal needs no PKI. Keys:
Ed25519 (RFC 8032, over the PAE bytes), secp256k1 and P-256 (ECDSA over SHA-256 of the PAE, raw `r || s`, low
S): the key types of IC identities. The envelope's JSON is canonical (RFC 8785) and its sha256 is the `envelope
hash` the registry records. Parsing is strict: one byte changed anywhere is an error, never the same envelope.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from securesystemslib.dsse import Envelope
from securesystemslib.signer import Signature

from prometheus_sdk.principal import Principal
from prometheus_sdk.provenance import statements, strict
from prometheus_sdk.provenance.statements import PAYLOAD_TYPE, Parsed, StatementError

_ORDERS = {  # the group orders of the ECDSA curves IC identities use (low S: s <= order / 2)
    "secp256k1": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141,
    "secp256r1": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
}
MAX_PUBLIC_KEY_BYTES = 100


class EnvelopeError(StatementError):
    """An envelope that does not verify: bad encoding, signature, key or statement."""


@dataclass(frozen=True)
class SignedStatement:
    """An envelope with the public key that signed it."""

    envelope: Envelope
    public_key: bytes  # DER SubjectPublicKeyInfo

    @property
    def signer(self) -> Principal:
        return Principal.self_authenticating(self.public_key)

    @property
    def signature(self) -> bytes:
        (sig,) = self.envelope.signatures.values()
        return bytes.fromhex(sig.signature)

    def to_json(self) -> bytes:
        """The envelope's canonical JSON."""
        return bytes(rfc8785.dumps(self.envelope.to_dict()))

    @property
    def digest(self) -> str:
        """The envelope hash: sha256 of its canonical JSON, as the registry records it."""
        return hashlib.sha256(self.to_json()).hexdigest()


def sign(identity: Any, statement: dict[str, Any]) -> SignedStatement:
    """Sign `statement` (canonical JSON) with an icp-py-core identity (Ed25519 or secp256k1)."""
    envelope = Envelope(statements.encode(statement), PAYLOAD_TYPE, {})
    der, sig = identity.sign(envelope.pae())
    if der is None or sig is None:
        raise EnvelopeError("the anonymous identity cannot sign")
    keyid = Principal.self_authenticating(der).to_text()
    envelope.signatures[keyid] = Signature(keyid, sig.hex())
    return SignedStatement(envelope, der)


def from_parts(payload: bytes, payload_type: str, signature: bytes, public_key: bytes) -> SignedStatement:
    """An envelope as the registry stores it (its parts); the key id is the key's principal."""
    keyid = Principal.self_authenticating(public_key).to_text()
    return SignedStatement(Envelope(payload, payload_type, {keyid: Signature(keyid, signature.hex())}), public_key)


def from_json(data: bytes, public_key: bytes) -> SignedStatement:
    """Parse an envelope's canonical JSON strictly (exact keys, canonical base64 and JSON)."""
    try:
        obj = json.loads(data.decode("utf-8"),
                         object_pairs_hook=strict.no_duplicates(EnvelopeError, "an envelope with a repeated key"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise EnvelopeError("an envelope is JSON") from None
    if not isinstance(obj, dict) or set(obj) != {"payload", "payloadType", "signatures"}:
        raise EnvelopeError("an envelope has exactly payload, payloadType and signatures")
    sigs = obj["signatures"]
    if (not isinstance(sigs, list) or len(sigs) != 1 or not isinstance(sigs[0], dict)
            or set(sigs[0]) != {"keyid", "sig"}):
        raise EnvelopeError("one signature: {keyid, sig}")
    if bytes(rfc8785.dumps(obj)) != data:
        raise EnvelopeError("an envelope in canonical JSON (RFC 8785)")
    if not isinstance(obj["payloadType"], str):
        raise EnvelopeError("payloadType is a string")
    signed = from_parts(strict.b64(obj["payload"], EnvelopeError, "payload"), obj["payloadType"],
                        strict.b64(sigs[0]["sig"], EnvelopeError, "sig"), public_key)
    if sigs[0]["keyid"] != signed.signer.to_text():
        raise EnvelopeError("the keyid is not the signing key's principal")
    return signed


def _check_signature(public_key: bytes, message: bytes, sig: bytes) -> None:
    if len(public_key) > MAX_PUBLIC_KEY_BYTES:
        raise EnvelopeError("a public key of at most 100 bytes")
    try:
        key = serialization.load_der_public_key(public_key)
    except (ValueError, TypeError):
        raise EnvelopeError("the public key is not a DER SubjectPublicKeyInfo") from None
    canonical = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if canonical != public_key:
        raise EnvelopeError("the public key is not in its canonical DER form")
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            if len(sig) != 64:
                raise EnvelopeError("an Ed25519 signature is 64 bytes")
            key.verify(sig, message)
        elif isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _ORDERS:
            if len(sig) != 64:
                raise EnvelopeError("an ECDSA signature is 64 bytes (r || s)")
            r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
            if not 0 < s <= _ORDERS[key.curve.name] // 2:
                raise EnvelopeError("an ECDSA signature has a low S")
            key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
        else:
            raise EnvelopeError("keys are Ed25519, secp256k1 or P-256")
    except InvalidSignature:
        raise EnvelopeError("the signature does not verify") from None


def verify(signed: SignedStatement) -> Parsed:
    """Check the signature (by the key whose principal is the key id) and the statement; its parts."""
    envelope = signed.envelope
    if envelope.payload_type != PAYLOAD_TYPE:
        raise EnvelopeError(f"payloadType is {PAYLOAD_TYPE}")
    if len(envelope.signatures) != 1:
        raise EnvelopeError("one signature")
    (keyid,) = envelope.signatures
    if keyid != signed.signer.to_text():
        raise EnvelopeError("the keyid is not the signing key's principal")
    _check_signature(signed.public_key, envelope.pae(), signed.signature)
    parsed = statements.parse(envelope.payload)
    if parsed.verifier_id != statements.VERIFIER_URI + keyid:
        raise EnvelopeError("the statement names another verifier than its signer")
    return parsed
