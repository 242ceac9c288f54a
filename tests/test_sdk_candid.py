"""The SDK's own Candid codec: wire format from the specification, round trips of every type (recursive ones
too), the subtyping rules applied when decoding, clear errors, and hostile input that only ever raises
CandidError, quickly."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prometheus_sdk import candid as c
from prometheus_sdk import did
from prometheus_sdk.candid import CandidError, _leb, _sleb, decode, encode, idl_hash
from prometheus_sdk.errors import ConfigError
from prometheus_sdk.principal import Principal
from testkit.cost import calls

P = Principal.from_text("ryjl3-tyaaa-aaaaa-aaaba-cai")
HYPOTHESIS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=150)


def roundtrip(t: c.Type, v: Any, expected: Any = None) -> Any:
    out = decode(encode([t], [v]), [t])
    assert out == [v if expected is None else expected]
    return out[0]


# ------------------------------------------------------------------------------------------- wire format


def test_wire_format_of_the_specification_examples() -> None:
    assert encode([], []) == b"DIDL\x00\x00"
    assert encode([c.NAT], [0]) == b"DIDL\x00\x01\x7d\x00"
    assert encode([c.NAT], [624485]) == b"DIDL\x00\x01\x7d\xe5\x8e\x26"
    assert encode([c.INT], [-123456]) == b"DIDL\x00\x01\x7c\xc0\xbb\x78"
    assert encode([c.INT], [-1]) == b"DIDL\x00\x01\x7c\x7f"
    assert encode([c.INT], [64]) == b"DIDL\x00\x01\x7c\xc0\x00"
    assert encode([c.NAT16, c.INT8], [0x1234, -2]) == b"DIDL\x00\x02\x7a\x77\x34\x12\xfe"
    assert encode([c.TEXT], ["Motoko"]) == b"DIDL\x00\x01\x71\x06Motoko"
    assert encode([c.BOOL, c.NULL, c.RESERVED], [True, None, None]) == b"DIDL\x00\x03\x7e\x7f\x70\x01"
    assert encode([c.Opt(c.NAT)], [[5]]) == b"DIDL\x01\x6e\x7d\x01\x00\x01\x05"
    assert encode([c.BLOB], [b"\x01\x02"]) == b"DIDL\x01\x6d\x7b\x01\x00\x02\x01\x02"
    assert encode([c.PRINCIPAL], [Principal.anonymous()]) == b"DIDL\x00\x01\x68\x01\x01\x04"
    # fields go by increasing id: a (97) before b (98); ok (24860) before err (5048165)
    assert encode([c.Record.of(b=c.NAT8, a=c.BOOL)], [{"a": True, "b": 7}]) == \
        b"DIDL\x01\x6c\x02\x61\x7e\x62\x7b\x01\x00\x01\x07"
    assert encode([c.Variant.of(ok=c.NAT8, err=c.TEXT)], [{"ok": 1}]) == \
        b"DIDL\x01\x6b\x02\x9c\xc2\x01\x7b\xe5\x8e\xb4\x02\x71\x01\x00\x00\x01"


def test_idl_hash() -> None:
    assert idl_hash("") == 0 and idl_hash("a") == 97
    assert idl_hash("owner") == 947296307 and idl_hash("subaccount") == 1349681965


@pytest.mark.parametrize("n", [0, 1, 63, 64, 127, 128, 2**63, 2**64 - 1, 2**64, 2**300, 2**690])
def test_leb128_round_trips_big_numbers(n: int) -> None:
    roundtrip(c.NAT, n)
    roundtrip(c.INT, n)
    roundtrip(c.INT, -n)
    assert decode(b"DIDL\x00\x01\x7d" + _leb(n)) == [n] and decode(b"DIDL\x00\x01\x7c" + _sleb(-n)) == [-n]


def test_leb128_of_big_numbers_takes_a_bounded_number_of_steps() -> None:
    """A big number is converted in one step, not one shift per 7-bit group (which is quadratic in its size):
    the calls made do not depend on the number's size."""
    small, big = 2**40_000 - 1, 2**160_000 - 1
    encoded_small, small_calls = calls(lambda: _leb(small))
    encoded_big, big_calls = calls(lambda: _sleb(-big))
    assert isinstance(encoded_small, bytes) and len(encoded_small) == -(-40_000 // 7)
    assert isinstance(encoded_big, bytes) and len(encoded_big) == -(-160_001 // 7)
    assert small_calls < 20 and big_calls < 20, (small_calls, big_calls)


# ---------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("t,values", [
    (c.NULL, [None]), (c.BOOL, [True, False]), (c.NAT, [0, 10**30]), (c.INT, [0, -(10**30), 10**30]),
    (c.NAT8, [0, 255]), (c.NAT16, [0, 65535]), (c.NAT32, [0, 2**32 - 1]), (c.NAT64, [0, 2**64 - 1]),
    (c.INT8, [-128, 127]), (c.INT16, [-(2**15), 2**15 - 1]), (c.INT32, [-(2**31), 2**31 - 1]),
    (c.INT64, [-(2**63), 2**63 - 1]), (c.FLOAT32, [0.0, 1.5, -2.25, math.inf]), (c.FLOAT64, [0.1, -1e300, math.inf]),
    (c.TEXT, ["", "héllo ✓ 😀"]), (c.RESERVED, [None]), (c.PRINCIPAL, [P, Principal.management()]),
])
def test_primitives_round_trip(t: c.Type, values: list[Any]) -> None:
    for v in values:
        roundtrip(t, v)


def test_float_nan_round_trips() -> None:
    assert math.isnan(decode(encode([c.FLOAT64], [math.nan]), [c.FLOAT64])[0])
    assert decode(encode([c.FLOAT32], [3]), [c.FLOAT32]) == [3.0]  # an int is a fine float


def test_composites_round_trip() -> None:
    roundtrip(c.Opt(c.NAT), [])
    roundtrip(c.Opt(c.NAT), [3])
    roundtrip(c.Opt(c.NAT), None, [])
    roundtrip(c.Opt(c.Opt(c.NULL)), [[None]])
    roundtrip(c.Opt(c.Opt(c.NULL)), [[]])
    roundtrip(c.Opt(c.NULL), [None])
    roundtrip(c.Vec(c.TEXT), ["a", "b"])
    roundtrip(c.Vec(c.TEXT), ("a",), ["a"])
    roundtrip(c.Vec(c.NAT64), [1, 2**64 - 1])
    roundtrip(c.Vec(c.INT16), [-1, 300])
    roundtrip(c.Vec(c.FLOAT64), [0.5, 2.0])
    roundtrip(c.Vec(c.BOOL), [True, False])
    roundtrip(c.Vec(c.NULL), [None] * 5)
    roundtrip(c.BLOB, b"\x00\xff")
    roundtrip(c.BLOB, bytearray(b"ab"), b"ab")
    roundtrip(c.BLOB, memoryview(b"ab"), b"ab")
    roundtrip(c.BLOB, [1, 2, 255], b"\x01\x02\xff")
    roundtrip(c.Vec(c.BLOB), [b"", b"x"])
    account = c.Record.of(owner=c.PRINCIPAL, subaccount=c.Opt(c.BLOB))
    roundtrip(account, {"owner": P, "subaccount": [bytes(32)]})
    roundtrip(account, {"owner": "ryjl3-tyaaa-aaaaa-aaaba-cai", "subaccount": None}, {"owner": P, "subaccount": []})
    roundtrip(account, {"owner": P.raw}, {"owner": P, "subaccount": []})  # a missing opt field is absent
    roundtrip(c.Record(((0, c.NAT), (5, c.TEXT), ("x", c.BOOL))), {0: 1, 5: "five", "x": False})
    roundtrip(c.Tuple(c.NAT, c.TEXT), (1, "a"))  # a tuple record is a tuple
    roundtrip(c.Tuple(c.NAT, c.TEXT), {0: 1, 1: "a"}, (1, "a"))
    roundtrip(c.Tuple(c.NAT, c.TEXT), [1, "a"], (1, "a"))
    roundtrip(c.Tuple(), (), {})  # the empty record
    roundtrip(c.Variant.of(ok=c.NAT, err=c.TEXT), {"err": "no"})
    roundtrip(c.Variant.of(a=c.NULL, b=c.RESERVED), {"a": None})
    roundtrip(c.Variant(((3, c.NULL), ("named", c.NAT))), {3: None})
    roundtrip(c.Func((c.NAT,), (c.TEXT,), ("query",)), (P, "method"))
    roundtrip(c.Func(), [P, "m"], (P, "m"))
    roundtrip(c.Service((("m", c.Func((c.NAT,), ())),)), P)
    roundtrip(c.Service(), "aaaaa-aa", Principal.management())


def test_several_arguments_and_no_types() -> None:
    data = encode([c.NAT, c.TEXT, c.Record.of(a=c.NAT8), c.Variant.of(b=c.NULL), c.Tuple(c.BOOL)],
                  [1, "x", {"a": 2}, {"b": None}, (True,)])
    assert decode(data) == [1, "x", {idl_hash("a"): 2}, {idl_hash("b"): None}, {0: True}]


def test_recursive_types_round_trip_and_get_one_table_entry() -> None:
    tree = c.Rec()
    tree.define(c.Variant.of(leaf=c.NAT, node=c.Vec(tree)))
    value = {"node": [{"leaf": 1}, {"node": [{"leaf": 2}, {"node": []}]}]}
    data = encode([tree], [value])
    assert decode(data, [tree]) == [value]
    assert data[4] == 2  # the variant and its vec: two entries, however deep the value

    even, odd = c.Rec(), c.Rec()  # mutual recursion
    even.define(c.Opt(c.Record.of(next=odd)))
    odd.define(c.Opt(c.Record.of(next=even)))
    deep: dict[str, Any] = {"next": []}
    for _ in range(5):
        deep = {"next": [{"next": [deep]}]}
    assert decode(encode([even], [[deep]]), [even]) == [[deep]]

    alias = c.Rec().define(c.Rec().define(c.NAT))  # a name for a name for nat: no entry at all
    assert encode([alias], [5]) == encode([c.NAT], [5])


def test_encoding_is_deterministic_and_shares_equal_types() -> None:
    t = c.Record.of(a=c.Opt(c.NAT), b=c.Opt(c.NAT), c=c.Vec(c.Opt(c.NAT)))
    v = {"a": [1], "b": [], "c": [[2]]}
    assert encode([t], [v]) == encode([t], [v])
    assert encode([t], [v])[4] == 3  # opt nat once, vec, record


def test_did_func_and_service_types_are_full_types() -> None:
    iface = did.parse("type S = service { m : (nat) -> (text) query; n : (S) -> () };"
                      "type F = func (nat, opt F) -> (S) composite_query;"
                      "service : { f : (F, S) -> (service { x : () -> () }) }")
    service, func = c._deref(iface.types["S"]), c._deref(iface.types["F"])
    assert isinstance(service, c.Service) and [n for n, _ in service.methods] == ["m", "n"]
    assert isinstance(func, c.Func) and func.modes == ("composite_query",) and len(func.args) == 2
    m = iface.methods["f"]
    data = encode(m.args, [(P, "callback"), P])
    assert decode(data, m.args) == [(P, "callback"), P]
    assert b"\x01m" in data and b"\x01n" in data  # the service type travels with its methods
    assert decode(encode(m.rets, [P]), m.rets) == [P]
    with pytest.raises(ConfigError, match="defined as itself"):
        did.parse("type A = B; type B = A; service : {}")


# --------------------------------------------------------------------------------------- decoding rules


def wire(t: c.Type, v: Any) -> bytes:
    return encode([t], [v])


def test_nat_widens_to_int_but_not_back() -> None:
    assert decode(wire(c.NAT, 5), [c.INT]) == [5]
    with pytest.raises(CandidError, match="expected nat, the message has int"):
        decode(wire(c.INT, 5), [c.NAT])
    with pytest.raises(CandidError, match="expected nat32"):
        decode(wire(c.NAT16, 5), [c.NAT32])


def test_record_fields_absent_extra_and_missing() -> None:
    wide = c.Record.of(a=c.NAT, extra=c.Vec(c.TEXT), more=c.Variant.of(x=c.NULL))
    narrow = c.Record.of(a=c.INT, o=c.Opt(c.TEXT), n=c.NULL, r=c.RESERVED)
    assert decode(wire(wide, {"a": 1, "extra": ["s"], "more": {"x": None}}), [narrow]) == \
        [{"a": 1, "o": [], "n": None, "r": None}]
    with pytest.raises(CandidError, match=r"arg 0: record field 'b' is missing"):
        decode(wire(wide, {"a": 1, "extra": [], "more": {"x": None}}), [c.Record.of(a=c.NAT, b=c.NAT)])


def test_opt_rules() -> None:
    opt_nat = c.Opt(c.NAT)
    assert decode(wire(c.NULL, None), [opt_nat]) == [[]]  # null :? opt t
    assert decode(wire(c.RESERVED, None), [opt_nat]) == [[]]  # reserved :? opt t
    assert decode(wire(opt_nat, [5]), [c.Opt(c.TEXT)]) == [[]]  # opt v :? opt t, v !: t
    assert decode(wire(c.NAT, 5), [opt_nat]) == [[5]]  # a bare value at an opt type
    assert decode(wire(c.NAT, 5), [c.Opt(c.INT)]) == [[5]]
    assert decode(wire(c.TEXT, "x"), [opt_nat]) == [[]]  # ... that does not decode: absent
    assert decode(wire(c.NAT, 5), [c.Opt(opt_nat)]) == [[[5]]]  # ?(?5): the official construct test line 123
    assert decode(wire(c.BOOL, True), [c.Opt(c.Opt(c.BOOL))]) == [[[True]]]
    assert decode(wire(c.NAT, 5), [c.Opt(c.RESERVED)]) == [[None]]
    assert decode(wire(c.NAT, 5), [c.Opt(c.NULL)]) == [[]]  # 5 is no null: absent
    endless = c.Rec()
    endless.define(c.Opt(endless))  # type Opt = opt Opt: a bool never reaches a non-opt type
    with pytest.raises(CandidError):
        decode(wire(c.BOOL, True), [endless])
    assert decode(wire(opt_nat, [5]), [c.Opt(opt_nat)]) == [[[5]]]
    assert decode(wire(c.Opt(opt_nat), [[]]), [c.Opt(opt_nat)]) == [[[]]]
    assert decode(wire(opt_nat, [5]), [c.Opt(c.RESERVED)]) == [[None]]
    assert decode(wire(opt_nat, [5]), [c.RESERVED]) == [None]
    # a new variant case inside an opt reads as absent; outside one it is an error
    new = c.Variant.of(a=c.NAT, b=c.NAT)
    assert decode(wire(c.Opt(new), [{"b": 1}]), [c.Opt(c.Variant.of(a=c.NAT))]) == [[]]
    assert decode(wire(c.Vec(c.Opt(new)), [[{"a": 1}], [{"b": 2}]]), [c.Vec(c.Opt(c.Variant.of(a=c.NAT)))]) == \
        [[[{"a": 1}], []]]
    with pytest.raises(CandidError, match=r"arg 0: variant case with id 98 is not one of \['a'\]"):
        decode(wire(new, {"b": 1}), [c.Variant.of(a=c.NAT)])
    with pytest.raises(CandidError, match="expected nat, the message has opt"):  # no opt into a non-opt
        decode(wire(opt_nat, [5]), [c.NAT])


def test_variant_cases_may_be_dropped_by_the_sender() -> None:
    assert decode(wire(c.Variant.of(a=c.NAT), {"a": 1}), [c.Variant.of(a=c.INT, b=c.TEXT)]) == [{"a": 1}]


def test_vectors_of_coerced_elements() -> None:
    assert decode(wire(c.BLOB, b"\x01\x02"), [c.Vec(c.Opt(c.NAT8))]) == [[[1], [2]]]
    assert decode(wire(c.BLOB, b"\x01"), [c.Vec(c.RESERVED)]) == [[None]]
    assert decode(wire(c.Vec(c.NAT), [1, 2]), [c.Vec(c.INT)]) == [[1, 2]]
    assert decode(wire(c.Vec(c.EMPTY), []), [c.BLOB]) == [b""]
    with pytest.raises(CandidError, match=r"arg 0 \[1\]\.b: expected nat, the message has text"):
        decode(wire(c.Vec(c.Variant.of(a=c.NAT, b=c.TEXT)), [{"a": 1}, {"b": "x"}]),
               [c.Vec(c.Variant.of(a=c.NAT, b=c.NAT))])


def test_arguments_extra_and_missing() -> None:
    data = encode([c.NAT, c.TEXT], [1, "extra"])
    assert decode(data, [c.NAT]) == [1]
    assert decode(data, []) == []
    assert decode(data, [c.NAT, c.TEXT, c.Opt(c.NAT), c.NULL, c.RESERVED]) == [1, "extra", [], None, None]
    with pytest.raises(CandidError, match="arg 2: missing"):
        decode(data, [c.NAT, c.TEXT, c.NAT])
    with pytest.raises(CandidError, match="arg 1: expected nat, the message has text"):
        decode(data, [c.NAT, c.NAT])


def test_references_decode_at_their_own_kind() -> None:
    f = c.Func((c.NAT,), ())
    assert decode(wire(f, (P, "m")), [c.Func((c.TEXT,), (c.NAT,))]) == [(P, "m")]
    assert decode(wire(c.Service(), P), [c.Service((("x", f),))]) == [P]
    assert decode(wire(c.Service(), P), [c.PRINCIPAL]) == [P]  # service <: principal (spec 0.1.8)
    with pytest.raises(CandidError, match="expected principal, the message has func"):
        decode(wire(f, (P, "m")), [c.PRINCIPAL])
    with pytest.raises(CandidError, match="expected empty"):
        decode(wire(c.NAT, 1), [c.EMPTY])


def test_nested_error_paths() -> None:
    t = c.Record.of(items=c.Vec(c.Record.of(owner=c.PRINCIPAL)))
    with pytest.raises(CandidError, match=r"arg 0 \.items\[0\]\.owner: expected principal, the message has text"):
        decode(wire(c.Record.of(items=c.Vec(c.Record.of(owner=c.TEXT))), {"items": [{"owner": "a"}]}), [t])


# ----------------------------------------------------------------------------------------- encode errors


@pytest.mark.parametrize("t,v,message", [
    (c.Record.of(owner=c.PRINCIPAL), {"owner": 5}, r"arg 0 \.owner: expected principal, got int 5"),
    (c.Record.of(owner=c.PRINCIPAL), {"owner": "nope"}, r"arg 0 \.owner: expected principal"),
    (c.Vec(c.Record.of(n=c.NAT)), [{"n": 1}, {"n": -1}], r"arg 0 \[1\]\.n: expected nat, got int -1"),
    (c.NAT, True, "expected nat, got bool"),
    (c.NAT8, 256, r"expected nat8 \(0\.\.255\)"),
    (c.INT64, 2**63, "expected int64"),
    (c.BOOL, 1, "expected bool"),
    (c.TEXT, b"x", "expected str for text"),
    (c.TEXT, "\ud800", "not valid Unicode"),
    (c.NULL, 0, "expected None for null"),
    (c.FLOAT32, 1e300, "does not fit float32"),
    (c.FLOAT64, "1.0", "expected float64"),
    (c.EMPTY, None, "no value has type empty"),
    (c.Opt(c.NAT), 5, r"expected \[\] or \[value\] for opt nat"),
    (c.Opt(c.NAT), [1, 2], r"expected \[\] or \[value\]"),
    (c.Vec(c.NAT), "abc", "expected a list for vec nat"),
    (c.BLOB, [1, 256], r"arg 0 \[1\]: expected nat8"),
    (c.Record.of(a=c.NAT), {"a": 1, "b": 2}, r"unknown record field\(s\) \['b'\]"),
    (c.Record.of(a=c.NAT), {}, "missing record field 'a'"),
    (c.Record.of(a=c.NAT), [1], "expected a dict for record"),
    (c.Tuple(c.NAT, c.NAT), (1,), "expected a tuple of 2"),
    (c.Variant.of(a=c.NAT), {"a": 1, "b": 2}, "one-entry dict"),
    (c.Variant.of(a=c.NAT), {"c": 1}, r"unknown variant tag 'c'"),
    (c.Variant.of(a=c.NAT), {"a": "x"}, r"arg 0 \.a: expected nat"),
    (c.Func(), (P,), r"expected \(principal, method name\)"),
    (c.Service(), 7, "expected principal"),
])
def test_values_that_do_not_fit_name_their_place(t: c.Type, v: Any, message: str) -> None:
    with pytest.raises(CandidError, match=message):
        encode([t], [v])


def test_type_errors() -> None:
    with pytest.raises(CandidError, match="2 type"):
        encode([c.NAT, c.NAT], [1])
    with pytest.raises(CandidError, match="same id"):
        c.Record((("a", c.NAT), (97, c.NAT)))
    with pytest.raises(CandidError, match="0..2"):
        c.Record(((2**32, c.NAT),))
    with pytest.raises(CandidError, match="unknown function mode"):
        c.Func((), (), ("update",))
    with pytest.raises(CandidError, match="used before it is defined"):
        encode([c.Rec()], [1])
    loop = c.Rec()
    loop.define(loop)
    with pytest.raises(CandidError, match="defined as itself"):
        encode([loop], [1])
    with pytest.raises(CandidError, match="defined only once"):
        c.Rec().define(c.NAT).define(c.NAT)
    with pytest.raises(CandidError, match="not func"):
        encode([c.Service((("m", c.NAT),))], [P])
    with pytest.raises(CandidError, match="nested deeper"):
        nest = c.Rec()
        nest.define(c.Opt(nest))
        v: list[Any] = []
        for _ in range(70):
            v = [v]
        encode([nest], [v])


# ---------------------------------------------------------------------------------------- hostile input


def vec_of(elem_opcode: int, count: int) -> bytes:
    return b"DIDL\x01\x6d" + _sleb(elem_opcode) + b"\x01\x00" + _leb(count)


HOSTILE = {
    "no magic": b"DIDX\x00\x00",
    "empty": b"",
    "vec null of 2^60": vec_of(-1, 2**60),
    "vec reserved of 10^7": vec_of(-16, 10**7),
    "vec of empty records": b"DIDL\x02\x6d\x01\x6c\x00\x01\x00" + _leb(10**6),
    "vec vec null": b"DIDL\x02\x6d\x01\x6d\x7f\x01\x00" + _leb(1000) + _leb(10**5) * 1000,
    "vec empty with elements": vec_of(-17, 1),
    "value of type empty": b"DIDL\x00\x01\x6f",
    "record containing itself": b"DIDL\x01\x6c\x01\x00\x00\x01\x00",
    "variant containing itself": b"DIDL\x01\x6b\x01\x00\x00\x01\x00" + b"\x00" * 1000,
    "records containing each other": b"DIDL\x02\x6c\x01\x00\x01\x6c\x01\x00\x00\x01\x00",
    "opt nested too deep": b"DIDL\x01\x6e\x00\x01\x00" + b"\x01" * 10_000 + b"\x00",
    "LEB128 too long": b"DIDL\x00\x01\x7d" + b"\xff" * 200 + b"\x01",
    "LEB128 cut": b"DIDL\x00\x01\x7d\xff",
    "type reference out of range": b"DIDL\x01\x6e\x05\x01\x00\x00",
    "type reference to a non-type opcode": b"DIDL\x00\x01\x50",
    "constructor opcode as an argument type": b"DIDL\x00\x01\x6e",
    "positive opcode in the table": b"DIDL\x01\x05\x01\x00",
    "field ids not increasing": b"DIDL\x01\x6c\x02\x02\x7d\x01\x7d\x01\x00\x01\x01",
    "field ids equal": b"DIDL\x01\x6c\x02\x01\x7d\x01\x7d\x01\x00\x01\x01",
    "field id beyond 32 bits": b"DIDL\x01\x6c\x01" + _leb(2**32) + b"\x7d\x01\x00\x01",
    "table count beyond the input": b"DIDL" + _leb(2**60),
    "argument count beyond the input": b"DIDL\x00" + _leb(2**40),
    "record field count beyond the input": b"DIDL\x01\x6c" + _leb(2**40),
    "service method with a non-func type": b"DIDL\x01\x69\x01\x01m\x7d\x01\x00\x01\x00",
    "service method names not sorted": b"DIDL\x02\x6a\x00\x00\x00\x69\x02\x01b\x00\x01a\x00\x01\x01\x01\x00",
    "func with an unknown annotation": b"DIDL\x01\x6a\x00\x00\x01\x09\x01\x00\x01\x01\x00\x01m",
    "trailing bytes": b"DIDL\x00\x01\x7d\x01\x00",
    "invalid UTF-8": b"DIDL\x00\x01\x71\x02\xc3\x28",
    "UTF-8 surrogate": b"DIDL\x00\x01\x71\x03\xed\xa0\x80",
    "text longer than the input": b"DIDL\x00\x01\x71" + _leb(2**50) + b"abc",
    "principal of 30 bytes": b"DIDL\x00\x01\x68\x01\x1e" + bytes(30),
    "opaque principal reference": b"DIDL\x00\x01\x68\x00",
    "bool 2": b"DIDL\x00\x01\x7e\x02",
    "opt tag 2": b"DIDL\x01\x6e\x7d\x01\x00\x02",
    "variant index out of range": b"DIDL\x01\x6b\x01\x00\x7f\x01\x00\x01",
    "future value with references": b"DIDL\x01\x67\x00\x01\x00\x00\x01",
    "nat64 cut": b"DIDL\x00\x01\x78\x01\x02",
    "huge blob length": b"DIDL\x01\x6d\x7b\x01\x00" + _leb(2**62),
    "vec nat64 beyond the input": vec_of(-8, 10**5),
    "func with an opaque reference": b"DIDL\x01\x6a\x00\x00\x00\x01\x00\x00",
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_input_raises_candid_error_quickly(name: str) -> None:
    """Refused in a bounded number of steps, whatever length or count the input claims."""
    for expected in (None, [c.Opt(c.NAT)]):
        raised, steps = calls(lambda expected=expected: decode(HOSTILE[name], expected))
        assert isinstance(raised, CandidError), raised
        assert steps < 5_000, steps


def test_type_tables_that_are_valid_but_unusual() -> None:
    # a future type (opcode -25) is skipped, and its value too; it reads as absent at an opt type
    future = b"DIDL\x01\x67\x02\xaa\xbb\x02\x00\x7d\x03\x00\x01\x02\x03\x05"
    assert decode(future) == [None, 5]
    assert decode(future, [c.Opt(c.NAT), c.NAT]) == [[], 5]
    # a primitive type is no table entry (the official construct tests: "principal: not construct")
    for prim in (b"\x7d", b"\x7f", b"\x68"):
        with pytest.raises(CandidError, match="the table holds only composite types"):
            decode(b"DIDL\x01" + prim + b"\x00")
    with pytest.raises(CandidError, match="at most 10000"):  # a table costs far more than its bytes to set up
        decode(b"DIDL" + _leb(10_001) + b"\x6c\x00" * 10_001 + b"\x00")
    # deep (non-recursive) type tables cost nothing until a value is nested as deep
    deep = b"DIDL" + _leb(1000) + b"".join(b"\x6e" + _sleb(i + 1) for i in range(999)) + b"\x6e\x7d\x01\x00\x00"
    assert decode(deep) == [[]]
    # LEB128 with redundant zero groups is accepted (the specification does not require the shortest form)
    assert decode(b"DIDL\x00\x01\x7d\x85\x80\x00") == [5]


def test_cut_messages_raise_candid_error() -> None:
    tree = c.Rec()
    tree.define(c.Variant.of(leaf=c.TEXT, node=c.Vec(c.Tuple(tree, c.Opt(c.FLOAT64)))))
    data = encode([tree, c.PRINCIPAL], [{"node": [({"leaf": "x"}, [1.0]), ({"node": []}, [])]}, P])
    for cut in range(len(data)):
        with pytest.raises(CandidError):
            decode(data[:cut])
        with pytest.raises(CandidError):
            decode(data[:cut], [tree, c.PRINCIPAL])


def test_decoding_is_linear() -> None:
    """8x the records costs at most 8x the calls (plus a constant), skipped fields included; a 4 MiB blob
    is taken whole, not byte by byte."""
    def steps(n: int) -> int:
        data = encode([c.Vec(c.Record.of(a=c.NAT, b=c.Opt(c.TEXT)))], [[{"a": i, "b": ["x"]} for i in range(n)]])
        decoded, count = calls(lambda: decode(data, [c.Vec(c.Record.of(a=c.INT, b=c.Opt(c.TEXT), z=c.Opt(c.NAT)))]))
        assert isinstance(decoded, list) and len(decoded[0]) == n and decoded[0][-1]["z"] == []
        return count

    small, big = steps(1_000), steps(8_000)
    assert big <= 8 * small + 1_000, (small, big)
    blob = encode([c.BLOB], [bytes(4 * 1024 * 1024)])
    decoded, count = calls(lambda: decode(blob, [c.BLOB]))
    assert isinstance(decoded, list) and len(decoded[0]) == 4 * 1024 * 1024
    assert count < 1_000, count


def test_a_cached_type_table_gives_what_parsing_gives() -> None:
    """Replies of one method share their header (magic, type table, argument types): it is parsed once, and
    a message that starts with a cached header's bytes decodes exactly as a parse would, values, errors and
    the decoding budget alike."""
    from prometheus_sdk.candid import _TABLES, MAX_CACHED_TABLE_BYTES, MAX_CACHED_TABLE_LENGTHS, MAX_CACHED_TABLES, _leb

    t = c.Record.of(a=c.NAT, b=c.Opt(c.TEXT), v=c.Variant.of(x=c.NULL, y=c.INT), only_in_this_test=c.NULL)
    first = encode([t], [{"a": 1, "b": ["x"], "v": {"x": None}, "only_in_this_test": None}])
    again = encode([t], [{"a": 2**70, "b": [], "v": {"y": -5}, "only_in_this_test": None}])
    decoded, parsed = calls(lambda: decode(first, [t]))
    assert decoded == [{"a": 1, "b": ["x"], "v": {"x": None}, "only_in_this_test": None}]
    _, cached = calls(lambda: decode(first, [t]))
    assert cached < parsed / 2, (cached, parsed)  # the second decode of a header skips its parse
    assert decode(again, [t]) == [{"a": 2**70, "b": [], "v": {"y": -5}, "only_in_this_test": None}]
    assert decode(again)[0][idl_hash("a")] == 2**70  # untyped too
    with pytest.raises(CandidError, match="unexpected end of input"):
        decode(again[:-1], [t])  # the header is cached, the values are cut
    with pytest.raises(CandidError, match="after the last value"):
        decode(again + b"\x00", [t])
    nulls = c.Record.of(n=c.Vec(c.NULL), only_in_this_test=c.NULL)
    assert decode(encode([nulls], [{"n": [None] * 3, "only_in_this_test": None}]), [nulls])[0]["n"] == [None] * 3
    huge = encode([nulls], [{"n": [], "only_in_this_test": None}])  # ends with the vec count, 0
    huge = huge[:-1] + _leb(10**9)  # the header is cached; a billion nulls cost more than the message allows
    with pytest.raises(CandidError, match="more decoding work"):
        decode(huge, [nulls])
    # The same table with one more argument is another header, parsed on its own.
    longer = encode([c.NAT, t], [7, {"a": 3, "b": [], "v": {"x": None}, "only_in_this_test": None}])
    assert decode(longer, [c.NAT, t])[0] == 7
    # Bounded: many distinct tables, of many lengths, keep at most MAX_CACHED_TABLES headers of at most
    # MAX_CACHED_TABLE_LENGTHS lengths; the one in use all along stays; a long one is never kept.
    for i in range(MAX_CACHED_TABLES + 40):
        value = {f"f{i}_{j}": j for j in range(i % 40 + 1)}  # headers of 40 lengths
        ti = c.Record([(name, c.NAT) for name in value])
        assert decode(encode([ti], [value]), [ti]) == [value]
        assert decode(again, [t])[0]["a"] == 2**70
    assert len(_TABLES._tables) <= MAX_CACHED_TABLES
    assert len({len(h) for h in _TABLES._tables}) <= MAX_CACHED_TABLE_LENGTHS
    assert any(again.startswith(h) for h in _TABLES._tables)
    wide = c.Record([(f"field_{j}", c.Vec(c.Opt(c.NAT))) for j in range(MAX_CACHED_TABLE_BYTES // 4)])
    data = encode([wide], [{f"field_{j}": [] for j in range(MAX_CACHED_TABLE_BYTES // 4)}])
    assert decode(data, [wide])[0]["field_0"] == []
    assert all(len(h) <= MAX_CACHED_TABLE_BYTES for h in _TABLES._tables)


def test_not_bytes() -> None:
    with pytest.raises(CandidError, match="bytes, not str"):
        decode("DIDL")  # type: ignore[arg-type]


@HYPOTHESIS
@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_candid_error(data: bytes) -> None:
    for message in (data, b"DIDL" + data):
        for types in (None, [c.Opt(c.NAT), c.Vec(c.Record.of(a=c.TEXT))]):
            try:
                decode(message, types)
            except CandidError:
                pass


# ---------------------------------------------------------------------------------- random types & values

PRIMS = [c.NULL, c.BOOL, c.NAT, c.INT, c.NAT8, c.NAT16, c.NAT32, c.NAT64, c.INT8, c.INT16, c.INT32, c.INT64,
         c.FLOAT32, c.FLOAT64, c.TEXT, c.RESERVED, c.PRINCIPAL]
NAMES = st.one_of(st.sampled_from(["a", "b", "owner", "ok", "err", "x_y", "名"]), st.integers(0, 2**32 - 1))


def fields(inner: st.SearchStrategy[c.Type], min_size: int) -> st.SearchStrategy[tuple[tuple[Any, c.Type], ...]]:
    return st.lists(st.tuples(NAMES, inner), min_size=min_size, max_size=4,
                    unique_by=lambda f: f[0] if isinstance(f[0], int) else idl_hash(f[0])).map(tuple)


types = st.recursive(
    st.sampled_from(PRIMS) | st.just(c.Func((c.NAT,), (), ("query",))) | st.just(c.Service()),
    lambda inner: st.one_of(
        inner.map(c.Opt), inner.map(c.Vec), fields(inner, 0).map(c.Record), fields(inner, 1).map(c.Variant),
        st.lists(inner, max_size=3).map(lambda ts: c.Tuple(*ts)),
    ),
    max_leaves=12,
)
principals = st.binary(max_size=29).map(Principal)


def tagged(tag: Any) -> Any:
    """A variant value maker for `tag` (a function per tag, not a lambda sharing the loop variable)."""
    return lambda v: {tag: v}


def values(t: c.Type) -> st.SearchStrategy[Any]:
    """Values as `decode` gives them back (the canonical Python form of each type)."""
    if isinstance(t, c.Prim):
        ints = {"nat": st.integers(0, 2**200), "int": st.integers(-(2**200), 2**200)}
        for bits in (8, 16, 32, 64):
            ints[f"nat{bits}"] = st.integers(0, 2**bits - 1)
            ints[f"int{bits}"] = st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        return {"null": st.none(), "reserved": st.none(), "bool": st.booleans(), "text": st.text(max_size=8),
                "float32": st.floats(width=32, allow_nan=False), "float64": st.floats(allow_nan=False),
                "principal": principals, **ints}[t.name]
    if isinstance(t, c.Opt):
        return st.one_of(st.just([]), values(t.inner).map(lambda v: [v]))
    if isinstance(t, c.Vec):
        return st.binary(max_size=8) if t.inner == c.NAT8 else st.lists(values(t.inner), max_size=3)
    if isinstance(t, c.Record):
        if t.is_tuple and t.fields:
            return st.tuples(*[values(ft) for _, ft in sorted(t.fields, key=lambda f: f[0])])
        return st.fixed_dictionaries({n: values(ft) for n, ft in t.fields})
    if isinstance(t, c.Variant):
        return st.one_of(*[values(ft).map(tagged(n)) for n, ft in t.fields])
    if isinstance(t, c.Func):
        return st.tuples(principals, st.text(max_size=5))
    assert isinstance(t, c.Service)
    return principals


@HYPOTHESIS
@given(types.flatmap(lambda t: st.tuples(st.just(t), values(t))))
def test_random_values_of_random_types_round_trip(case: tuple[c.Type, Any]) -> None:
    t, v = case
    data = encode([t, c.TEXT], [v, "end"])
    assert decode(data, [t, c.TEXT]) == [v, "end"]
    assert decode(data)[1] == "end"
    mangled = bytearray(data)  # and any single-byte corruption decodes or raises CandidError
    for i in range(4, len(mangled), max(1, len(mangled) // 16)):
        mangled[i] ^= 0x5A
        try:
            decode(bytes(mangled), [t, c.TEXT])
        except CandidError:
            pass
        mangled[i] ^= 0x5A


@HYPOTHESIS
@given(types, types, st.data())
def test_decoding_at_any_other_type_returns_or_raises_candid_error(t: c.Type, other: c.Type, data: Any) -> None:
    v = data.draw(values(t))
    try:
        decode(encode([t], [v]), [other])
    except CandidError:
        pass
    # an opt expected type never fails: a value that does not fit reads as absent
    out = decode(encode([t], [v]), [c.Opt(other)])
    assert isinstance(out[0], list) and len(out[0]) <= 1


def test_reading_at_the_expected_type_is_charged_to_the_budget() -> None:
    """A vec of empty records read at a record of 40 optional fields would make 40 values per wire byte."""
    wide = c.Vec(c.Record(tuple((f"f{i}", c.Opt(c.NAT)) for i in range(40))))
    message = b"DIDL\x02\x6d\x01\x6c\x00\x01\x00" + _leb(49_000)
    with pytest.raises(CandidError, match="more decoding work"):
        decode(message, [wide])


def test_encoding_refuses_what_no_decoder_here_reads() -> None:
    with pytest.raises(CandidError, match="bits"):
        encode([c.NAT], [2**800])
    assert decode(encode([c.INT], [-(2**600)]), [c.INT]) == [-(2**600)]
    with pytest.raises(CandidError, match="expected a list for vec nat16"):
        encode([c.Vec(c.NAT16)], [b"\x01\x02"])
    deep: c.Type = c.NAT
    for _ in range(3000):
        deep = c.Opt(deep)
    with pytest.raises(CandidError):
        encode([deep], [[]])
