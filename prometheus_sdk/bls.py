"""Certificate verification for icp-py-core without the `blst` binding (which is not on PyPI).

icp-py-core verifies certificates through `import blst` (supranational's SWIG binding). `install()` registers
a module of that name implementing the few calls icp-py-core makes, on top of `pyblst`.
"""

from __future__ import annotations

import sys
import types

import pyblst

BLST_SUCCESS = 0
BLST_VERIFY_FAIL = 5
_G2_GENERATOR = bytes.fromhex(
    "93e02b6052719f607dacd3a088274f65596bd0d09920b61ab5da61bbdc7f5049334cf11213945d57e5ac7d055d042b7e"
    "024aa2b2f08f0a91260805272dc51051c6e47ad4fa403b02b4510b647ae3d1770bac0326a805bbefd48056c8c121bdb8")


def verify_min_sig(public_key: bytes, signature: bytes, message: bytes, dst: bytes) -> bool:
    """BLS12-381 min-sig: signature in G1, public key in G2."""
    try:
        sig = pyblst.BlstP1Element.uncompress(bytes(signature))
        pk = pyblst.BlstP2Element.uncompress(bytes(public_key))
    except Exception:  # malformed or off-curve points
        return False
    g2 = pyblst.BlstP2Element.uncompress(_G2_GENERATOR)
    h = pyblst.BlstP1Element.hash_to_group(bytes(message), bytes(dst))
    return bool(pyblst.final_verify(pyblst.miller_loop(sig, g2), pyblst.miller_loop(h, pk)))


class P2_Affine:  # noqa: N801 - the name icp-py-core looks up
    def __init__(self, compressed: bytes) -> None:
        if len(compressed) != 96:
            raise ValueError("a compressed G2 point is 96 bytes")
        self.compressed = bytes(compressed)


class P1_Affine:  # noqa: N801 - the name icp-py-core looks up
    def __init__(self, compressed: bytes) -> None:
        if len(compressed) != 48:
            raise ValueError("a compressed G1 point is 48 bytes")
        self.compressed = bytes(compressed)

    def core_verify(self, pk: P2_Affine, hash_or_encode: bool, msg: bytes, dst: bytes, aug: object = None) -> int:
        return BLST_SUCCESS if verify_min_sig(pk.compressed, self.compressed, msg, dst) else BLST_VERIFY_FAIL


class Pairing:
    def __init__(self, hash_or_encode: bool, dst: bytes) -> None:
        self.dst = dst
        self.items: list[tuple[P2_Affine, P1_Affine, bytes]] = []

    def aggregate(self, pk: P2_Affine, sig: P1_Affine, msg: bytes, aug: object = None) -> int:
        self.items.append((pk, sig, msg))
        return BLST_SUCCESS

    def finalverify(self) -> bool:
        return bool(self.items) and all(verify_min_sig(pk.compressed, sig.compressed, msg, self.dst)
                                        for pk, sig, msg in self.items)


def install() -> None:
    """Make `import blst` resolve to this pyblst-backed implementation (unless a real binding exists)."""
    if "blst" in sys.modules:
        return
    module = types.ModuleType("blst", __doc__)
    for name in ("BLST_SUCCESS", "P1_Affine", "P2_Affine", "Pairing"):
        setattr(module, name, globals()[name])
    sys.modules["blst"] = module
