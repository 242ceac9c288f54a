"""Heartbeat, timers, inspect_message, and the System API surface (all 63 imports moc can emit)."""

from __future__ import annotations

from typing import Any

import pytest
import wasmtime

from ic_replica.errors import CallRejected, RejectCode
from ic_replica.system_api import AVAILABILITY, SUPPORTED_IMPORTS
from tests.conftest import ALICE, decode1, install, no_args

# Every ic0 function moc 4.10.0 can import (read off a compiled module that uses them all).
MOC_IMPORTS = frozenset({
    "accept_message", "call_cycles_add128", "call_data_append", "call_new", "call_on_cleanup", "call_perform",
    "call_with_best_effort_response", "canister_cycle_balance128", "canister_self_copy", "canister_self_size",
    "canister_status", "canister_version", "certified_data_set", "cost_call", "cost_create_canister",
    "cost_http_request", "cost_sign_with_ecdsa", "cost_sign_with_schnorr", "cycles_burn128",
    "data_certificate_copy", "data_certificate_present", "data_certificate_size", "debug_print", "env_var_count",
    "env_var_name_copy", "env_var_name_exists", "env_var_name_size", "env_var_value_copy", "env_var_value_size",
    "global_timer_set", "in_replicated_execution", "is_controller", "msg_arg_data_copy", "msg_arg_data_size",
    "msg_caller_copy", "msg_caller_info_data_copy", "msg_caller_info_data_size", "msg_caller_info_signer_copy",
    "msg_caller_info_signer_size", "msg_caller_size", "msg_cycles_accept128", "msg_cycles_available128",
    "msg_cycles_refunded128", "msg_deadline", "msg_method_name_copy", "msg_method_name_size", "msg_reject",
    "msg_reject_code", "msg_reject_msg_copy", "msg_reject_msg_size", "msg_reply", "msg_reply_data_append",
    "performance_counter", "root_key_copy", "root_key_size", "stable64_grow", "stable64_read", "stable64_size",
    "stable64_write", "subnet_self_copy", "subnet_self_size", "time", "trap",
})


def counts(ic: Any, cid: Any) -> tuple[int, int]:
    from ic_replica import candid

    beats, fired = candid.decode(ic.query_call(cid, "counts", no_args()))
    return beats, fired


def test_heartbeat_runs_every_round(ic: Any, wasms: dict[str, bytes]) -> None:
    cid = install(ic, wasms, "ticker")
    beats0, _ = counts(ic, cid)
    ic.tick(10)
    beats1, _ = counts(ic, cid)
    assert beats1 >= beats0 + 5


def test_timer_fires_only_after_its_time(ic: Any, wasms: dict[str, bytes]) -> None:
    from ic_replica import candid

    cid = install(ic, wasms, "ticker")
    ic.update_call(cid, "schedule", candid.encode([candid.NAT], [60]))
    ic.tick(5)
    assert counts(ic, cid)[1] == 0
    ic.advance_time(61 * 10**9)
    ic.tick(5)
    assert counts(ic, cid)[1] == 1
    ic.tick(5)
    assert counts(ic, cid)[1] == 1


def test_inspect_message_refuses_ingress(ic: Any, wasms: dict[str, bytes]) -> None:
    cid = install(ic, wasms, "ticker")
    assert decode1(ic.update_call(cid, "allowed", no_args())) == "ok"
    with pytest.raises(CallRejected) as err:
        ic.update_call(cid, "forbidden", no_args())
    assert err.value.code == RejectCode.CANISTER_REJECT


def test_probe_uses_every_system_api_import(ic: Any, wasms: dict[str, bytes]) -> None:
    module = wasmtime.Module(wasmtime.Engine(), wasms["probe"])
    imported = {i.name for i in module.imports}
    assert MOC_IMPORTS <= SUPPORTED_IMPORTS  # and more: tests/test_system_api_complete.py has the full list
    assert imported <= SUPPORTED_IMPORTS and len(imported) >= 60
    cid = install(ic, wasms, "probe")
    text = decode1(ic.update_call(cid, "all", no_args()))
    assert isinstance(text, str) and text.startswith("(")


def test_every_import_has_an_availability_rule() -> None:
    assert set(AVAILABILITY) == SUPPORTED_IMPORTS


@pytest.mark.embedded_only
def test_forbidden_system_call_traps_with_contract_violation(ic: Any) -> None:
    wat = """(module
      (import "ic0" "msg_reply" (func $reply))
      (import "ic0" "call_perform" (func $perform (result i32)))
      (memory 1)
      (func (export "canister_init") (call $reply))
      (func (export "canister_query q") (drop (call $perform))))"""
    cid = ic.create_canister(controllers=[ALICE], sender=ALICE)
    with pytest.raises(CallRejected) as err:
        ic.install_code(cid, wasmtime.wat2wasm(wat), b"", sender=ALICE)
    assert err.value.error_code == "IC0504"
    assert '"ic0.msg_reply" cannot be executed in init mode' in err.value.reject.message
    ok = wasmtime.wat2wasm(wat.replace('(func (export "canister_init") (call $reply))', ""))
    ic.install_code(cid, ok, b"", sender=ALICE)
    with pytest.raises(CallRejected) as err:
        ic.query_call(cid, "q", b"")
    assert "cannot be executed in non-replicated query mode" in err.value.reject.message


@pytest.mark.embedded_only
def test_queries_get_a_data_certificate_for_certified_data(ic: Any, wasms: dict[str, bytes]) -> None:
    from ic_replica import candid, hash_tree
    from ic_replica.certification import STATE_ROOT_SEPARATOR, bls_verify
    from ic_replica.http_server import _thaw

    cid = install(ic, wasms, "counter")
    ic.update_call(cid, "certify", candid.encode([candid.BLOB], [b"\x01" * 32]))
    (cert_bytes,) = decode1(ic.query_call(cid, "certificate", no_args()))
    import cbor2

    cert = _thaw(cbor2.loads(cert_bytes))
    tree = hash_tree.from_cbor(cert["tree"])
    assert bls_verify(ic.keys.root_public_key, cert["signature"], STATE_ROOT_SEPARATOR + hash_tree.reconstruct(tree))
    assert hash_tree.lookup(tree, [b"canister", cid.raw, b"certified_data"]) == ("found", b"\x01" * 32)
    assert hash_tree.lookup(tree, [b"time"])[0] == "found"
    # in an update call (replicated) there is no certificate
    assert decode1(ic.update_call(cid, "certificate", no_args())) == []
