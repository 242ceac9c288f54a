"""One canister's wasm instance under wasmtime: execution with fuel, snapshots for rollback.

Every canister has its own `wasmtime.Store`, so a canister's instances, fuel and memory never mix with
another's. Undoing a message (a trap, or any query) puts back only the pages it wrote where the kernel tracks
writes (`dirty_pages.Shadow`); elsewhere the heap is copied whole before the message (`RollbackBuffer`).

Compiled modules are shared through `ModuleCache`: in memory by every replica of the process (they use one engine,
`shared_engine`, since a compiled module belongs to the engine that compiled it), and serialized on disk per state
directory. Compiling a 1–2 MB Motoko module takes about a second; a test suite or a PocketIC server that creates
many replicas compiles each module once.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wasmtime
from wasmtime import _ffi as wasmtime_ffi

from ic_replica import dirty_pages
from ic_replica.context import Closure, ExecutionContext, Trap
from ic_replica.errors import ErrorCode
from ic_replica.system_api import CanisterEnv, SystemApi, linker, raised_here, running
from ic_replica.wasm_module import GLOBAL_EXPORT_PREFIX, START_EXPORT, ModuleInfo

WASM_PAGE = 64 * 1024
_INSTANTIATION_FUEL = 1 << 32  # constant expressions and element segments only: the start function is an export
_WASMTIME_VERSION = importlib.metadata.version("wasmtime")

_TRAP_MESSAGES = {
    wasmtime.TrapCode.MEMORY_OUT_OF_BOUNDS: "heap out of bounds",
    wasmtime.TrapCode.HEAP_MISALIGNED: "heap out of bounds",
    wasmtime.TrapCode.STACK_OVERFLOW: "stack overflow",
    wasmtime.TrapCode.INTEGER_DIVISION_BY_ZERO: "integer division by 0",
    wasmtime.TrapCode.INTEGER_OVERFLOW: "integer overflow",
    wasmtime.TrapCode.BAD_CONVERSION_TO_INTEGER: "invalid conversion to integer",
    wasmtime.TrapCode.UNREACHABLE: "unreachable",
    wasmtime.TrapCode.TABLE_OUT_OF_BOUNDS: "table out of bounds",
    wasmtime.TrapCode.INDIRECT_CALL_TO_NULL: "indirect call to null",
    wasmtime.TrapCode.BAD_SIGNATURE: "indirect call signature mismatch",
}


def new_engine() -> wasmtime.Engine:
    config = wasmtime.Config()
    config.consume_fuel = True
    return wasmtime.Engine(config)


_shared_engine: wasmtime.Engine | None = None
_shared_engine_lock = threading.Lock()


def shared_engine() -> wasmtime.Engine:
    """The process's engine (thread-safe in wasmtime); every replica uses it, so they share compiled modules."""
    global _shared_engine
    with _shared_engine_lock:
        if _shared_engine is None:
            _shared_engine = new_engine()
        return _shared_engine


class ModuleCache:
    """Compiled modules by hash of the prepared bytes: the most recent `MAX_IN_MEMORY` in memory (shared by
    every cache on the shared engine); serialized copies on disk (per cache directory) survive restarts."""

    MAX_IN_MEMORY = 64
    _shared_modules: OrderedDict[str, wasmtime.Module] = OrderedDict()  # what the shared engine compiled
    _lock = threading.Lock()  # one lock: compiling the same module twice at once would be wasted work

    def __init__(self, engine: wasmtime.Engine, cache_dir: Path | None = None) -> None:
        self.engine = engine
        self.cache_dir = cache_dir
        self._modules = self._shared_modules if engine is _shared_engine else OrderedDict()

    def get(self, info: ModuleInfo) -> wasmtime.Module:
        key = info.prepared_hash
        with self._lock:
            module = self._modules.get(key)
            if module is not None:
                self._modules.move_to_end(key)
                return module
            path = self.cache_dir / f"{key}-{_WASMTIME_VERSION}.cwasm" if self.cache_dir else None
            if path is not None and path.is_file():
                try:
                    module = wasmtime.Module.deserialize_file(self.engine, str(path))
                except wasmtime.WasmtimeError:
                    module = None
            if module is None:
                module = wasmtime.Module(self.engine, info.prepared)
                if path is not None:
                    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # several
                    tmp.write_bytes(module.serialize())  # processes may share the folder: each its own tmp
                    tmp.replace(path)
            self._modules[key] = module
            while len(self._modules) > self.MAX_IN_MEMORY:
                self._modules.popitem(last=False)
            return module


@dataclass
class Snapshot:
    """Linear memory and mutable globals at a point in time."""

    memory: bytes
    globals: list[Any]  # typed values; the bits `_GlobalsIO.raw` reads when `raw`
    raw: bool = False


_libc = ctypes.CDLL(None)
_libc.memcmp.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
_libc.memcmp.restype = ctypes.c_int
_COMPARE_PAGE = 64 * 1024  # what a rollback restores at a time
_COMPARE_BLOCK = 16 * _COMPARE_PAGE  # what it compares at a time first


class RollbackBuffer:
    """One reusable buffer with the pre-execution memory of the runtime that executed last.

    Shared by all canisters of a replica (executions are sequential), so memory use does not grow with the
    number of canisters. Rolling back copies only the pages that differ, so pages a canister never touched
    stay unallocated. After a rollback the buffer still matches the memory: a run of queries on one canister
    copies its memory once.
    """

    def __init__(self) -> None:
        self.buffer: ctypes.Array[ctypes.c_ubyte] | None = None
        self.size = 0
        self.owner: object = None
        self.globals: list[int | bytes] = []  # bits, as `_GlobalsIO.raw` reads them

    def invalidate(self, owner: object) -> None:
        if self.owner is owner:
            self.owner = None


class _GlobalsIO:
    """The mutable globals of an instance, read and written through wasmtime's C API: its Python wrapper costs
    several microseconds per global, and a Motoko canister has 32, saved before and checked after every message.

    `raw`/`restore_raw` (rollback) move bit patterns: a float global is saved and compared as its bits, so -0.0
    and +0.0 differ and a signalling NaN stays signalling; a v128 global as its 16 bytes. `read`/`write`
    (snapshots, persistence) use typed values, as wasmtime's API does."""

    _TYPED = {0: "i32", 1: "i64", 2: "f32", 3: "f64"}  # wasmtime_valkind_t -> union field
    _RAW = {0: "i32", 1: "i64", 2: "i32", 3: "i64"}  # the same bytes, read as integers
    _V128 = 4

    def __init__(self, store: wasmtime.Store, mutable: list[wasmtime.Global]) -> None:
        self.store, self.mutable = store, mutable
        self._ctx = store._context()
        self._refs = [ctypes.byref(g._global) for g in mutable]
        self._val = wasmtime_ffi.wasmtime_val_t()
        self._val_ref = ctypes.byref(self._val)
        self._kinds: list[int] = []
        for g in mutable:
            wasmtime_ffi.wasmtime_global_get(self._ctx, ctypes.byref(g._global), self._val_ref)
            self._kinds.append(int(self._val.kind))
        self._typed = all(k in self._TYPED for k in self._kinds)
        self._raw = all(k in self._RAW or k == self._V128 for k in self._kinds)
        # The bits as last read or restored, until wasm runs (`changed`): a query is undone by restoring what its
        # `begin` read, so the next `begin` need not read them again.
        self._known: list[int | bytes] | None = None

    def changed(self) -> None:
        """Wasm is about to run: what `raw` last returned may no longer hold."""
        self._known = None

    def read(self) -> list[int | float | None]:
        if not self._typed:
            return [g.value(self.store) for g in self.mutable]
        get, ctx, val, out = wasmtime_ffi.wasmtime_global_get, self._ctx, self._val, self._val_ref
        values: list[int | float | None] = []
        for ref, kind in zip(self._refs, self._kinds):
            get(ctx, ref, out)
            values.append(getattr(val.of, self._TYPED[kind]))
        return values

    def write(self, values: list[int | float | None]) -> None:
        self._known = None
        for i, (g, value) in enumerate(zip(self.mutable, values)):
            if not self._typed:
                g.set_value(self.store, value)
            else:
                self._set(i, self._TYPED[self._kinds[i]], value)

    def raw(self) -> list[int | bytes]:
        """Every mutable global's bits (None entries never occur: other kinds fall back to `read`)."""
        if self._known is not None:
            return self._known
        if not self._raw:
            return self.read()  # type: ignore[return-value]
        get, ctx, val, out = wasmtime_ffi.wasmtime_global_get, self._ctx, self._val, self._val_ref
        values: list[int | bytes] = []
        for ref, kind in zip(self._refs, self._kinds):
            get(ctx, ref, out)
            values.append(bytes(val.of.v128) if kind == self._V128 else getattr(val.of, self._RAW[kind]))
        self._known = values
        return values

    def restore_raw(self, saved: list[int | bytes]) -> None:
        """Put back the globals `raw` saved, writing only those whose bits changed."""
        if not self._raw:
            for g, typed, now in zip(self.mutable, saved, self.read()):
                if now != typed:
                    g.set_value(self.store, typed)
            return
        for i, (value, current) in enumerate(zip(saved, self.raw())):
            if current == value:
                continue
            if self._kinds[i] == self._V128:
                self._val.kind = self._kinds[i]  # type: ignore[assignment]
                ctypes.memmove(ctypes.addressof(self._val.of.v128), bytes(value), 16)  # type: ignore[arg-type]
                self._commit(i)
            else:
                self._set(i, self._RAW[self._kinds[i]], value)
        self._known = list(saved)

    def _set(self, i: int, field: str, value: object) -> None:
        self._val.kind = self._kinds[i]  # type: ignore[assignment]
        setattr(self._val.of, field, value)
        self._commit(i)

    def _commit(self, i: int) -> None:
        error = wasmtime_ffi.wasmtime_global_set(self._ctx, self._refs[i], self._val_ref)
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)


class WasmRuntime:
    """A live instance of a canister module."""

    def __init__(self, engine: wasmtime.Engine, module: wasmtime.Module, info: ModuleInfo,
                 env: CanisterEnv, rollback: RollbackBuffer | None = None) -> None:
        self.info = info
        self.rollback_buffer = rollback or RollbackBuffer()
        self.store = wasmtime.Store(engine)
        self.api = SystemApi(self, env)
        outer = running(None)  # a start function's ic0 calls are outside any message
        self.store.set_fuel(_INSTANTIATION_FUEL)  # initializers such as `ref.func` globals consume fuel
        try:
            self.instance = linker(engine, info.memory64).instantiate(self.store, module)
        finally:
            running(outer)
        exports = self.instance.exports(self.store)
        self.memory: wasmtime.Memory | None = None
        self.table: wasmtime.Table | None = None
        self.functions: dict[str, wasmtime.Func] = {}
        for name, ext in exports.items():
            if isinstance(ext, wasmtime.Memory) and self.memory is None:
                self.memory = ext
            elif isinstance(ext, wasmtime.Table) and self.table is None:
                self.table = ext
            elif isinstance(ext, wasmtime.Func):
                self.functions[name] = ext
        self.globals: list[wasmtime.Global] = []
        for i in range(info.global_count):
            g = exports[f"{GLOBAL_EXPORT_PREFIX}{i}"]
            assert isinstance(g, wasmtime.Global)
            self.globals.append(g)
        self._mutable = [g for g in self.globals if g.type(self.store).mutable]
        self._globals_io = _GlobalsIO(self.store, self._mutable)
        tracker = dirty_pages.tracker() if self.memory is not None else None
        self._shadow = dirty_pages.Shadow(tracker) if tracker is not None else None
        self._saved_globals: list[int | bytes] = []  # bits, as `_GlobalsIO.raw` reads them
        self._fuel_limit = 0

    # ------------------------------------------------------------ memory

    def memory_size(self) -> int:
        return self.memory.data_len(self.store) if self.memory is not None else 0

    def memory_address(self) -> int:
        assert self.memory is not None
        return ctypes.cast(self.memory.data_ptr(self.store), ctypes.c_void_p).value or 0

    def snapshot(self) -> Snapshot:
        size = self.memory_size()
        memory = ctypes.string_at(self.memory_address(), size) if size else b""
        return Snapshot(memory, self._globals_io.read())

    def restore(self, snap: Snapshot) -> bool:
        """Put memory and globals back; False if the memory grew meanwhile (rebuild the instance instead)."""
        if self.memory_size() != len(snap.memory):
            return False
        if snap.memory:
            ctypes.memmove(self.memory_address(), snap.memory, len(snap.memory))
        self._globals_io.write(snap.globals)
        return True

    def begin(self) -> None:
        """Remember memory and globals before an execution that may have to be undone."""
        if self._shadow is not None and self._shadow.tracker is not dirty_pages.tracker():
            tracker = dirty_pages.tracker()  # the process forked: the parent's tracker is not ours
            self._shadow = dirty_pages.Shadow(tracker) if tracker is not None else None
        if self._shadow is not None:
            if self._shadow.sync(self.memory_address(), self.memory_size()):
                self._saved_globals = self._globals_io.raw()
                return
            self._shadow = None  # this memory cannot be tracked: copy it whole from now on
        rb, size = self.rollback_buffer, self.memory_size()
        if rb.owner is self and rb.size == size:
            return
        if rb.buffer is None or len(rb.buffer) < size:
            # grow geometrically: a canister whose heap keeps growing must not reallocate on every message
            rb.buffer = (ctypes.c_ubyte * max(size, 2 * (len(rb.buffer) if rb.buffer is not None else 0)))()
        if size:
            ctypes.memmove(rb.buffer, self.memory_address(), size)
        rb.size, rb.owner = size, self
        rb.globals = self._globals_io.raw()

    def rollback(self) -> bool:
        """Undo the execution since `begin`; False if memory grew (the caller rebuilds the instance)."""
        if self._shadow is not None:
            if not self._shadow.restore(self.memory_address(), self.memory_size()):
                return False
            self._globals_io.restore_raw(self._saved_globals)
            return True
        rb = self.rollback_buffer
        assert rb.owner is self and rb.buffer is not None
        size = self.memory_size()
        if size != rb.size:
            return False
        base, saved = self.memory_address(), ctypes.addressof(rb.buffer)
        for block in range(0, size, _COMPARE_BLOCK):  # most of a heap is untouched: skip it a MiB at a time
            end = min(block + _COMPARE_BLOCK, size)
            if not _libc.memcmp(base + block, saved + block, end - block):
                continue
            for offset in range(block, end, _COMPARE_PAGE):
                n = min(_COMPARE_PAGE, end - offset)
                if _libc.memcmp(base + offset, saved + offset, n):
                    ctypes.memmove(base + offset, saved + offset, n)
        self._globals_io.restore_raw(rb.globals)
        return True

    def commit(self) -> None:
        """The execution stands: the saved copy no longer matches memory (a shadow catches up at `begin`)."""
        if self._shadow is None:
            self.rollback_buffer.invalidate(self)

    def take_saved(self, old: WasmRuntime) -> None:
        """Fill this fresh instance with what `old` held at its `begin` (old's memory grew and cannot shrink).

        The memory is copied once, straight from old's saved copy, and that copy then tracks this memory; a
        snapshot would copy it three times more (out, in, and into a new saved copy at the next `begin`)."""
        shadow = old._shadow
        if shadow is not None:
            assert shadow.buffer is not None or not shadow.size
            source, size, saved = shadow.buffer.address if shadow.buffer else 0, shadow.size, old._saved_globals
        else:
            rb = old.rollback_buffer
            assert rb.owner is old and rb.buffer is not None
            source, size, saved = ctypes.addressof(rb.buffer), rb.size, rb.globals
        if self.memory is not None and size:
            fresh = self.memory_size()
            if size > fresh:
                self.memory.grow(self.store, (size - fresh + WASM_PAGE - 1) // WASM_PAGE)
            base, head = self.memory_address(), min(fresh, size)
            dirty_pages.copy_changed(base, source, head)
            dirty_pages.copy_nonzero(base + head, source + head, size - head)  # grown pages are zero already
        self._globals_io.restore_raw(saved)
        if shadow is not None:
            old._shadow = None
            if self._shadow is not None and self._shadow.tracker is shadow.tracker \
                    and shadow.adopt(self.memory_address(), size):
                self._shadow = shadow  # the next `begin` copies only what this instance writes from here on
        elif self._shadow is None:
            rb.owner = self  # it holds this memory and these globals now
        else:
            rb.invalidate(old)  # this instance keeps its own copy: the buffer must not pass for its saved state

    def load(self, snap: Snapshot) -> None:
        """Fill a fresh instance from a snapshot (restart, a failed upgrade, upgrade with keep)."""
        if snap.memory:
            assert self.memory is not None
            missing = len(snap.memory) - self.memory_size()
            if missing > 0:
                self.memory.grow(self.store, (missing + WASM_PAGE - 1) // WASM_PAGE)
            ctypes.memmove(self.memory_address(), snap.memory, len(snap.memory))
        if snap.raw:
            self._globals_io.restore_raw(snap.globals)
        else:
            self._globals_io.write(snap.globals)

    def load_memory_only(self, memory: bytes) -> None:
        """Keep the heap across an upgrade (enhanced orthogonal persistence); globals stay fresh."""
        self.load(Snapshot(memory, self._globals_io.read()))

    # ------------------------------------------------------------ execution

    def instructions_executed(self) -> int:
        return self._fuel_limit - self.store.get_fuel()

    def has_export(self, name: str) -> bool:
        return name in self.functions

    def run_start(self, ctx: ExecutionContext, instruction_limit: int) -> None:
        if START_EXPORT in self.functions:
            self._invoke(self.functions[START_EXPORT], (), ctx, instruction_limit)

    def run_export(self, name: str, ctx: ExecutionContext, instruction_limit: int) -> None:
        func = self.functions.get(name)
        if func is None:
            raise Trap(f"Canister has no export {name!r}", ErrorCode.CANISTER_METHOD_NOT_FOUND)
        self._invoke(func, (), ctx, instruction_limit)

    def run_closure(self, closure: Closure, ctx: ExecutionContext, instruction_limit: int) -> None:
        if self.table is None or closure.fun >= self.table.size(self.store):
            raise Trap("Canister trapped: callback index out of table bounds")
        func = self.table.get(self.store, closure.fun)
        if not isinstance(func, wasmtime.Func):
            raise Trap("Canister trapped: callback is not a function")
        ty = func.type(self.store)
        if len(ty.params) != 1 or ty.results:
            raise Trap("Canister trapped: callback has the wrong type")
        self._invoke(func, (closure.env,), ctx, instruction_limit)

    def _invoke(self, func: wasmtime.Func, args: tuple[int, ...], ctx: ExecutionContext, limit: int) -> None:
        self._fuel_limit = limit
        self.store.set_fuel(limit)
        self.api.ctx = ctx
        outer = running(self.api)
        self._globals_io.changed()
        try:
            try:
                func(self.store, *_signed(args))
            except BaseException as exc:
                own = raised_here()  # what this thread's host call raised, whatever wasmtime-py handed back
                if own is not None and own is not exc:
                    raise own from None
                if own is None and isinstance(exc, Trap):  # another thread's, handed to this one: ours is lost
                    raise Trap("Canister trapped: error while executing") from None
                raise
        except Trap:
            raise
        except wasmtime.Trap as exc:
            if exc.trap_code == wasmtime.TrapCode.OUT_OF_FUEL:
                raise Trap(
                    f"Canister exceeded the limit of {limit} instructions for single message execution.",
                    ErrorCode.CANISTER_INSTRUCTION_LIMIT_EXCEEDED,
                ) from None
            text = _TRAP_MESSAGES.get(exc.trap_code) if exc.trap_code is not None else None
            raise Trap(f"Canister trapped: {text or exc.message.splitlines()[0]}") from None
        except wasmtime.WasmtimeError as exc:
            raise Trap(f"Canister trapped: {str(exc).splitlines()[0]}") from None
        except RecursionError:
            raise Trap("Canister trapped: stack overflow") from None
        except Exception as exc:  # a host-side failure must never take the replica down
            raise Trap(f"Canister trapped: replica error in a system call: {type(exc).__name__}: {exc}",
                       ErrorCode.CANISTER_CONTRACT_VIOLATION) from exc
        finally:
            running(outer)
            ctx.instructions += self.instructions_executed()
            self.api.ctx = None


def _signed(args: tuple[int, ...]) -> tuple[int, ...]:
    """wasmtime takes i64 arguments as signed integers."""
    return tuple(a - (1 << 64) if a >= 1 << 63 else a for a in args)
