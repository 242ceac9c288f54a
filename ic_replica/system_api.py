"""The `ic0` System API: every function of the IC interface specification's `ic0` module.

The list, the signatures (`I` is the pointer width: i64 for a module with 64-bit memory, i32 otherwise) and
the availability per entry point follow the spec's "Overview of imports" (`#system-api-imports`); the
functions the spec offers only to 32-bit modules are linked only for them. Outside the spec, the IC's replica
also provides `mint_cycles` / `mint_cycles128` to the cycles minting canister; so does this one.

Each function checks that the current entry point may call it and traps with the IC's contract-violation
message otherwise; every memory access is bounds-checked and traps. Effects are recorded on the execution
context and applied by the caller only if the execution does not trap. `import_problems` tells why a
module's imports cannot be linked, naming every one at once.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import wasmtime

from ic_replica.context import Closure, ExecutionContext, Kind, OutgoingCall, Trap
from ic_replica.errors import ErrorCode
from ic_replica.principal import MAX_PRINCIPAL_BYTES, Principal, canister_id_from_index
from ic_replica.stable_memory import PAGE, StableMemory
from ic_replica.threshold_keys import KEY_NAMES

if TYPE_CHECKING:
    from ic_replica.runtime import WasmRuntime
    from ic_replica.wasm_module import ModuleInfo, Signature

MASK32 = (1 << 32) - 1
MASK64 = (1 << 64) - 1
MAX_CYCLES = (1 << 128) - 1
MAX_REPLY_BYTES = 2 * 1024 * 1024 + 1024 * 1024  # 3 MiB (ingress response limit is 2 MiB + slack)
MAX_CALL_PAYLOAD = 2 * 1024 * 1024
MAX_METHOD_NAME = 20_000
MAX_CERTIFIED_DATA = 32
MAX_CALL_TIMEOUT = 300
MAX_LOG_RECORD = 4096
MAX_ENV_VAR_NAME = 128  # bytes: the IC's limit on an environment variable's name
MAX_KEY_NAME = 1024  # a threshold key name longer than this is no key's name
_THRESHOLD_KEY_NAMES = {name.encode() for name in KEY_NAMES}
SIGNATURE_FEE = 26_153_846_153  # the IC's price of one threshold signature (keys on the 34-node fiduciary subnet)
MAX_STABLE32_PAGES = (1 << 32) // PAGE  # the 32-bit stable API works on at most 4 GiB
CYCLES_MINTING_CANISTER = canister_id_from_index(4).raw  # rkp4c-7iaaa-aaaaa-aaaca-cai

_ALL = frozenset(k for k in Kind if k is not Kind.START)
_ALL_S = frozenset(Kind)


def _kinds(spec: str) -> frozenset[Kind]:
    if spec == "*":
        return _ALL
    if spec == "* s":
        return _ALL_S
    return frozenset(Kind(x) for x in spec.split())


# The spec's availability table ("Overview of imports"): `*` is every entry point but `(start)`, `s` is
# `(start)`. The spec writes `Q` for msg_deadline: both query modes (RQ NRQ).
AVAILABILITY: dict[str, frozenset[Kind]] = {
    name: _kinds(spec)
    for name, spec in {
        "msg_arg_data_size": "I U RQ NRQ TQ CQ Ry CRy F", "msg_arg_data_copy": "I U RQ NRQ TQ CQ Ry CRy F",
        "msg_caller_size": "*", "msg_caller_copy": "*",
        "msg_caller_info_data_size": "U RQ NRQ CQ Ry Rt CRy CRt C CC F",
        "msg_caller_info_data_copy": "U RQ NRQ CQ Ry Rt CRy CRt C CC F",
        "msg_caller_info_signer_size": "U RQ NRQ CQ Ry Rt CRy CRt C CC F",
        "msg_caller_info_signer_copy": "U RQ NRQ CQ Ry Rt CRy CRt C CC F",
        "msg_reject_code": "Ry Rt CRy CRt C", "msg_reject_msg_size": "Rt CRt", "msg_reject_msg_copy": "Rt CRt",
        "msg_deadline": "U RQ NRQ CQ Ry Rt CRy CRt",
        "msg_reply_data_append": "U RQ NRQ TQ CQ Ry Rt CRy CRt", "msg_reply": "U RQ NRQ TQ CQ Ry Rt CRy CRt",
        "msg_reject": "U RQ NRQ TQ CQ Ry Rt CRy CRt",
        "msg_cycles_available128": "U RQ Rt Ry", "msg_cycles_refunded128": "Rt Ry",
        "msg_cycles_accept128": "U RQ Rt Ry", "cycles_burn128": "I G U RQ Ry Rt C T",
        "canister_self_size": "*", "canister_self_copy": "*", "canister_cycle_balance128": "*",
        "canister_liquid_cycle_balance128": "*",
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
        "cost_sign_with_ecdsa": "* s", "cost_sign_with_schnorr": "* s", "cost_vetkd_derive_key": "* s",
        "env_var_count": "*", "env_var_name_size": "*", "env_var_name_copy": "*", "env_var_name_exists": "*",
        "env_var_value_size": "*", "env_var_value_copy": "*",
        "debug_print": "* s", "trap": "* s",
        # only for modules with 32-bit memory
        "msg_cycles_available": "U RQ Rt Ry", "msg_cycles_refunded": "Rt Ry", "msg_cycles_accept": "U RQ Rt Ry",
        "canister_cycle_balance": "*", "call_cycles_add": "U Ry Rt T",
        "stable_size": "* s", "stable_grow": "* s", "stable_write": "* s", "stable_read": "* s",
        # outside the spec: the IC's replica lets the cycles minting canister (only) mint
        "mint_cycles128": "U Ry Rt T", "mint_cycles": "U Ry Rt T",
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
    "canister_cycle_balance128": ("I", ""), "canister_liquid_cycle_balance128": ("I", ""),
    "canister_status": ("", "i"), "canister_version": ("", "l"),
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
    "cost_vetkd_derive_key": ("IIiI", "i"),
    "env_var_count": ("", "I"), "env_var_name_size": ("I", "I"), "env_var_name_copy": ("IIII", ""),
    "env_var_name_exists": ("II", "i"), "env_var_value_size": ("II", "I"), "env_var_value_copy": ("IIIII", ""),
    "debug_print": ("II", ""), "trap": ("II", ""),
    "msg_cycles_available": ("", "l"), "msg_cycles_refunded": ("", "l"), "msg_cycles_accept": ("l", "l"),
    "canister_cycle_balance": ("", "l"), "call_cycles_add": ("l", ""),
    "stable_size": ("", "i"), "stable_grow": ("i", "i"), "stable_write": ("iii", ""), "stable_read": ("iii", ""),
    "mint_cycles128": ("llI", ""), "mint_cycles": ("l", "l"),
}

# What the spec offers only to modules whose memory is 32-bit (or that declare none).
ONLY_32BIT = frozenset({
    "msg_cycles_available", "msg_cycles_refunded", "msg_cycles_accept", "canister_cycle_balance", "call_cycles_add",
    "stable_size", "stable_grow", "stable_write", "stable_read", "mint_cycles",
})
# Provided although the spec does not list them (the IC's replica has them, for the cycles minting canister).
EXTENSIONS = frozenset({"mint_cycles", "mint_cycles128"})
SUPPORTED_IMPORTS = frozenset(_SIGNATURES)


def signature(name: str, memory64: bool) -> Signature:
    """The import's (params, results) as wasm type names, for a module with 64- or 32-bit memory."""
    pointer = "i64" if memory64 else "i32"
    kinds = {"I": pointer, "l": "i64", "i": "i32"}
    params, results = _SIGNATURES[name]
    return tuple(kinds[c] for c in params), tuple(kinds[c] for c in results)


def func_type(name: str, memory64: bool) -> wasmtime.FuncType:
    """The import's type for a module whose memory is 64-bit (`I = i64`) or 32-bit (`I = i32`)."""
    params, results = signature(name, memory64)
    valtype = {"i64": I64, "i32": I32}
    return wasmtime.FuncType([valtype[t] for t in params], [valtype[t] for t in results])


def provided(memory64: bool) -> frozenset[str]:
    """The `ic0` functions a module with this memory width may import."""
    return SUPPORTED_IMPORTS - ONLY_32BIT if memory64 else SUPPORTED_IMPORTS


def _show(sig: Signature) -> str:
    params, results = sig
    return f"({', '.join(params)}) -> ({', '.join(results)})"


def import_problems(info: ModuleInfo) -> list[str]:
    """One sentence per import the runtime cannot link (unknown, or known with another type); empty if none."""
    problems: list[str] = []
    available = provided(info.memory64)
    for (module, name), kind in zip(info.imports, info.import_types):
        if isinstance(kind, str):
            problems.append(f"Module imports {kind} '{name}' from '{module}' that is not exported by the runtime.")
        elif module != "ic0" or name not in SUPPORTED_IMPORTS:
            problems.append(f"Module imports function '{name}' from '{module}' that is not exported by the runtime.")
        elif name not in available:
            problems.append(f"Module imports function '{name}' from 'ic0' that is not exported by the runtime to "
                            "modules with 64-bit memory (it is only for 32-bit memory).")
        elif kind != (expected := signature(name, info.memory64)):
            problems.append(f"Module imports function '{name}' from 'ic0' with the wrong type {_show(kind)}: the "
                            f"runtime exports it as {_show(expected)}.")
    return problems


# Cycle costs reported by cost_* (the IC's prices on a 13-node application subnet, docs "Cycles cost formulas").
XNET_CALL_FEE = 260_000
XNET_BYTE_FEE = 1_000
MAX_RESPONSE_BYTES = 2 * 1024 * 1024  # the largest inter-canister response: its transmission is reserved
UPDATE_EXECUTION_FEE = 5_000_000
MAX_RESPONSE_INSTRUCTIONS = 5_000_000_000  # a response callback's instructions are reserved, 1 cycle each
CREATE_CANISTER_FEE = 500_000_000_000
SUBNET_NODES = 13
HTTP_BASE_FEE = (3_000_000 + 60_000 * SUBNET_NODES) * SUBNET_NODES
HTTP_REQUEST_BYTE_FEE = 400 * SUBNET_NODES
HTTP_RESPONSE_BYTE_FEE = 800 * SUBNET_NODES


def cost_call(method_name_size: int, payload_size: int) -> int:
    """The call's fee, its bytes, and the reservations for the largest response and its callback."""
    return (XNET_CALL_FEE + XNET_BYTE_FEE * (method_name_size + payload_size) + XNET_BYTE_FEE * MAX_RESPONSE_BYTES
            + UPDATE_EXECUTION_FEE + MAX_RESPONSE_INSTRUCTIONS)


def cost_http_request(request_size: int, max_response_bytes: int) -> int:
    return HTTP_BASE_FEE + HTTP_REQUEST_BYTE_FEE * request_size + HTTP_RESPONSE_BYTE_FEE * max_response_bytes


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
    def freezing_limit(self) -> int: ...
    def log(self, message: bytes) -> None: ...


def _violation(message: str) -> Trap:
    return Trap(f"Canister violated contract: {message}", ErrorCode.CANISTER_CONTRACT_VIOLATION)


def _conversions(name: str, memory64: bool) -> tuple[tuple[int, ...], int]:
    """Masks that make each argument unsigned, and the result's width in bits (0: no result)."""
    params, results = signature(name, memory64)
    masks = tuple(MASK64 if t == "i64" else MASK32 for t in params)
    bits = (64 if results[0] == "i64" else 32) if results else 0
    return masks, bits


class SystemApi:
    """The System API of one canister's wasm runtime; `ctx` is set for each execution. The host functions wasm
    calls (`linker`) serve whichever SystemApi is `running` on the calling thread."""

    def __init__(self, runtime: WasmRuntime, env: CanisterEnv) -> None:
        self.runtime = runtime  # (a strong reference: the host functions below hold none, see `linker`)
        self.env = env
        self.ctx: ExecutionContext | None = None

    # ------------------------------------------------------------ helpers

    def _check(self, name: str) -> ExecutionContext:
        ctx = self.ctx
        if ctx is None:
            raise Trap(f'"ic0.{name}" called outside of a message execution', ErrorCode.CANISTER_CONTRACT_VIOLATION)
        if ctx.kind not in AVAILABILITY[name]:
            raise _violation(f'"ic0.{name}" cannot be executed in {ctx.kind.mode_name} mode')
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
            raise _violation(f"{what}: out of bounds (offset {offset} + size {size} > {len(data)})")
        self.write(dst, data[offset : offset + size])

    def _write128(self, dst: int, value: int) -> None:
        self.write(dst, value.to_bytes(16, "little"))

    @staticmethod
    def _fit64(value: int, name: str) -> int:
        if value > MASK64:
            raise _violation(f'"ic0.{name}": {value} cycles do not fit in 64 bits; use "ic0.{name}128"')
        return value

    def _liquid(self, ctx: ExecutionContext) -> int:
        """The spec's liquid balance: what may be spent without freezing (no cycles are reserved here)."""
        return max(0, ctx.balance - self.env.freezing_limit())

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
            raise _violation("no reject message available")
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
            raise _violation('"ic0.accept_message" called twice')
        ctx.accepted_message = True

    # ------------------------------------------------------------ responding

    def _ensure_can_respond(self, ctx: ExecutionContext, name: str) -> None:
        if ctx.response is not None or not ctx.needs_to_respond:
            raise _violation(f'"ic0.{name}": the call is already replied or needs no reply')

    def ic0_msg_reply_data_append(self, ctx: ExecutionContext, src: int, size: int) -> None:
        self._ensure_can_respond(ctx, "msg_reply_data_append")
        if len(ctx.reply_buffer) + size > MAX_REPLY_BYTES:
            raise _violation(f"reply exceeds the maximum size of {MAX_REPLY_BYTES} bytes")
        ctx.reply_buffer += self.read(src, size)

    def ic0_msg_reply(self, ctx: ExecutionContext) -> None:
        self._ensure_can_respond(ctx, "msg_reply")
        ctx.response = ("reply", bytes(ctx.reply_buffer))  # unaccepted cycles go back with it (see _available)

    def ic0_msg_reject(self, ctx: ExecutionContext, src: int, size: int) -> None:
        self._ensure_can_respond(ctx, "msg_reject")
        message = self.read(src, size)
        try:
            message.decode()
        except UnicodeDecodeError as exc:
            raise _violation("reject message is not valid UTF-8") from exc
        ctx.response = ("reject", message)

    # ------------------------------------------------------------ cycles

    @staticmethod
    def _available(ctx: ExecutionContext) -> int:
        """Cycles of the call still available: none once it is answered. `ctx.cycles_available` keeps the
        unaccepted rest, which the replica refunds to the caller with the response."""
        return 0 if ctx.response is not None else ctx.cycles_available

    def ic0_msg_cycles_available128(self, ctx: ExecutionContext, dst: int) -> None:
        self._write128(dst, self._available(ctx))

    def ic0_msg_cycles_available(self, ctx: ExecutionContext) -> int:
        return self._fit64(self._available(ctx), "msg_cycles_available")

    def ic0_msg_cycles_refunded128(self, ctx: ExecutionContext, dst: int) -> None:
        self._write128(dst, ctx.cycles_refunded)

    def ic0_msg_cycles_refunded(self, ctx: ExecutionContext) -> int:
        return self._fit64(ctx.cycles_refunded, "msg_cycles_refunded")

    @staticmethod
    def _accept(ctx: ExecutionContext, max_amount: int) -> int:
        amount = min(max_amount, SystemApi._available(ctx), MAX_CYCLES - ctx.balance)
        ctx.cycles_available -= amount
        ctx.cycles_accepted += amount
        ctx.balance += amount
        return amount

    def ic0_msg_cycles_accept128(self, ctx: ExecutionContext, high: int, low: int, dst: int) -> None:
        self._mem_bounds(dst, 16)
        self._write128(dst, self._accept(ctx, (high << 64) | low))

    def ic0_msg_cycles_accept(self, ctx: ExecutionContext, max_amount: int) -> int:
        return self._accept(ctx, max_amount)

    def ic0_cycles_burn128(self, ctx: ExecutionContext, high: int, low: int, dst: int) -> None:
        self._mem_bounds(dst, 16)
        amount = min((high << 64) | low, self._liquid(ctx))
        ctx.balance -= amount
        ctx.cycles_burned += amount
        self._write128(dst, amount)

    def ic0_canister_cycle_balance128(self, ctx: ExecutionContext, dst: int) -> None:
        self._write128(dst, ctx.balance)

    def ic0_canister_cycle_balance(self, ctx: ExecutionContext) -> int:
        return self._fit64(ctx.balance, "canister_cycle_balance")

    def ic0_canister_liquid_cycle_balance128(self, ctx: ExecutionContext, dst: int) -> None:
        self._write128(dst, self._liquid(ctx))

    def _mint(self, ctx: ExecutionContext, amount: int, name: str) -> int:
        if self.env.canister_id != CYCLES_MINTING_CANISTER:
            raise _violation(f'"ic0.{name}" cannot be executed on non Cycles Minting Canister: '
                             f"{Principal(self.env.canister_id)} != {Principal(CYCLES_MINTING_CANISTER)}")
        minted = min(amount, MAX_CYCLES - ctx.balance)
        ctx.balance += minted
        return minted

    def ic0_mint_cycles128(self, ctx: ExecutionContext, high: int, low: int, dst: int) -> None:
        self._mem_bounds(dst, 16)
        self._write128(dst, self._mint(ctx, (high << 64) | low, "mint_cycles128"))

    def ic0_mint_cycles(self, ctx: ExecutionContext, amount: int) -> int:
        return self._mint(ctx, amount, "mint_cycles")

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
        self._mem_bounds(src, size)
        if size > MAX_PRINCIPAL_BYTES:
            raise _violation(f'"ic0.is_controller": {size} bytes are not a principal (at most '
                             f"{MAX_PRINCIPAL_BYTES})")
        return 1 if self.read(src, size) in self.env.controllers else 0

    def ic0_in_replicated_execution(self, ctx: ExecutionContext) -> int:
        return 1 if ctx.kind.replicated else 0

    def ic0_root_key_size(self, ctx: ExecutionContext) -> int:
        return len(self.env.root_key())

    def ic0_root_key_copy(self, ctx: ExecutionContext, dst: int, offset: int, size: int) -> None:
        self._copy_out(self.env.root_key(), dst, offset, size, "root_key_copy")

    # ------------------------------------------------------------ inter-canister calls

    def _pending(self, ctx: ExecutionContext, name: str) -> OutgoingCall:
        if ctx.pending_call is None:
            raise _violation(f'"ic0.{name}" called without a call under construction')
        return ctx.pending_call

    def discard_pending_call(self, ctx: ExecutionContext) -> None:
        if ctx.pending_call is not None:
            ctx.balance += ctx.pending_call.cycles
            ctx.pending_call = None

    def ic0_call_new(self, ctx: ExecutionContext, callee_src: int, callee_size: int, name_src: int,
                     name_size: int, reply_fun: int, reply_env: int, reject_fun: int, reject_env: int) -> None:
        self.discard_pending_call(ctx)
        self._mem_bounds(callee_src, callee_size)
        if callee_size > MAX_PRINCIPAL_BYTES:
            raise _violation(f'"ic0.call_new": {callee_size} bytes are not a principal')
        callee = self.read(callee_src, callee_size)
        self._mem_bounds(name_src, name_size)
        if name_size > MAX_METHOD_NAME:
            raise _violation("method name too long")
        try:
            method = self.read(name_src, name_size).decode()
        except UnicodeDecodeError as exc:
            raise _violation("method name is not valid UTF-8") from exc
        ctx.pending_call = OutgoingCall(
            callee=callee, method=method,
            on_reply=Closure(reply_fun, reply_env), on_reject=Closure(reject_fun, reject_env),
        )

    def ic0_call_on_cleanup(self, ctx: ExecutionContext, fun: int, env: int) -> None:
        call = self._pending(ctx, "call_on_cleanup")
        if call.on_cleanup is not None:
            raise _violation('"ic0.call_on_cleanup" called twice')
        call.on_cleanup = Closure(fun, env)

    def ic0_call_data_append(self, ctx: ExecutionContext, src: int, size: int) -> None:
        call = self._pending(ctx, "call_data_append")
        if len(call.data) + size > MAX_CALL_PAYLOAD:
            raise _violation(f"call payload exceeds {MAX_CALL_PAYLOAD} bytes")
        call.data += self.read(src, size)

    def ic0_call_with_best_effort_response(self, ctx: ExecutionContext, timeout_seconds: int) -> None:
        call = self._pending(ctx, "call_with_best_effort_response")
        if call.timeout_seconds is not None:
            raise _violation('"ic0.call_with_best_effort_response" called twice')
        call.timeout_seconds = min(timeout_seconds, MAX_CALL_TIMEOUT)

    def _add_cycles(self, ctx: ExecutionContext, amount: int, name: str) -> None:
        call = self._pending(ctx, name)
        liquid = self._liquid(ctx)
        if amount > liquid:
            raise Trap(f'Canister trapped: "ic0.{name}" cannot add {amount} cycles to a call: only {liquid} '
                       "cycles can be spent", ErrorCode.CANISTER_OUT_OF_CYCLES)
        ctx.balance -= amount
        call.cycles += amount

    def ic0_call_cycles_add128(self, ctx: ExecutionContext, high: int, low: int) -> None:
        self._add_cycles(ctx, (high << 64) | low, "call_cycles_add128")

    def ic0_call_cycles_add(self, ctx: ExecutionContext, amount: int) -> None:
        self._add_cycles(ctx, amount, "call_cycles_add")

    def ic0_call_perform(self, ctx: ExecutionContext) -> int:
        call = self._pending(ctx, "call_perform")
        ctx.pending_call = None
        ctx.calls.append(call)
        return 0

    # ------------------------------------------------------------ stable memory

    def ic0_stable64_size(self, ctx: ExecutionContext) -> int:
        return self.env.stable.pages

    def ic0_stable64_grow(self, ctx: ExecutionContext, new_pages: int) -> int:
        return self.env.stable.grow(new_pages)

    def ic0_stable64_write(self, ctx: ExecutionContext, offset: int, src: int, size: int) -> None:
        if not self.env.stable.in_bounds(offset, size):
            raise Trap("Canister trapped: stable memory out of bounds")
        self.env.stable.write(offset, self.read(src, size))

    def ic0_stable64_read(self, ctx: ExecutionContext, dst: int, offset: int, size: int) -> None:
        if not self.env.stable.in_bounds(offset, size):
            raise Trap("Canister trapped: stable memory out of bounds")
        self._mem_bounds(dst, size)
        self.write(dst, self.env.stable.read(offset, size))

    def _stable32(self) -> StableMemory:
        stable = self.env.stable
        if stable.pages > MAX_STABLE32_PAGES:
            raise Trap("Canister trapped: 32 bit stable memory api used on a memory larger than 4GB")
        return stable

    def ic0_stable_size(self, ctx: ExecutionContext) -> int:
        return self._stable32().pages

    def ic0_stable_grow(self, ctx: ExecutionContext, new_pages: int) -> int:
        stable = self._stable32()
        if stable.pages + new_pages > MAX_STABLE32_PAGES:
            return -1
        return stable.grow(new_pages)

    def ic0_stable_write(self, ctx: ExecutionContext, offset: int, src: int, size: int) -> None:
        self._stable32()
        self.ic0_stable64_write(ctx, offset, src, size)

    def ic0_stable_read(self, ctx: ExecutionContext, dst: int, offset: int, size: int) -> None:
        self._stable32()
        self.ic0_stable64_read(ctx, dst, offset, size)

    # ------------------------------------------------------------ certification, time, timers

    def ic0_certified_data_set(self, ctx: ExecutionContext, src: int, size: int) -> None:
        if size > MAX_CERTIFIED_DATA:
            raise _violation(f"certified data exceeds {MAX_CERTIFIED_DATA} bytes")
        ctx.new_certified_data = self.read(src, size)

    def ic0_data_certificate_present(self, ctx: ExecutionContext) -> int:
        return 1 if ctx.data_certificate is not None else 0

    def _certificate(self, ctx: ExecutionContext) -> bytes:
        if ctx.data_certificate is None:
            raise _violation("no data certificate is present")
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
        ctx.new_timer = timestamp
        return previous

    def ic0_performance_counter(self, ctx: ExecutionContext, counter_type: int) -> int:
        executed = self.runtime.instructions_executed()
        if counter_type == 0:
            return executed
        if counter_type == 1:
            return ctx.instructions + executed
        raise _violation(f"unknown performance counter type {counter_type}")

    # ------------------------------------------------------------ costs

    def ic0_cost_call(self, ctx: ExecutionContext, method_name_size: int, payload_size: int, dst: int) -> None:
        self._write128(dst, cost_call(method_name_size, payload_size))

    def ic0_cost_create_canister(self, ctx: ExecutionContext, dst: int) -> None:
        self._write128(dst, CREATE_CANISTER_FEE)

    def ic0_cost_http_request(self, ctx: ExecutionContext, request_size: int, max_res_bytes: int, dst: int) -> None:
        self._write128(dst, cost_http_request(request_size, max_res_bytes))

    def _cost_signature(self, src: int, size: int, curve: int, valid_curves: set[int], dst: int,
                        has_keys: bool = True) -> int:
        """0 with the cost at `dst` for a key the management canister holds (`threshold_keys.KEY_NAMES`), 1 for
        an unknown curve or algorithm, 2 for an unknown key name (every vetKD key: this replica has none)."""
        self._mem_bounds(src, size)
        self._mem_bounds(dst, 16)
        if curve not in valid_curves:
            return 1
        if not has_keys or size > MAX_KEY_NAME or self.read(src, size) not in _THRESHOLD_KEY_NAMES:
            return 2
        self._write128(dst, SIGNATURE_FEE)
        return 0

    def ic0_cost_sign_with_ecdsa(self, ctx: ExecutionContext, src: int, size: int, curve: int, dst: int) -> int:
        return self._cost_signature(src, size, curve, {0}, dst)  # 0: secp256k1

    def ic0_cost_sign_with_schnorr(self, ctx: ExecutionContext, src: int, size: int, alg: int, dst: int) -> int:
        return self._cost_signature(src, size, alg, {0, 1}, dst)  # 0: bip340secp256k1, 1: ed25519

    def ic0_cost_vetkd_derive_key(self, ctx: ExecutionContext, src: int, size: int, curve: int, dst: int) -> int:
        return self._cost_signature(src, size, curve, {0}, dst, has_keys=False)  # 0: bls12_381

    # ------------------------------------------------------------ environment variables

    def _env_names(self) -> list[bytes]:
        return sorted(name.encode() for name in self.env.env_vars)

    def _env_name_at(self, index: int) -> bytes:
        if index >= len(self.env.env_vars):
            raise _violation(f"environment variable index {index} out of range ({len(self.env.env_vars)} "
                             "variables)")
        return self._env_names()[index]

    def _env_name(self, src: int, size: int, name: str) -> str:
        if size > MAX_ENV_VAR_NAME:
            raise _violation(f'"ic0.{name}": a variable name is at most {MAX_ENV_VAR_NAME} bytes, not {size}')
        try:
            return self.read(src, size).decode()
        except UnicodeDecodeError as exc:
            raise _violation(f'"ic0.{name}": the variable name is not valid UTF-8') from exc

    def _env_value(self, src: int, size: int, name: str) -> bytes:
        key = self._env_name(src, size, name)
        if key not in self.env.env_vars:
            raise _violation(f'"ic0.{name}": no environment variable {key!r}')
        return self.env.env_vars[key].encode()

    def ic0_env_var_count(self, ctx: ExecutionContext) -> int:
        return len(self.env.env_vars)

    def ic0_env_var_name_size(self, ctx: ExecutionContext, index: int) -> int:
        return len(self._env_name_at(index))

    def ic0_env_var_name_copy(self, ctx: ExecutionContext, index: int, dst: int, offset: int, size: int) -> None:
        self._copy_out(self._env_name_at(index), dst, offset, size, "env_var_name_copy")

    def ic0_env_var_name_exists(self, ctx: ExecutionContext, src: int, size: int) -> int:
        return 1 if self._env_name(src, size, "env_var_name_exists") in self.env.env_vars else 0

    def ic0_env_var_value_size(self, ctx: ExecutionContext, src: int, size: int) -> int:
        return len(self._env_value(src, size, "env_var_value_size"))

    def ic0_env_var_value_copy(self, ctx: ExecutionContext, src: int, size: int, dst: int, offset: int,
                               length: int) -> None:
        self._copy_out(self._env_value(src, size, "env_var_value_copy"), dst, offset, length, "env_var_value_copy")

    # ------------------------------------------------------------ debugging

    def ic0_debug_print(self, ctx: ExecutionContext, src: int, size: int) -> None:
        try:
            message = self.read(src, min(size, MAX_LOG_RECORD))
        except Trap:
            message = b"(debug_print: message out of bounds)"
        self.env.log(message)

    def ic0_trap(self, ctx: ExecutionContext, src: int, size: int) -> None:
        try:
            message = self.read(src, min(size, MAX_LOG_RECORD)).decode(errors="replace")
        except Trap:
            message = "(trap message out of bounds)"
        raise Trap(f"Canister called `ic0.trap` with message: '{message}'", ErrorCode.CANISTER_CALLED_TRAP)


# ---------------------------------------------------------------- linking

_running = threading.local()  # .api: the SystemApi whose canister executes on this thread, None between messages


def running(api: SystemApi | None) -> SystemApi | None:
    """Make `api` the one this thread's host calls serve (None: no execution); returns the previous one, which
    the caller puts back when its execution ends."""
    previous: SystemApi | None = getattr(_running, "api", None)
    _running.api = api
    _running.raised = None
    return previous


def raised_here() -> BaseException | None:
    """The exception a host function raised on this thread since `running`, if any. wasmtime-py carries a host
    function's exception back to the caller in one process-wide variable, so two threads trapping at once can
    each be handed the other's (the PocketIC server runs instances on several threads): callers trust this."""
    raised: BaseException | None = getattr(_running, "raised", None)
    _running.raised = None
    return raised


_linkers: dict[tuple[int, bool], tuple[wasmtime.Engine, wasmtime.Linker]] = {}
_linkers_lock = threading.Lock()


def linker(engine: wasmtime.Engine, memory64: bool) -> wasmtime.Linker:
    """The `ic0` imports for modules of this memory width, defined once per engine and shared by every instance.

    Defining a hundred host functions costs several times what instantiating does, and an instance is rebuilt
    after every query that grew memory. A shared host function cannot be bound to one runtime, so it serves the
    thread's `running` SystemApi; it holds no runtime either, so a dropped replica frees its canisters' memory
    (wasmtime keeps host functions in a process-wide table). The engine is kept with its linker: engines are
    few (one per process, `runtime.shared_engine`), and an id is never reused while it is held."""
    key = (id(engine), memory64)
    with _linkers_lock:
        entry = _linkers.get(key)
        if entry is None:
            made = wasmtime.Linker(engine)
            for name in sorted(provided(memory64)):
                made.define_func("ic0", name, func_type(name, memory64), _host(name, memory64))
            _linkers[key] = entry = (engine, made)
        return entry[1]


def _host(name: str, memory64: bool) -> Callable[..., Any]:
    impl = getattr(SystemApi, f"ic0_{name}")
    check = SystemApi._check
    # wasmtime passes integers signed; the System API reads them unsigned (pointers, sizes, amounts)
    masks, bits = _conversions(name, memory64)
    half, full = (1 << (bits - 1), 1 << bits) if bits else (0, 0)
    outside = f'"ic0.{name}" called outside of a message execution'

    def host(*args: int) -> Any:
        this = getattr(_running, "api", None)
        if this is None:
            raise Trap(outside, ErrorCode.CANISTER_CONTRACT_VIOLATION)
        try:
            result = impl(this, check(this, name), *[a & m for a, m in zip(args, masks)])
        except BaseException as exc:
            _running.raised = exc
            raise
        if bits:
            result &= full - 1
            return result - full if result >= half else result
        return None

    return host
