"""A small, complete-enough Candid codec for the replica's own needs (management canister, tests).

Values: ints for every integer type, float, bool, str, None for null/reserved, bytes for `blob`,
list for `vec`, `[]`/`[v]` for `opt`, dict for `record` (field name -> value; unnamed fields by index),
a one-entry dict for `variant`, `Principal` for `principal`/`service`, `(Principal, str)` for `func`.
Decoding without expected types names fields by their hash (int).
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
    while isinstance(t, Rec):
        t = t.resolve()
    return t


def Tuple(*types: Type) -> Record:  # noqa: N802 - reads like a type constructor
    return Record(tuple((i, t) for i, t in enumerate(types)))


def _sorted_fields(fields: tuple[tuple[str | int, Type], ...]) -> list[tuple[int, str | int, Type]]:
    return sorted((_field_id(n), n, t) for n, t in fields)


# ---------------------------------------------------------------- LEB128


def leb(n: int) -> bytes:
    if n < 0:
        raise CandidError(f"negative value {n} for an unsigned type")
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def sleb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        done = (n == 0 and not byte & 0x40) or (n == -1 and byte & 0x40)
        out.append(byte if done else byte | 0x80)
        if done:
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


@dataclass
class _WireType:
    opcode: int
    inner: int = 0
    fields: list[tuple[int, int]] = field(default_factory=list)
    # func: (args, rets); service: methods
    extra: Any = None


class _Reader:
    MAX_DEPTH = 64

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise CandidError("unexpected end of Candid data")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def leb(self) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result
            if shift > 700:
                raise CandidError("LEB128 number too long")

    def sleb(self) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                if b & 0x40:
                    result -= 1 << shift
                return result
            if shift > 700:
                raise CandidError("SLEB128 number too long")


def decode(data: bytes, types: list[Type] | tuple[Type, ...] | None = None) -> list[Any]:
    """Decode an argument sequence; with `types`, fields get their names and opt fields may be absent."""
    r = _Reader(data)
    if r.take(4) != MAGIC:
        raise CandidError("missing DIDL magic")
    table: list[_WireType] = []
    for _ in range(r.leb()):
        op = r.sleb()
        if op in (-18, -19):
            table.append(_WireType(op, inner=r.sleb()))
        elif op in (-20, -21):
            fields = [(r.leb(), r.sleb()) for _ in range(r.leb())]
            table.append(_WireType(op, fields=fields))
        elif op == -22:
            args = [r.sleb() for _ in range(r.leb())]
            rets = [r.sleb() for _ in range(r.leb())]
            r.take(r.leb())
            table.append(_WireType(op, extra=(args, rets)))
        elif op == -23:
            methods = []
            for _ in range(r.leb()):
                methods.append((r.take(r.leb()).decode(), r.sleb()))
            table.append(_WireType(op, extra=methods))
        else:
            raise CandidError(f"unsupported type opcode {op} in type table")
    arg_types = [r.sleb() for _ in range(r.leb())]
    for ref in arg_types + [w.inner for w in table if w.opcode in (-18, -19)]:
        if ref >= len(table) or (ref < 0 and ref not in _PRIMS):
            raise CandidError(f"type reference {ref} is out of range")
    values = [_decode_value(r, table, ref, 0) for ref in arg_types]
    if types is not None:
        if len(values) < len(types):
            values += [None] * (len(types) - len(values))
            for t in types[len(arg_types):]:
                if not isinstance(t, Opt) and t not in (NULL, RESERVED):
                    raise CandidError(f"missing argument of type {t!r}")
        values = [_coerce(t, v) for t, v in zip(types, values)]
    return values


def _decode_value(r: _Reader, table: list[_WireType], ref: int, depth: int) -> Any:
    if depth > _Reader.MAX_DEPTH:
        raise CandidError("Candid value nested too deeply")
    if ref < 0:
        prim = _PRIMS.get(ref)
        if prim is None:
            raise CandidError(f"unknown primitive type {ref}")
        if prim is NULL or prim is RESERVED:
            return None
        if prim is BOOL:
            b = r.byte()
            if b > 1:
                raise CandidError("invalid bool")
            return b == 1
        if prim is NAT:
            return r.leb()
        if prim is INT:
            return r.sleb()
        if prim in _FIXED_INT:
            size, signed = _FIXED_INT[prim]
            return int.from_bytes(r.take(size), "little", signed=signed)
        if prim is FLOAT32:
            return struct.unpack("<f", r.take(4))[0]
        if prim is FLOAT64:
            return struct.unpack("<d", r.take(8))[0]
        if prim is TEXT:
            try:
                return r.take(r.leb()).decode()
            except UnicodeDecodeError as exc:
                raise CandidError("text is not UTF-8") from exc
        if prim is PRINCIPAL:
            return _read_principal(r)
        raise CandidError("a value of type empty cannot exist")
    wt = table[ref]
    if wt.opcode == -18:
        flag = r.byte()
        if flag > 1:
            raise CandidError("invalid opt flag")
        return [_decode_value(r, table, wt.inner, depth + 1)] if flag else []
    if wt.opcode == -19:
        n = r.leb()
        if wt.inner == NAT8.opcode:
            return r.take(n)
        if n > len(r.data) - r.pos and wt.inner not in (NULL.opcode, RESERVED.opcode):
            raise CandidError("vector longer than the message")
        return [_decode_value(r, table, wt.inner, depth + 1) for _ in range(n)]
    if wt.opcode == -20:
        return {h: _decode_value(r, table, ft, depth + 1) for h, ft in wt.fields}
    if wt.opcode == -21:
        i = r.leb()
        if i >= len(wt.fields):
            raise CandidError("variant index out of range")
        h, ft = wt.fields[i]
        return {h: _decode_value(r, table, ft, depth + 1)}
    if wt.opcode == -22:
        if r.byte() != 1:
            raise CandidError("opaque function references are not supported")
        principal = _read_principal(r)
        return (principal, r.take(r.leb()).decode())
    if wt.opcode == -23:
        return _read_principal(r)
    raise CandidError(f"unsupported type opcode {wt.opcode}")


def _read_principal(r: _Reader) -> Principal:
    if r.byte() != 1:
        raise CandidError("opaque principal references are not supported")
    return Principal(r.take(r.leb()))


def _coerce(t: Type, v: Any) -> Any:
    """Give decoded values their expected field names (records/variants) and fill absent opt fields."""
    t = _deref(t)
    if isinstance(t, Opt):
        if v is None:
            return []
        if isinstance(v, list) and len(v) <= 1:
            return [_coerce(t.inner, x) for x in v]
        return [_coerce(t.inner, v)]
    if isinstance(t, Vec) and isinstance(v, list):
        return [_coerce(t.inner, x) for x in v]
    if isinstance(t, Record) and isinstance(v, dict) and _is_tuple(t):
        return tuple(_coerce(ft, v.get(i)) for i, ft in t.fields)
    if isinstance(t, Record) and isinstance(v, dict):
        out = {}
        for name, ft in t.fields:
            h = _field_id(name)
            if h in v:
                out[name] = _coerce(ft, v[h])
            elif isinstance(ft, Opt) or ft in (NULL, RESERVED):
                out[name] = [] if isinstance(ft, Opt) else None
            else:
                raise CandidError(f"record field {name!r} is missing")
        return out
    if isinstance(t, Variant) and isinstance(v, dict):
        (h, inner), = v.items()
        for name, ft in t.fields:
            if _field_id(name) == h:
                return {name: _coerce(ft, inner)}
        raise CandidError(f"unexpected variant tag {h}")
    if t is NAT and isinstance(v, int) and v < 0:
        raise CandidError("expected nat, got a negative int")
    return v
