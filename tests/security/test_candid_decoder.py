"""Attack 5 and the Candid decoder's contract: property-based checks of `ic_replica.candid` against the
independent `icp_candid` implementation (icp-py-core), random bytes that may only ever raise `CandidError`
within a time budget, the decoding budget (a 13-byte `vec null` used to take ~17 s), type table validation,
and the spec's subtyping rules at expected types."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from icp_candid import Types  # type: ignore[import-not-found]
from icp_candid import decode as icp_decode  # type: ignore[import-not-found]
from icp_candid import encode as icp_encode  # type: ignore[import-not-found]

from ic_replica import candid
from ic_replica.candid import (
    BOOL,
    EMPTY,
    FLOAT64,
    INT,
    INT8,
    INT16,
    INT32,
    INT64,
    NAT,
    NAT8,
    NAT16,
    NAT32,
    NAT64,
    NULL,
    PRINCIPAL,
    RESERVED,
    TEXT,
    CandidError,
    Opt,
    Rec,
    Record,
    Tuple,
    Variant,
    Vec,
)
from ic_replica.principal import Principal

SETTINGS = settings(max_examples=200, deadline=timedelta(seconds=1), database=None,
                    suppress_health_check=[HealthCheck.too_slow])
TIME_BUDGET_S = 0.5  # any single decode, however hostile its input

# ---------------------------------------------------------------- random types and values
# A type is a small tree: ("prim", name) | ("opt", t) | ("vec", t) | ("record", ((name, t), ...))
# | ("tuple", (t, ...)) | ("variant", ((name, t), ...)).

PRIMS: dict[str, tuple[candid.Type, Any, st.SearchStrategy[Any]]] = {
    "nat": (NAT, Types.Nat, st.integers(0, 2**80)),
    "int": (INT, Types.Int, st.integers(-(2**80), 2**80)),
    "nat8": (NAT8, Types.Nat8, st.integers(0, 2**8 - 1)),
    "nat16": (NAT16, Types.Nat16, st.integers(0, 2**16 - 1)),
    "nat32": (NAT32, Types.Nat32, st.integers(0, 2**32 - 1)),
    "nat64": (NAT64, Types.Nat64, st.integers(0, 2**64 - 1)),
    "int8": (INT8, Types.Int8, st.integers(-(2**7), 2**7 - 1)),
    "int16": (INT16, Types.Int16, st.integers(-(2**15), 2**15 - 1)),
    "int32": (INT32, Types.Int32, st.integers(-(2**31), 2**31 - 1)),
    "int64": (INT64, Types.Int64, st.integers(-(2**63), 2**63 - 1)),
    "float64": (FLOAT64, Types.Float64, st.floats(allow_nan=False)),
    "bool": (BOOL, Types.Bool, st.booleans()),
    "text": (TEXT, Types.Text, st.text(alphabet=st.characters(codec="utf-8"), max_size=12)),
    "null": (NULL, Types.Null, st.none()),
    "reserved": (RESERVED, Types.Reserved, st.none()),
    "principal": (PRINCIPAL, Types.Principal, st.binary(max_size=29).map(Principal)),
}
NAMES = ["a", "b", "c", "id", "name", "value", "x", "owner"]


def fields(children: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[tuple[str, Any], ...]]:
    return st.lists(st.tuples(st.sampled_from(NAMES), children), max_size=4,
                    unique_by=lambda f: f[0]).map(tuple)


types_ = st.recursive(
    st.sampled_from(sorted(PRIMS)).map(lambda name: ("prim", name)),
    lambda children: st.one_of(
        children.map(lambda t: ("opt", t)),
        children.map(lambda t: ("vec", t)),
        fields(children).map(lambda fs: ("record", fs)),
        st.lists(children, min_size=1, max_size=3).map(lambda ts: ("tuple", tuple(ts))),
        fields(children).filter(bool).map(lambda fs: ("variant", fs)),
    ),
    max_leaves=8,
)


def ours(t: Any) -> candid.Type:
    kind, arg = t
    if kind == "prim":
        return PRIMS[arg][0]
    if kind == "opt":
        return Opt(ours(arg))
    if kind == "vec":
        return Vec(ours(arg))
    if kind == "tuple":
        return Tuple(*(ours(x) for x in arg))
    fs = tuple((name, ours(x)) for name, x in arg)
    return Record(fs) if kind == "record" else Variant(fs)


def theirs(t: Any) -> Any:
    kind, arg = t
    if kind == "prim":
        return PRIMS[arg][1]
    if kind == "opt":
        return Types.Opt(theirs(arg))
    if kind == "vec":
        return Types.Vec(theirs(arg))
    if kind == "tuple":
        return Types.Tuple(*(theirs(x) for x in arg))
    fs = {name: theirs(x) for name, x in arg}
    return Types.Record(fs) if kind == "record" else Types.Variant(fs)


def values(t: Any) -> st.SearchStrategy[Any]:
    """Values in this codec's representation (what `candid.encode` takes)."""
    kind, arg = t
    if kind == "prim":
        return PRIMS[arg][2]
    if kind == "opt":
        return st.one_of(st.just([]), values(arg).map(lambda v: [v]))
    if kind == "vec":
        return st.lists(values(arg), max_size=4)
    if kind == "tuple":
        return st.tuples(*(values(x) for x in arg))
    if kind == "record":
        return st.fixed_dictionaries({name: values(x) for name, x in arg})
    return st.one_of(*(values(x).map(_tagged(name)) for name, x in arg))


def _tagged(name: str) -> Any:
    return lambda v: {name: v}


def to_theirs(t: Any, v: Any) -> Any:
    kind, arg = t
    if kind == "prim":
        return v.raw if arg == "principal" else v
    if kind in ("opt", "vec"):
        return [to_theirs(arg, x) for x in v]
    if kind == "tuple":
        return [to_theirs(x, y) for x, y in zip(arg, v)]
    if kind == "record":
        return {name: to_theirs(x, v[name]) for name, x in arg}
    (name, inner), = v.items()
    return {name: to_theirs(dict(arg)[name], inner)}


def canon(t: Any, v: Any) -> Any:
    """One representation for values decoded by either implementation (or generated)."""
    kind, arg = t
    if kind == "prim":
        if arg == "principal":
            return v.raw if isinstance(v, Principal) else bytes(v.bytes)
        return v
    if kind == "vec" and arg == ("prim", "nat8"):
        return bytes(v)
    if kind in ("opt", "vec"):
        return [canon(arg, x) for x in v]
    if kind == "tuple":
        items = [v[i] for i in range(len(arg))] if isinstance(v, dict) else list(v)
        return [canon(x, y) for x, y in zip(arg, items)]
    if kind == "record":
        if isinstance(v, dict):
            return {name: canon(x, v[name]) for name, x in arg}
        return {name: canon(x, y) for (name, x), y in zip(arg, v)}
    (name, inner), = v.items()
    return {name: canon(dict(arg)[name], inner)}


typed_values = types_.flatmap(lambda t: st.tuples(st.just(t), values(t)))

# ---------------------------------------------------------------- agreement with icp_candid


@SETTINGS
@given(typed_values)
def test_what_we_encode_icp_candid_decodes(tv: tuple[Any, Any]) -> None:
    t, v = tv
    data = candid.encode([ours(t)], [v])
    assert canon(t, icp_decode(data, theirs(t))[0]["value"]) == canon(t, v)


@SETTINGS
@given(typed_values)
def test_what_icp_candid_encodes_we_decode(tv: tuple[Any, Any]) -> None:
    t, v = tv
    data = icp_encode([{"type": theirs(t), "value": to_theirs(t, v)}])
    assert canon(t, candid.decode(data, [ours(t)])[0]) == canon(t, v)
    # without expected types, their type table and ours describe the same values
    assert candid.decode(data) == candid.decode(candid.encode([ours(t)], [v]))


@SETTINGS
@given(typed_values)
def test_round_trip(tv: tuple[Any, Any]) -> None:
    t, v = tv
    assert canon(t, candid.decode(candid.encode([ours(t)], [v]), [ours(t)])[0]) == canon(t, v)


# ---------------------------------------------------------------- hostile bytes


def timed_decode(data: bytes, types: list[candid.Type] | None) -> None:
    start = time.monotonic()
    try:
        candid.decode(data, types)
    except CandidError:
        pass  # the only error allowed; anything else fails the test
    assert time.monotonic() - start < TIME_BUDGET_S, f"decoding {data[:40].hex()}... took too long"


def mutated(data: bytes, draw: Any) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "leb"]))
        i = draw(st.integers(0, max(len(out) - 1, 0)))
        if kind == "flip" and out:
            out[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            out[i:i] = draw(st.binary(min_size=1, max_size=3))
        elif kind == "delete" and out:
            del out[i]
        else:  # a large LEB128 number somewhere: lengths, counts, references
            out[i:i] = b"\xff\xff\xff\xff\x0f"
    return bytes(out)


@st.composite
def hostile_bytes(draw: Any) -> bytes:
    choice = draw(st.integers(0, 2))
    if choice == 0:
        return draw(st.binary(max_size=64))
    if choice == 1:
        return candid.MAGIC + draw(st.binary(max_size=64))
    t, v = draw(typed_values)
    return mutated(candid.encode([ours(t)], [v]), draw)


@SETTINGS
@given(hostile_bytes(), st.one_of(st.none(), types_.map(lambda t: [ours(t)])))
def test_random_bytes_raise_only_candid_error_within_a_budget(data: bytes, expected: Any) -> None:
    timed_decode(data, expected)


@SETTINGS
@given(typed_values, types_)
def test_any_valid_value_decodes_at_any_opt_type_and_at_reserved(tv: tuple[Any, Any], other: Any) -> None:
    t, v = tv
    data = candid.encode([ours(t)], [v])
    value = candid.decode(data, [Opt(ours(other))])[0]  # fits, or null: never an error
    assert value == [] or len(value) == 1
    assert candid.decode(data, [RESERVED]) == [None]


@SETTINGS
@given(typed_values, typed_values)
def test_extra_record_fields_are_skipped_and_missing_opt_fields_are_null(a: Any, b: Any) -> None:
    (ta, va), (tb, vb) = a, b
    wire = Record.of(known=ours(ta), extra=ours(tb))
    data = candid.encode([wire], [{"known": va, "extra": vb}])
    decoded = candid.decode(data, [Record.of(known=ours(ta), added=Opt(NAT))])[0]
    assert canon(ta, decoded["known"]) == canon(ta, va) and decoded["added"] == []


# ---------------------------------------------------------------- the budget (attack 5)


def vec_null(length: int) -> bytes:
    return b"DIDL\x01\x6d\x7f\x01\x00" + candid.leb(length)


@pytest.mark.parametrize("length", [1 << 24, 1 << 26, 1 << 63, 1 << 200])
def test_a_tiny_vec_null_cannot_make_the_decoder_loop(length: int) -> None:
    data = vec_null(length)
    start = time.monotonic()
    expectations: list[list[candid.Type] | None] = [None, [Vec(NULL)], [Vec(RESERVED)], [RESERVED], [Opt(Vec(NULL))]]
    for types in expectations:
        with pytest.raises(CandidError):
            candid.decode(data, types)
    assert time.monotonic() - start < 0.5


def test_the_budget_still_admits_real_messages() -> None:
    assert len(candid.decode(vec_null(50_000))[0]) == 50_000
    numbers = list(range(100)) * 10_000  # a million one-byte nats: 1 MB of input
    assert candid.decode(candid.encode([Vec(NAT)], [numbers]), [Vec(NAT)])[0] == numbers
    blob = bytes(2 * 1024 * 1024)
    assert candid.decode(candid.encode([candid.BLOB], [blob]))[0] == blob


def test_zero_size_records_cost_like_anything_else() -> None:
    data = b"DIDL\x02\x6d\x01\x6c\x00\x01\x00" + candid.leb(1 << 40)  # vec record {}
    with pytest.raises(CandidError, match="budget"):
        candid.decode(data)


# ---------------------------------------------------------------- type tables


@pytest.mark.parametrize(("name", "data"), [
    ("reference past the table", b"DIDL\x01\x6e\x05\x01\x00\x00"),
    ("reference to a constructor opcode", b"DIDL\x01\x6e\x6d\x01\x00\x00"),
    ("argument type out of range", b"DIDL\x00\x01\x05"),
    ("field ids not increasing", b"DIDL\x01\x6c\x02\x01\x7f\x00\x7f\x01\x00"),
    ("duplicate field ids", b"DIDL\x01\x6c\x02\x01\x7f\x01\x7f\x01\x00"),
    ("field id beyond 32 bits", b"DIDL\x01\x6c\x01\x80\x80\x80\x80\x10\x7f\x01\x00"),
    ("record that only contains itself", b"DIDL\x01\x6c\x01\x00\x00\x01\x00"),
    ("mutually recursive records", b"DIDL\x02\x6c\x01\x00\x01\x6c\x01\x00\x00\x01\x00"),
    ("variant whose only case is itself", b"DIDL\x01\x6b\x01\x00\x00\x01\x00\x00"),
    ("value of type empty", b"DIDL\x00\x01\x6f"),
    ("unknown opcode in the table", b"DIDL\x01\x50\x01\x00"),
    ("table longer than the message", b"DIDL\xff\xff\xff\xff\x0f"),
    ("unknown function annotation", b"DIDL\x01\x6a\x00\x00\x01\x09\x00"),
    ("service method that is not a function", b"DIDL\x01\x69\x01\x01m\x7d\x00"),
    ("service methods out of order", b"DIDL\x02\x69\x02\x01b\x01\x01a\x01\x6a\x00\x00\x00\x00"),
    ("nested deeper than the limit", b"DIDL\x01\x6e\x00\x01\x00" + b"\x01" * 100),
    ("opt flag 2", b"DIDL\x01\x6e\x7d\x01\x00\x02"),
    ("bool 2", b"DIDL\x00\x01\x7e\x02"),
    ("text that is not UTF-8", b"DIDL\x00\x01\x71\x01\xff"),
    ("principal longer than 29 bytes", b"DIDL\x00\x01\x68\x01\x1e" + bytes(30)),
    ("bytes left over", b"DIDL\x00\x01\x7d\x01\x00"),
    ("variant index out of range", b"DIDL\x01\x6b\x01\x00\x7f\x01\x00\x01"),
])
def test_malformed_messages_are_candid_errors(name: str, data: bytes) -> None:
    expectations: list[list[candid.Type] | None] = [None, [RESERVED], [Opt(NAT)]]
    for types in expectations:
        with pytest.raises(CandidError):
            candid.decode(data, types)


def test_recursive_types_still_decode() -> None:
    node = Rec()
    node.define(Record.of(value=NAT, next=Opt(node)))
    value = {"value": 1, "next": [{"value": 2, "next": []}]}
    assert candid.decode(candid.encode([node], [value]), [node]) == [value]


# ---------------------------------------------------------------- subtyping at expected types


def at(wire: candid.Type, value: Any, expected: candid.Type) -> Any:
    return candid.decode(candid.encode([wire], [value]), [expected])[0]


@pytest.mark.parametrize(("wire", "value", "expected", "result"), [
    (NAT, 5, INT, 5),  # nat <: int
    (Record.of(a=NAT, b=TEXT), {"a": 1, "b": "x"}, Record.of(a=NAT), {"a": 1}),  # extra field skipped
    (Record.of(a=NAT), {"a": 1}, Record.of(a=NAT, c=Opt(TEXT)), {"a": 1, "c": []}),  # missing opt is null
    (Record.of(a=NAT), {"a": 1}, Record.of(a=NAT, n=NULL, r=RESERVED), {"a": 1, "n": None, "r": None}),
    (NAT, 3, Opt(NAT), [3]),  # a bare value at an opt type
    (TEXT, "x", Opt(NAT), []),  # ... that does not fit: null
    (Opt(TEXT), ["x"], Opt(NAT), []),  # opt of a value that does not fit: null
    (NAT, 3, Opt(Opt(NAT)), [[3]]),  # ?(?3): the official tests (construct: true at opt opt bool)
    (NULL, None, Opt(NAT), []),
    (RESERVED, None, Opt(NAT), []),
    (Variant.of(a=NAT, b=TEXT), {"b": "x"}, Opt(Variant.of(a=NAT)), []),  # unknown tag under opt: null
    (Variant.of(a=NAT, b=TEXT), {"a": 1}, Opt(Variant.of(a=NAT)), [{"a": 1}]),
    (Vec(TEXT), ["a", "b"], RESERVED, None),  # reserved takes anything
    (Record.of(a=Variant.of(x=NAT, y=TEXT)), {"a": {"y": "z"}}, Opt(Record.of(a=Variant.of(x=NAT))), []),
])
def test_decoding_follows_the_subtyping_rules(wire: Any, value: Any, expected: Any, result: Any) -> None:
    assert at(wire, value, expected) == result


@pytest.mark.parametrize(("wire", "value", "expected"), [
    (TEXT, "x", NAT),  # expected nat, wire text
    (INT, 5, NAT),  # int is not a nat
    (NAT8, 5, NAT),  # fixed-size and unbounded numbers do not mix
    (NAT, 5, NAT64),
    (Record.of(a=NAT), {"a": 1}, Record.of(a=NAT, c=TEXT)),  # a missing field that is not optional
    (Variant.of(a=NAT, b=TEXT), {"b": "x"}, Variant.of(a=NAT)),  # an unknown variant tag
    (Vec(NAT8), b"ab", Vec(NAT)),
    (NAT, 1, Vec(NAT)),
    (NULL, None, NAT),
    (RESERVED, None, NULL),
    (PRINCIPAL, Principal(b"\x01"), TEXT),
    (NAT, 1, EMPTY),
])
def test_wire_types_that_do_not_fit_are_errors(wire: Any, value: Any, expected: Any) -> None:
    with pytest.raises(CandidError):
        at(wire, value, expected)


def test_missing_and_extra_arguments() -> None:
    data = candid.encode([NAT, TEXT], [1, "extra"])
    assert candid.decode(data, [NAT]) == [1]  # extra arguments are skipped
    assert candid.decode(candid.encode([NAT], [1]), [NAT, Opt(TEXT), NULL, RESERVED]) == [1, [], None, None]
    with pytest.raises(CandidError):
        candid.decode(candid.encode([NAT], [1]), [NAT, TEXT])
