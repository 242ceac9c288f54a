"""Principals, Candid and wasm module preparation, checked against independent implementations."""

from __future__ import annotations

import gzip

import pytest
import wasmtime
from icp_candid import Types  # type: ignore[import-not-found]
from icp_candid import decode as reference_decode  # type: ignore[import-not-found]
from icp_candid import encode as reference_encode  # type: ignore[import-not-found]

from ic_replica import candid
from ic_replica.candid import BLOB, INT, NAT, NAT64, PRINCIPAL, TEXT, Opt, Record, Variant, Vec
from ic_replica.principal import InvalidPrincipal, Principal, canister_id_from_index, canister_index
from ic_replica.wasm_module import GLOBAL_EXPORT_PREFIX, START_EXPORT, InvalidModule, prepare


def test_principal_text_forms() -> None:
    assert Principal.management().to_text() == "aaaaa-aa"
    assert Principal.anonymous().to_text() == "2vxsx-fae"
    assert canister_id_from_index(1).to_text() == "rrkah-fqaaa-aaaaa-aaaaq-cai"
    assert canister_index(Principal.from_text("bkyz2-fmaaa-aaaaa-qaaaq-cai")) == 0x8000000000100001
    for bad in ("", "aaaaa-ab", "rrkah-fqaaa-aaaaa-aaaaq-caj", "not a principal!"):
        with pytest.raises(InvalidPrincipal):
            Principal.from_text(bad)


def test_candid_round_trip_and_agreement_with_icp_candid() -> None:
    t = Record.of(n=NAT, i=INT, t=TEXT, b=BLOB, o=Opt(NAT64), v=Vec(TEXT), p=PRINCIPAL,
                  x=Variant.of(a=NAT, b=TEXT))
    value = {"n": 2**70, "i": -5, "t": "héllo", "b": b"\x00\xff", "o": [7], "v": ["a", "b"],
             "p": Principal.anonymous(), "x": {"b": "y"}}
    data = candid.encode([t], [value])
    assert candid.decode(data, [t]) == [value]
    ref = reference_decode(data)[0]["value"]
    assert ref[str(candid.idl_hash("n"))] == 2**70 and ref[str(candid.idl_hash("t"))] == "héllo"
    # and bytes produced by the independent encoder decode here
    other = reference_encode([{"type": Types.Record({"a": Types.Nat, "b": Types.Text}),
                               "value": {"a": 3, "b": "z"}}])
    assert candid.decode(other, [Record.of(a=NAT, b=TEXT)]) == [{"a": 3, "b": "z"}]


def test_candid_rejects_garbage() -> None:
    for bad in (b"", b"DIDX", b"DIDL\x01\x7f", b"DIDL\x00\x01\x71\x05ab", b"DIDL\x00\x01\x7e\x02"):
        with pytest.raises(candid.CandidError):
            candid.decode(bad)
    with pytest.raises(candid.CandidError):
        candid.encode([NAT], [-1])
    # absent optional fields decode as empty options (subtyping)
    assert candid.decode(candid.encode([Record.of(a=NAT)], [{"a": 1}]), [Record.of(a=NAT, b=Opt(NAT))]) == [
        {"a": 1, "b": []}]


def test_prepare_exports_globals_and_start() -> None:
    wat = """(module (memory 1) (global $g (mut i32) (i32.const 7)) (global i64 (i64.const 1))
      (func $s (global.set $g (i32.const 9))) (start $s))"""
    info = prepare(wasmtime.wat2wasm(wat))
    assert info.global_count == 2 and info.has_start and not info.memory64
    engine = wasmtime.Engine()
    module = wasmtime.Module(engine, info.prepared)
    names = {e.name for e in module.exports}
    assert {f"{GLOBAL_EXPORT_PREFIX}0", f"{GLOBAL_EXPORT_PREFIX}1", START_EXPORT} <= names
    store = wasmtime.Store(engine)
    instance = wasmtime.Instance(store, module, [])
    exports = instance.exports(store)
    assert exports[f"{GLOBAL_EXPORT_PREFIX}0"].value(store) == 7  # start did not run at instantiation
    exports[START_EXPORT](store)
    assert exports[f"{GLOBAL_EXPORT_PREFIX}0"].value(store) == 9


def test_prepare_handles_gzip_and_rejects_junk() -> None:
    raw = wasmtime.wat2wasm("(module (memory i64 1))")
    assert prepare(gzip.compress(raw)).module_hash == prepare(raw).module_hash
    assert prepare(raw).memory64
    for junk in (b"", b"\x00asm\x02\x00\x00\x00", b"\x1f\x8b\x08garbage", raw + b"\x07\xff"):
        with pytest.raises(InvalidModule):
            prepare(junk)
