"""Canister snapshots: what `take_canister_snapshot` saves and `load_canister_snapshot` puts back.

A snapshot holds everything the IC's does: the Wasm module, the heap (Wasm memory) and mutable globals, stable
memory, certified data, the global timer and the Wasm chunk store. Loading one replaces all of them exactly (a
fresh instance of the module filled with the saved heap and globals), so the canister is bit for bit what it
was when the snapshot was taken; controllers, settings, cycles and logs are not part of a snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ic_replica.runtime import Snapshot, WasmRuntime
from ic_replica.stable_memory import CHUNK, StableMemory
from ic_replica.wasm_module import ModuleInfo

if TYPE_CHECKING:
    from ic_replica.canister import Canister

MAX_SNAPSHOTS_PER_CANISTER = 10  # the IC's limit (`max_number_of_snapshots_per_canister`)
MAX_SLICE = 2_000_000  # the most bytes one read_canister_snapshot_data returns (the IC's limit)


@dataclass
class CanisterSnapshot:
    """One saved state of a canister."""

    snapshot_id: bytes  # the IC's form: the 8-byte big-endian local id followed by the canister id
    taken_at_timestamp: int
    canister_version: int
    wasm: bytes | bytearray  # a bytearray while an upload fills it
    module: ModuleInfo | None  # None for an uploaded snapshot until it is loaded (the module is checked then)
    heap: bytes | bytearray
    globals: list[int | float | None]
    stable_chunks: dict[int, bytes]
    stable_pages: int
    certified_data: bytes
    global_timer: int
    chunk_store: dict[bytes, bytes] = field(default_factory=dict)
    global_types: list[str] = field(default_factory=list)  # "i32" | "i64" | "f32" | "f64" | "v128", per global
    source: str = "taken_from_canister"  # or "metadata_upload"

    @property
    def stable_size(self) -> int:
        return self.stable_pages * 64 * 1024

    @property
    def total_size(self) -> int:
        """Bytes the snapshot occupies, as `list_canister_snapshots` and `snapshots_size` report them."""
        return (len(self.wasm) + len(self.heap) + self.stable_size + 8 * len(self.globals)
                + len(self.certified_data) + sum(len(c) for c in self.chunk_store.values()))

    def write_stable(self, offset: int, data: bytes) -> None:
        """Upload: put `data` at `offset` of the stable memory (within `stable_size`, checked by the caller)."""
        while data:
            index, start = divmod(offset, CHUNK)
            piece = data[: CHUNK - start]
            chunk = bytearray(self.stable_chunks.get(index, bytes(CHUNK)))
            chunk[start : start + len(piece)] = piece
            if chunk.count(0) == CHUNK:  # zeros stay unallocated, as in a canister's own stable memory
                self.stable_chunks.pop(index, None)
            else:
                self.stable_chunks[index] = bytes(chunk)
            offset, data = offset + len(piece), data[len(piece):]

    def read_stable(self, offset: int, size: int) -> bytes:
        out = bytearray()
        while size:
            index, start = divmod(offset, CHUNK)
            n = min(size, CHUNK - start)
            out += self.stable_chunks.get(index, bytes(CHUNK))[start : start + n]
            offset, size = offset + n, size - n
        return bytes(out)

    def stable_memory(self) -> StableMemory:
        memory = StableMemory()
        memory.chunks = {i: bytearray(c) for i, c in self.stable_chunks.items()}
        memory.pages = self.stable_pages
        return memory


def snapshot_id(local_id: int, canister_id: bytes) -> bytes:
    return local_id.to_bytes(8, "big") + canister_id


def take(canister: Canister, local_id: int, now: int) -> CanisterSnapshot:
    """Copy the canister's state (it must have a module)."""
    assert canister.runtime is not None and canister.module is not None
    runtime = canister.runtime
    state = runtime.snapshot()
    global_types = [str(g.type(runtime.store).content) for g in runtime.globals if g.type(runtime.store).mutable]
    return CanisterSnapshot(
        snapshot_id=snapshot_id(local_id, canister.canister_id), taken_at_timestamp=now,
        canister_version=canister.version, wasm=canister.wasm, module=canister.module, heap=state.memory,
        globals=list(state.globals), stable_chunks={i: bytes(c) for i, c in canister.stable.chunks.items()},
        stable_pages=canister.stable.pages, certified_data=canister.certified_data,
        global_timer=canister.global_timer, chunk_store=dict(canister.chunk_store), global_types=global_types)


class SnapshotMismatch(Exception):
    """An uploaded snapshot that does not fit its module (globals, memory size)."""


def load(canister: Canister, snap: CanisterSnapshot, module: ModuleInfo) -> None:
    """Replace the canister's code and state with the snapshot's (a fresh instance of the saved module)."""
    replica = canister.replica
    runtime = WasmRuntime(replica.engine, replica.modules.get(module), module, canister, replica.rollback_buffer)
    types = [str(g.type(runtime.store).content) for g in runtime.globals if g.type(runtime.store).mutable]
    if snap.source != "taken_from_canister":
        if types != snap.global_types:
            raise SnapshotMismatch(f"the module has mutable globals {types}, the snapshot {snap.global_types}")
        if len(snap.heap) < runtime.memory_size() or len(snap.heap) % (64 * 1024):
            raise SnapshotMismatch(f"a Wasm memory of {len(snap.heap)} bytes does not fit the module (at least "
                                   f"{runtime.memory_size()} bytes, whole 64 KiB pages)")
    replica.rollback_buffer.owner = None
    runtime.load(Snapshot(bytes(snap.heap), list(snap.globals)))
    canister.runtime, canister.module, canister.wasm = runtime, module, bytes(snap.wasm)
    canister.stable = snap.stable_memory()
    canister.certified_data = snap.certified_data
    canister.global_timer = snap.global_timer
    canister.chunk_store = dict(snap.chunk_store)
