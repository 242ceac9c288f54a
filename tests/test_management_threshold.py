"""Threshold keys: `ecdsa_public_key` / `sign_with_ecdsa` (secp256k1) and `schnorr_public_key` /
`sign_with_schnorr` (ed25519, bip340secp256k1), called by a canister; signatures checked with ordinary
libraries (`ecdsa`, PyNaCl, and BIP-340 verification written here on the `ecdsa` library's curve arithmetic)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import nacl.signing
import pytest
from ecdsa import SECP256k1, VerifyingKey
from ecdsa.ellipticcurve import PointJacobi
from ecdsa.util import sigdecode_string

from ic_replica import Replica, candid, management
from ic_replica.candid import BLOB, PRINCIPAL, TEXT, Tuple, Variant
from ic_replica.errors import CallRejected
from ic_replica.principal import MANAGEMENT, Principal
from tests.conftest import ALICE, decode1, no_args

FORWARD_RESULT = Variant.of(ok=BLOB, err=Tuple(TEXT, TEXT))
N = SECP256k1.order
P = SECP256k1.curve.p()
G = SECP256k1.generator


@pytest.fixture(scope="module")
def env(wasms: dict[str, bytes]) -> tuple[Replica, Principal]:
    replica = Replica()
    relay = replica.create_canister(controllers=[ALICE], sender=ALICE)
    replica.install_code(relay, wasms["relay"], no_args(), sender=ALICE)
    return replica, relay


def forward(env: tuple[Replica, Principal], method: str, types: list[candid.Type], values: list[Any]) -> Any:
    replica, relay = env
    out = replica.update_call(relay, "forward", candid.encode([PRINCIPAL, TEXT, BLOB],
                                                              [MANAGEMENT, method, candid.encode(types, values)]))
    return decode1(out, FORWARD_RESULT)


def ok(result: dict[str, Any], t: candid.Type) -> Any:
    assert "ok" in result, result
    return decode1(result["ok"], t)


def ecdsa_key(name: str = "dfx_test_key") -> dict[str, Any]:
    return {"curve": {"secp256k1": None}, "name": name}


def schnorr_key(algorithm: str, name: str = "dfx_test_key") -> dict[str, Any]:
    return {"algorithm": {algorithm: None}, "name": name}


def public_key(env: tuple[Replica, Principal], method: str, key_id: dict[str, Any], path: list[bytes],
               canister: Principal | None = None) -> dict[str, Any]:
    arg_type = management.ECDSA_PUBLIC_KEY_ARGS if method == "ecdsa_public_key" else management.SCHNORR_PUBLIC_KEY_ARGS
    return ok(forward(env, method, [arg_type], [{"canister_id": [canister] if canister else [],  # type: ignore
                                                "derivation_path": path, "key_id": key_id}]),
              management.PUBLIC_KEY_RESULT)


def _lift_x(x: int) -> PointJacobi:
    y2 = (pow(x, 3, P) + 7) % P
    y = pow(y2, (P + 1) // 4, P)
    assert y * y % P == y2
    return PointJacobi(SECP256k1.curve, x, y if y % 2 == 0 else P - y, 1, N)


def _tagged(tag: str, data: bytes) -> bytes:
    t = hashlib.sha256(tag.encode()).digest()
    return hashlib.sha256(t + t + data).digest()


def bip340_verify(xonly: bytes, message: bytes, sig: bytes) -> bool:
    """BIP-340 verification, as the BIP writes it."""
    point = _lift_x(int.from_bytes(xonly, "big"))
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    if r >= P or s >= N:
        return False
    e = int.from_bytes(_tagged("BIP0340/challenge", sig[:32] + xonly + message), "big") % N
    big_r = G * s + point * (N - e)
    return bool(big_r.y() % 2 == 0 and big_r.x() == r)


def bip32_derive(public: bytes, chain: bytes, element: bytes) -> tuple[bytes, bytes]:
    """One step of the IC's secp256k1 derivation, from the public key alone."""
    mac = hmac.new(chain, public + element, hashlib.sha512).digest()
    point = VerifyingKey.from_string(public, curve=SECP256k1).pubkey.point + G * int.from_bytes(mac[:32], "big")
    return VerifyingKey.from_public_point(point, curve=SECP256k1).to_string("compressed"), mac[32:]


@pytest.mark.parametrize("name", ["dfx_test_key", "test_key_1", "key_1"])
def test_ecdsa_sign_and_verify(env: tuple[Replica, Principal], name: str) -> None:
    path = [b"wallet", b"\x00\x01"]
    key = public_key(env, "ecdsa_public_key", ecdsa_key(name), path)
    assert len(key["public_key"]) == 33 and len(key["chain_code"]) == 32
    digest = hashlib.sha256(b"pay 10 tokens").digest()
    sig = ok(forward(env, "sign_with_ecdsa", [management.SIGN_WITH_ECDSA_ARGS],
                     [{"message_hash": digest, "derivation_path": path, "key_id": ecdsa_key(name)}]),
             management.SIGNATURE_RESULT)["signature"]
    assert len(sig) == 64
    _, s = sigdecode_string(sig, N)
    assert s <= N // 2  # low s
    vk = VerifyingKey.from_string(key["public_key"], curve=SECP256k1)
    assert vk.verify_digest(sig, digest)
    # deterministic per replica: the same key again
    assert public_key(env, "ecdsa_public_key", ecdsa_key(name), path) == key


def test_ecdsa_keys_differ_by_name_path_and_canister(env: tuple[Replica, Principal]) -> None:
    keys = {public_key(env, "ecdsa_public_key", ecdsa_key(n), p)["public_key"]
            for n in ("dfx_test_key", "key_1") for p in ([], [b"a"], [b"a", b"b"])}
    assert len(keys) == 6
    other = Principal((7).to_bytes(8, "big") + b"\x01\x01")
    assert (public_key(env, "ecdsa_public_key", ecdsa_key(), [b"a"], canister=other)
            != public_key(env, "ecdsa_public_key", ecdsa_key(), [b"a"]))


def test_ecdsa_derivation_is_bip32_like(env: tuple[Replica, Principal]) -> None:
    """A key derived along [x] is the key at [] derived one more step with x (public derivation)."""
    root = public_key(env, "ecdsa_public_key", ecdsa_key(), [])
    child = public_key(env, "ecdsa_public_key", ecdsa_key(), [b"child"])
    assert bip32_derive(root["public_key"], root["chain_code"], b"child") == (child["public_key"],
                                                                              child["chain_code"])


def test_schnorr_ed25519_sign_and_verify(env: tuple[Replica, Principal]) -> None:
    path = [b"ed"]
    key = public_key(env, "schnorr_public_key", schnorr_key("ed25519"), path)
    assert len(key["public_key"]) == 32
    message = b"any length message " * 10
    sig = ok(forward(env, "sign_with_schnorr", [management.SIGN_WITH_SCHNORR_ARGS],
                     [{"message": message, "derivation_path": path, "key_id": schnorr_key("ed25519"), "aux": []}]),
             management.SIGNATURE_RESULT)["signature"]
    assert len(sig) == 64
    nacl.signing.VerifyKey(key["public_key"]).verify(message, sig)


@pytest.mark.parametrize("merkle_root", [None, b"", b"\x11" * 32])
def test_schnorr_bip340_sign_and_verify(env: tuple[Replica, Principal], merkle_root: bytes | None) -> None:
    path = [b"taproot"]
    key = public_key(env, "schnorr_public_key", schnorr_key("bip340secp256k1", "test_key_1"), path)
    assert len(key["public_key"]) == 33
    message = b"\x42" * 32
    aux = [{"bip341": {"merkle_root_hash": merkle_root}}] if merkle_root is not None else []
    sig = ok(forward(env, "sign_with_schnorr", [management.SIGN_WITH_SCHNORR_ARGS],
                     [{"message": message, "derivation_path": path,
                       "key_id": schnorr_key("bip340secp256k1", "test_key_1"), "aux": aux}]),
             management.SIGNATURE_RESULT)["signature"]
    xonly = key["public_key"][1:]
    if merkle_root is not None:  # BIP-341: the output key Q = P + H_TapTweak(P || root)·G
        t = int.from_bytes(_tagged("TapTweak", xonly + merkle_root), "big")
        xonly = (_lift_x(int.from_bytes(xonly, "big")) + G * t).x().to_bytes(32, "big")
    assert bip340_verify(xonly, message, sig)
    assert not bip340_verify(xonly, b"\x43" * 32, sig)


def test_bad_requests_are_rejects(env: tuple[Replica, Principal]) -> None:
    unknown = forward(env, "ecdsa_public_key", [management.ECDSA_PUBLIC_KEY_ARGS],
                      [{"canister_id": [], "derivation_path": [], "key_id": ecdsa_key("no_such_key")}])
    assert unknown["err"][0] == "canister_reject" and "unknown threshold key" in unknown["err"][1]
    short = forward(env, "sign_with_ecdsa", [management.SIGN_WITH_ECDSA_ARGS],
                    [{"message_hash": b"short", "derivation_path": [], "key_id": ecdsa_key()}])
    assert "err" in short and "32 bytes" in short["err"][1]
    ed_aux = forward(env, "sign_with_schnorr", [management.SIGN_WITH_SCHNORR_ARGS],
                     [{"message": b"m", "derivation_path": [], "key_id": schnorr_key("ed25519"),
                       "aux": [{"bip341": {"merkle_root_hash": b""}}]}])
    assert "err" in ed_aux
    bad_root = forward(env, "sign_with_schnorr", [management.SIGN_WITH_SCHNORR_ARGS],
                       [{"message": b"m", "derivation_path": [], "key_id": schnorr_key("bip340secp256k1"),
                         "aux": [{"bip341": {"merkle_root_hash": b"12"}}]}])
    assert "err" in bad_root


@pytest.mark.parametrize("method", ["ecdsa_public_key", "sign_with_ecdsa", "schnorr_public_key",
                                    "sign_with_schnorr"])
def test_users_cannot_call_threshold_methods(env: tuple[Replica, Principal], method: str) -> None:
    replica, _ = env
    with pytest.raises(CallRejected) as exc:
        replica.update_call(MANAGEMENT, method, no_args(), sender=ALICE)
    assert exc.value.error_code == "IC0406"
