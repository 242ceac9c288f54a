"""A canister's state on the replica: code, memories, controllers, call contexts, callbacks, logs."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from ic_replica.context import Closure, ExecutionContext, OutgoingCall, Trap
from ic_replica.runtime import Snapshot, WasmRuntime
from ic_replica.snapshots import CanisterSnapshot
from ic_replica.stable_memory import StableMemory
from ic_replica.wasm_module import ModuleInfo

if TYPE_CHECKING:
    from ic_replica.replica import Replica

MAX_LOG_RECORDS = 4096


def default_settings() -> dict[str, Any]:
    """The settings a canister has unless told otherwise (the IC's defaults); visibilities are
    `(kind, allowed viewers)`."""
    return {
        "compute_allocation": 0, "memory_allocation": 0, "reserved_cycles_limit": 5_000_000_000_000,
        "minimum_incoming_canister_call_cycles": 0, "log_memory_limit": 4096,
        "wasm_memory_limit": 3 * 1024 ** 3, "wasm_memory_threshold": 0,
        "log_visibility": ("controllers", []), "snapshot_visibility": ("controllers", []),
        "status_visibility": ("controllers", []),
    }


class Status(str, Enum):
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"

    @property
    def code(self) -> int:
        return {"running": 1, "stopping": 2, "stopped": 3}[self.value]


@dataclass
class CallContext:
    """An incoming call being processed; open until it is answered and has no outstanding callbacks."""

    id: int
    caller: bytes
    origin: tuple  # ("ingress", message_id) | ("canister", caller_id, callback_id) | ("system",)
    needs_to_respond: bool
    available_cycles: int = 0
    outstanding: int = 0
    deleted: bool = False
    instructions: int = 0
    deadline: int = 0


@dataclass
class Callback:
    """An outgoing call awaiting its response."""

    id: int
    call_context_id: int
    call: OutgoingCall


@dataclass
class LogRecord:
    idx: int
    timestamp_nanos: int
    content: bytes


@dataclass
class Change:
    """One entry of the canister history (canister_info)."""

    timestamp_nanos: int
    canister_version: int
    origin: tuple  # ("user", principal) | ("canister", principal, version or None)
    details: tuple  # ("creation", controllers) | ("code_deployment", mode, hash) | ("code_uninstall",)
    # | ("controllers_change", controllers)


@dataclass
class Canister:
    """Everything the replica keeps for one canister id."""

    replica: Replica
    canister_id: bytes
    controllers: list[bytes]
    cycles: int
    status: Status = Status.RUNNING
    version: int = 0
    module: ModuleInfo | None = None
    wasm: bytes = b""  # the module as installed (decompressed), for persistence
    runtime: WasmRuntime | None = None
    stable: StableMemory = field(default_factory=StableMemory)
    certified_data: bytes = b""
    global_timer: int = 0
    env_vars: dict[str, str] = field(default_factory=dict)
    freezing_threshold: int = 2_592_000
    logs: deque[LogRecord] = field(default_factory=deque)
    log_bytes: int = 0  # the records' contents in all (`log_memory_store_size`), kept as they come and go
    next_log_idx: int = 0
    call_contexts: dict[int, CallContext] = field(default_factory=dict)
    callbacks: dict[int, Callback] = field(default_factory=dict)
    chunk_store: dict[bytes, bytes] = field(default_factory=dict)
    history: list[Change] = field(default_factory=list)
    total_changes: int = 0
    stop_waiters: list[object] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=default_settings)  # the rest of `canister_settings`
    snapshots: dict[bytes, CanisterSnapshot] = field(default_factory=dict)
    next_snapshot_id: int = 0

    @property
    def log_visibility(self) -> str:
        return str(self.settings["log_visibility"][0])

    @log_visibility.setter
    def log_visibility(self, kind: str) -> None:
        self.settings["log_visibility"] = (kind, [])

    # ------------------------------------------------------------ CanisterEnv (read by the System API)

    def status_code(self) -> int:
        return self.status.code

    def now(self) -> int:
        return self.replica.time_ns

    def root_key(self) -> bytes:
        return self.replica.root_key_der

    def subnet_id(self) -> bytes:
        return self.replica.subnet_id

    def idle_cycles_burned_per_day(self) -> int:
        """This replica charges nothing for storage or compute allocation: nothing burns while idle."""
        return 0

    def freezing_limit(self) -> int:
        """The spec's `freezing_limit`: what the canister burns while idle during `freezing_threshold` seconds.
        It holds no reserved cycles (`reserved_cycles` is 0), so liquid = balance - freezing_limit."""
        return self.idle_cycles_burned_per_day() * self.freezing_threshold // 86_400

    def log(self, message: bytes) -> None:
        """Append a record (its content cut to the log memory limit), then drop the oldest records until the
        log fits `log_memory_limit` again."""
        limit = int(self.settings["log_memory_limit"])
        record = LogRecord(self.next_log_idx, self.replica.time_ns, message[:limit])
        self.logs.append(record)
        self.log_bytes += len(record.content)
        self.next_log_idx += 1
        self.trim_logs()
        self.replica.on_canister_log(self.canister_id, message)

    def trim_logs(self) -> None:
        """Keep the newest records whose total size (their contents' bytes, what `canister_status` reports as
        `log_memory_store_size`) fits `log_memory_limit`, at most `MAX_LOG_RECORDS` of them."""
        limit = int(self.settings["log_memory_limit"])
        while self.logs and (len(self.logs) > MAX_LOG_RECORDS or self.log_bytes > limit):
            self.log_bytes -= len(self.logs.popleft().content)

    def restore_logs(self, records: list[LogRecord]) -> None:
        """Put back saved records (a restart; they fitted the limit when saved)."""
        self.logs = deque(records)
        self.log_bytes = sum(len(r.content) for r in records)

    # ------------------------------------------------------------ helpers

    @property
    def is_empty(self) -> bool:
        return self.runtime is None

    def open_call_contexts(self) -> int:
        return sum(1 for cc in self.call_contexts.values() if not cc.deleted)

    def record_change(self, origin: tuple, details: tuple) -> None:
        self.total_changes += 1
        self.history.append(Change(self.replica.time_ns, self.version, origin, details))
        if len(self.history) > 20:
            del self.history[0]

    def snapshots_size(self) -> int:
        return sum(s.total_size for s in self.snapshots.values())

    def log_memory_store_size(self) -> int:
        return self.log_bytes

    def memory_size(self) -> int:
        """Execution memory (heap, stable memory, globals, module) plus system memory (chunk store, snapshots,
        logs), as `canister_status` reports it."""
        wasm = self.runtime.memory_size() if self.runtime else 0
        globals_size = 8 * (self.module.global_count if self.module else 0)
        chunks = sum(len(c) for c in self.chunk_store.values())
        return (wasm + self.stable.size_bytes + globals_size + len(self.wasm) + chunks + self.snapshots_size()
                + self.log_memory_store_size())

    def may_view(self, setting: str, caller: bytes) -> bool:
        """Whether `caller` may see what a visibility setting guards (controllers always may)."""
        kind, viewers = self.settings[setting]
        return caller in self.controllers or kind == "public" or (kind == "allowed_viewers" and caller in viewers)

    def rebuild_runtime(self, snap: Snapshot) -> None:
        """A fresh instance loaded from a snapshot (restart, a failed upgrade)."""
        runtime = self._fresh_runtime()
        runtime.load(snap)
        self.runtime = runtime

    def rebuild_as_saved(self) -> None:
        """A fresh instance holding what the current one held when its execution began: undoing an execution
        that grew memory (an instance's memory cannot shrink), as after every query that allocated a page."""
        assert self.runtime is not None
        runtime = self._fresh_runtime()
        runtime.take_saved(self.runtime)
        self.runtime = runtime

    def _fresh_runtime(self) -> WasmRuntime:
        assert self.module is not None
        module = self.replica.modules.get(self.module)
        return WasmRuntime(self.replica.engine, module, self.module, self, self.replica.rollback_buffer)


class Transaction:
    """Run one entry point atomically: on a trap, heap, globals and stable memory are restored."""

    def __init__(self, canister: Canister) -> None:
        self.canister = canister
        assert canister.runtime is not None
        self.runtime = canister.runtime
        self.runtime.begin()
        canister.stable.begin()

    def rollback(self) -> None:
        if not self.runtime.rollback():
            self.canister.rebuild_as_saved()
        self.canister.stable.rollback()

    def commit(self) -> None:
        self.runtime.commit()
        self.canister.stable.commit()


def execute(canister: Canister, target: str | Closure, ctx: ExecutionContext, limit: int,
            persist: bool = True) -> Trap | None:
    """Execute an export (by name) or a callback closure; returns the trap, if any.

    With `persist=False` (queries, inspect_message) every change is discarded even on success.
    """
    runtime = canister.runtime
    if runtime is None:
        return Trap("Attempted to execute a message, but the canister contains no Wasm module.")
    tx = Transaction(canister)
    ctx.balance = canister.cycles
    try:
        if isinstance(target, Closure):
            runtime.run_closure(target, ctx, limit)
        else:
            runtime.run_export(target, ctx, limit)
        runtime.api.discard_pending_call(ctx)
    except Trap as trap:
        tx.rollback()
        canister.replica.instructions_executed += ctx.instructions
        canister.log(f"[TRAP]: {trap.message}".encode())
        return trap
    canister.replica.instructions_executed += ctx.instructions
    if persist:
        tx.commit()
        canister.cycles = ctx.balance
        if ctx.new_certified_data is not None:
            canister.certified_data = ctx.new_certified_data
        if ctx.new_timer is not None:
            canister.global_timer = ctx.new_timer
    else:
        tx.rollback()
    return None
