"""The `ic0` System API: all 63 functions moc can import, for wasm64 (`I = i64`) modules.

Each function checks that the current entry point may call it (the spec's availability table) and
traps with the IC's contract-violation message otherwise. Effects are recorded on the execution
context and applied by the caller only if the execution does not trap.
"""

from __future__ import annotations

import ctypes
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import wasmtime

from ic_replica.context import Closure, ExecutionContext, Kind, OutgoingCall, Trap
from ic_replica.errors import ErrorCode
from ic_replica.principal import MAX_PRINCIPAL_BYTES
from ic_replica.stable_memory import StableMemory

if TYPE_CHECKING:
    from ic_replica.runtime import WasmRuntime

MASK64 = (1 << 64) - 1
MAX_REPLY_BYTES = 2 * 1024 * 1024 + 1024 * 1024  # 3 MiB (ingress response limit is 2 MiB + slack)
MAX_CALL_PAYLOAD = 2 * 1024 * 1024
MAX_METHOD_NAME = 20_000
MAX_CERTIFIED_DATA = 32
MAX_CALL_TIMEOUT = 300
MAX_LOG_RECORD = 4096

_ALL = frozenset(k for k in Kind if k is not Kind.START)
_ALL_S = frozenset(Kind)


def _kinds(spec: str) -> frozenset[Kind]:
    if spec == "*":
        return _ALL
    if spec == "* s":
        return _ALL_S
    return frozenset(Kind(x) for x in spec.split())


# The spec's availability table (canister-interface.md, "Overview of imports"), for the functions moc emits.
AVAILABILITY: dict[str, frozenset[Kind]] = {
    name: _kinds(spec)
    for name, spec in {
        "msg_arg_data_size": "I U RQ NRQ CQ Ry CRy F", "msg_arg_data_copy": "I U RQ NRQ CQ Ry CRy F",
        "msg_caller_size": "*", "msg_caller_copy": "*",
        "msg_caller_info_data_size": "U RQ NRQ CQ Ry Rt CRy CRt C CC F",
        "msg_caller_info_data_copy": "U RQ NRQ CQ Ry Rt CRy CRt C CC F",
        "msg_caller_info_signer_size": "U RQ NRQ CQ Ry Rt CRy CRt C CC F",
        "msg_caller_info_signer_copy": "U RQ NRQ CQ Ry Rt CRy CRt C CC F",
        "msg_reject_code": "Ry Rt CRy CRt C", "msg_reject_msg_size": "Rt CRt", "msg_reject_msg_copy": "Rt CRt",
        "msg_deadline": "U RQ NRQ CQ Ry Rt CRy CRt",
        "msg_reply_data_append": "U RQ NRQ CQ Ry Rt CRy CRt", "msg_reply": "U RQ NRQ CQ Ry Rt CRy CRt",
        "msg_reject": "U RQ NRQ CQ Ry Rt CRy CRt",
        "msg_cycles_available128": "U RQ Rt Ry", "msg_cycles_refunded128": "Rt Ry",
        "msg_cycles_accept128": "U RQ Rt Ry", "cycles_burn128": "I G U RQ Ry Rt C T",
        "canister_self_size": "*", "canister_self_copy": "*", "canister_cycle_balance128": "*",
        "canister_status": "*", "canister_version": "*", "subnet_self_size": "*", "subnet_self_copy": "*",
        "msg_method_name_size": "F", "msg_method_name_copy": "F", "accept_message": "F",
        "call_new": "U CQ Ry Rt CRy CRt T", "call_on_cleanup": "U CQ Ry Rt CRy CRt T",
        "call_data_append": "U CQ Ry Rt CRy CRt T", "call_with_best_effort_response": "U CQ Ry Rt CRy CRt T",
        "call_cycles_add128": "U Ry Rt T", "call_perform": "U CQ Ry Rt CRy CRt T",
        "stable64_size": "* s", "stable64_grow": "* s", "stable64_write": "* s", "stable64_read": "* s",
        "root_key_size": "I G U RQ Ry Rt C T", "root_key_copy": "I G U RQ Ry Rt C T",
        "certified_data_set": "I G U Ry Rt T", "data_certificate_present": "*",
        "data_certificate_size": "NRQ CQ", "data_certificate_copy": "NRQ CQ",
        "time": "*", "global_timer_set": "I G U Ry Rt C T", "performance_counter": "* s",
        "is_controller": "* s", "in_replicated_execution": "* s",
        "cost_call": "* s", "cost_create_canister": "* s", "cost_http_request": "* s",
        "cost_sign_with_ecdsa": "* s", "cost_sign_with_schnorr": "* s",
        "env_var_count": "*", "env_var_name_size": "*", "env_var_name_copy": "*", "env_var_name_exists": "*",
        "env_var_value_size": "*", "env_var_value_copy": "*",
        "debug_print": "* s", "trap": "* s",
    }.items()
}

I64, I32 = wasmtime.ValType.i64(), wasmtime.ValType.i32()
# Parameter and result types: "I" is the pointer width (i64 for wasm64 modules, i32 otherwise),
# "l" is always i64 and "i" always i32 (the spec's "Overview of imports").
_SIGNATURES: dict[str, tuple[str, str]] = {
    "msg_arg_data_size": ("", "I"), "msg_arg_data_copy": ("III", ""),
    "msg_caller_size": ("", "I"), "msg_caller_copy": ("III", ""),
    "msg_caller_info_data_size": ("", "I"), "msg_caller_info_data_copy": ("III", ""),
    "msg_caller_info_signer_size": ("", "I"), "msg_caller_info_signer_copy": ("III", ""),
    "msg_reject_code": ("", "i"), "msg_reject_msg_size": ("", "I"), "msg_reject_msg_copy": ("III", ""),
    "msg_deadline": ("", "l"),
    "msg_reply_data_append": ("II", ""), "msg_reply": ("", ""), "msg_reject": ("II", ""),
    "msg_cycles_available128": ("I", ""), "msg_cycles_refunded128": ("I", ""),
    "msg_cycles_accept128": ("llI", ""), "cycles_burn128": ("llI", ""),
    "canister_self_size": ("", "I"), "canister_self_copy": ("III", ""),
    "canister_cycle_balance128": ("I", ""), "canister_status": ("", "i"), "canister_version": ("", "l"),
    "subnet_self_size": ("", "I"), "subnet_self_copy": ("III", ""),
    "msg_method_name_size": ("", "I"), "msg_method_name_copy": ("III", ""), "accept_message": ("", ""),
    "call_new": ("IIIIIIII", ""), "call_on_cleanup": ("II", ""), "call_data_append": ("II", ""),
    "call_with_best_effort_response": ("i", ""), "call_cycles_add128": ("ll", ""), "call_perform": ("", "i"),
    "stable64_size": ("", "l"), "stable64_grow": ("l", "l"), "stable64_write": ("lll", ""),
    "stable64_read": ("lll", ""),
    "root_key_size": ("", "I"), "root_key_copy": ("III", ""),
    "certified_data_set": ("II", ""), "data_certificate_present": ("", "i"),
    "data_certificate_size": ("", "I"), "data_certificate_copy": ("III", ""),
    "time": ("", "l"), "global_timer_set": ("l", "l"), "performance_counter": ("i", "l"),
    "is_controller": ("II", "i"), "in_replicated_execution": ("", "i"),
    "cost_call": ("llI", ""), "cost_create_canister": ("I", ""), "cost_http_request": ("llI", ""),
    "cost_sign_with_ecdsa": ("IIiI", "i"), "cost_sign_with_schnorr": ("IIiI", "i"),
    "env_var_count": ("", "I"), "env_var_name_size": ("I", "I"), "env_var_name_copy": ("IIII", ""),
    "env_var_name_exists": ("II", "i"), "env_var_value_size": ("II", "I"), "env_var_value_copy": ("IIIII", ""),
    "debug_print": ("II", ""), "trap": ("II", ""),
}


def func_type(name: str, memory64: bool) -> wasmtime.FuncType:
    """The import's type for a module whose memory is 64-bit (`I = i64`) or 32-bit (`I = i32`)."""
    pointer = I64 if memory64 else I32
    kinds = {"I": pointer, "l": I64, "i": I32}
    params, results = _SIGNATURES[name]
    return wasmtime.FuncType([kinds[c] for c in params], [kinds[c] for c in results])


SUPPORTED_IMPORTS = frozenset(_SIGNATURES)

# Cycle costs reported by cost_* (the IC's 13-node application subnet prices).
CALL_BASE_FEE = 260_000
CALL_FEE_PER_BYTE = 1_000
CREATE_CANISTER_FEE = 500_000_000_000


class CanisterEnv(Protocol):
    """What the System API reads from the canister it runs in."""

    canister_id: bytes
    controllers: list[bytes]
    version: int
    global_timer: int
    stable: StableMemory
    env_vars: dict[str, str]

    def status_code(self) -> int: ...
    def now(self) -> int: ...
    def root_key(self) -> bytes: ...
    def subnet_id(self) -> bytes: ...
    def log(self, message: bytes) -> None: ...


class SystemApi:
    """Host functions bound to one canister's wasm runtime; `ctx` is set for each execution."""

    def __init__(self, runtime: WasmRuntime, env: CanisterEnv) -> None:
        self.runtime = runtime
        self.env = env
        self.ctx: ExecutionContext | None = None

    # ------------------------------------------------------------ helpers

    def _check(self, name: str) -> ExecutionContext:
        ctx = self.ctx
        if ctx is None:
            raise Trap(f'"ic0.{name}" called outside of a message execution', ErrorCode.CANISTER_CONTRACT_VIOLATION)
        if ctx.kind not in AVAILABILITY[name]:
            raise Trap(
                f'Canister violated contract: "ic0.{name}" cannot be executed in {ctx.kind.mode_name} mode',
                ErrorCode.CANISTER_CONTRACT_VIOLATION,
            )
        return ctx

    def _mem_bounds(self, addr: int, size: int) -> tuple[int, int]:
        addr &= MASK64
        size &= MASK64
        if addr + size > self.runtime.memory_size():
            raise Trap("Canister trapped: heap out of bounds")
        return addr, size

    def read(self, addr: int, size: int) -> bytes:
        addr, size = self._mem_bounds(addr, size)
        return ctypes.string_at(self.runtime.memory_address() + addr, size) if size else b""

    def write(self, addr: int, data: bytes) -> None:
        addr, _ = self._mem_bounds(addr, len(data))
        if data:
            ctypes.memmove(self.runtime.memory_address() + addr, data, len(data))

    def _copy_out(self, data: bytes, dst: int, offset: int, size: int, what: str) -> None:
        offset &= MASK64
        size &= MASK64
        if offset + size > len(data):
            raise Trap(f"Canister trapped: {what} out of bounds (offset {offset} + size {size} > {len(data)})",
                       ErrorCode.CANISTER_CONTRACT_VIOLATION)
        self.write(dst, data[offset : offset + size])

    def _write128(self, dst: int, value: int) -> None:
        self.write(dst, value.to_bytes(16, "little"))

    # ------------------------------------------------------------ linking

    def define(self, linker: wasmtime.Linker, memory64: bool) -> None:
        for name in _SIGNATURES:
            linker.define_func("ic0", name, func_type(name, memory64), self._wrap(name))

    def _wrap(self, name: str) -> Callable[..., Any]:
        # wasmtime keeps host callbacks in a process-wide table until the store is finalized; a callback that
        # held this object strongly would keep the store (and the whole replica) alive forever. A weak
        # reference breaks that cycle, so a dropped replica frees its canisters' memory.
        impl = getattr(type(self), f"ic0_{name}")
        check = type(self)._check
        api = weakref.ref(self)

        def host(*args: int) -> Any:
            this = api()
            if this is None:
                raise Trap(f'"ic0.{name}" called on a discarded instance', ErrorCode.CANISTER_CONTRACT_VIOLATION)
            return impl(this, check(this, name), *args)

        return host

    # ------------------------------------------------------------ message data

    def ic0_msg_arg_data_size(self, ctx: ExecutionContext) -> int:
        return len(ctx.arg or b"")

    def ic0_msg_arg_data_copy(self, ctx: ExecutionContext, dst: int, offset: int, size: int) -> None:
        self._copy_out(ctx.arg or b"", dst, offset, size, "msg_arg_data_copy")

    def ic0_msg_caller_size(self, ctx: ExecutionContext) -> int:
        return len(ctx.caller)

    def ic0_msg_caller_copy(self, ctx: ExecutionContext, dst: int, offset: int, size: int) -> None:
        self._copy_out(ctx.caller, dst, offset, size, "msg_caller_copy")

    def ic0_msg_caller_info_data_size(self, ctx: ExecutionContext) -> int:
        return 0

    def ic0_msg_caller_info_data_copy(self, ctx: ExecutionContext, dst: int, offset: int, size: int) -> None:
        self._copy_out(b"", dst, offset, size, "msg_caller_info_data_copy")

    def ic0_msg_caller_info_signer_size(self, ctx: ExecutionContext) -> int:
        return 0

    def ic0_msg_caller_info_signer_copy(self, ctx: ExecutionContext, dst: int, offset: int, size: int) -> None:
        self._copy_out(b"", dst, offset, size, "msg_caller_info_signer_copy")

    def ic0_msg_reject_code(self, ctx: ExecutionContext) -> int:
        return ctx.reject_code

    def _reject_message(self, ctx: ExecutionContext) -> bytes:
        if ctx.reject_message is None:
            raise Trap("Canister trapped: no reject message available", ErrorCode.CANISTER_CONTRACT_VIOLATION)
        return ctx.reject_message.encode()

    def ic0_msg_reject_msg_size(self, ctx: ExecutionContext) -> int:
        return len(self._reject_message(ctx))

    def ic0_msg_reject_msg_copy(self, ctx: ExecutionContext, dst: int, offset: int, size: int) -> None:
        self._copy_out(self._reject_message(ctx), dst, offset, size, "msg_reject_msg_copy")

    def ic0_msg_deadline(self, ctx: ExecutionContext) -> int:
        return ctx.deadline

    def ic0_msg_method_name_size(self, ctx: ExecutionContext) -> int:
        return len(ctx.method_name.encode())

    def ic0_msg_method_name_copy(self, ctx: ExecutionContext, dst: int, offset: int, size: int) -> None:
        self._copy_out(ctx.method_name.encode(), dst, offset, size, "msg_method_name_copy")

    def ic0_accept_message(self, ctx: ExecutionContext) -> None:
        if ctx.accepted_message:
            raise Trap('Canister violated contract: "ic0.accept_message" called twice',
                       ErrorCode.CANISTER_CONTRACT_VIOLATION)
        ctx.accepted_message = True

    # ------------------------------------------------------------ responding

    def _ensure_can_respond(self, ctx: ExecutionContext, name: str) -> None:
        if ctx.response is not None or not ctx.needs_to_respond:
            raise Trap(f'Canister violated contract: "ic0.{name}": the call is already replied or needs no reply',
                       ErrorCode.CANISTER_CONTRACT_VIOLATION)

    def ic0_msg_reply_data_append(self, ctx: ExecutionContext, src: int, size: int) -> None:
        self._ensure_can_respond(ctx, "msg_reply_data_append")
        data = self.read(src, size)
        if len(ctx.reply_buffer) + len(data) > MAX_REPLY_BYTES:
            raise Trap(f"Canister violated contract: reply exceeds the maximum size of {MAX_REPLY_BYTES} bytes",
                       ErrorCode.CANISTER_CONTRACT_VIOLATION)
        ctx.reply_buffer += data

    def ic0_msg_reply(self, ctx: ExecutionContext) -> None:
        self._ensure_can_respond(ctx, "msg_reply")
        ctx.response = ("reply", bytes(ctx.reply_buffer))
        ctx.cycles_available = 0

    def ic0_msg_reject(self, ctx: ExecutionContext, src: int, size: int) -> None:
        self._ensure_can_respond(ctx, "msg_reject")
        message = self.read(src, size)
        try:
            message.decode()
        except UnicodeDecodeError as exc:
            raise Trap("Canister violated contract: reject message is not valid UTF-8",
                       ErrorCode.CANISTER_CONTRACT_VIOLATION) from exc
        ctx.response = ("reject", message)
        ctx.cycles_available = 0

    # ------------------------------------------------------------ cycles

    def ic0_msg_cycles_available128(self, ctx: ExecutionContext, dst: int) -> None:
        self._write128(dst, ctx.cycles_available)

    def ic0_msg_cycles_refunded128(self, ctx: ExecutionContext, dst: int) -> None:
        self._write128(dst, ctx.cycles_refunded)

    def ic0_msg_cycles_accept128(self, ctx: ExecutionContext, high: int, low: int, dst: int) -> None:
        amount = min(((high & MASK64) << 64) | (low & MASK64), ctx.cycles_available)
        ctx.cycles_available -= amount
        ctx.cycles_accepted += amount
        ctx.balance += amount
        self._write128(dst, amount)

    def ic0_cycles_burn128(self, ctx: ExecutionContext, high: int, low: int, dst: int) -> None:
        amount = min(((high & MASK64) << 64) | (low & MASK64), ctx.balance)
        ctx.balance -= amount
        ctx.cycles_burned += amount
        self._write128(dst, amount)

    def ic0_canister_cycle_balance128(self, ctx: ExecutionContext, dst: int) -> None:
        self._write128(dst, ctx.balance)

    # ------------------------------------------------------------ canister info

    def ic0_canister_self_size(self, ctx: ExecutionContext) -> int:
        return len(self.env.canister_id)

    def ic0_canister_self_copy(self, ctx: ExecutionContext, dst: int, offset: int, size: int) -> None:
        self._copy_out(self.env.canister_id, dst, offset, size, "canister_self_copy")

    def ic0_canister_status(self, ctx: ExecutionContext) -> int:
        return self.env.status_code()

    def ic0_canister_version(self, ctx: ExecutionContext) -> int:
        return self.env.version

    def ic0_subnet_self_size(self, ctx: ExecutionContext) -> int:
        return len(self.env.subnet_id())

    def ic0_subnet_self_copy(self, ctx: ExecutionContext, dst: int, offset: int, size: int) -> None:
        self._copy_out(self.env.subnet_id(), dst, offset, size, "subnet_self_copy")

    def ic0_is_controller(self, ctx: ExecutionContext, src: int, size: int) -> int:
        principal = self.read(src, size)
        if len(principal) > MAX_PRINCIPAL_BYTES:
            raise Trap("Canister violated contract: is_controller: invalid principal",
                       ErrorCode.CANISTER_CONTRACT_VIOLATION)
        return 1 if principal in self.env.controllers else 0

    def ic0_in_replicated_execution(self, ctx: ExecutionContext) -> int:
        return 1 if ctx.kind.replicated else 0

    def ic0_root_key_size(self, ctx: ExecutionContext) -> int:
        return len(self.env.root_key())

    def ic0_root_key_copy(self, ctx: ExecutionContext, dst: int, offset: int, size: int) -> None:
        self._copy_out(self.env.root_key(), dst, offset, size, "root_key_copy")

    # ------------------------------------------------------------ inter-canister calls

    def _pending(self, ctx: ExecutionContext, name: str) -> OutgoingCall:
        if ctx.pending_call is None:
            raise Trap(f'Canister violated contract: "ic0.{name}" called without a call under construction',
                       ErrorCode.CANISTER_CONTRACT_VIOLATION)
        return ctx.pending_call

    def discard_pending_call(self, ctx: ExecutionContext) -> None:
        if ctx.pending_call is not None:
            ctx.balance += ctx.pending_call.cycles
            ctx.pending_call = None

    def ic0_call_new(self, ctx: ExecutionContext, callee_src: int, callee_size: int, name_src: int,
                     name_size: int, reply_fun: int, reply_env: int, reject_fun: int, reject_env: int) -> None:
        self.discard_pending_call(ctx)
        callee = self.read(callee_src, callee_size)
        if (name_size & MASK64) > MAX_METHOD_NAME:
            raise Trap("Canister violated contract: method name too long", ErrorCode.CANISTER_CONTRACT_VIOLATION)
        try:
            method = self.read(name_src, name_size).decode()
        except UnicodeDecodeError as exc:
            raise Trap("Canister violated contract: method name is not valid UTF-8",
                       ErrorCode.CANISTER_CONTRACT_VIOLATION) from exc
        ctx.pending_call = OutgoingCall(
            callee=callee, method=method,
            on_reply=Closure(reply_fun & MASK64, reply_env & MASK64),
            on_reject=Closure(reject_fun & MASK64, reject_env & MASK64),
        )

    def ic0_call_on_cleanup(self, ctx: ExecutionContext, fun: int, env: int) -> None:
        call = self._pending(ctx, "call_on_cleanup")
        if call.on_cleanup is not None:
            raise Trap('Canister violated contract: "ic0.call_on_cleanup" called twice',
                       ErrorCode.CANISTER_CONTRACT_VIOLATION)
        call.on_cleanup = Closure(fun & MASK64, env & MASK64)

    def ic0_call_data_append(self, ctx: ExecutionContext, src: int, size: int) -> None:
        call = self._pending(ctx, "call_data_append")
        data = self.read(src, size)
        if len(call.data) + len(data) > MAX_CALL_PAYLOAD:
            raise Trap(f"Canister violated contract: call payload exceeds {MAX_CALL_PAYLOAD} bytes",
                       ErrorCode.CANISTER_CONTRACT_VIOLATION)
        call.data += data

    def ic0_call_with_best_effort_response(self, ctx: ExecutionContext, timeout_seconds: int) -> None:
        call = self._pending(ctx, "call_with_best_effort_response")
        if call.timeout_seconds is not None:
            raise Trap('Canister violated contract: "ic0.call_with_best_effort_response" called twice',
                       ErrorCode.CANISTER_CONTRACT_VIOLATION)
        call.timeout_seconds = min(timeout_seconds & 0xFFFFFFFF, MAX_CALL_TIMEOUT)

    def ic0_call_cycles_add128(self, ctx: ExecutionContext, high: int, low: int) -> None:
        call = self._pending(ctx, "call_cycles_add128")
        amount = ((high & MASK64) << 64) | (low & MASK64)
        if amount > ctx.balance:
            raise Trap(f"Canister trapped: cannot add {amount} cycles to a call, the balance is {ctx.balance}",
                       ErrorCode.CANISTER_OUT_OF_CYCLES)
        ctx.balance -= amount
        call.cycles += amount

    def ic0_call_perform(self, ctx: ExecutionContext) -> int:
        call = self._pending(ctx, "call_perform")
        ctx.pending_call = None
        ctx.calls.append(call)
        return 0

    # ------------------------------------------------------------ stable memory

    def ic0_stable64_size(self, ctx: ExecutionContext) -> int:
        return self.env.stable.pages

    def ic0_stable64_grow(self, ctx: ExecutionContext, new_pages: int) -> int:
        return self.env.stable.grow(new_pages & MASK64)

    def ic0_stable64_write(self, ctx: ExecutionContext, offset: int, src: int, size: int) -> None:
        offset, size = offset & MASK64, size & MASK64
        if not self.env.stable.in_bounds(offset, size):
            raise Trap("Canister trapped: stable memory out of bounds")
        self.env.stable.write(offset, self.read(src, size))

    def ic0_stable64_read(self, ctx: ExecutionContext, dst: int, offset: int, size: int) -> None:
        offset, size = offset & MASK64, size & MASK64
        if not self.env.stable.in_bounds(offset, size):
            raise Trap("Canister trapped: stable memory out of bounds")
        self._mem_bounds(dst, size)
        self.write(dst, self.env.stable.read(offset, size))

    # ------------------------------------------------------------ certification, time, timers

    def ic0_certified_data_set(self, ctx: ExecutionContext, src: int, size: int) -> None:
        if (size & MASK64) > MAX_CERTIFIED_DATA:
            raise Trap(f"Canister violated contract: certified data exceeds {MAX_CERTIFIED_DATA} bytes",
                       ErrorCode.CANISTER_CONTRACT_VIOLATION)
        ctx.new_certified_data = self.read(src, size)

    def ic0_data_certificate_present(self, ctx: ExecutionContext) -> int:
        return 1 if ctx.data_certificate is not None else 0

    def _certificate(self, ctx: ExecutionContext) -> bytes:
        if ctx.data_certificate is None:
            raise Trap("Canister violated contract: no data certificate is present",
                       ErrorCode.CANISTER_CONTRACT_VIOLATION)
        if callable(ctx.data_certificate):
            ctx.data_certificate = ctx.data_certificate()
        return ctx.data_certificate

    def ic0_data_certificate_size(self, ctx: ExecutionContext) -> int:
        return len(self._certificate(ctx))

    def ic0_data_certificate_copy(self, ctx: ExecutionContext, dst: int, offset: int, size: int) -> None:
        self._copy_out(self._certificate(ctx), dst, offset, size, "data_certificate_copy")

    def ic0_time(self, ctx: ExecutionContext) -> int:
        return self.env.now()

    def ic0_global_timer_set(self, ctx: ExecutionContext, timestamp: int) -> int:
        previous = self.env.global_timer if ctx.new_timer is None else ctx.new_timer
        ctx.new_timer = timestamp & MASK64
        return previous

    def ic0_performance_counter(self, ctx: ExecutionContext, counter_type: int) -> int:
        executed = self.runtime.instructions_executed()
        if counter_type == 0:
            return executed
        if counter_type == 1:
            return ctx.instructions + executed
        raise Trap(f"Canister violated contract: unknown performance counter type {counter_type}",
                   ErrorCode.CANISTER_CONTRACT_VIOLATION)

    # ------------------------------------------------------------ costs

    def ic0_cost_call(self, ctx: ExecutionContext, method_name_size: int, payload_size: int, dst: int) -> None:
        self._write128(dst, CALL_BASE_FEE + CALL_FEE_PER_BYTE * ((method_name_size & MASK64)
                                                                 + (payload_size & MASK64)))

    def ic0_cost_create_canister(self, ctx: ExecutionContext, dst: int) -> None:
        self._write128(dst, CREATE_CANISTER_FEE)

    def ic0_cost_http_request(self, ctx: ExecutionContext, request_size: int, max_res_bytes: int, dst: int) -> None:
        self._write128(dst, 49_140_000 + 5_200 * (request_size & MASK64) + 10_400 * (max_res_bytes & MASK64))

    def _cost_signature(self, src: int, size: int, curve: int, valid_curves: set[int]) -> int:
        self.read(src, size)
        if curve not in valid_curves:
            return 1
        return 2  # no threshold keys exist on this replica

    def ic0_cost_sign_with_ecdsa(self, ctx: ExecutionContext, src: int, size: int, curve: int, dst: int) -> int:
        self._mem_bounds(dst, 16)
        return self._cost_signature(src, size, curve, {0})

    def ic0_cost_sign_with_schnorr(self, ctx: ExecutionContext, src: int, size: int, alg: int, dst: int) -> int:
        self._mem_bounds(dst, 16)
        return self._cost_signature(src, size, alg, {0, 1})

    # ------------------------------------------------------------ environment variables

    def _env_names(self) -> list[bytes]:
        return sorted(name.encode() for name in self.env.env_vars)

    def _env_name_at(self, index: int) -> bytes:
        names = self._env_names()
        if index & MASK64 >= len(names):
            raise Trap("Canister violated contract: environment variable index out of range",
                       ErrorCode.CANISTER_CONTRACT_VIOLATION)
        return names[index & MASK64]

    def _env_value(self, src: int, size: int) -> bytes:
        name = self.read(src, size).decode(errors="replace")
        if name not in self.env.env_vars:
            raise Trap(f"Canister violated contract: no environment variable {name!r}",
                       ErrorCode.CANISTER_CONTRACT_VIOLATION)
        return self.env.env_vars[name].encode()

    def ic0_env_var_count(self, ctx: ExecutionContext) -> int:
        return len(self.env.env_vars)

    def ic0_env_var_name_size(self, ctx: ExecutionContext, index: int) -> int:
        return len(self._env_name_at(index))

    def ic0_env_var_name_copy(self, ctx: ExecutionContext, index: int, dst: int, offset: int, size: int) -> None:
        self._copy_out(self._env_name_at(index), dst, offset, size, "env_var_name_copy")

    def ic0_env_var_name_exists(self, ctx: ExecutionContext, src: int, size: int) -> int:
        return 1 if self.read(src, size).decode(errors="replace") in self.env.env_vars else 0

    def ic0_env_var_value_size(self, ctx: ExecutionContext, src: int, size: int) -> int:
        return len(self._env_value(src, size))

    def ic0_env_var_value_copy(self, ctx: ExecutionContext, src: int, size: int, dst: int, offset: int,
                               length: int) -> None:
        self._copy_out(self._env_value(src, size), dst, offset, length, "env_var_value_copy")

    # ------------------------------------------------------------ debugging

    def ic0_debug_print(self, ctx: ExecutionContext, src: int, size: int) -> None:
        try:
            message = self.read(src, min(size & MASK64, MAX_LOG_RECORD))
        except Trap:
            message = b"(debug_print: message out of bounds)"
        self.env.log(message)

    def ic0_trap(self, ctx: ExecutionContext, src: int, size: int) -> None:
        try:
            message = self.read(src, min(size & MASK64, MAX_LOG_RECORD)).decode(errors="replace")
        except Trap:
            message = "(trap message out of bounds)"
        raise Trap(f"Canister called `ic0.trap` with message: '{message}'", ErrorCode.CANISTER_CALLED_TRAP)
