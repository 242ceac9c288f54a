"""Threshold keys simulated with ordinary ones: ECDSA secp256k1, Schnorr BIP-340 and Ed25519.

The IC holds each master key secret-shared among a subnet's nodes; here one process holds it, derived
deterministically from a per-replica seed and the key's name, so a replica answers the same public keys every
time (and after a restart, the seed being the subnet id, which persists with the network keys). Key names are
PocketIC's: `dfx_test_key`, `test_key_1` and `key_1`.

Derivation follows the IC's, so derived keys relate to the master key as on the IC:
- secp256k1 (ECDSA and BIP-340): the IC's extended BIP-32, non-hardened: the path is the caller's principal
  followed by `derivation_path`, each element an arbitrary byte string; per element,
  `I = HMAC-SHA512(chain_code, compressed(P) || element)`, `P' = P + I[:32]·G`, chain code `I[32:]` (if `I[:32]`
  is not below the group order, the IC's rule retries with the element `0x01 || I[32:] || element`). The
  master chain code is 32 zero bytes.
- Ed25519: the IC's `ic-ed25519` derivation, per element `okm = HKDF-SHA512(salt=chain_code,
  ikm=A || element, info="Ed25519", 96 bytes)`, `A' = A + (okm[:64] mod l)·B`, chain code `okm[64:]`.
Signatures are standard and verify with any library: ECDSA 64 bytes `r || s` with low `s` (RFC 6979 nonces),
BIP-340 64 bytes (with the BIP-341 taproot tweak when `aux` carries a merkle root), Ed25519 64 bytes.
"""

from __future__ import annotations

import hashlib
import hmac

import nacl.bindings as sodium
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from ecdsa import SECP256k1, SigningKey
from ecdsa.ellipticcurve import INFINITY, PointJacobi
from ecdsa.util import sigencode_string_canonize

KEY_NAMES = ("dfx_test_key", "test_key_1", "key_1")
MAX_DERIVATION_PATH = 255

_G = SECP256k1.generator
_N = SECP256k1.order
_P = SECP256k1.curve.p()


class ThresholdKeyError(Exception):
    """A request the key cannot serve (bad derivation path, message, aux)."""


# ---------------------------------------------------------------- secp256k1


def _compressed(point: PointJacobi) -> bytes:
    x, y = point.x(), point.y()
    return bytes([2 + (y & 1)]) + x.to_bytes(32, "big")


def _secp_master(seed: bytes, name: str) -> int:
    counter = 0
    while True:
        d = int.from_bytes(hashlib.sha256(b"ic_replica/secp256k1/" + seed + name.encode() + bytes([counter])).digest(),
                           "big")
        if 0 < d < _N:
            return d
        counter += 1


def secp256k1_derive(seed: bytes, name: str, path: list[bytes]) -> tuple[int, PointJacobi, bytes]:
    """(secret, public point, chain code) of the key derived along `path` (caller principal first)."""
    d = _secp_master(seed, name)
    point = _G * d
    chain = bytes(32)
    for element in path:
        data = element
        while True:
            mac = hmac.new(chain, _compressed(point) + data, hashlib.sha512).digest()
            offset, next_chain = int.from_bytes(mac[:32], "big"), mac[32:]
            candidate = point + _G * offset if offset < _N else INFINITY
            if offset < _N and candidate != INFINITY:
                break
            data = b"\x01" + next_chain + element  # SLIP-10's retry, as the IC does (never happens in practice)
        d, point, chain = (d + offset) % _N, candidate, next_chain
    return d, point, chain


def ecdsa_public_key(seed: bytes, name: str, path: list[bytes]) -> tuple[bytes, bytes]:
    _, point, chain = secp256k1_derive(seed, name, path)
    return _compressed(point), chain


def sign_with_ecdsa(seed: bytes, name: str, path: list[bytes], message_hash: bytes) -> bytes:
    if len(message_hash) != 32:
        raise ThresholdKeyError(f"message_hash must be 32 bytes, got {len(message_hash)}")
    d, _, _ = secp256k1_derive(seed, name, path)
    key = SigningKey.from_secret_exponent(d, curve=SECP256k1, hashfunc=hashlib.sha256)
    return bytes(key.sign_digest_deterministic(message_hash, hashfunc=hashlib.sha256,
                                               sigencode=sigencode_string_canonize))


def _tagged_hash(tag: str, data: bytes) -> bytes:
    t = hashlib.sha256(tag.encode()).digest()
    return hashlib.sha256(t + t + data).digest()


def sign_bip340(seed: bytes, name: str, path: list[bytes], message: bytes, merkle_root: bytes | None) -> bytes:
    """A BIP-340 signature; with `merkle_root` (BIP-341), by the taproot-tweaked key."""
    d, point, _ = secp256k1_derive(seed, name, path)
    if point.y() & 1:
        d = _N - d
    if merkle_root is not None:
        if len(merkle_root) not in (0, 32):
            raise ThresholdKeyError(f"bip341 merkle_root_hash must be 0 or 32 bytes, got {len(merkle_root)}")
        tweak = int.from_bytes(_tagged_hash("TapTweak", point.x().to_bytes(32, "big") + merkle_root), "big")
        if tweak >= _N:
            raise ThresholdKeyError("bip341 tweak is not below the group order")
        d = (d + tweak) % _N
        point = _G * d
        if point.y() & 1:
            d = _N - d
    px = point.x().to_bytes(32, "big")
    aux = hashlib.sha256(b"ic_replica/bip340-aux" + message).digest()  # deterministic, as good as random here
    t = (d ^ int.from_bytes(_tagged_hash("BIP0340/aux", aux), "big")).to_bytes(32, "big")
    k = int.from_bytes(_tagged_hash("BIP0340/nonce", t + px + message), "big") % _N
    if k == 0:
        raise ThresholdKeyError("nonce is zero")
    r_point = _G * k
    if r_point.y() & 1:
        k = _N - k
    rx = r_point.x().to_bytes(32, "big")
    e = int.from_bytes(_tagged_hash("BIP0340/challenge", rx + px + message), "big") % _N
    return rx + ((k + e * d) % _N).to_bytes(32, "big")


# ---------------------------------------------------------------- ed25519


def _ed_master(seed: bytes, name: str) -> bytes:
    return sodium.crypto_core_ed25519_scalar_reduce(hashlib.sha512(b"ic_replica/ed25519/" + seed + name.encode())
                                                    .digest())


def ed25519_derive(seed: bytes, name: str, path: list[bytes]) -> tuple[bytes, bytes, bytes]:
    """(secret scalar, public key, chain code) of the key derived along `path`."""
    a = _ed_master(seed, name)
    public = sodium.crypto_scalarmult_ed25519_base_noclamp(a)
    chain = bytes(32)
    for element in path:
        okm = HKDF(algorithm=hashes.SHA512(), length=96, salt=chain, info=b"Ed25519").derive(public + element)
        offset = sodium.crypto_core_ed25519_scalar_reduce(okm[:64])
        public = sodium.crypto_core_ed25519_add(public, sodium.crypto_scalarmult_ed25519_base_noclamp(offset))
        a = sodium.crypto_core_ed25519_scalar_add(a, offset)
        chain = okm[64:]
    return a, public, chain


def sign_ed25519(seed: bytes, name: str, path: list[bytes], message: bytes) -> bytes:
    a, public, _ = ed25519_derive(seed, name, path)
    prefix = hashlib.sha512(b"ic_replica/ed25519-nonce" + a).digest()[:32]
    r = sodium.crypto_core_ed25519_scalar_reduce(hashlib.sha512(prefix + message).digest())
    big_r = sodium.crypto_scalarmult_ed25519_base_noclamp(r)
    k = sodium.crypto_core_ed25519_scalar_reduce(hashlib.sha512(big_r + public + message).digest())
    s = sodium.crypto_core_ed25519_scalar_add(r, sodium.crypto_core_ed25519_scalar_mul(k, a))
    return bytes(big_r + s)


def schnorr_public_key(seed: bytes, algorithm: str, name: str, path: list[bytes]) -> tuple[bytes, bytes]:
    if algorithm == "ed25519":
        _, public, chain = ed25519_derive(seed, name, path)
        return bytes(public), chain
    _, point, chain = secp256k1_derive(seed, name, path)
    return _compressed(point), chain
