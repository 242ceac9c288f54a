"""The network's keys and certificates: a BLS12-381 (min-sig) root key that signs state trees, and an
Ed25519 node key that signs query responses. Keys persist in the state directory (`network-keys.json`).

A network of several subnets (PocketIC) gives every other subnet keys of its own (`SubnetKeys`): its certificates
are signed by its own BLS key and carry a delegation, a root-signed certificate of that key and the subnet's
canister ranges, as the interface specification's "Delegation" describes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
import nacl.signing
import pyblst

from ic_replica import hash_tree
from ic_replica.candid import leb
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
# How long (in the subnet's time) a delegation is reused: the IC refreshes its subnets' delegations every 10 minutes,
# and agents accept old delegations (agent-js: 30 days; agent-rs and icp-py-core do not check their age).
DELEGATION_REFRESH_NS = 10 * 60 * 10**9


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


def _random_secret() -> int:
    return int.from_bytes(os.urandom(48), "big") % (_CURVE_ORDER - 1) + 1


def ranges_cbor(ranges: list[tuple[bytes, bytes]]) -> bytes:
    """Canister ranges as the state tree holds them: CBOR `[[start, end], ...]`."""
    return cbor_dumps([[start, end] for start, end in ranges])


@dataclass
class NetworkKeys:
    """The root key (whose self-authenticating principal is the root subnet's id) and the root subnet's node key."""

    bls_secret: int
    node_seed: bytes

    @classmethod
    def generate(cls) -> NetworkKeys:
        return cls(_random_secret(), os.urandom(32))

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
        self.public_key_der = self.root_key_der  # the subnet's own key: the root subnet's is the root key
        self.subnet_id = Principal.self_authenticating(self.root_key_der)
        self._node = nacl.signing.SigningKey(self.node_seed)
        self.node_public_key_der = ED25519_DER_PREFIX + bytes(self._node.verify_key)
        self.node_id = Principal.self_authenticating(self.node_public_key_der)

    def certificate(self, tree: hash_tree.Tree) -> bytes:
        """A CBOR certificate `{tree, signature}` over the tree's root hash."""
        return cbor_dumps(self._signed(tree))

    def _signed(self, tree: hash_tree.Tree) -> dict[str, Any]:
        signature = bls_sign(self.bls_secret, STATE_ROOT_SEPARATOR + hash_tree.reconstruct(tree))
        return {"tree": hash_tree.to_cbor(tree), "signature": signature}

    def node_sign(self, message: bytes) -> bytes:
        return self._node.sign(message).signature


# What a delegation certifies of a subnet: its canister ranges now, and the subnet's time.
DelegationScope = Callable[[], tuple[list[tuple[bytes, bytes]], int]]


@dataclass
class SubnetKeys(NetworkKeys):
    """A non-root subnet's keys: its own BLS key (its id is that key's self-authenticating principal) and node
    key. `root_key_der` / `root_public_key` stay the network's root key (what `/api/v2/status` and `ic0.root_key`
    report); `certificate` signs with the subnet's key and attaches the delegation from the root key. The
    delegation is cached, and rebuilt when the subnet's canister ranges change (a subnet may host canisters
    outside its planned ranges, which agents check against the delegation) or it is `DELEGATION_REFRESH_NS` old."""

    root: NetworkKeys = field(repr=False, kw_only=True)
    scope: DelegationScope = field(repr=False, kw_only=True)

    @classmethod
    def for_subnet(cls, root: NetworkKeys, scope: DelegationScope) -> SubnetKeys:
        return cls(_random_secret(), os.urandom(32), root=root, scope=scope)

    def __post_init__(self) -> None:
        super().__post_init__()  # derives the key pair, node key and id from this subnet's own secret
        self.public_key_der = self.root_key_der
        self.subnet_id = Principal.self_authenticating(self.public_key_der)
        self.root_public_key, self.root_key_der = self.root.root_public_key, self.root.root_key_der
        self._delegation: tuple[list[tuple[bytes, bytes]], int, dict[str, Any]] | None = None

    def certificate(self, tree: hash_tree.Tree) -> bytes:
        return cbor_dumps({**self._signed(tree), "delegation": self.delegation()})

    def delegation(self) -> dict[str, Any]:
        """`{subnet_id, certificate}`: the root's certificate of this subnet's public key and canister ranges."""
        ranges, now = self.scope()
        cached = self._delegation
        if cached is None or cached[0] != ranges or not 0 <= now - cached[1] < DELEGATION_REFRESH_NS:
            tree = hash_tree.full_tree(delegation_state(self.subnet_id.raw, self.public_key_der, ranges, now))
            cached = self._delegation = (ranges, now, {"subnet_id": self.subnet_id.raw,
                                                       "certificate": self.root.certificate(tree)})
        return cached[2]


def delegation_state(subnet_id: bytes, public_key_der: bytes, ranges: list[tuple[bytes, bytes]],
                     time_ns: int) -> hash_tree.State:
    """What a delegation certifies, in the paths the root subnet's state tree has them: `/subnet/<id>/public_key`,
    `/subnet/<id>/canister_ranges` (agents before API v3 look there), `/canister_ranges/<id>/<first id>` (one
    shard), `/time`."""
    encoded = ranges_cbor(ranges)
    return {b"time": leb(time_ns),
            b"subnet": {subnet_id: {b"public_key": public_key_der, b"canister_ranges": encoded}},
            b"canister_ranges": {subnet_id: {ranges[0][0]: encoded}}}


def cbor_dumps(value: Any) -> bytes:
    """CBOR with the self-describe tag, as the IC sends it."""
    return cbor2.dumps(cbor2.CBORTag(CBOR_SELF_DESCRIBE, value))
