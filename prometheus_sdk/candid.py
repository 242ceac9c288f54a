"""The SDK's Candid codec: types, `encode` and `decode`, written from the Candid specification.

It is deliberately independent of `ic_replica.candid`: the replica is the server our clients test, and a
client that shared the server's codec would agree with every one of its bugs. The two are cross-checked
against each other by the tests instead.

Python values:

* every integer type <-> `int`; `float32`/`float64` <-> `float`; `bool`; `text` <-> `str`;
  `null` and `reserved` <-> `None`;
* `vec nat8` (`blob`) <-> `bytes` (encode also takes `bytearray`, `memoryview` or a list of ints); any
  other `vec` <-> `list` (encode takes any sequence);
* `opt T` <-> `[]` or `[value]`; encode also takes `None` for "absent", so for `opt null`, `opt reserved` and
  `opt opt T` only the list form says "present" unambiguously (`None` always means absent);
* `record` <-> `dict` from field name to value (numeric ids are `int` keys; encode also takes a missing key
  for a field of `opt`/`null`/`reserved` type); a tuple record (fields 0..n-1, e.g. `record { text; nat }`)
  <-> `tuple` (encode also takes a list or a dict keyed by position);
* `variant` <-> a one-entry dict `{tag: value}` (`None` for a `null` payload);
* `principal` and `service` <-> `prometheus_sdk.principal.Principal` (encode takes anything
  `Principal.of` takes); `func` <-> `(Principal, method_name)`.

Decoding without expected types names record and variant fields by their numeric id. With expected types it
applies the specification's subtyping rules (`nat <: int`, absent optional fields, opt coercions, extra
fields and arguments ignored). Hostile input only ever raises `CandidError`: the type table is validated,
the work is capped in proportion to the input size, nesting is capped at `MAX_DEPTH`, LEB128 numbers at
`MAX_LEB_BYTES` bytes.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_sdk.errors import SdkError
from prometheus_sdk.principal import MAX_LENGTH as MAX_PRINCIPAL_LENGTH
from prometheus_sdk.principal import InvalidPrincipal, Principal

MAGIC = b"DIDL"
MAX_DEPTH = 64  # nested values (and nested types inside a value) a message may have
MAX_TABLE_ENTRIES = 10_000  # as Rust's candid: each entry costs far more than a byte to set up
MAX_LEB_BYTES = 100  # numbers up to 700 bits: far beyond any real nat, short enough to stay cheap
DECODE_BUDGET_BASE = 100_000
DECODE_BUDGET_PER_BYTE = 4
MAX_CACHED_TABLES = 128  # parsed headers kept, so the replies of one method parse their type table once
MAX_CACHED_TABLE_BYTES = 1024  # a longer header is parsed every time (the protocol's replies: at most 743)
MAX_CACHED_TABLE_LENGTHS = 32  # distinct header lengths kept: a lookup tries each
_ANNOTATIONS = {"query": 1, "oneway": 2, "composite_query": 3}


class CandidError(SdkError, ValueError):
    """Bytes that are not valid Candid for the expected types, or a value that does not fit its type."""


class _Mismatch(CandidError):
    """A well-formed value that does not decode at the expected type (an enclosing `opt` turns it into
    absent); `path` collects the fields it sits in, innermost first, as the error travels out."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str] = []


def idl_hash(name: str) -> int:
    """The numeric id of a field name: `h = h * 223 + byte` over its UTF-8 bytes, modulo 2^32."""
    h = 0
    for b in name.encode():
        h = (h * 223 + b) & 0xFFFFFFFF
    return h


def _field_id(name: str | int) -> int:
    if isinstance(name, bool) or not isinstance(name, (str, int)):
        raise CandidError(f"a field name is a str or an int, not {type(name).__name__}")
    if isinstance(name, int):
        if not 0 <= name < 1 << 32:
            raise CandidError(f"field id {name} is not in 0..2^32-1")
        return name
    return idl_hash(name)


# ---------------------------------------------------------------------------------------------- types


class Type:
    """A Candid type. Composite types compare by structure; `Rec` placeholders by identity."""


@dataclass(frozen=True)
class Prim(Type):
    """A primitive type: use the module constants (`NAT`, `TEXT`, ...)."""

    name: str
    opcode: int


NULL, BOOL, NAT, INT = Prim("null", -1), Prim("bool", -2), Prim("nat", -3), Prim("int", -4)
NAT8, NAT16, NAT32, NAT64 = Prim("nat8", -5), Prim("nat16", -6), Prim("nat32", -7), Prim("nat64", -8)
INT8, INT16, INT32, INT64 = Prim("int8", -9), Prim("int16", -10), Prim("int32", -11), Prim("int64", -12)
FLOAT32, FLOAT64, TEXT = Prim("float32", -13), Prim("float64", -14), Prim("text", -15)
RESERVED, EMPTY, PRINCIPAL = Prim("reserved", -16), Prim("empty", -17), Prim("principal", -24)
_PRIMS = {p.opcode: p for p in (NULL, BOOL, NAT, INT, NAT8, NAT16, NAT32, NAT64, INT8, INT16, INT32, INT64,
                                FLOAT32, FLOAT64, TEXT, RESERVED, EMPTY, PRINCIPAL)}
# fixed-width integers: struct format (little-endian), size, smallest and largest value
_FIXED_INTS = {-5: ("B", 1, 0, 2**8 - 1), -6: ("H", 2, 0, 2**16 - 1), -7: ("I", 4, 0, 2**32 - 1),
               -8: ("Q", 8, 0, 2**64 - 1), -9: ("b", 1, -2**7, 2**7 - 1), -10: ("h", 2, -2**15, 2**15 - 1),
               -11: ("i", 4, -2**31, 2**31 - 1), -12: ("q", 8, -2**63, 2**63 - 1)}
_FIXED = {**{op: (fmt, size) for op, (fmt, size, _, _) in _FIXED_INTS.items()}, -13: ("f", 4), -14: ("d", 8)}


@dataclass(frozen=True)
class Opt(Type):
    """`opt inner`: values are `[]` or `[value]`."""

    inner: Type


@dataclass(frozen=True)
class Vec(Type):
    """`vec inner`: a list (bytes for `vec nat8`)."""

    inner: Type


BLOB = Vec(NAT8)


def _check_fields(kind: str, fields: tuple[tuple[str | int, Type], ...]) -> tuple[tuple[int, str | int, Type], ...]:
    """Fields sorted by id, as the wire orders them; two names with one id would be ambiguous."""
    seen: dict[int, str | int] = {}
    for name, t in fields:
        fid = _field_id(name)
        if fid in seen:
            raise CandidError(f"{kind} fields {seen[fid]!r} and {name!r} have the same id {fid}")
        if not isinstance(t, Type):
            raise CandidError(f"{kind} field {name!r} has {type(t).__name__}, not a Candid type")
        seen[fid] = name
    return tuple(sorted(((_field_id(n), n, t) for n, t in fields), key=lambda f: f[0]))


@dataclass(frozen=True)
class Record(Type):
    """`record { name : type; ... }`: names are str, or int for numeric ids and tuple positions."""

    fields: tuple[tuple[str | int, Type], ...]
    _sorted: tuple[tuple[int, str | int, Type], ...] = field(init=False, repr=False, compare=False)
    is_tuple: bool = field(init=False, repr=False, compare=False)  # fields 0..n-1: values may be tuples

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple((n, t) for n, t in self.fields))
        object.__setattr__(self, "_sorted", _check_fields("record", self.fields))
        object.__setattr__(self, "is_tuple", all(n == i for i, (_, n, _) in enumerate(self._sorted)))

    @classmethod
    def of(cls, **fields: Type) -> Record:
        return cls(tuple(fields.items()))


@dataclass(frozen=True)
class Variant(Type):
    """`variant { tag : type; ... }`: a value is a one-entry dict `{tag: value}`."""

    fields: tuple[tuple[str | int, Type], ...]
    _sorted: tuple[tuple[int, str | int, Type], ...] = field(init=False, repr=False, compare=False)
    _by_id: dict[int, tuple[str | int, Type]] = field(init=False, repr=False, compare=False)
    _by_name: dict[str | int, tuple[int, Type]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple((n, t) for n, t in self.fields))
        object.__setattr__(self, "_sorted", _check_fields("variant", self.fields))
        object.__setattr__(self, "_by_id", {fid: (n, t) for fid, n, t in self._sorted})
        object.__setattr__(self, "_by_name", {n: (i, t) for i, (_, n, t) in enumerate(self._sorted)})

    @classmethod
    def of(cls, **fields: Type) -> Variant:
        return cls(tuple(fields.items()))


@dataclass(frozen=True)
class Func(Type):
    """`func (args) -> (rets) modes`: a value is `(Principal, method_name)`."""

    args: tuple[Type, ...] = ()
    rets: tuple[Type, ...] = ()
    modes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("args", "rets", "modes"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        unknown = [m for m in self.modes if m not in _ANNOTATIONS]
        if unknown:
            raise CandidError(f"unknown function mode(s) {unknown}: expected {sorted(_ANNOTATIONS)}")


@dataclass(frozen=True)
class Service(Type):
    """`service { name : func; ... }`: a value is the service's Principal."""

    methods: tuple[tuple[str, Type], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", tuple((n, t) for n, t in self.methods))
        names = [n for n, _ in self.methods]
        if len(set(names)) != len(names):
            raise CandidError(f"a service names a method twice: {names}")


class Rec(Type):
    """A placeholder for a recursive (or not yet known) type: use it inside other types, then `define` it."""

    def __init__(self) -> None:
        self.inner: Type | None = None

    def define(self, inner: Type) -> Rec:
        if self.inner is not None:
            raise CandidError("a recursive type is defined only once")
        self.inner = inner
        return self

    def resolve(self) -> Type:
        """The type this stands for, through chains of placeholders."""
        seen: set[int] = set()
        t: Type = self
        while isinstance(t, Rec):
            if id(t) in seen:
                raise CandidError("a recursive type is defined as itself")
            seen.add(id(t))
            if t.inner is None:
                raise CandidError("a recursive type is used before it is defined")
            t = t.inner
        return t

    def __repr__(self) -> str:
        return f"Rec(0x{id(self):x})"


def Tuple(*types: Type) -> Record:  # noqa: N802 - reads like the type constructor it stands for
    """A tuple type: a record with fields 0..n-1."""
    return Record(tuple(enumerate(types)))


def _deref(t: Type) -> Type:
    return t.resolve() if isinstance(t, Rec) else t


def _nullable(t: Type) -> bool:
    """`null <: t`: the types an absent field or argument may have (it then reads as absent)."""
    t = _deref(t)
    return isinstance(t, Opt) or (isinstance(t, Prim) and t.opcode in (-1, -16))


def _absent(t: Type) -> Any:
    return [] if isinstance(_deref(t), Opt) else None


def _kind(t: Type) -> str:
    t = _deref(t)
    return t.name if isinstance(t, Prim) else type(t).__name__.lower()


# ------------------------------------------------------------------------------------------- encoding


def _leb(n: int) -> bytes:
    """Unsigned LEB128, linear in the size of `n`."""
    if n < 0x80:
        return bytes((n,))
    return _groups(n, -(-n.bit_length() // 7))


def _sleb(n: int) -> bytes:
    """Signed LEB128 (two's complement in 7-bit groups), linear in the size of `n`."""
    if -0x40 <= n < 0x40:
        return bytes((n & 0x7F,))
    count = -(-((n if n >= 0 else ~n).bit_length() + 1) // 7)
    return _groups(n & ((1 << (7 * count)) - 1), count)


def _groups(n: int, count: int) -> bytes:
    """`count` 7-bit groups of the non-negative `n`, least significant first, continuation bits set."""
    if count <= 9:
        out = bytearray()
        for _ in range(count - 1):
            out.append(0x80 | (n & 0x7F))
            n >>= 7
        out.append(n)
        return bytes(out)
    bits = format(n, "b").zfill(7 * count)  # one conversion instead of `count` big-int shifts
    groups = [int(bits[i - 7:i], 2) | 0x80 for i in range(len(bits), 0, -7)]
    groups[-1] &= 0x7F
    return bytes(groups)


class _Table:
    """The type table of one message: one entry per composite type, recursive types pointing back."""

    def __init__(self) -> None:
        self.entries: list[bytes] = []
        self.by_identity: dict[int, int] = {}
        self.by_structure: dict[Type, int] = {}
        self.keep: list[Type] = []  # keeps ids unique while the table lives

    def ref(self, t: Type) -> bytes:
        t = _deref(t)
        if isinstance(t, Prim):
            return _sleb(t.opcode)
        index = self.by_identity.get(id(t))
        if index is None:
            index = self.by_structure.get(t)
        if index is not None:
            self.by_identity[id(t)] = index
            return _sleb(index)
        index = len(self.entries)
        self.entries.append(b"")
        self.by_identity[id(t)], self.by_structure[t] = index, index
        self.keep.append(t)
        self.entries[index] = self._entry(t)
        return _sleb(index)

    def _entry(self, t: Type) -> bytes:
        if isinstance(t, Opt):
            return _sleb(-18) + self.ref(t.inner)
        if isinstance(t, Vec):
            return _sleb(-19) + self.ref(t.inner)
        if isinstance(t, (Record, Variant)):
            body = b"".join(_leb(fid) + self.ref(ft) for fid, _, ft in t._sorted)
            return _sleb(-20 if isinstance(t, Record) else -21) + _leb(len(t._sorted)) + body
        if isinstance(t, Func):
            modes = sorted(_ANNOTATIONS[m] for m in set(t.modes))
            return (_sleb(-22) + _leb(len(t.args)) + b"".join(self.ref(a) for a in t.args)
                    + _leb(len(t.rets)) + b"".join(self.ref(r) for r in t.rets) + _leb(len(modes)) + bytes(modes))
        if isinstance(t, Service):
            out = _sleb(-23) + _leb(len(t.methods))
            for name, method in sorted(t.methods, key=lambda m: m[0].encode()):
                if not isinstance(_deref(method), Func):
                    raise CandidError(f"service method {name!r} has type {_kind(method)}, not func")
                out += _leb(len(name.encode())) + name.encode() + self.ref(method)
            return out
        raise CandidError(f"{type(t).__name__} is not a Candid type")


def encode(types: Sequence[Type], values: Sequence[Any]) -> bytes:
    """The Candid message carrying `values` at `types` (same length); deterministic for equal input."""
    types, values = list(types), list(values)
    if len(types) != len(values):
        raise CandidError(f"{len(types)} type(s) but {len(values)} value(s)")
    table = _Table()
    try:
        refs = b"".join(table.ref(t) for t in types)
    except RecursionError:
        raise CandidError("a type is nested too deeply to encode") from None
    out = bytearray(MAGIC)
    out += _leb(len(table.entries)) + b"".join(table.entries) + _leb(len(types)) + refs
    for i, (t, v) in enumerate(zip(types, values)):
        try:
            _encode_value(t, v, out, 0)
        except _Mismatch as exc:
            raise CandidError(_at(i, exc)) from None
    return bytes(out)


def _encode_value(t: Type, v: Any, out: bytearray, depth: int) -> None:
    t = _deref(t)
    if isinstance(t, Prim):
        _encode_prim(t, v, out)
        return
    if depth >= MAX_DEPTH:
        raise _Mismatch(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(t, Opt):
        if v is None or (isinstance(v, (list, tuple)) and not v):
            out.append(0)
        elif isinstance(v, (list, tuple)) and len(v) == 1:
            out.append(1)
            _encode_value(t.inner, v[0], out, depth + 1)
        else:
            raise _Mismatch(f"expected [] or [value] for opt {_kind(t.inner)}, got {_describe(v)}")
    elif isinstance(t, Vec):
        _encode_vec(t, v, out, depth)
    elif isinstance(t, Record):
        _encode_record(t, v, out, depth)
    elif isinstance(t, Variant):
        if not isinstance(v, Mapping) or len(v) != 1:
            raise _Mismatch(f"expected a one-entry dict {{tag: value}} for variant, got {_describe(v)}")
        ((tag, payload),) = v.items()
        case = None if isinstance(tag, bool) else t._by_name.get(tag)
        if case is None:
            raise _Mismatch(f"unknown variant tag {tag!r}; expected one of {[n for _, n, _ in t._sorted]}")
        out += _leb(case[0])
        _in_field(f".{tag}", _encode_value, case[1], payload, out, depth + 1)
    elif isinstance(t, Func):
        if not isinstance(v, (list, tuple)) or len(v) != 2 or not isinstance(v[1], str):
            raise _Mismatch(f"expected (principal, method name) for func, got {_describe(v)}")
        out += b"\x01\x01"
        _encode_principal_bytes(v[0], out)
        _encode_prim(TEXT, v[1], out)
    elif isinstance(t, Service):
        out.append(1)
        _encode_principal_bytes(v, out)
    else:
        raise _Mismatch(f"{type(t).__name__} is not a Candid type")


def _at(arg: int, exc: _Mismatch) -> str:
    """`arg 0 .items[1].owner: expected principal, ...`: where a mismatch is, then what it is."""
    path = "".join(reversed(exc.path))
    return f"arg {arg}{' ' + path if path else ''}: {exc.message}"


def _in_field(segment: str, fn: Any, *args: Any) -> None:
    """Run an encoder for a nested value, adding `segment` to the path of a mismatch it raises."""
    try:
        fn(*args)
    except _Mismatch as exc:
        exc.path.append(segment)
        raise


def _encode_prim(t: Prim, v: Any, out: bytearray) -> None:
    op = t.opcode
    if op == -1:
        if v is not None:
            raise _Mismatch(f"expected None for null, got {_describe(v)}")
    elif op == -2:
        if not isinstance(v, bool):
            raise _Mismatch(f"expected bool, got {_describe(v)}")
        out.append(1 if v else 0)
    elif op in (-3, -4):
        if not isinstance(v, int) or isinstance(v, bool) or (op == -3 and v < 0):
            raise _Mismatch(f"expected {t.name}, got {_describe(v)}")
        if v.bit_length() > 7 * MAX_LEB_BYTES - 1:
            raise _Mismatch(f"{t.name} of {v.bit_length()} bits: decoders here accept at most {7 * MAX_LEB_BYTES - 1}")
        out += _leb(v) if op == -3 else _sleb(v)
    elif op in (-13, -14):
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise _Mismatch(f"expected {t.name}, got {_describe(v)}")
        try:
            out += struct.pack("<f" if op == -13 else "<d", v)
        except (OverflowError, struct.error):
            raise _Mismatch(f"{v!r} does not fit {t.name}") from None
    elif op in _FIXED_INTS:
        fmt, _, low, high = _FIXED_INTS[op]
        if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= high:
            raise _Mismatch(f"expected {t.name} ({low}..{high}), got {_describe(v)}")
        out += struct.pack("<" + fmt, v)
    elif op == -15:
        if not isinstance(v, str):
            raise _Mismatch(f"expected str for text, got {_describe(v)}")
        try:
            data = v.encode()
        except UnicodeEncodeError:
            raise _Mismatch("text is not valid Unicode (lone surrogate)") from None
        out += _leb(len(data)) + data
    elif op == -16:
        pass  # reserved: any value, nothing on the wire
    elif op == -17:
        raise _Mismatch("no value has type empty")
    elif op == -24:
        out.append(1)
        _encode_principal_bytes(v, out)


def _encode_principal_bytes(v: Any, out: bytearray) -> None:
    try:
        raw = Principal.of(v).raw
    except InvalidPrincipal as exc:
        raise _Mismatch(f"expected principal, got {_describe(v)} ({exc})") from None
    out += _leb(len(raw)) + raw


def _encode_vec(t: Vec, v: Any, out: bytearray, depth: int) -> None:
    inner = _deref(t.inner)
    if inner == NAT8 and isinstance(v, (bytes, bytearray, memoryview)):
        data = bytes(v)
        out += _leb(len(data)) + data
        return
    if not isinstance(v, Sequence) or isinstance(v, (str, Mapping, bytes, bytearray, memoryview)):
        raise _Mismatch(f"expected a list for vec {_kind(inner)}, got {_describe(v)}")
    out += _leb(len(v))
    if isinstance(inner, Prim) and inner.opcode in _FIXED_INTS and all(type(x) is int for x in v):
        fmt, _, low, high = _FIXED_INTS[inner.opcode]
        if not v or low <= min(v) and max(v) <= high:  # one pack for the whole vector
            out += struct.pack(f"<{len(v)}{fmt}", *v)
            return
    for i, x in enumerate(v):
        _in_field(f"[{i}]", _encode_value, inner, x, out, depth + 1)


def _encode_record(t: Record, v: Any, out: bytearray, depth: int) -> None:
    if isinstance(v, (list, tuple)) and t.is_tuple:
        if len(v) != len(t._sorted):
            raise _Mismatch(f"expected a tuple of {len(t._sorted)}, got {len(v)} value(s)")
        v = dict(enumerate(v))
    if not isinstance(v, Mapping):
        raise _Mismatch(f"expected a dict for record, got {_describe(v)}")
    names = {n for _, n, _ in t._sorted}
    unknown = [k for k in v if k not in names]
    if unknown:
        raise _Mismatch(f"unknown record field(s) {unknown}; expected {[n for _, n, _ in t._sorted]}")
    for _, name, ft in t._sorted:
        if name in v:
            _in_field(f".{name}", _encode_value, ft, v[name], out, depth + 1)
        elif _nullable(ft):
            _in_field(f".{name}", _encode_value, ft, None, out, depth + 1)
        else:
            raise _Mismatch(f"missing record field {name!r}")


def _describe(v: Any) -> str:
    text = repr(v)
    return f"{type(v).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


# ------------------------------------------------------------------------------------------- decoding
#
# Like the specification, in two steps: the message is read at its own (wire) types into plain values, every
# byte checked and every value paid for from the budget; then each value is read at the expected type by the
# decoding relation `v :? t ~> v'`. A value that fails inside an `opt` becomes absent without re-reading
# anything, so the second step is linear in the values the first step produced.


class _W:
    """A type from a message's type table (`op` is its opcode; composite parts filled in after parsing)."""

    __slots__ = ("op", "inner", "fields", "by_id", "inhabited")

    def __init__(self, op: int) -> None:
        self.op = op
        self.inner: _W = self  # the element type of an opt or vec, set once the table is read
        self.fields: list[tuple[int, _W]] = []  # record/variant fields; func args+rets; service methods
        self.by_id: dict[int, _W] | None = None
        self.inhabited = op != -17


_WIRE_PRIMS = {op: _W(op) for op in _PRIMS}
_WIRE_NAMES = {-18: "opt", -19: "vec", -20: "record", -21: "variant", -22: "func", -23: "service",
               **{op: p.name for op, p in _PRIMS.items()}}


def _wire_name(w: _W) -> str:
    return _WIRE_NAMES.get(w.op, "a future type")


class _Reader:
    """The input, a position in it, and the work still allowed (every value costs at least one step)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0
        self.budget = DECODE_BUDGET_BASE + DECODE_BUDGET_PER_BYTE * len(data)

    def charge(self, steps: int) -> None:
        self.budget -= steps
        if self.budget < 0:
            raise CandidError("the message needs more decoding work than its size allows (e.g. a huge vec null)")

    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            raise CandidError(f"unexpected end of input at byte {self.pos}: {n} more byte(s) needed")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise CandidError(f"unexpected end of input at byte {self.pos}")
        self.pos += 1
        return self.data[self.pos - 1]

    def leb(self) -> int:
        data, start = self.data, self.pos
        if start < len(data) and data[start] < 0x80:  # most numbers in a message fit in one byte
            self.pos = start + 1
            return data[start]
        result = shift = 0
        for pos in range(start, min(len(data), start + MAX_LEB_BYTES)):
            b = data[pos]
            result |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                self.pos = pos + 1
                return result
        if len(data) - start >= MAX_LEB_BYTES:
            raise CandidError(f"LEB128 number at byte {self.pos} is longer than {MAX_LEB_BYTES} bytes")
        raise CandidError(f"unexpected end of input in a LEB128 number at byte {self.pos}")

    def sleb(self) -> int:
        start = self.pos
        result = self.leb()
        bits = 7 * (self.pos - start)
        return result - (1 << bits) if result >> (bits - 1) & 1 else result

    def count(self, what: str, min_bytes: int = 1) -> int:
        """A length whose items take at least `min_bytes` each: more than the input holds is an error."""
        at, n = self.pos, self.leb()
        if n * min_bytes > self.left():
            raise CandidError(f"{what} at byte {at}: a count of {n}, more than the input holds")
        return n

    def text(self) -> str:
        data = self.take(self.leb())
        try:
            return data.decode()
        except UnicodeDecodeError:
            raise CandidError(f"text before byte {self.pos} is not valid UTF-8") from None

    def principal(self, what: str = "principal") -> Principal:
        flag = self.byte()
        if flag != 1:
            raise CandidError(f"{what} at byte {self.pos - 1}: " + (
                "opaque references are not supported" if flag == 0 else f"invalid tag {flag}"))
        n = self.leb()
        if n > MAX_PRINCIPAL_LENGTH:
            raise CandidError(f"{what} at byte {self.pos} has {n} bytes, at most {MAX_PRINCIPAL_LENGTH}")
        return Principal(self.take(n))


class _TableCache:
    """Parsed headers (magic, type table, argument types) by their bytes. A message that starts with a cached
    header's bytes has that header: parsing reads bytes in order and stops where it stopped before. The
    parsed types are never changed after parsing (`by_id` is a memo of `fields`), so messages share them.
    Bounded for replies a hostile canister chooses: at most MAX_CACHED_TABLES headers of at most
    MAX_CACHED_TABLE_BYTES, of at most MAX_CACHED_TABLE_LENGTHS distinct lengths, so a lookup hashes at most
    32 KiB and the cache holds about 7 MiB of parsed types at worst (headers of 500 two-byte entries); the
    least recently used go first."""

    def __init__(self) -> None:
        self._tables: dict[bytes, tuple[list[_W], int]] = {}  # header -> (argument types, decoding steps), LRU first
        self._lengths: tuple[int, ...] = ()  # the cached headers' distinct lengths
        self._count: dict[int, int] = {}  # how many cached headers have each length
        self._lock = threading.Lock()

    def lookup(self, r: _Reader) -> list[_W] | None:
        data = r.data
        for n in self._lengths:
            if n > len(data):
                break
            header = data[:n]
            hit = self._tables.get(header)
            if hit is not None and hit[1] <= r.budget:
                with self._lock:  # now the most recently used
                    if self._tables.pop(header, None) is not None:
                        self._tables[header] = hit
                r.pos, r.budget = n, r.budget - hit[1]
                return hit[0]
        return None

    def add(self, header: bytes, types: list[_W], steps: int) -> None:
        if len(header) > MAX_CACHED_TABLE_BYTES:
            return
        with self._lock:
            if self._tables.pop(header, None) is None:
                self._count[len(header)] = self._count.get(len(header), 0) + 1
            self._tables[header] = (types, steps)
            while len(self._tables) > MAX_CACHED_TABLES or len(self._count) > MAX_CACHED_TABLE_LENGTHS:
                oldest = next(iter(self._tables))  # the least recently used
                del self._tables[oldest]
                self._count[len(oldest)] -= 1
                if not self._count[len(oldest)]:
                    del self._count[len(oldest)]
            self._lengths = tuple(sorted(self._count))


_TABLES = _TableCache()


def _header(r: _Reader) -> list[_W]:
    """The argument types: from the cache, or parsed (and cached)."""
    types = _TABLES.lookup(r)
    if types is None:
        budget = r.budget
        types = _read_table(r)
        _TABLES.add(r.data[:r.pos], types, budget - r.budget)
    return types


def _read_table(r: _Reader) -> list[_W]:
    """Parse and validate the type table and the argument types; returns the argument types."""
    if r.data[:4] != MAGIC:
        raise CandidError("not a Candid message: it does not start with DIDL")
    r.pos = 4
    size = r.count("the type table")
    if size > MAX_TABLE_ENTRIES:
        raise CandidError(f"the type table has {size} entries, at most {MAX_TABLE_ENTRIES}")
    raw: list[tuple[int, Any]] = []

    def ref() -> int:
        at, t = r.pos, r.sleb()
        if t >= size or (t < 0 and t not in _PRIMS):
            raise CandidError(f"type reference {t} at byte {at} is neither a primitive type nor in the table "
                              f"of {size}")
        return t

    for _ in range(size):
        r.charge(1)
        at, op = r.pos, r.sleb()
        if op in (-18, -19):
            raw.append((op, ref()))
        elif op in (-20, -21):
            fields, previous = [], -1
            for _ in range(r.count("a record/variant type", 2)):
                fid = r.leb()
                if fid >= 1 << 32 or fid <= previous:
                    raise CandidError(f"field ids at byte {at} are not strictly increasing 32-bit numbers")
                fields.append((fid, ref()))
                previous = fid
            r.charge(len(fields))
            raw.append((op, fields))
        elif op == -22:
            args = [ref() for _ in range(r.count("a func type's arguments"))]
            rets = [ref() for _ in range(r.count("a func type's results"))]
            modes = [r.byte() for _ in range(r.count("a func type's annotations"))]
            if any(m not in (1, 2, 3) for m in modes) or len(set(modes)) != len(modes):
                raise CandidError(f"func type at byte {at} has invalid annotations {modes}")
            r.charge(len(args) + len(rets))
            raw.append((op, [(0, a) for a in args] + [(1, t) for t in rets]))
        elif op == -23:
            methods, last = [], None
            for _ in range(r.count("a service type", 2)):
                name = r.text().encode()
                if last is not None and name <= last:
                    raise CandidError(f"service type at byte {at}: method names are not strictly increasing")
                methods.append((0, ref()))
                last = name
            r.charge(len(methods))
            raw.append((op, methods))
        elif op < -24:
            r.take(r.leb())  # a future type: its description is skipped
            raw.append((op, None))
        elif op in _PRIMS:
            raise CandidError(f"type table entry at byte {at} is the primitive type {op}: the table holds only "
                              "composite types")
        else:
            raise CandidError(f"type table entry at byte {at} has invalid opcode {op}")
    table = [_WIRE_PRIMS[op] if op in _PRIMS else _W(op) for op, _ in raw]

    def get(t: int) -> _W:
        return table[t] if t >= 0 else _WIRE_PRIMS[t]

    for w, (op, parts) in zip(table, raw):
        if op in (-18, -19):
            w.inner = get(parts)
        elif op in (-20, -21, -22, -23):
            w.fields = [(fid, get(t)) for fid, t in parts]
            if op == -23 and any(m.op != -22 for _, m in w.fields):
                raise CandidError("a service type has a method whose type is not func")
    _mark_inhabited(table)
    return [get(ref()) for _ in range(r.count("the argument types"))]


def _mark_inhabited(table: list[_W]) -> None:
    """Find the types that have values, in linear time: a record needs all its fields inhabited, a variant
    one of them; `type t = record { t }` has no value, and a message claiming one is rejected early."""
    composite = [w for w in table if w.op in (-20, -21)]
    for w in composite:
        w.inhabited = False
    waiting: dict[int, int] = {}
    users: dict[int, list[_W]] = {}
    ready: list[_W] = []
    for w in composite:
        missing = [ft for _, ft in w.fields if not ft.inhabited]
        if (w.op == -20 and not missing) or (w.op == -21 and len(missing) < len(w.fields)):
            w.inhabited = True
            ready.append(w)
            continue
        waiting[id(w)] = len(missing) if w.op == -20 else 1
        for ft in missing:
            users.setdefault(id(ft), []).append(w)
    while ready:
        done = ready.pop()
        for w in users.pop(id(done), []):
            if w.inhabited:
                continue
            waiting[id(w)] -= 1
            if waiting[id(w)] == 0:
                w.inhabited = True
                ready.append(w)


def _read(r: _Reader, w: _W, depth: int) -> Any:
    """One value of wire type `w`, fields named by id (the types=None form)."""
    r.charge(1)
    op = w.op
    if op >= -17 or op == -24:
        return _read_prim(r, op)
    if depth >= MAX_DEPTH:
        raise CandidError(f"value at byte {r.pos} is nested deeper than {MAX_DEPTH} levels")
    if op == -18:
        flag = r.byte()
        if flag > 1:
            raise CandidError(f"opt at byte {r.pos - 1} has invalid tag {flag}")
        return [_read(r, w.inner, depth + 1)] if flag else []
    if op == -19:
        return _read_vec(r, w.inner, depth)
    if not w.inhabited:
        raise CandidError(f"a {_wire_name(w)} type with no possible value (it contains itself) is used as a value")
    if op == -20:
        return {fid: _read(r, ft, depth + 1) for fid, ft in w.fields}
    if op == -21:
        at, index = r.pos, r.leb()
        if index >= len(w.fields):
            raise CandidError(f"variant at byte {at} has case index {index}, its type has {len(w.fields)} case(s)")
        fid, ft = w.fields[index]
        return {fid: _read(r, ft, depth + 1)}
    if op == -22:
        flag = r.byte()
        if flag != 1:
            raise CandidError(f"func reference at byte {r.pos - 1}: " + (
                "opaque references are not supported" if flag == 0 else f"invalid tag {flag}"))
        return r.principal("func's service"), r.text()
    if op == -23:
        return r.principal("service")
    size, refs = r.leb(), r.leb()  # a future type's value: skipped
    if refs:
        raise CandidError("a future type's value carries references, which are not supported")
    r.take(size)
    return None


def _read_prim(r: _Reader, op: int) -> Any:
    if op == -1 or op == -16:
        return None
    if op == -2:
        b = r.byte()
        if b > 1:
            raise CandidError(f"bool at byte {r.pos - 1} is {b}, not 0 or 1")
        return b == 1
    if op == -3:
        return r.leb()
    if op == -4:
        return r.sleb()
    if op in _FIXED:
        fmt, size = _FIXED[op]
        return struct.unpack("<" + fmt, r.take(size))[0]
    if op == -15:
        return r.text()
    if op == -24:
        return r.principal()
    raise CandidError(f"a value of type empty at byte {r.pos} cannot exist")


def _read_vec(r: _Reader, inner: _W, depth: int) -> Any:
    at, n = r.pos, r.leb()
    if n > r.budget:
        raise CandidError(f"vec at byte {at} has {n} elements: more decoding work than the message size allows")
    r.charge(n)
    op = inner.op
    if op == -5:
        return r.take(n)
    if op in _FIXED:
        fmt, size = _FIXED[op]
        return list(struct.unpack(f"<{n}{fmt}", r.take(n * size)))
    if op == -1 or op == -16:
        return [None] * n
    if n and not inner.inhabited:
        raise CandidError(f"vec at byte {at} has elements of a type that has no values")
    return [_read(r, inner, depth + 1) for _ in range(n)]


def decode(data: bytes, types: Sequence[Type] | None = None) -> list[Any]:
    """The values of a Candid message; with `types`, read at those types by the subtyping rules."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CandidError(f"a Candid message is bytes, not {type(data).__name__}")
    r = _Reader(bytes(data))
    wire_types = _header(r)
    values = [_read(r, w, 0) for w in wire_types]
    if r.pos != len(r.data):
        raise CandidError(f"{len(r.data) - r.pos} unexpected byte(s) after the last value")
    if types is None:
        return values
    out = []
    for i, t in enumerate(types):
        try:
            if i < len(values):
                out.append(_coerce(r, wire_types[i], values[i], t, 0))
            elif _nullable(t):
                out.append(_absent(t))
            else:
                raise _Mismatch(f"missing (the message has {len(values)} argument(s)), expected {_kind(t)}")
        except _Mismatch as exc:
            raise CandidError(_at(i, exc)) from None
    return out


def _coerce(r: _Reader, w: _W, v: Any, t: Type, depth: int) -> Any:
    """The wire value `v` (of wire type `w`) read at the expected type `t`, or `_Mismatch`; charged to the
    message's budget like reading (absent fields filled in at the expected type cost a step each)."""
    r.charge(1)
    t = _deref(t)
    if depth > 2 * MAX_DEPTH:
        raise CandidError(f"expected type is nested deeper than {MAX_DEPTH} levels")
    op = w.op
    if isinstance(t, Prim):
        if t.opcode == op or t.opcode == -16 or (t.opcode == -4 and op == -3) or (t.opcode == -24 and op == -23):
            return None if t.opcode == -16 else v  # nat <: int, service <: principal
        raise _Mismatch(f"expected {t.name}, the message has {_wire_name(w)}")
    if isinstance(t, Opt):
        if op in (-1, -16) or (op == -18 and not v):
            return []
        try:
            if op == -18:
                return [_coerce(r, w.inner, v[0], t.inner, depth + 1)]
            return [_coerce(r, w, v, t.inner, depth + 1)]  # a bare value at opt T: ?(value at T), any T
        except _Mismatch:
            return []  # opt v :? opt t when v does not decode at t: absent, not failure
    if isinstance(t, Vec):
        if op != -19:
            raise _Mismatch(f"expected vec, the message has {_wire_name(w)}")
        inner, wi = _deref(t.inner), w.inner
        if isinstance(inner, Prim) and inner.opcode == wi.op:
            return v  # same primitive elements: already in their Python form
        items = []
        for i, x in enumerate(v):
            try:
                items.append(_coerce(r, wi, x, inner, depth + 1))
            except _Mismatch as exc:
                exc.path.append(f"[{i}]")
                raise
        return bytes(items) if inner == NAT8 else items
    if isinstance(t, Record):
        if op != -20:
            raise _Mismatch(f"expected record, the message has {_wire_name(w)}")
        if w.by_id is None:
            w.by_id = dict(w.fields)
        out = {}
        r.charge(len(t._sorted))
        for fid, name, ft in t._sorted:
            if fid in v:
                try:
                    out[name] = _coerce(r, w.by_id[fid], v[fid], ft, depth + 1)
                except _Mismatch as exc:
                    exc.path.append(f".{name}")
                    raise
            elif _nullable(ft):
                out[name] = _absent(ft)
            else:
                raise _Mismatch(f"record field {name!r} is missing")
        return tuple(out[i] for i in range(len(out))) if t.is_tuple and out else out
    if isinstance(t, Variant):
        if op != -21:
            raise _Mismatch(f"expected variant, the message has {_wire_name(w)}")
        ((fid, payload),) = v.items()
        if fid not in t._by_id:
            raise _Mismatch(f"variant case with id {fid} is not one of {[n for _, n, _ in t._sorted]}")
        name, ft = t._by_id[fid]
        if w.by_id is None:
            w.by_id = dict(w.fields)
        try:
            return {name: _coerce(r, w.by_id[fid], payload, ft, depth + 1)}
        except _Mismatch as exc:
            exc.path.append(f".{name}")
            raise
    if isinstance(t, Func) and op == -22 or isinstance(t, Service) and op == -23:
        return v  # references decode unconditionally
    raise _Mismatch(f"expected {_kind(t)}, the message has {_wire_name(w)}")
