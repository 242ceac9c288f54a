"""The state of one message execution: which entry point runs, what it may call, what it produced."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from ic_replica.errors import ErrorCode


class Kind(str, Enum):
    """Entry-point contexts, named as in the spec's System API availability table."""

    INIT = "I"  # canister_init, canister_post_upgrade
    PRE_UPGRADE = "G"
    UPDATE = "U"
    REPLICATED_QUERY = "RQ"
    QUERY = "NRQ"
    TRANSFORM_QUERY = "TQ"  # a query run as the transform of an http outcall (no outcalls here: never run)
    COMPOSITE_QUERY = "CQ"
    REPLY = "Ry"
    REJECT = "Rt"
    COMPOSITE_REPLY = "CRy"
    COMPOSITE_REJECT = "CRt"
    CLEANUP = "C"
    COMPOSITE_CLEANUP = "CC"
    INSPECT = "F"
    SYSTEM_TASK = "T"  # heartbeat, global timer
    START = "s"

    @property
    def mode_name(self) -> str:
        return _MODE_NAMES[self]

    @property
    def replicated(self) -> bool:
        return self in _REPLICATED


_MODE_NAMES = {
    Kind.INIT: "init", Kind.PRE_UPGRADE: "pre upgrade", Kind.UPDATE: "update",
    Kind.REPLICATED_QUERY: "replicated query", Kind.QUERY: "non-replicated query",
    Kind.TRANSFORM_QUERY: "transform query",
    Kind.COMPOSITE_QUERY: "composite query", Kind.REPLY: "reply callback", Kind.REJECT: "reject callback",
    Kind.COMPOSITE_REPLY: "composite query reply callback",
    Kind.COMPOSITE_REJECT: "composite query reject callback", Kind.CLEANUP: "cleanup",
    Kind.COMPOSITE_CLEANUP: "composite query cleanup", Kind.INSPECT: "inspect message",
    Kind.SYSTEM_TASK: "system task", Kind.START: "start",
}
_REPLICATED = {Kind.INIT, Kind.PRE_UPGRADE, Kind.UPDATE, Kind.REPLICATED_QUERY, Kind.REPLY, Kind.REJECT,
               Kind.CLEANUP, Kind.SYSTEM_TASK, Kind.START}


class Trap(Exception):
    """The canister trapped: every change of the current execution is discarded."""

    def __init__(self, message: str, error_code: str = ErrorCode.CANISTER_TRAPPED) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code


@dataclass
class Closure:
    fun: int
    env: int


@dataclass
class OutgoingCall:
    """A call assembled with call_new ... call_perform; sent only if the execution does not trap."""

    callee: bytes
    method: str
    on_reply: Closure
    on_reject: Closure
    data: bytearray = field(default_factory=bytearray)
    on_cleanup: Closure | None = None
    cycles: int = 0
    timeout_seconds: int | None = None


@dataclass
class ExecutionContext:
    """Inputs and effects of one entry-point execution (effects apply only on success)."""

    kind: Kind
    caller: bytes
    arg: bytes | None = None
    method_name: str = ""
    reject_code: int = 0
    reject_message: str | None = None
    needs_to_respond: bool = False
    cycles_available: int = 0
    cycles_refunded: int = 0
    deadline: int = 0
    data_certificate: bytes | Callable[[], bytes] | None = None  # made on first use
    balance: int = 0
    # effects
    reply_buffer: bytearray = field(default_factory=bytearray)
    response: tuple[str, bytes] | None = None  # ("reply", data) or ("reject", utf8 message)
    cycles_accepted: int = 0
    cycles_burned: int = 0
    pending_call: OutgoingCall | None = None
    calls: list[OutgoingCall] = field(default_factory=list)
    new_certified_data: bytes | None = None
    new_timer: int | None = None
    accepted_message: bool = False
    instructions: int = 0
