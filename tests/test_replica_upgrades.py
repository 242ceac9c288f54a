"""Upgrades under enhanced orthogonal persistence: heap and stable memory survive, unsafe upgrades are
rejected as the IC rejects them, and a failed upgrade leaves the canister exactly as it was."""

from __future__ import annotations

from typing import Any

import pytest
import wasmtime

from ic_replica import candid
from ic_replica.errors import CallRejected, RejectCode
from tests.conftest import ALICE, decode1, install, nat_arg, no_args

STABLE_ARGS = [candid.NAT64, candid.BLOB]


def _state(ic: Any, cid: Any) -> tuple[int, bytes, int]:
    count = decode1(ic.query_call(cid, "get", no_args()))
    blob = decode1(ic.query_call(cid, "stableRead", candid.encode([candid.NAT64, candid.NAT], [70_000, 5])))
    ballast = decode1(ic.query_call(cid, "ballastSize", no_args()))
    return count, blob, ballast


def _populated(ic: Any, wasms: dict[str, bytes]) -> Any:
    cid = install(ic, wasms, "counter", nat_arg(10))
    ic.update_call(cid, "inc", no_args())
    ic.update_call(cid, "grow", nat_arg(1))
    ic.update_call(cid, "stableWrite", candid.encode(STABLE_ARGS, [70_000, b"hello"]))
    return cid


def test_upgrade_keeps_heap_and_stable_memory(ic: Any, wasms: dict[str, bytes]) -> None:
    cid = _populated(ic, wasms)
    before = _state(ic, cid)
    assert before == (11, b"hello", 16)
    ic.upgrade_canister(cid, wasms["counter"], nat_arg(0), sender=ALICE, wasm_memory_persistence="keep")
    assert _state(ic, cid) == before
    assert decode1(ic.query_call(cid, "upgradeCount", no_args())) == 1
    assert decode1(ic.update_call(cid, "inc", no_args())) == 12


def test_upgrade_without_keep_is_refused_for_eop(ic: Any, wasms: dict[str, bytes]) -> None:
    cid = _populated(ic, wasms)
    before = _state(ic, cid)
    with pytest.raises(CallRejected) as err:
        ic.upgrade_canister(cid, wasms["counter"], nat_arg(0), sender=ALICE, wasm_memory_persistence=None)
    assert err.value.code == RejectCode.CANISTER_ERROR
    assert "wasm_memory_persistence" in err.value.reject.message
    assert _state(ic, cid) == before


def test_keep_requires_an_eop_module(ic: Any, wasms: dict[str, bytes]) -> None:
    cid = _populated(ic, wasms)
    classic = wasmtime.wat2wasm('(module (memory 1) (func (export "canister_update noop")))')
    with pytest.raises(CallRejected) as err:
        ic.upgrade_canister(cid, classic, b"", sender=ALICE, wasm_memory_persistence="keep")
    assert "enhanced orthogonal persistence" in err.value.reject.message
    assert _state(ic, cid) == (11, b"hello", 16)


def test_replace_wipes_the_heap_but_keeps_stable_memory(ic: Any, wasms: dict[str, bytes]) -> None:
    cid = _populated(ic, wasms)
    ic.upgrade_canister(cid, wasms["counter"], nat_arg(3), sender=ALICE, wasm_memory_persistence="replace")
    count, _, ballast = _state(ic, cid)
    assert (count, ballast) == (3, 0)


def test_incompatible_upgrade_fails_and_changes_nothing(ic: Any, wasms: dict[str, bytes]) -> None:
    cid = _populated(ic, wasms)
    before = _state(ic, cid)
    arg = candid.encode([candid.TEXT], ["x"])
    with pytest.raises(CallRejected) as err:
        ic.upgrade_canister(cid, wasms["incompatible"], arg, sender=ALICE, wasm_memory_persistence="keep")
    assert err.value.code == RejectCode.CANISTER_ERROR
    assert _state(ic, cid) == before
    assert decode1(ic.update_call(cid, "inc", no_args())) == 12


def test_trapping_pre_upgrade_blocks_the_upgrade(ic: Any, wasms: dict[str, bytes]) -> None:
    cid = _populated(ic, wasms)
    ic.update_call(cid, "setFailPreUpgrade", candid.encode([candid.BOOL], [True]))
    with pytest.raises(CallRejected) as err:
        ic.upgrade_canister(cid, wasms["counter"], nat_arg(0), sender=ALICE)
    assert "pre-upgrade refused" in err.value.reject.message
    assert decode1(ic.query_call(cid, "upgradeCount", no_args())) == 0
    assert _state(ic, cid) == (11, b"hello", 16)
    ic.update_call(cid, "setFailPreUpgrade", candid.encode([candid.BOOL], [False]))
    ic.upgrade_canister(cid, wasms["counter"], nat_arg(0), sender=ALICE)
    assert decode1(ic.query_call(cid, "upgradeCount", no_args())) == 1
    assert _state(ic, cid) == (11, b"hello", 16)


# A canister whose pre_upgrade always traps and whose post_upgrade writes "up" to stable memory.
TRAPPING_PRE_UPGRADE = """(module
  (import "ic0" "trap" (func $trap (param i32 i32)))
  (import "ic0" "stable64_grow" (func $grow (param i64) (result i64)))
  (import "ic0" "stable64_write" (func $write (param i64 i64 i64)))
  (memory 1)
  (data (i32.const 0) "up")
  (func (export "canister_pre_upgrade") (call $trap (i32.const 0) (i32.const 2)))
  (func (export "canister_post_upgrade")
    (drop (call $grow (i64.const 1)))
    (call $write (i64.const 0) (i64.const 0) (i64.const 2))))"""


def test_skip_pre_upgrade_skips_the_hook(ic: Any) -> None:
    wasm = wasmtime.wat2wasm(TRAPPING_PRE_UPGRADE)
    cid = ic.create_canister(controllers=[ALICE], sender=ALICE)
    ic.install_code(cid, wasm, b"", sender=ALICE)
    with pytest.raises(CallRejected) as err:
        ic.upgrade_canister(cid, wasm, b"", sender=ALICE, wasm_memory_persistence=None)
    assert err.value.code == RejectCode.CANISTER_ERROR
    before = ic.canister_status(cid, sender=ALICE)
    ic.upgrade_canister(cid, wasm, b"", sender=ALICE, skip_pre_upgrade=True, wasm_memory_persistence=None)
    after = ic.canister_status(cid, sender=ALICE)
    assert after["version"] > before["version"]
    assert after["memory_metrics"]["stable_memory_size"] == 65536 or ic.name == "pocketic"


def test_reinstall_wipes_everything(ic: Any, wasms: dict[str, bytes]) -> None:
    cid = _populated(ic, wasms)
    ic.reinstall_code(cid, wasms["counter"], nat_arg(0), sender=ALICE)
    assert _state(ic, cid) == (0, b"", 0)


def test_upgrade_to_a_rebuilt_module_with_a_new_method(ic: Any, wasms: dict[str, bytes], tmp_path: Any) -> None:
    from prometheus_build.recipe import build_canister
    from tests.conftest import TEST_CANISTERS

    source = (TEST_CANISTERS / "counter" / "main.mo").read_text()
    v2 = source.rstrip().rstrip(";").rstrip().rstrip("}") + "\n  public query func version() : async Nat { 2 };\n};\n"
    (tmp_path / "src" / "counter").mkdir(parents=True)
    (tmp_path / "src" / "counter" / "main.mo").write_text(v2)
    built = build_canister("counter", tmp_path / "src", "counter/main.mo", tmp_path / "out", tmp_path / "cache")
    cid = _populated(ic, wasms)
    ic.upgrade_canister(cid, built.wasm.read_bytes(), nat_arg(0), sender=ALICE)
    assert decode1(ic.query_call(cid, "version", no_args())) == 2
    assert _state(ic, cid) == (11, b"hello", 16)
