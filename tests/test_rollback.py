"""A trapped message leaves no trace in the heap, wherever it wrote: the rollback compares the heap with the
copy taken before the message a MiB at a time, then page by page where a MiB differs, and restores those pages."""

from __future__ import annotations

import wasmtime

from ic_replica import Replica
from ic_replica.errors import CallRejected

# 64 pages (4 MiB): `scatter` writes one byte at each offset below and traps (or not, with arg "keep");
# `peek` replies with those bytes.
OFFSETS = [0, 65_535, 70_000, 1_048_575, 1_048_576, 1_100_000, 3_000_000, 4 * 1_048_576 - 1]
_STORES = "\n".join(f"(i32.store8 (i32.const {o}) (i32.const {i + 1}))" for i, o in enumerate(OFFSETS))
_LOADS = "\n".join(f"(i32.store8 (i32.const {4 * 1_048_576 - 64 + i}) (i32.load8_u (i32.const {o})))"
                   for i, o in enumerate(OFFSETS))
WAT = f"""(module
  (import "ic0" "msg_arg_data_size" (func $arg_size (result i32)))
  (import "ic0" "msg_reply" (func $reply))
  (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
  (import "ic0" "trap" (func $trap (param i32 i32)))
  (memory 64)
  (func (export "canister_update scatter")
    {_STORES}
    (if (i32.eqz (call $arg_size)) (then (call $trap (i32.const 0) (i32.const 0))))
    (call $reply))
  (func (export "canister_query peek")
    {_LOADS}
    (call $append (i32.const {4 * 1_048_576 - 64}) (i32.const {len(OFFSETS)}))
    (call $reply)))"""


def test_a_trap_anywhere_in_a_four_mib_heap_is_undone() -> None:
    replica = Replica()
    cid = replica.create_canister()
    replica.install_code(cid, wasmtime.wat2wasm(WAT))
    zeros = bytes(len(OFFSETS))
    assert replica.query_call(cid, "peek") == zeros
    try:
        replica.update_call(cid, "scatter")
        raise AssertionError("scatter without an argument traps")
    except CallRejected:
        pass
    assert replica.query_call(cid, "peek") == zeros  # every write, in every MiB, undone
    replica.update_call(cid, "scatter", b"keep")
    assert replica.query_call(cid, "peek") == bytes(range(1, len(OFFSETS) + 1))  # a committed one stays
