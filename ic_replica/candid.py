"""A small, complete-enough Candid codec for the replica's own needs (management canister, tests).

Values: ints for every integer type, float, bool, str, None for null/reserved, bytes for `blob`,
list for `vec`, `[]`/`[v]` for `opt`, dict for `record` (field name -> value; unnamed fields by index),
a one-entry dict for `variant`, `Principal` for `principal`/`service`, `(Principal, str)` for `func`.
Decoding without expected types names fields by their hash (int).

The decoder takes hostile input (management arguments, replies): it validates the type table (references in
range, field ids below 2^32 and strictly increasing, sorted service methods of function type, no type whose
values would never end), checks wire types against expected types by the spec's decoding rules (see
`decode`), caps its work by the input's size (`DECODE_BUDGET_*`: every value, zero-size ones included, costs
a step), bounds nesting (`MAX_DEPTH`) and number sizes (`MAX_LEB_BYTES`), refuses bytes left over, and raises
`CandidError` and nothing else. LEB128 encoding is linear in the number's size.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from ic_replica.principal import Principal

MAGIC = b"DIDL"


class CandidError(ValueError):
    """Bytes that are not valid Candid, or a value that does not fit its type."""


def idl_hash(name: str) -> int:
    h = 0
    for byte in name.encode():
        h = (h * 223 + byte) & 0xFFFFFFFF
    return h


def _field_id(name: str | int) -> int:
    return name if isinstance(name, int) else idl_hash(name)


# ---------------------------------------------------------------- types


class Type:
    """A Candid type; primitive types have a negative opcode."""

    opcode: int


@dataclass(frozen=True)
class Prim(Type):
    opcode: int
    name: str


NULL, BOOL, NAT, INT = Prim(-1, "null"), Prim(-2, "bool"), Prim(-3, "nat"), Prim(-4, "int")
NAT8, NAT16, NAT32, NAT64 = Prim(-5, "nat8"), Prim(-6, "nat16"), Prim(-7, "nat32"), Prim(-8, "nat64")
INT8, INT16, INT32, INT64 = Prim(-9, "int8"), Prim(-10, "int16"), Prim(-11, "int32"), Prim(-12, "int64")
FLOAT32, FLOAT64, TEXT = Prim(-13, "float32"), Prim(-14, "float64"), Prim(-15, "text")
RESERVED, EMPTY, PRINCIPAL = Prim(-16, "reserved"), Prim(-17, "empty"), Prim(-24, "principal")
_PRIMS = {p.opcode: p for p in (NULL, BOOL, NAT, INT, NAT8, NAT16, NAT32, NAT64, INT8, INT16, INT32, INT64,
                                 FLOAT32, FLOAT64, TEXT, RESERVED, EMPTY, PRINCIPAL)}
_FIXED_INT = {NAT8: (1, False), NAT16: (2, False), NAT32: (4, False), NAT64: (8, False),
              INT8: (1, True), INT16: (2, True), INT32: (4, True), INT64: (8, True)}


@dataclass(frozen=True)
class Opt(Type):
    inner: Type
    opcode: int = -18


@dataclass(frozen=True)
class Vec(Type):
    inner: Type
    opcode: int = -19


BLOB = Vec(NAT8)


@dataclass(frozen=True)
class Record(Type):
    fields: tuple[tuple[str | int, Type], ...]
    opcode: int = -20

    @classmethod
    def of(cls, **fields: Type) -> Record:
        return cls(tuple(fields.items()))


@dataclass(frozen=True)
class Variant(Type):
    fields: tuple[tuple[str | int, Type], ...]
    opcode: int = -21

    @classmethod
    def of(cls, **fields: Type) -> Variant:
        return cls(tuple(fields.items()))


@dataclass(frozen=True)
class Func(Type):
    args: tuple[Type, ...] = ()
    rets: tuple[Type, ...] = ()
    modes: tuple[str, ...] = ()
    opcode: int = -22


@dataclass(frozen=True)
class Service(Type):
    methods: tuple[tuple[str, Func], ...] = ()
    opcode: int = -23


class Rec(Type):
    """A recursive type: create it, use it inside other types, then `define` what it stands for."""

    opcode = -100  # never on the wire: it encodes as the type it is defined as

    def __init__(self) -> None:
        self.inner: Type | None = None

    def define(self, inner: Type) -> Rec:
        self.inner = inner
        return self

    def resolve(self) -> Type:
        if self.inner is None:
            raise CandidError("recursive type used before it was defined")
        return self.inner

    def __repr__(self) -> str:
        return "Rec(...)"


def _is_tuple(t: Record) -> bool:
    return bool(t.fields) and [name for name, _ in t.fields] == list(range(len(t.fields)))


def _deref(t: Type) -> Type:
    for _ in range(100):
        if not isinstance(t, Rec):
            return t
        t = t.resolve()
    raise CandidError("recursive type defined as itself")


def Tuple(*types: Type) -> Record:  # noqa: N802 - reads like a type constructor
    return Record(tuple((i, t) for i, t in enumerate(types)))


def _sorted_fields(fields: tuple[tuple[str | int, Type], ...]) -> list[tuple[int, str | int, Type]]:
    return sorted((_field_id(n), n, t) for n, t in fields)


# ---------------------------------------------------------------- LEB128


def leb(n: int) -> bytes:
    """Unsigned LEB128, in time linear in the number's size (also for huge ints)."""
    if n < 0:
        raise CandidError(f"negative value {n} for an unsigned type")
    if n < _SMALL:
        out = bytearray()
        while n > 0x7F:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        out.append(n)
        return bytes(out)
    return _groups_of_7(n, (n.bit_length() + 6) // 7)


def sleb(n: int) -> bytes:
    """Signed LEB128, in time linear in the number's size (also for huge ints)."""
    if -_SMALL < n < _SMALL:
        out = bytearray()
        while True:
            byte = n & 0x7F
            n >>= 7
            if (n == 0 and not byte & 0x40) or (n == -1 and byte & 0x40):
                out.append(byte)
                return bytes(out)
            out.append(byte | 0x80)
    magnitude = n.bit_length() if n >= 0 else (~n).bit_length()
    return _groups_of_7(n, (magnitude + 1 + 6) // 7)  # one more bit for the sign


_SMALL = 1 << 56


def _groups_of_7(n: int, groups: int) -> bytes:
    """The low `groups` 7-bit groups of n (two's complement), continuation bits set on all but the last.

    One `to_bytes` (linear) and a loop over its bytes: no shift of the big number itself, which would make
    the whole conversion quadratic."""
    raw = n.to_bytes(groups * 7 // 8 + 2, "little", signed=True)
    out = bytearray(groups)
    acc = bits = i = 0
    for byte in raw:
        acc |= byte << bits
        bits += 8
        while bits >= 7 and i < groups:
            out[i] = (acc & 0x7F) | 0x80
            acc >>= 7
            bits -= 7
            i += 1
        if i == groups:
            break
    out[-1] &= 0x7F
    return bytes(out)


# ---------------------------------------------------------------- encoding


class _TypeTable:
    def __init__(self) -> None:
        self.entries: list[bytes] = []
        self.index: dict[Type, int] = {}

    def ref(self, t: Type) -> bytes:
        t = _deref(t)
        if isinstance(t, Prim):
            return sleb(t.opcode)
        if t not in self.index:
            slot = len(self.entries)
            self.index[t] = slot
            self.entries.append(b"")
            self.entries[slot] = self._entry(t)
        return sleb(self.index[t])

    def _entry(self, t: Type) -> bytes:
        if isinstance(t, (Opt, Vec)):
            return sleb(t.opcode) + self.ref(t.inner)
        if isinstance(t, (Record, Variant)):
            fields = _sorted_fields(t.fields)
            return sleb(t.opcode) + leb(len(fields)) + b"".join(leb(h) + self.ref(ft) for h, _, ft in fields)
        if isinstance(t, Func):
            modes = {"query": 1, "oneway": 2, "composite_query": 3}
            return (sleb(t.opcode) + leb(len(t.args)) + b"".join(self.ref(a) for a in t.args)
                    + leb(len(t.rets)) + b"".join(self.ref(r) for r in t.rets)
                    + leb(len(t.modes)) + bytes(modes[m] for m in t.modes))
        if isinstance(t, Service):
            out = sleb(t.opcode) + leb(len(t.methods))
            for name, ft in sorted(t.methods):
                raw = name.encode()
                out += leb(len(raw)) + raw + self.ref(ft)
            return out
        raise CandidError(f"cannot encode type {t!r}")


def _encode_value(t: Type, v: Any, out: bytearray) -> None:
    t = _deref(t)
    if isinstance(t, Prim):
        if t is NULL or t is RESERVED:
            return
        if t is BOOL:
            if not isinstance(v, bool):
                raise CandidError(f"expected bool, got {v!r}")
            out.append(1 if v else 0)
        elif t is NAT:
            out += leb(_int(v))
        elif t is INT:
            out += sleb(_int(v))
        elif t in _FIXED_INT:
            size, signed = _FIXED_INT[t]
            try:
                out += _int(v).to_bytes(size, "little", signed=signed)
            except OverflowError as exc:
                raise CandidError(f"{v} does not fit {t.name}") from exc
        elif t is FLOAT32:
            out += struct.pack("<f", v)
        elif t is FLOAT64:
            out += struct.pack("<d", v)
        elif t is TEXT:
            if not isinstance(v, str):
                raise CandidError(f"expected text, got {v!r}")
            raw = v.encode()
            out += leb(len(raw)) + raw
        elif t is PRINCIPAL:
            out += _principal_bytes(v)
        else:
            raise CandidError(f"cannot encode a value of type {t.name}")
    elif isinstance(t, Opt):
        if v is None or v == []:
            out.append(0)
        else:
            out.append(1)
            _encode_value(t.inner, v[0] if isinstance(v, list) else v, out)
    elif isinstance(t, Vec):
        if t.inner is NAT8 and isinstance(v, (bytes, bytearray)):
            out += leb(len(v)) + bytes(v)
            return
        out += leb(len(v))
        for item in v:
            _encode_value(t.inner, item, out)
    elif isinstance(t, Record):
        if not isinstance(v, (dict, tuple, list)):
            raise CandidError(f"expected a record, got {v!r}")
        values = dict(enumerate(v)) if isinstance(v, (tuple, list)) else v
        for _, name, ft in _sorted_fields(t.fields):
            if name not in values:
                if isinstance(ft, Opt):
                    out.append(0)
                    continue
                raise CandidError(f"record field {name!r} is missing")
            _encode_value(ft, values[name], out)
    elif isinstance(t, Variant):
        if not isinstance(v, dict) or len(v) != 1:
            raise CandidError(f"expected a one-entry dict for a variant, got {v!r}")
        (tag, inner), = v.items()
        for i, (_, name, ft) in enumerate(_sorted_fields(t.fields)):
            if name == tag:
                out += leb(i)
                _encode_value(ft, inner, out)
                return
        raise CandidError(f"variant has no tag {tag!r}")
    elif isinstance(t, Func):
        principal, method = v
        raw = method.encode()
        out += b"\x01" + _principal_bytes(principal) + leb(len(raw)) + raw
    elif isinstance(t, Service):
        out += _principal_bytes(v)
    else:
        raise CandidError(f"cannot encode type {t!r}")


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise CandidError(f"expected an integer, got {v!r}")
    return v


def _principal_bytes(v: Any) -> bytes:
    try:
        if isinstance(v, Principal):
            raw: bytes | None = v.raw
        elif isinstance(v, str):
            raw = Principal.from_text(v).raw
        else:  # other libraries' principals (icp-py-core's has `.bytes`)
            raw = getattr(v, "bytes", None) if isinstance(getattr(v, "bytes", None), bytes) else None
    except ValueError as exc:
        raise CandidError(str(exc)) from exc
    if raw is None:
        raise CandidError(f"expected a principal, got {v!r}")
    return b"\x01" + leb(len(raw)) + raw


def encode(types: list[Type] | tuple[Type, ...], values: list[Any] | tuple[Any, ...]) -> bytes:
    """Encode an argument sequence."""
    if len(types) != len(values):
        raise CandidError(f"{len(types)} types but {len(values)} values")
    table = _TypeTable()
    refs = b"".join(table.ref(t) for t in types)
    body = bytearray()
    for t, v in zip(types, values):
        _encode_value(t, v, body)
    return MAGIC + leb(len(table.entries)) + b"".join(table.entries) + leb(len(types)) + refs + bytes(body)


# ---------------------------------------------------------------- decoding

# Work a decode may do: every value read or skipped costs one step, a vector's elements are paid for up
# front. Zero-size values (null, reserved, empty records) cost steps like any other, so `vec null` with a
# length of 2^60 fails at once instead of looping (the Rust crate's "decoding quota" idea).
DECODE_BUDGET_BASE = 100_000
DECODE_BUDGET_PER_BYTE = 4
MAX_DEPTH = 64
MAX_LEB_BYTES = 100  # nat/int values up to 700 bits
_OPT, _VEC, _RECORD, _VARIANT, _FUNC, _SERVICE = -18, -19, -20, -21, -22, -23
_OPCODE_NAMES = {_OPT: "opt", _VEC: "vec", _RECORD: "record", _VARIANT: "variant", _FUNC: "func",
                 _SERVICE: "service"}


class _Mismatch(CandidError):
    """The wire type does not fit the expected type (under `opt` this decodes as null instead)."""


@dataclass
class _WireType:
    opcode: int
    inner: int = 0
    fields: list[tuple[int, int]] = field(default_factory=list)
    extra: Any = None  # func: (args, rets, modes); service: [(name, ref)]


class _Decoder:
    """One message: the reader, its type table and its work budget."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.budget = DECODE_BUDGET_BASE + DECODE_BUDGET_PER_BYTE * len(data)
        self.table: list[_WireType] = []
        self.table_len = 0
        self.inhabited: list[bool] = []
        self._field_maps: dict[int, dict[int, tuple[str | int, Type]]] = {}

    # ---------------------------------------------------------- bytes

    def charge(self, steps: int = 1) -> None:
        self.budget -= steps
        if self.budget < 0:
            raise CandidError(f"decoding budget exceeded: a {len(self.data)}-byte message may not cost more than "
                              f"{DECODE_BUDGET_BASE + DECODE_BUDGET_PER_BYTE * len(self.data)} steps")

    def take(self, n: int) -> bytes:
        if n < 0 or n > len(self.data) - self.pos:
            raise CandidError("unexpected end of Candid data")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise CandidError("unexpected end of Candid data")
        self.pos += 1
        return self.data[self.pos - 1]

    def _leb_bytes(self, max_bytes: int) -> bytes:
        start = self.pos
        while self.byte() & 0x80:
            if self.pos - start >= max_bytes:
                raise CandidError(f"LEB128 number longer than {max_bytes} bytes")
        return self.data[start : self.pos]

    def leb(self, max_bytes: int = MAX_LEB_BYTES) -> int:
        result = 0
        for i, b in enumerate(self._leb_bytes(max_bytes)):
            result |= (b & 0x7F) << (7 * i)
        return result

    def sleb(self, max_bytes: int = MAX_LEB_BYTES) -> int:
        raw = self._leb_bytes(max_bytes)
        result = 0
        for i, b in enumerate(raw):
            result |= (b & 0x7F) << (7 * i)
        if raw[-1] & 0x40:
            result -= 1 << (7 * len(raw))
        return result

    def count(self) -> int:
        """A length or count: no more than the bytes left (every counted item takes at least one)."""
        n = self.leb(10)
        if n > len(self.data) - self.pos:
            raise CandidError(f"length {n} is more than the {len(self.data) - self.pos} bytes left")
        return n

    def text(self) -> str:
        try:
            return self.take(self.leb(10)).decode()
        except UnicodeDecodeError as exc:
            raise CandidError("text is not UTF-8") from exc

    def principal(self) -> Principal:
        if self.byte() != 1:
            raise CandidError("opaque principal references are not supported")
        raw = self.take(self.leb(10))
        try:
            return Principal(raw)
        except ValueError as exc:
            raise CandidError(str(exc)) from exc

    # ---------------------------------------------------------- the type table

    def ref(self) -> int:
        r = self.sleb(5)
        if not (0 <= r < self.table_len or r in _PRIMS):
            raise CandidError(f"type reference {r} is out of range")
        return r

    def header(self) -> list[int]:
        """Magic, type table and argument types; the table is checked before any value is read."""
        if self.take(4) != MAGIC:
            raise CandidError("missing DIDL magic")
        self.table_len = self.count()
        for _ in range(self.table_len):
            self.charge()
            op = self.sleb(5)
            if op in (_OPT, _VEC):
                self.table.append(_WireType(op, inner=self.ref()))
            elif op in (_RECORD, _VARIANT):
                fields: list[tuple[int, int]] = []
                for _ in range(self.count()):
                    self.charge()
                    fid = self.leb(5)
                    if fid >= 1 << 32:
                        raise CandidError(f"field id {fid} does not fit 32 bits")
                    if fields and fid <= fields[-1][0]:
                        raise CandidError("field ids must be unique and in increasing order")
                    fields.append((fid, self.ref()))
                self.table.append(_WireType(op, fields=fields))
            elif op == _FUNC:
                args = [self.ref() for _ in range(self.count())]
                rets = [self.ref() for _ in range(self.count())]
                modes = self.take(self.count())
                if any(m not in (1, 2, 3) for m in modes):
                    raise CandidError("unknown function annotation")
                self.table.append(_WireType(op, extra=(args, rets, modes)))
            elif op == _SERVICE:
                methods: list[tuple[str, int]] = []
                for _ in range(self.count()):
                    self.charge()
                    name = self.text()
                    if methods and name.encode() <= methods[-1][0].encode():
                        raise CandidError("service method names must be unique and sorted")
                    methods.append((name, self.ref()))
                self.table.append(_WireType(op, extra=methods))
            else:
                raise CandidError(f"unsupported type opcode {op} in type table")
        for entry in self.table:
            if entry.opcode == _SERVICE:
                for name, r in entry.extra:
                    if r < 0 or self.table[r].opcode != _FUNC:
                        raise CandidError(f"service method {name!r} does not have a function type")
        self.inhabited = _inhabited(self.table)
        return [self.ref() for _ in range(self.count())]

    def wire_name(self, ref: int) -> str:
        return _PRIMS[ref].name if ref < 0 else _OPCODE_NAMES[self.table[ref].opcode]

    # ---------------------------------------------------------- values without expected types

    def value(self, ref: int, depth: int) -> Any:
        """A value of wire type `ref`, as the wire describes it (fields named by their ids); skipping a value
        is reading it this way and dropping it."""
        self.charge()
        if depth > MAX_DEPTH:
            raise CandidError("Candid value nested too deeply")
        if ref < 0:
            return self.primitive(_PRIMS[ref])
        if not self.inhabited[ref]:
            raise CandidError("a value of a type without values (empty, or recursion that never ends)")
        wt = self.table[ref]
        if wt.opcode == _OPT:
            flag = self.byte()
            if flag > 1:
                raise CandidError("invalid opt flag")
            return [self.value(wt.inner, depth + 1)] if flag else []
        if wt.opcode == _VEC:
            n = self.leb(10)
            if wt.inner == NAT8.opcode:
                return self.take(n)
            self.charge(n)
            return [self.value(wt.inner, depth + 1) for _ in range(n)]
        if wt.opcode == _RECORD:
            return {h: self.value(ft, depth + 1) for h, ft in wt.fields}
        if wt.opcode == _VARIANT:
            h, ft = self.variant_field(wt)
            return {h: self.value(ft, depth + 1)}
        if wt.opcode == _FUNC:
            return self.func_ref()
        return self.principal()  # service

    def primitive(self, prim: Prim) -> Any:
        if prim is NULL or prim is RESERVED:
            return None
        if prim is BOOL:
            b = self.byte()
            if b > 1:
                raise CandidError("invalid bool")
            return b == 1
        if prim is NAT:
            return self.leb()
        if prim is INT:
            return self.sleb()
        if prim in _FIXED_INT:
            size, signed = _FIXED_INT[prim]
            return int.from_bytes(self.take(size), "little", signed=signed)
        if prim is FLOAT32:
            return struct.unpack("<f", self.take(4))[0]
        if prim is FLOAT64:
            return struct.unpack("<d", self.take(8))[0]
        if prim is TEXT:
            return self.text()
        if prim is PRINCIPAL:
            return self.principal()
        raise CandidError("a value of type empty cannot exist")

    def variant_field(self, wt: _WireType) -> tuple[int, int]:
        i = self.leb(10)
        if i >= len(wt.fields):
            raise CandidError("variant index out of range")
        return wt.fields[i]

    def func_ref(self) -> tuple[Principal, str]:
        if self.byte() != 1:
            raise CandidError("opaque function references are not supported")
        principal = self.principal()
        return (principal, self.text())

    # ---------------------------------------------------------- values at expected types (subtyping)

    def typed(self, ref: int, t: Type, depth: int) -> Any:
        """The value of wire type `ref` read at the expected type `t`, by the spec's decoding rules."""
        t = _deref(t)
        if t is RESERVED:
            self.value(ref, depth)
            return None
        if isinstance(t, Opt):
            return self.optional(ref, t, depth)
        self.charge()
        if depth > MAX_DEPTH:
            raise CandidError("Candid value nested too deeply")
        if ref >= 0 and not self.inhabited[ref]:
            raise CandidError("a value of a type without values (empty, or recursion that never ends)")
        if isinstance(t, Prim):
            if ref == t.opcode and t is not EMPTY:
                return self.primitive(t)
            if t is INT and ref == NAT.opcode:
                return self.leb()
            raise _Mismatch(f"expected {t.name}, found {self.wire_name(ref)}")
        wt = self.table[ref] if ref >= 0 else None
        if wt is None or wt.opcode != t.opcode:
            raise _Mismatch(f"expected {_OPCODE_NAMES.get(t.opcode, 'a value')}, found {self.wire_name(ref)}")
        if isinstance(t, Vec):
            n = self.leb(10)
            if wt.inner == NAT8.opcode and _deref(t.inner) is NAT8:
                return self.take(n)
            self.charge(n)
            return [self.typed(wt.inner, t.inner, depth + 1) for _ in range(n)]
        if isinstance(t, Record):
            expected = self.field_map(t)
            out: dict[str | int, Any] = {}
            for h, wire_field in wt.fields:
                hit = expected.get(h)
                if hit is None:
                    self.value(wire_field, depth + 1)  # a field the receiver does not know: skipped
                else:
                    out[hit[0]] = self.typed(wire_field, hit[1], depth + 1)
            if len(out) < len(expected):
                for name, field_type in expected.values():
                    if name not in out:
                        out[name] = _absent(field_type, f"record field {name!r} is missing")
            return tuple(out[i] for i, _ in t.fields) if _is_tuple(t) else out
        if isinstance(t, Variant):
            h, ft = self.variant_field(wt)
            hit = self.field_map(t).get(h)
            if hit is None:
                raise _Mismatch(f"unexpected variant tag {h}")
            return {hit[0]: self.typed(ft, hit[1], depth + 1)}
        if isinstance(t, Func):
            return self.func_ref()
        return self.principal()  # service

    def optional(self, ref: int, t: Opt, depth: int) -> list[Any]:
        self.charge()
        if depth > 2 * MAX_DEPTH:  # e.g. `type t = opt t` expected where the message has a bare value
            raise CandidError(f"the expected type nests opt deeper than {2 * MAX_DEPTH} levels")
        if ref in (NULL.opcode, RESERVED.opcode):
            return []
        if ref >= 0 and self.table[ref].opcode == _OPT:
            flag = self.byte()
            if flag > 1:
                raise CandidError("invalid opt flag")
            return self.attempt(self.table[ref].inner, t.inner, depth + 1) if flag else []
        return self.attempt(ref, t.inner, depth + 1)  # a bare value at opt T: ?(value at T), whatever T is

    def attempt(self, ref: int, t: Type, depth: int) -> list[Any]:
        """`[value]`, or `[]` if the value does not fit `t` (it is then skipped): the spec's rule for opt."""
        start = self.pos
        try:
            return [self.typed(ref, t, depth)]
        except _Mismatch:
            self.pos = start
            self.value(ref, depth)
            return []

    def field_map(self, t: Record | Variant) -> dict[int, tuple[str | int, Type]]:
        found = self._field_maps.get(id(t))
        if found is None:
            found = {}
            for name, ft in t.fields:
                h = _field_id(name)
                if h in found:
                    raise CandidError(f"fields {found[h][0]!r} and {name!r} have the same id {h}")
                found[h] = (name, ft)
            self._field_maps[id(t)] = found
        return found


def _nullable(t: Type) -> bool:
    t = _deref(t)
    return isinstance(t, Opt) or t is NULL or t is RESERVED


def _absent(t: Type, why: str) -> Any:
    """The value of a field or argument that is not there: null for opt, null and reserved; else an error."""
    t = _deref(t)
    if isinstance(t, Opt):
        return []
    if t is NULL or t is RESERVED:
        return None
    raise _Mismatch(why)


def _inhabited(table: list[_WireType]) -> list[bool]:
    """Which table entries have values: a record needs all its fields inhabited, a variant one; opt, vec,
    func and service always are. A type like `record { 0 : self }` has no (finite) value, so decoding one
    is refused instead of recursing. Work is linear in the table's size (a worklist, not a fixpoint loop)."""
    ok = [False] * len(table)
    waiting = [0] * len(table)
    parents: list[list[int]] = [[] for _ in table]
    work: list[int] = []
    for i, wt in enumerate(table):
        if wt.opcode == _RECORD:
            if any(r == EMPTY.opcode for _, r in wt.fields):
                continue
            children = [r for _, r in wt.fields if r >= 0]
            waiting[i] = len(children)
        elif wt.opcode == _VARIANT:
            if any(r < 0 and r != EMPTY.opcode for _, r in wt.fields):
                children = []
            else:
                children = [r for _, r in wt.fields if r >= 0]
                waiting[i] = 1 if children else -1  # a variant with only `empty` cases has no value
        else:
            children = []
        for r in children:
            parents[r].append(i)
        if waiting[i] == 0:
            ok[i] = True
            work.append(i)
    while work:
        done = work.pop()
        for parent in parents[done]:
            if not ok[parent]:
                waiting[parent] -= 1
                if waiting[parent] == 0:
                    ok[parent] = True
                    work.append(parent)
    return ok


def decode(data: bytes, types: list[Type] | tuple[Type, ...] | None = None) -> list[Any]:
    """Decode an argument sequence.

    Without `types`, values come out as the wire describes them (record and variant fields named by their
    ids). With `types`, the spec's decoding relation applies: wire types must fit the expected ones (`nat`
    where `int` is expected is fine, extra record fields and extra arguments are skipped, missing `opt`
    fields and arguments are null, a value that does not fit under an `opt` is null, an unknown variant tag is
    an error, `reserved` takes anything). Any failure, including a message that would cost more work than its
    size allows, raises `CandidError` and nothing else.
    """
    d = _Decoder(bytes(data))
    arg_refs = d.header()
    if types is None:
        values = [d.value(ref, 0) for ref in arg_refs]
    else:
        values = [d.typed(ref, t, 0) for ref, t in zip(arg_refs, types)]
        values += [_absent(t, f"missing argument of type {t!r}") for t in types[len(arg_refs):]]
        for ref in arg_refs[len(types):]:
            d.value(ref, 0)
    if d.pos != len(d.data):
        raise CandidError(f"{len(d.data) - d.pos} bytes left over after the last value")
    return values
