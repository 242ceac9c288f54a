"""Install, update, query, traps and rollback, controllers, lifecycle, bad input — on every backend."""

from __future__ import annotations

import gzip
from typing import Any

import pytest
import wasmtime

from ic_replica import candid
from ic_replica.errors import CallRejected, RejectCode
from ic_replica.principal import ANONYMOUS, Principal
from tests.conftest import ALICE, BOB, decode1, install, nat_arg, no_args


def get(ic: Any, cid: Principal) -> int:
    return decode1(ic.query_call(cid, "get", no_args()))  # type: ignore[no-any-return]


def test_install_update_query_with_init_arg(ic: Any, wasms: dict[str, bytes]) -> None:
    cid = install(ic, wasms, "counter", nat_arg(41))
    assert get(ic, cid) == 41
    assert decode1(ic.update_call(cid, "inc", no_args())) == 42
    assert decode1(ic.update_call(cid, "inc", no_args())) == 43
    assert get(ic, cid) == 43


def test_caller_is_the_sender(ic: Any, wasms: dict[str, bytes]) -> None:
    cid = install(ic, wasms, "counter")
    assert decode1(ic.update_call(cid, "whoami", no_args(), sender=BOB)) == BOB
    assert decode1(ic.query_call(cid, "whoamiQuery", no_args(), sender=ALICE)) == ALICE
    assert decode1(ic.query_call(cid, "whoamiQuery", no_args())) == ANONYMOUS


def test_trap_rolls_back_the_heap_and_rejects_with_canister_error(ic: Any, wasms: dict[str, bytes]) -> None:
    cid = install(ic, wasms, "counter", nat_arg(5))
    with pytest.raises(CallRejected) as err:
        ic.update_call(cid, "incThenTrap", no_args())
    assert err.value.code == RejectCode.CANISTER_ERROR
    assert "deliberate trap after increment" in err.value.reject.message
    assert get(ic, cid) == 5
    assert decode1(ic.update_call(cid, "inc", no_args())) == 6  # still healthy


def test_trap_rolls_back_stable_memory(ic: Any, wasms: dict[str, bytes]) -> None:
    cid = install(ic, wasms, "counter")
    ic.update_call(cid, "stableWrite", candid.encode([candid.NAT64, candid.BLOB], [100, b"kept"]))
    pages = decode1(ic.query_call(cid, "stablePages", no_args()))
    with pytest.raises(CallRejected):
        ic.update_call(cid, "stableWriteThenTrap", candid.encode([candid.NAT64, candid.BLOB], [100, b"gone"]))
    assert decode1(ic.query_call(cid, "stableRead", candid.encode([candid.NAT64, candid.NAT], [100, 4]))) == b"kept"
    assert decode1(ic.query_call(cid, "stablePages", no_args())) == pages


def test_trap_after_heap_growth_rolls_back(ic: Any, wasms: dict[str, bytes]) -> None:
    cid = install(ic, wasms, "counter", nat_arg(1))
    ic.update_call(cid, "grow", nat_arg(1))
    with pytest.raises(CallRejected):
        ic.update_call(cid, "growThenTrap", nat_arg(8))
    assert get(ic, cid) == 1
    assert decode1(ic.query_call(cid, "ballastSize", no_args())) == 16
    assert decode1(ic.update_call(cid, "inc", no_args())) == 2


def test_queries_never_persist(ic: Any, wasms: dict[str, bytes]) -> None:
    cid = install(ic, wasms, "counter", nat_arg(7))
    assert decode1(ic.query_call(cid, "queryMutates", no_args())) == 1007
    assert decode1(ic.query_call(cid, "queryMutates", no_args())) == 1007
    # a query method called as an update runs replicated and still persists nothing
    assert decode1(ic.update_call(cid, "queryMutates", no_args())) == 1007
    assert get(ic, cid) == 7


def test_missing_method_is_rejected(ic: Any, wasms: dict[str, bytes]) -> None:
    cid = install(ic, wasms, "counter")
    with pytest.raises(CallRejected) as err:
        ic.update_call(cid, "nope", no_args())
    assert err.value.code == RejectCode.CANISTER_ERROR
    assert "nope" in err.value.reject.message
    with pytest.raises(CallRejected) as err:
        ic.query_call(cid, "inc", no_args())  # an update method is not a query
    assert err.value.code == RejectCode.CANISTER_ERROR


def test_unknown_canister_is_destination_invalid(ic: Any) -> None:
    ghost = Principal.from_text("rrkah-fqaaa-aaaaa-aaaaq-cai")
    with pytest.raises(CallRejected) as err:
        ic.update_call(ghost, "inc", no_args())
    assert err.value.code == RejectCode.DESTINATION_INVALID
    with pytest.raises(CallRejected) as err:
        ic.query_call(ghost, "get", no_args())
    assert err.value.code == RejectCode.DESTINATION_INVALID


def test_empty_canister_rejects_calls(ic: Any) -> None:
    cid = ic.create_canister(controllers=[ALICE], sender=ALICE)
    with pytest.raises(CallRejected) as err:
        ic.update_call(cid, "inc", no_args())
    assert err.value.code == RejectCode.CANISTER_ERROR
    assert "no Wasm module" in err.value.reject.message


def test_only_controllers_install_and_manage(ic: Any, wasms: dict[str, bytes]) -> None:
    cid = ic.create_canister(controllers=[ALICE], sender=ALICE)
    for who in (BOB, ANONYMOUS):
        with pytest.raises(CallRejected) as err:
            ic.install_code(cid, wasms["counter"], nat_arg(0), sender=who)
        assert err.value.code == RejectCode.CANISTER_ERROR
        assert "Only the controllers" in err.value.reject.message
    ic.install_code(cid, wasms["counter"], nat_arg(3), sender=ALICE)
    for op in ("stop_canister", "start_canister", "delete_canister", "uninstall_code", "canister_status"):
        with pytest.raises(CallRejected):
            getattr(ic, op)(cid, sender=BOB)
    with pytest.raises(CallRejected):
        ic.upgrade_canister(cid, wasms["counter"], nat_arg(0), sender=BOB)
    assert get(ic, cid) == 3  # nothing changed


def test_install_twice_needs_reinstall(ic: Any, wasms: dict[str, bytes]) -> None:
    cid = install(ic, wasms, "counter", nat_arg(9))
    with pytest.raises(CallRejected) as err:
        ic.install_code(cid, wasms["counter"], nat_arg(0), sender=ALICE)
    assert "not empty" in err.value.reject.message
    assert get(ic, cid) == 9
    ic.reinstall_code(cid, wasms["counter"], nat_arg(2), sender=ALICE)
    assert get(ic, cid) == 2


def test_gzip_module_installs(ic: Any, wasms: dict[str, bytes]) -> None:
    cid = ic.create_canister(controllers=[ALICE], sender=ALICE)
    ic.install_code(cid, gzip.compress(wasms["counter"]), nat_arg(4), sender=ALICE)
    assert get(ic, cid) == 4
    status = ic.canister_status(cid, sender=ALICE)
    import hashlib

    assert status["module_hash"] == [hashlib.sha256(wasms["counter"]).digest()]


def test_invalid_wasm_is_rejected_cleanly(ic: Any, wasms: dict[str, bytes]) -> None:
    cid = ic.create_canister(controllers=[ALICE], sender=ALICE)
    for bad in (b"not wasm at all", wasms["counter"][:1000], gzip.compress(b"\x00asm garbage")):
        with pytest.raises(CallRejected) as err:
            ic.install_code(cid, bad, no_args(), sender=ALICE)
        assert err.value.code == RejectCode.CANISTER_ERROR
    unknown_import = wasmtime.wat2wasm('(module (import "ic0" "launch_missiles" (func)) (memory 1))')
    with pytest.raises(CallRejected) as err:
        ic.install_code(cid, unknown_import, no_args(), sender=ALICE)
    assert "launch_missiles" in err.value.reject.message
    other_module = wasmtime.wat2wasm('(module (import "env" "f" (func)) (memory 1))')
    with pytest.raises(CallRejected):
        ic.install_code(cid, other_module, no_args(), sender=ALICE)
    assert ic.canister_status(cid, sender=ALICE)["module_hash"] == []


def test_lifecycle_stop_start_delete(ic: Any, wasms: dict[str, bytes]) -> None:
    cid = install(ic, wasms, "counter")
    assert ic.canister_status(cid, sender=ALICE)["status"] == {"running": None}
    with pytest.raises(CallRejected) as err:
        ic.delete_canister(cid, sender=ALICE)
    assert "must be stopped" in err.value.reject.message
    ic.stop_canister(cid, sender=ALICE)
    assert ic.canister_status(cid, sender=ALICE)["status"] == {"stopped": None}
    with pytest.raises(CallRejected) as err:
        ic.update_call(cid, "inc", no_args())
    assert err.value.code == RejectCode.CANISTER_ERROR
    ic.start_canister(cid, sender=ALICE)
    assert decode1(ic.update_call(cid, "inc", no_args())) == 1
    ic.stop_canister(cid, sender=ALICE)
    ic.delete_canister(cid, sender=ALICE)
    with pytest.raises(CallRejected) as err:
        ic.canister_status(cid, sender=ALICE)
    assert err.value.code == RejectCode.DESTINATION_INVALID


def test_uninstall_wipes_code_and_state(ic: Any, wasms: dict[str, bytes]) -> None:
    cid = install(ic, wasms, "counter", nat_arg(8))
    ic.uninstall_code(cid, sender=ALICE)
    assert ic.canister_status(cid, sender=ALICE)["module_hash"] == []
    with pytest.raises(CallRejected):
        ic.query_call(cid, "get", no_args())
    ic.install_code(cid, wasms["counter"], nat_arg(1), sender=ALICE)
    assert get(ic, cid) == 1


def test_controllers_can_be_changed(ic: Any, wasms: dict[str, bytes]) -> None:
    cid = install(ic, wasms, "counter")
    ic.set_controllers(cid, [BOB], sender=ALICE)
    status = ic.canister_status(cid, sender=BOB)
    assert status["settings"]["controllers"] == [BOB]
    with pytest.raises(CallRejected):
        ic.canister_status(cid, sender=ALICE)


def test_status_reports_cycles_memory_and_version(ic: Any, wasms: dict[str, bytes]) -> None:
    cid = ic.create_canister(controllers=[ALICE], cycles=5_000_000_000_000, sender=ALICE)
    before = ic.canister_status(cid, sender=ALICE)
    ic.install_code(cid, wasms["counter"], nat_arg(0), sender=ALICE)
    after = ic.canister_status(cid, sender=ALICE)
    assert after["version"] > before["version"]
    assert after["memory_size"] > len(wasms["counter"])
    assert 0 < after["cycles"] <= 5_000_000_000_000


def test_time_is_settable(ic: Any, wasms: dict[str, bytes]) -> None:
    cid = install(ic, wasms, "counter")
    t0 = decode1(ic.query_call(cid, "now", no_args()))
    ic.advance_time(3_600 * 10**9)
    ic.tick()
    t1 = decode1(ic.query_call(cid, "now", no_args()))
    assert t1 - t0 >= 3_600 * 10**9


@pytest.mark.embedded_only
def test_infinite_loop_hits_the_instruction_limit(ic: Any, wasms: dict[str, bytes]) -> None:
    cid = install(ic, wasms, "counter", nat_arg(2))
    with pytest.raises(CallRejected) as err:
        ic.update_call(cid, "spin", no_args())
    assert err.value.code == RejectCode.CANISTER_ERROR
    assert err.value.error_code == "IC0522"
    assert "instruction" in err.value.reject.message
    assert get(ic, cid) == 2


@pytest.mark.embedded_only
def test_oversized_argument_is_rejected(ic: Any, wasms: dict[str, bytes]) -> None:
    cid = install(ic, wasms, "counter")
    with pytest.raises(CallRejected) as err:
        ic.update_call(cid, "inc", b"\x00" * (3 * 1024 * 1024))
    assert "more than the limit" in err.value.reject.message
    assert decode1(ic.update_call(cid, "inc", no_args())) == 1


@pytest.mark.embedded_only
def test_canister_logs_keep_debug_print_and_traps(ic: Any, wasms: dict[str, bytes]) -> None:
    cid = install(ic, wasms, "counter")
    ic.update_call(cid, "inc", no_args())
    with pytest.raises(CallRejected):
        ic.update_call(cid, "incThenTrap", no_args())
    contents = [r["content"] for r in ic.canister_logs(cid, sender=ALICE)]
    assert b"count=1" in contents
    assert any(b"deliberate trap after increment" in c for c in contents)
    with pytest.raises(CallRejected):
        ic.canister_logs(cid, sender=BOB)


@pytest.mark.embedded_only
def test_a_trapping_canister_never_touches_another(ic: Any, wasms: dict[str, bytes]) -> None:
    a = install(ic, wasms, "counter", nat_arg(10))
    b = install(ic, wasms, "counter", nat_arg(20))
    for _ in range(3):
        with pytest.raises(CallRejected):
            ic.update_call(a, "growThenTrap", nat_arg(2))
        ic.update_call(b, "inc", no_args())
    assert get(ic, a) == 10
    assert get(ic, b) == 23


def test_chunked_install(ic: Any, wasms: dict[str, bytes]) -> None:
    import hashlib

    from ic_replica import management
    from ic_replica.principal import MANAGEMENT

    wasm = wasms["counter"]
    store = ic.create_canister(controllers=[ALICE], sender=ALICE)
    target = ic.create_canister(controllers=[ALICE], sender=ALICE)
    chunks = [wasm[i : i + 64_000] for i in range(0, len(wasm), 64_000)]
    hashes = []
    for chunk in chunks:
        reply = ic.update_call(MANAGEMENT, "upload_chunk", candid.encode(
            [management.UPLOAD_CHUNK_ARGS], [{"canister_id": store, "chunk": chunk}]), sender=ALICE,
            **({"effective_canister_id": store} if ic.name == "embedded" else {}))
        hashes.append(decode1(reply, management.CHUNK_HASH)["hash"])
    assert hashes == [hashlib.sha256(c).digest() for c in chunks]
    with pytest.raises(CallRejected):  # a stranger may not upload
        ic.update_call(MANAGEMENT, "upload_chunk", candid.encode(
            [management.UPLOAD_CHUNK_ARGS], [{"canister_id": store, "chunk": b"x"}]), sender=BOB)

    def install_chunked(module_hash: bytes, order: list[bytes]) -> None:
        ic.update_call(MANAGEMENT, "install_chunked_code", candid.encode([management.INSTALL_CHUNKED_ARGS], [{
            "mode": {"install": None}, "target_canister": target, "store_canister": [store],
            "chunk_hashes_list": [{"hash": h} for h in order], "wasm_module_hash": module_hash,
            "arg": nat_arg(12), "sender_canister_version": []}]), sender=ALICE)

    with pytest.raises(CallRejected) as err:
        install_chunked(hashlib.sha256(wasm).digest(), list(reversed(hashes)))  # wrong order: wrong hash
    assert "hash" in err.value.reject.message
    install_chunked(hashlib.sha256(wasm).digest(), hashes)
    assert get(ic, target) == 12


@pytest.mark.embedded_only
def test_stopping_waits_for_open_calls(ic: Any, wasms: dict[str, bytes]) -> None:
    from ic_replica.principal import MANAGEMENT

    relay = install(ic, wasms, "relay")
    other = install(ic, wasms, "relay")
    in_flight = ic.submit_call(relay, "fanout", candid.encode([candid.PRINCIPAL, candid.NAT], [other, 3]))
    ic.tick()  # fanout has sent its calls and is waiting for the replies
    stop = ic.submit_call(MANAGEMENT, "stop_canister", candid.encode([candid.Record.of(
        canister_id=candid.PRINCIPAL)], [{"canister_id": relay}]), sender=ALICE, effective_canister_id=relay)
    ic.tick()
    assert ic.canister(relay).status.value == "stopping"  # read without running another round
    with pytest.raises(CallRejected) as err:
        ic.query_call(relay, "receivedLog", no_args())
    assert err.value.error_code == "IC0509"
    with pytest.raises(CallRejected) as err:  # by the time it runs the canister may have stopped
        ic.update_call(relay, "record", candid.encode([candid.TEXT], ["late"]))
    assert err.value.error_code in ("IC0508", "IC0509")
    ic.await_call(in_flight)  # the open call still completes
    ic.await_call(stop)
    assert ic.canister_status(relay, sender=ALICE)["status"] == {"stopped": None}


def test_a_dropped_replica_frees_its_canisters(wasms: dict[str, bytes]) -> None:
    """wasmtime holds host callbacks in a process-wide table: if they held the canister strongly, no replica
    (nor its canisters' memory) would ever be freed, and a long test run or server ran out of memory."""
    import gc
    import weakref

    from ic_replica.replica import Replica

    replica = Replica()
    cid = replica.create_canister(controllers=[ALICE], sender=ALICE)
    replica.install_code(cid, wasms["counter"], nat_arg(1), sender=ALICE)
    assert decode1(replica.update_call(cid, "inc", no_args())) == 2
    stores = [weakref.ref(c.runtime.store) for c in replica.canisters.values() if c.runtime is not None]
    dropped = weakref.ref(replica)
    assert stores
    del replica
    gc.collect()
    assert dropped() is None
    assert all(store() is None for store in stores)
