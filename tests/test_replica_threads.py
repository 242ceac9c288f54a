"""Replicas on several threads of one process, as the PocketIC server runs its instances: each execution's
trap is its own. wasmtime-py hands a host function's exception back through one process-wide variable, so two
threads trapping at once were each given the other's trap (found in review)."""

from __future__ import annotations

import threading

import wasmtime

from ic_replica import Replica
from ic_replica.errors import CallRejected

WAT = """(module
  (import "ic0" "trap" (func $trap (param i32 i32)))
  (memory 1)
  (data (i32.const 0) "%s")
  (func $spin (param i32) (loop (local.set 0 (i32.sub (local.get 0) (i32.const 1))) (br_if 0 (local.get 0))))
  (func (export "canister_query t") (call $spin (i32.const 3000)) (call $trap (i32.const 0) (i32.const 5))))"""


def test_threads_trapping_at_once_each_get_their_own_trap() -> None:
    wrong: list[tuple[str, str]] = []

    def trap_repeatedly(tag: str) -> None:
        replica = Replica()
        cid = replica.create_canister()
        replica.install_code(cid, wasmtime.wat2wasm(WAT % tag))
        for _ in range(1500):
            try:
                replica.query_call(cid, "t")
            except CallRejected as exc:
                if f"with message: '{tag}'" not in str(exc):
                    wrong.append((tag, str(exc)))
                    return
        replica.close()

    threads = [threading.Thread(target=trap_repeatedly, args=(tag,)) for tag in ("AAAAA", "BBBBB")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not wrong, wrong
