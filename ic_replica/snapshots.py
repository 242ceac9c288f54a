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
from ic_replica.stable_memory import StableMemory
from ic_replica.wasm_module import ModuleInfo

if TYPE_CHECKING:
    from ic_replica.canister import Canister

MAX_SNAPSHOTS_PER_CANISTER = 10  # the IC's limit (`max_number_of_snapshots_per_canister`)


@dataclass
class CanisterSnapshot:
    """One saved state of a canister."""

    snapshot_id: bytes  # the IC's form: the 8-byte big-endian local id followed by the canister id
    taken_at_timestamp: int
    canister_version: int
    wasm: bytes
    module: ModuleInfo
    heap: bytes
    globals: list[int | float | None]
    stable_chunks: dict[int, bytes]
    stable_pages: int
    certified_data: bytes
    global_timer: int
    chunk_store: dict[bytes, bytes] = field(default_factory=dict)

    @property
    def stable_size(self) -> int:
        return self.stable_pages * 64 * 1024

    @property
    def total_size(self) -> int:
        """Bytes the snapshot occupies, as `list_canister_snapshots` and `snapshots_size` report them."""
        return (len(self.wasm) + len(self.heap) + self.stable_size + 8 * len(self.globals)
                + len(self.certified_data) + sum(len(c) for c in self.chunk_store.values()))

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
    state = canister.runtime.snapshot()
    return CanisterSnapshot(
        snapshot_id=snapshot_id(local_id, canister.canister_id), taken_at_timestamp=now,
        canister_version=canister.version, wasm=canister.wasm, module=canister.module, heap=state.memory,
        globals=list(state.globals), stable_chunks={i: bytes(c) for i, c in canister.stable.chunks.items()},
        stable_pages=canister.stable.pages, certified_data=canister.certified_data,
        global_timer=canister.global_timer, chunk_store=dict(canister.chunk_store))


def load(canister: Canister, snap: CanisterSnapshot) -> None:
    """Replace the canister's code and state with the snapshot's (a fresh instance of the saved module)."""
    replica = canister.replica
    replica.rollback_buffer.owner = None
    runtime = WasmRuntime(replica.engine, replica.modules.get(snap.module), snap.module, canister,
                          replica.rollback_buffer)
    runtime.load(Snapshot(snap.heap, list(snap.globals)))
    canister.runtime, canister.module, canister.wasm = runtime, snap.module, snap.wasm
    canister.stable = snap.stable_memory()
    canister.certified_data = snap.certified_data
    canister.global_timer = snap.global_timer
    canister.chunk_store = dict(snap.chunk_store)
