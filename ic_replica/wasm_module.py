"""Inspect and prepare a canister's wasm module for execution.

wasmtime-py can read only *exported* globals and runs a module's start function during instantiation.
The replica needs both under its control (to snapshot globals for rollback and to run start after
restoring memory on upgrade), so `prepare` exports every global and turns the start section into an
exported function. The module's behaviour is otherwise unchanged.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
from dataclasses import dataclass, field

WASM_MAGIC = b"\x00asm\x01\x00\x00\x00"
GZIP_MAGIC = b"\x1f\x8b"
MAX_MODULE_BYTES = 100 * 1024 * 1024  # after decompression
GLOBAL_EXPORT_PREFIX = "__replica_global_"
START_EXPORT = "__replica_start"
MEMORY_EXPORT = "__replica_memory"
TABLE_EXPORT = "__replica_table"

SEC_CUSTOM, SEC_TYPE, SEC_IMPORT, SEC_TABLE, SEC_MEMORY, SEC_GLOBAL, SEC_EXPORT, SEC_START = 0, 1, 2, 4, 5, 6, 7, 8
VALUE_TYPES = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64", 0x7B: "v128", 0x70: "funcref", 0x6F: "externref"}
_IMPORT_KINDS = {1: "table", 2: "memory", 3: "global"}

# A function type as (parameter types, result types), each a tuple of names from VALUE_TYPES.
Signature = tuple[tuple[str, ...], tuple[str, ...]]


class InvalidModule(ValueError):
    """Bytes that are not an acceptable canister module."""


@dataclass
class ModuleInfo:
    """What the replica needs to know about a module before running it."""

    prepared: bytes  # the rewritten module actually compiled
    module_hash: bytes  # sha256 of the module as installed (after decompression)
    imports: list[tuple[str, str]]
    exports: list[str]
    global_count: int
    has_start: bool
    memory64: bool
    public_metadata: dict[str, bytes] = field(default_factory=dict)
    private_metadata: dict[str, bytes] = field(default_factory=dict)
    # one per entry of `imports`: the function's type, or "table" / "memory" / "global" for other imports
    import_types: list[Signature | str] = field(default_factory=list)

    @functools.cached_property
    def prepared_hash(self) -> str:
        """sha256 of `prepared` (hex): the compiled-module cache's key, asked for at every instantiation."""
        return hashlib.sha256(self.prepared).hexdigest()

    @property
    def uses_eop(self) -> bool:
        """Enhanced orthogonal persistence: the heap must survive upgrades."""
        return "enhanced-orthogonal-persistence" in self.private_metadata or (
            "enhanced-orthogonal-persistence" in self.public_metadata
        )

    def metadata(self, name: str) -> tuple[bytes, bool] | None:
        """(content, is_public) of a `icp:public`/`icp:private` custom section."""
        if name in self.public_metadata:
            return self.public_metadata[name], True
        if name in self.private_metadata:
            return self.private_metadata[name], False
        return None


def _leb(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise InvalidModule("truncated wasm module")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, pos
        if shift > 63:
            raise InvalidModule("malformed LEB128 in wasm module")


def _enc_leb(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _name(data: bytes, pos: int) -> tuple[str, int]:
    n, pos = _leb(data, pos)
    raw = data[pos : pos + n]
    if len(raw) != n:
        raise InvalidModule("truncated name in wasm module")
    try:
        return raw.decode(), pos + n
    except UnicodeDecodeError as exc:
        raise InvalidModule("non-UTF-8 name in wasm module") from exc


def decompress(module: bytes) -> bytes:
    """Accept raw or gzip-compressed modules, as install_code does."""
    if module.startswith(GZIP_MAGIC):
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(module)) as f:
                data = f.read(MAX_MODULE_BYTES + 1)
        except (OSError, EOFError) as exc:
            raise InvalidModule(f"gzip-compressed module is corrupt: {exc}") from exc
        if len(data) > MAX_MODULE_BYTES:
            raise InvalidModule(f"decompressed module exceeds {MAX_MODULE_BYTES} bytes")
        return data
    return module


def _sections(data: bytes) -> list[tuple[int, int, int, int]]:
    """(id, header start, payload start, payload end) of every section."""
    if not data.startswith(WASM_MAGIC):
        raise InvalidModule("not a wasm module (bad magic or version)")
    out, pos = [], len(WASM_MAGIC)
    while pos < len(data):
        sid = data[pos]
        size, start = _leb(data, pos + 1)
        end = start + size
        if end > len(data):
            raise InvalidModule("wasm section extends past the end of the module")
        out.append((sid, pos, start, end))
        pos = end
    return out


def _value_types(body: bytes, p: int) -> tuple[tuple[str, ...], int]:
    count, p = _leb(body, p)
    if count > len(body) - p:
        raise InvalidModule("truncated function type in wasm module")
    out = []
    for _ in range(count):
        code = body[p]
        if code not in VALUE_TYPES:
            raise InvalidModule(f"unsupported value type 0x{code:02x} in a function type")
        out.append(VALUE_TYPES[code])
        p += 1
    return tuple(out), p


def _function_types(body: bytes) -> list[Signature]:
    """The type section's function types (the only form the IC accepts)."""
    count, p = _leb(body, 0)
    types: list[Signature] = []
    for _ in range(count):
        if p >= len(body):
            raise InvalidModule("truncated type section in wasm module")
        if body[p] != 0x60:
            raise InvalidModule(f"unsupported type form 0x{body[p]:02x} in the type section")
        params, p = _value_types(body, p + 1)
        results, p = _value_types(body, p)
        types.append((params, results))
    return types


def prepare(module: bytes) -> ModuleInfo:
    """Parse a (possibly gzipped) module and produce the rewritten module the replica runs."""
    data = decompress(module)
    try:
        return _prepare(data)
    except IndexError as exc:  # a section body shorter than its entries claim
        raise InvalidModule("truncated section in wasm module") from exc


def _prepare(data: bytes) -> ModuleInfo:
    sections = _sections(data)
    imports: list[tuple[str, str]] = []
    import_type_index: list[int | str] = []
    types: list[Signature] = []
    exports: list[tuple[str, int, int]] = []
    imported_globals = defined_globals = 0
    tables = memories = 0
    memory64 = False
    start_func: int | None = None
    public: dict[str, bytes] = {}
    private: dict[str, bytes] = {}
    for sid, _, start, end in sections:
        body = data[start:end]
        if sid == SEC_CUSTOM:
            name, p = _name(body, 0)
            for prefix, target in (("icp:public ", public), ("icp:private ", private)):
                if name.startswith(prefix):
                    key = name[len(prefix):]
                    if key in public or key in private:
                        raise InvalidModule(f"duplicate metadata section {key!r}")
                    target[key] = body[p:]
        elif sid == SEC_TYPE:
            types = _function_types(body)
        elif sid == SEC_IMPORT:
            count, p = _leb(body, 0)
            for _ in range(count):
                mod, p = _name(body, p)
                nm, p = _name(body, p)
                kind = body[p]
                p += 1
                if kind == 0:
                    type_index, p = _leb(body, p)
                    import_type_index.append(type_index)
                elif kind == 1:
                    p += 1
                    p = _skip_limits(body, p)
                    tables += 1
                elif kind == 2:
                    memory64 = bool(body[p] & 0x04)
                    p = _skip_limits(body, p)
                    memories += 1
                elif kind == 3:
                    p += 2
                    imported_globals += 1
                else:
                    raise InvalidModule(f"unsupported import kind {kind}")
                if kind:
                    import_type_index.append(_IMPORT_KINDS[kind])
                imports.append((mod, nm))
        elif sid == SEC_GLOBAL:
            defined_globals, _ = _leb(body, 0)
        elif sid == SEC_TABLE:
            tables += _leb(body, 0)[0]
        elif sid == SEC_MEMORY:
            count, p = _leb(body, 0)
            memories += count
            if count:
                memory64 = bool(body[p] & 0x04)
        elif sid == SEC_EXPORT:
            count, p = _leb(body, 0)
            for _ in range(count):
                nm, p = _name(body, p)
                kind = body[p]
                idx, p = _leb(body, p + 1)
                exports.append((nm, kind, idx))
        elif sid == SEC_START:
            start_func, _ = _leb(body, 0)
    names = [e[0] for e in exports]
    if len(set(names)) != len(names):
        raise InvalidModule("duplicate export names")
    global_count = imported_globals + defined_globals
    extra = [(f"{GLOBAL_EXPORT_PREFIX}{i}", 3, i) for i in range(global_count)]
    if start_func is not None:
        extra.append((START_EXPORT, 0, start_func))
    if memories > 1:
        raise InvalidModule("a canister module may declare at most one memory")
    if memories and not any(kind == 2 for _, kind, _ in exports):
        extra.append((MEMORY_EXPORT, 2, 0))
    if tables and not any(kind == 1 for _, kind, _ in exports):
        extra.append((TABLE_EXPORT, 1, 0))
    import_types: list[Signature | str] = []
    for (mod, nm), index in zip(imports, import_type_index):
        if isinstance(index, int) and index >= len(types):
            raise InvalidModule(f"import {mod}.{nm} refers to type {index}, which does not exist")
        import_types.append(index if isinstance(index, str) else types[index])
    prepared = _rewrite(data, sections, exports + extra)
    return ModuleInfo(
        prepared=prepared,
        module_hash=hashlib.sha256(data).digest(),
        imports=imports,
        exports=names,
        global_count=global_count,
        has_start=start_func is not None,
        memory64=memory64,
        public_metadata=public,
        private_metadata=private,
        import_types=import_types,
    )


def _skip_limits(body: bytes, p: int) -> int:
    flags = body[p]
    p += 1
    _, p = _leb(body, p)
    if flags & 1:
        _, p = _leb(body, p)
    return p


def _rewrite(data: bytes, sections: list[tuple[int, int, int, int]], exports: list[tuple[str, int, int]]) -> bytes:
    payload = bytearray(_enc_leb(len(exports)))
    for nm, kind, idx in exports:
        raw = nm.encode()
        payload += _enc_leb(len(raw)) + raw + bytes([kind]) + _enc_leb(idx)
    export_section = bytes([SEC_EXPORT]) + _enc_leb(len(payload)) + bytes(payload)
    out = bytearray(WASM_MAGIC)
    placed = False
    for sid, header_start, _, end in sections:
        if sid == SEC_START:
            continue
        if sid == SEC_EXPORT:
            out += export_section
            placed = True
            continue
        # The export section goes after imports/functions/tables/memories/globals (ids 1..6), before start.
        if not placed and sid not in (SEC_CUSTOM, 1, 2, 3, 4, 5, 6, 13):
            out += export_section
            placed = True
        out += data[header_start:end]
    if not placed:
        out += export_section
    return bytes(out)
