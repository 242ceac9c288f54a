"""The Wasm chunk store per the spec: chunks of at most 1 MiB, at most 100 per store, keyed by SHA-256;
`install_chunked_code` from a store canister the caller controls, checked against `wasm_module_hash`."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from ic_replica import Replica, candid, management
from ic_replica.candid import Vec
from ic_replica.errors import CallRejected
from ic_replica.principal import MANAGEMENT, Principal
from tests.conftest import ALICE, BOB, decode1, nat_arg, no_args


def upload(replica: Replica, store: Principal, chunk: bytes, sender: Principal = ALICE) -> bytes:
    out = replica.update_call(MANAGEMENT, "upload_chunk", candid.encode(
        [management.UPLOAD_CHUNK_ARGS], [{"canister_id": store, "chunk": chunk}]), sender, effective_canister_id=store)
    return decode1(out, management.CHUNK_HASH)["hash"]  # type: ignore[no-any-return]


def stored(replica: Replica, store: Principal) -> list[bytes]:
    out = replica.update_call(MANAGEMENT, "stored_chunks", candid.encode(
        [management.CANISTER_ID_ARGS], [{"canister_id": store}]), ALICE, effective_canister_id=store)
    return [c["hash"] for c in decode1(out, Vec(management.CHUNK_HASH))]


def install_chunked(replica: Replica, target: Principal, store: Principal | None, hashes: list[bytes],
                    module_hash: bytes, sender: Principal = ALICE) -> None:
    args: dict[str, Any] = {"mode": {"install": None}, "target_canister": target,
                            "store_canister": [store] if store else [],
                            "chunk_hashes_list": [{"hash": h} for h in hashes], "wasm_module_hash": module_hash,
                            "arg": nat_arg(3), "sender_canister_version": []}
    replica.update_call(MANAGEMENT, "install_chunked_code", candid.encode([management.INSTALL_CHUNKED_ARGS], [args]),
                        sender, effective_canister_id=target)


def test_chunk_size_and_count_limits() -> None:
    replica = Replica()
    store = replica.create_canister(controllers=[ALICE], sender=ALICE)
    assert upload(replica, store, b"\x01" * 1024 * 1024) == hashlib.sha256(b"\x01" * 1024 * 1024).digest()
    with pytest.raises(CallRejected) as exc:
        upload(replica, store, b"\x01" * (1024 * 1024 + 1))
    assert exc.value.error_code == "IC0408"
    for i in range(1, 100):
        upload(replica, store, i.to_bytes(4, "big"))
    assert len(stored(replica, store)) == 100
    upload(replica, store, (5).to_bytes(4, "big"))  # already there: no new entry
    with pytest.raises(CallRejected) as exc:
        upload(replica, store, b"one too many")
    assert "full" in str(exc.value)
    status = replica.canister_status(store, sender=ALICE)
    assert status["memory_metrics"]["wasm_chunk_store_size"] == 1024 * 1024 + 99 * 4  # type: ignore[index]
    replica.update_call(MANAGEMENT, "clear_chunk_store", candid.encode(
        [management.CANISTER_ID_ARGS], [{"canister_id": store}]), ALICE, effective_canister_id=store)
    assert stored(replica, store) == []


def test_install_chunked_code_rules(wasms: dict[str, bytes]) -> None:
    replica = Replica()
    wasm = wasms["counter"]
    store = replica.create_canister(controllers=[ALICE], sender=ALICE)
    target = replica.create_canister(controllers=[ALICE, BOB], sender=ALICE)
    hashes = [upload(replica, store, wasm[i:i + 100_000]) for i in range(0, len(wasm), 100_000)]
    with pytest.raises(CallRejected) as exc:  # BOB controls the target, not the store
        install_chunked(replica, target, store, hashes, hashlib.sha256(wasm).digest(), sender=BOB)
    assert exc.value.error_code == "IC0512"
    with pytest.raises(CallRejected) as exc:  # a chunk the store does not hold
        install_chunked(replica, target, store, [*hashes, hashlib.sha256(b"absent").digest()],
                        hashlib.sha256(wasm).digest())
    assert "chunk" in str(exc.value)
    with pytest.raises(CallRejected) as exc:  # the target's own store is empty
        install_chunked(replica, target, None, hashes, hashlib.sha256(wasm).digest())
    with pytest.raises(CallRejected) as exc:
        install_chunked(replica, target, store, hashes, b"\x00" * 32)
    assert "hash" in str(exc.value)
    install_chunked(replica, target, store, hashes, hashlib.sha256(wasm).digest())
    assert decode1(replica.query_call(target, "get", no_args())) == 3
    assert replica.canister_status(target, sender=ALICE)["module_hash"] == [hashlib.sha256(wasm).digest()]
