"""Ed25519 keys as JWKs (RFC 8037): generation, key files, public JWKs and their RFC 7638 thumbprints.

Only OKP/Ed25519 keys exist here. A public JWK of any other type is refused when read, so a key set can
never hand an RSA or HMAC key to the verifier (key confusion). The signatures are libsodium's (PyNaCl): on
these machines it signs in about 22 µs and verifies in 60 µs, OpenSSL through `cryptography` in 48 and 156
(docs/benchmarks.md), and its verification is strict (non-canonical signatures, small-order keys refused).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import CryptoUnavailable, KeyConfusion, Malformed

try:
    from nacl.bindings import crypto_sign, crypto_sign_open, crypto_sign_seed_keypair
    from nacl.exceptions import BadSignatureError, CryptoError
except ImportError:  # pragma: no cover - exercised by a test that hides the library
    crypto_sign = crypto_sign_open = crypto_sign_seed_keypair = None  # type: ignore[assignment]
    BadSignatureError = CryptoError = Exception  # type: ignore[assignment,misc]

MAX_KID = 128
ALGORITHMS = ("Ed25519", "EdDSA")  # RFC 9864's fully specified name first; RFC 8037's still accepted


def require_crypto() -> None:
    if crypto_sign_open is None:
        raise CryptoUnavailable("PyNaCl (libsodium) is not importable: no token can be made or checked")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def unb64url(text: str | bytes, what: str) -> bytes:
    """Strict base64url without padding: anything else is malformed (no second encoding of one token)."""
    raw = text.encode("ascii", "replace") if isinstance(text, str) else text
    if raw.translate(None, _B64URL) or len(raw) % 4 == 1:
        raise Malformed(f"{what} is not base64url without padding")
    decoded = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    if b64url(decoded).encode() != raw:
        raise Malformed(f"{what} is not canonical base64url")
    return decoded


def thumbprint(x: str) -> str:
    """RFC 7638 thumbprint of an Ed25519 public JWK: the default `kid`."""
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


@dataclass(frozen=True)
class PublicKey:
    kid: str
    raw: bytes  # the 32-byte Ed25519 public key
    x: str

    def jwk(self) -> dict[str, str]:
        return {"kty": "OKP", "crv": "Ed25519", "x": self.x, "kid": self.kid, "use": "sig", "alg": "Ed25519"}

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            crypto_sign_open(signature + message, self.raw)
            return True
        except (BadSignatureError, CryptoError, ValueError, TypeError):
            return False


def check_kid(kid: object) -> str:
    if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID or not kid.isprintable():
        raise Malformed(f"kid must be printable text of 1..{MAX_KID} characters")
    return kid


def public_from_jwk(jwk: object) -> PublicKey:
    """A public Ed25519 key from its JWK; any other key type is key confusion, a bad field malformed."""
    require_crypto()
    if not isinstance(jwk, dict):
        raise Malformed("a JWK is a JSON object")
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise KeyConfusion(f"key {jwk.get('kid')!r} is {jwk.get('kty')}/{jwk.get('crv')}, not OKP/Ed25519")
    if "d" in jwk:
        raise Malformed("a public key set must not carry private key material ('d')")
    if jwk.get("alg") not in (None, *ALGORITHMS) or jwk.get("use") not in (None, "sig"):
        raise KeyConfusion(f"key {jwk.get('kid')!r} is declared for alg={jwk.get('alg')} use={jwk.get('use')}")
    x = jwk.get("x")
    raw = unb64url(x, "the key's x") if isinstance(x, str) else b""
    if len(raw) != 32:
        raise Malformed("an Ed25519 public key is 32 bytes")
    kid = check_kid(jwk["kid"]) if "kid" in jwk else thumbprint(str(x))
    return PublicKey(kid, raw, str(x))


@dataclass(frozen=True)
class SigningKey:
    """A private Ed25519 key (its 32-byte seed) and its `kid` (the RFC 7638 thumbprint unless named)."""

    kid: str
    seed: bytes
    _secret: bytes = b""  # libsodium's 64-byte form, derived once

    def __post_init__(self) -> None:
        require_crypto()
        if len(self.seed) != 32:
            raise Malformed("an Ed25519 private key is 32 bytes")
        object.__setattr__(self, "_secret", crypto_sign_seed_keypair(self.seed)[1])

    def __repr__(self) -> str:  # never print the seed
        return f"SigningKey(kid={self.kid!r})"

    @classmethod
    def generate(cls, kid: str | None = None) -> SigningKey:
        seed = os.urandom(32)
        return cls(check_kid(kid) if kid else thumbprint(_x(seed)), seed)

    @property
    def public(self) -> PublicKey:
        return PublicKey(self.kid, self._secret[32:], _x(self.seed))

    def sign(self, message: bytes) -> bytes:
        return bytes(crypto_sign(message, self._secret)[:64])

    def private_jwk(self) -> dict[str, str]:
        return {**self.public.jwk(), "d": b64url(self.seed)}

    @classmethod
    def from_jwk(cls, jwk: object) -> SigningKey:
        if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or \
                not isinstance(jwk.get("d"), str):
            raise Malformed("a signing key file holds an OKP/Ed25519 JWK with its private part 'd'")
        seed = unb64url(jwk["d"], "the key's d")
        if len(seed) != 32:
            raise Malformed("an Ed25519 private key is 32 bytes")
        if "x" in jwk and jwk["x"] != _x(seed):
            raise Malformed("the key file's x does not match its d")
        return cls(check_kid(jwk["kid"]) if "kid" in jwk else thumbprint(_x(seed)), seed)

    def save(self, path: Path) -> None:
        """Write the private JWK readable by its owner only (created with mode 0600, never overwritten)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.private_jwk(), f, indent=2)
            f.write("\n")

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError, RecursionError) as e:
            raise Malformed(f"cannot read the key file {path}: {type(e).__name__}: {e}") from None
        return cls.from_jwk(data)


def _x(seed: bytes) -> str:
    require_crypto()
    return b64url(crypto_sign_seed_keypair(seed)[0])


def jwks(keys: list[PublicKey]) -> dict[str, list[dict[str, str]]]:
    """A JWK Set (RFC 7517) of public keys: what an issuer serves, current and next key during rotation."""
    return {"keys": [k.jwk() for k in keys]}
