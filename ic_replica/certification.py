"""The network's keys and certificates: a BLS12-381 (min-sig) root key that signs state trees, and an
Ed25519 node key that signs query responses. Keys persist in the state directory (`network-keys.json`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
import nacl.signing
import pyblst

from ic_replica import hash_tree
from ic_replica.principal import Principal

BLS_DST = b"BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_"
STATE_ROOT_SEPARATOR = b"\x0dic-state-root"
# DER SubjectPublicKeyInfo prefix for an IC BLS12-381 G2 public key (OIDs 1.3.6.1.4.1.44668.5.3.1.2.1 / .2.1).
BLS_DER_PREFIX = bytes.fromhex("308182301d060d2b0601040182dc7c0503010201060c2b0601040182dc7c05030201036100")
ED25519_DER_PREFIX = bytes.fromhex("302a300506032b6570032100")
_G2_GENERATOR = bytes.fromhex(
    "93e02b6052719f607dacd3a088274f65596bd0d09920b61ab5da61bbdc7f5049334cf11213945d57e5ac7d055d042b7e"
    "024aa2b2f08f0a91260805272dc51051c6e47ad4fa403b02b4510b647ae3d1770bac0326a805bbefd48056c8c121bdb8")
_CURVE_ORDER = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
CBOR_SELF_DESCRIBE = 55799


def bls_public_key(secret: int) -> bytes:
    return pyblst.BlstP2Element.uncompress(_G2_GENERATOR).scalar_mul(secret).compress()


def bls_sign(secret: int, message: bytes) -> bytes:
    return pyblst.BlstP1Element.hash_to_group(message, BLS_DST).scalar_mul(secret).compress()


def bls_verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """min-sig verification: e(sig, g2) == e(H(m), pk)."""
    try:
        sig = pyblst.BlstP1Element.uncompress(signature)
        pk = pyblst.BlstP2Element.uncompress(public_key)
    except Exception:  # malformed points
        return False
    g2 = pyblst.BlstP2Element.uncompress(_G2_GENERATOR)
    h = pyblst.BlstP1Element.hash_to_group(message, BLS_DST)
    return bool(pyblst.final_verify(pyblst.miller_loop(sig, g2), pyblst.miller_loop(h, pk)))


@dataclass
class NetworkKeys:
    """The root key (whose self-authenticating principal is the subnet id) and the node key."""

    bls_secret: int
    node_seed: bytes

    @classmethod
    def generate(cls) -> NetworkKeys:
        return cls(int.from_bytes(os.urandom(48), "big") % (_CURVE_ORDER - 1) + 1, os.urandom(32))

    @classmethod
    def load_or_create(cls, state_dir: Path | None) -> NetworkKeys:
        if state_dir is None:
            return cls.generate()
        path = state_dir / "network-keys.json"
        if path.is_file():
            data = json.loads(path.read_text())
            return cls(int(data["bls_secret"], 16), bytes.fromhex(data["node_seed"]))
        keys = cls.generate()
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"bls_secret": f"{keys.bls_secret:x}", "node_seed": keys.node_seed.hex()}, f)
        os.replace(tmp, path)
        return keys

    def __post_init__(self) -> None:
        self.root_public_key = bls_public_key(self.bls_secret)
        self.root_key_der = BLS_DER_PREFIX + self.root_public_key
        self.subnet_id = Principal.self_authenticating(self.root_key_der)
        self._node = nacl.signing.SigningKey(self.node_seed)
        self.node_public_key_der = ED25519_DER_PREFIX + bytes(self._node.verify_key)
        self.node_id = Principal.self_authenticating(self.node_public_key_der)

    def certificate(self, tree: hash_tree.Tree) -> bytes:
        """A CBOR certificate `{tree, signature}` over the tree's root hash."""
        signature = bls_sign(self.bls_secret, STATE_ROOT_SEPARATOR + hash_tree.reconstruct(tree))
        return cbor_dumps({"tree": hash_tree.to_cbor(tree), "signature": signature})

    def node_sign(self, message: bytes) -> bytes:
        return self._node.sign(message).signature


def cbor_dumps(value: Any) -> bytes:
    """CBOR with the self-describe tag, as the IC sends it."""
    return cbor2.dumps(cbor2.CBORTag(CBOR_SELF_DESCRIBE, value))
