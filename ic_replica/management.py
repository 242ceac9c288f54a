"""The management canister (`aaaaa-aa`): canister lifecycle, code installation, status, chunks, logs,
snapshots, threshold signatures.

Reached by users (ingress) and by canisters (inter-canister requests) through the same `handle`; every
method that changes or reveals a canister checks that the caller controls it (or, where the canister's
visibility settings allow, may view it). Arguments are decoded at their `ic.did` types (the current `ic.did`
of the interface specification, written out below; the Candid decoder checks wire types and caps its work by
the argument's size): a mistyped argument is an IC0408 reject, never an exception inside a round.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Any

import wasmtime

from ic_replica import candid, http_outcalls, snapshots, threshold_keys
from ic_replica.candid import (
    BLOB,
    BOOL,
    FLOAT32,
    FLOAT64,
    INT32,
    INT64,
    NAT,
    NAT64,
    NULL,
    PRINCIPAL,
    RESERVED,
    TEXT,
    Opt,
    Record,
    Variant,
    Vec,
)
from ic_replica.canister import Canister, Status
from ic_replica.context import ExecutionContext, Kind, Trap
from ic_replica.errors import CallRejected, ErrorCode, Reject, RejectCode, reject_for
from ic_replica.messages import Request
from ic_replica.principal import Principal, canister_index
from ic_replica.runtime import WasmRuntime
from ic_replica.stable_memory import StableMemory
from ic_replica.system_api import import_problems
from ic_replica.wasm_module import InvalidModule, ModuleInfo, decompress, prepare

if TYPE_CHECKING:
    from ic_replica.replica import Replica

MAX_CONTROLLERS = 10
MAX_CHUNK_BYTES = 1024 * 1024
MAX_CHUNKS = 100  # the IC's chunk store holds 100 MiB: 100 chunks of at most 1 MiB
MAX_CYCLES = (1 << 128) - 1  # cycles are a nat128 on the IC
MAX_LOG_MEMORY_LIMIT = 2 * 1024 * 1024
MAX_WASM_MEMORY_THRESHOLD = 1 << 48
MAX_ENV_VARS = 20
MAX_ENV_NAME, MAX_ENV_VALUE = 128, 128
# error codes of the IC's `ErrorCode` not in errors.py (which another part of the replica owns)
CANISTER_SNAPSHOT_NOT_FOUND = "IC0305"
CANISTER_NOT_HOSTED_BY_SUBNET = "IC0405"
CANISTER_ALREADY_INSTALLED = "IC0538"
MAINNET_CANISTER_INDEX_LIMIT = 1 << 63  # canister ids below this are the IC's own ranges (no subnet holds more)

# ---------------------------------------------------------------- candid types (ic.did)

VISIBILITY = Variant.of(controllers=NULL, public=NULL, allowed_viewers=Vec(PRINCIPAL))
ENV_VAR = Record.of(name=TEXT, value=TEXT)
CANISTER_SETTINGS = Record.of(
    controllers=Opt(Vec(PRINCIPAL)), compute_allocation=Opt(NAT), memory_allocation=Opt(NAT),
    freezing_threshold=Opt(NAT), reserved_cycles_limit=Opt(NAT), minimum_incoming_canister_call_cycles=Opt(NAT),
    log_visibility=Opt(VISIBILITY), log_memory_limit=Opt(NAT), snapshot_visibility=Opt(VISIBILITY),
    status_visibility=Opt(VISIBILITY), wasm_memory_limit=Opt(NAT), wasm_memory_threshold=Opt(NAT),
    environment_variables=Opt(Vec(ENV_VAR)),
)
DEFINITE_SETTINGS = Record.of(
    controllers=Vec(PRINCIPAL), compute_allocation=NAT, memory_allocation=NAT, freezing_threshold=NAT,
    reserved_cycles_limit=NAT, minimum_incoming_canister_call_cycles=NAT, log_visibility=VISIBILITY,
    log_memory_limit=NAT, snapshot_visibility=VISIBILITY, status_visibility=VISIBILITY, wasm_memory_limit=NAT,
    wasm_memory_threshold=NAT, environment_variables=Vec(ENV_VAR),
)
CANISTER_ID_ARGS = Record.of(canister_id=PRINCIPAL)
CREATE_RESULT = Record.of(canister_id=PRINCIPAL)
PROVISIONAL_CREATE_ARGS = Record.of(amount=Opt(NAT), settings=Opt(CANISTER_SETTINGS), specified_id=Opt(PRINCIPAL),
                                    sender_canister_version=Opt(NAT64))
CREATE_ARGS = Record.of(settings=Opt(CANISTER_SETTINGS), sender_canister_version=Opt(NAT64))
INSTALL_MODE = Variant.of(
    install=NULL, reinstall=NULL,
    upgrade=Opt(Record.of(skip_pre_upgrade=Opt(BOOL),
                          wasm_memory_persistence=Opt(Variant.of(keep=NULL, replace=NULL)))),
)
INSTALL_CODE_ARGS = Record.of(mode=INSTALL_MODE, canister_id=PRINCIPAL, wasm_module=BLOB, arg=BLOB,
                              sender_canister_version=Opt(NAT64))
CHUNK_HASH = Record.of(hash=BLOB)
INSTALL_CHUNKED_ARGS = Record.of(mode=INSTALL_MODE, target_canister=PRINCIPAL, store_canister=Opt(PRINCIPAL),
                                 chunk_hashes_list=Vec(CHUNK_HASH), wasm_module_hash=BLOB, arg=BLOB,
                                 sender_canister_version=Opt(NAT64))
UPLOAD_CHUNK_ARGS = Record.of(canister_id=PRINCIPAL, chunk=BLOB)
UNINSTALL_ARGS = Record.of(canister_id=PRINCIPAL, sender_canister_version=Opt(NAT64))
UPDATE_SETTINGS_ARGS = Record.of(canister_id=PRINCIPAL, settings=CANISTER_SETTINGS,
                                 sender_canister_version=Opt(NAT64))
CANISTER_STATUS_RESULT = Record.of(
    status=Variant.of(running=NULL, stopping=NULL, stopped=NULL), ready_for_migration=BOOL, version=NAT64,
    settings=DEFINITE_SETTINGS, module_hash=Opt(BLOB), memory_size=NAT,
    memory_metrics=Record.of(wasm_memory_size=NAT, stable_memory_size=NAT, global_memory_size=NAT,
                             wasm_binary_size=NAT, custom_sections_size=NAT, canister_history_size=NAT,
                             wasm_chunk_store_size=NAT, snapshots_size=NAT, log_memory_store_size=NAT),
    cycles=NAT, reserved_cycles=NAT, idle_cycles_burned_per_day=NAT,
    query_stats=Record.of(num_calls_total=NAT, num_instructions_total=NAT, request_payload_bytes_total=NAT,
                          response_payload_bytes_total=NAT),
)
CHANGE_ORIGIN = Variant.of(from_user=Record.of(user_id=PRINCIPAL),
                           from_canister=Record.of(canister_id=PRINCIPAL, canister_version=Opt(NAT64)))
CHANGE_DETAILS = Variant.of(
    creation=Record.of(controllers=Vec(PRINCIPAL), environment_variables_hash=Opt(BLOB)),
    code_uninstall=NULL,
    code_deployment=Record.of(mode=Variant.of(install=NULL, reinstall=NULL, upgrade=NULL), module_hash=BLOB),
    load_snapshot=Record.of(from_canister_id=Opt(PRINCIPAL), snapshot_id=BLOB, canister_version=NAT64,
                            taken_at_timestamp=NAT64,
                            source=Variant.of(taken_from_canister=RESERVED, metadata_upload=RESERVED)),
    controllers_change=Record.of(controllers=Vec(PRINCIPAL)),
    rename_canister=Record.of(canister_id=PRINCIPAL, total_num_changes=NAT64,
                              rename_to=Record.of(canister_id=PRINCIPAL, version=NAT64, total_num_changes=NAT64),
                              requested_by=PRINCIPAL),
)
CHANGE = Record.of(timestamp_nanos=NAT64, canister_version=NAT64, origin=CHANGE_ORIGIN, details=Opt(CHANGE_DETAILS))
CANISTER_INFO_ARGS = Record.of(canister_id=PRINCIPAL, num_requested_changes=Opt(NAT64))
CANISTER_INFO_RESULT = Record.of(total_num_changes=NAT64, recent_changes=Vec(CHANGE), module_hash=Opt(BLOB),
                                 controllers=Vec(PRINCIPAL))
CANISTER_METADATA_ARGS = Record.of(canister_id=PRINCIPAL, name=TEXT)
CANISTER_METADATA_RESULT = Record.of(value=BLOB)
LOG_RANGE = Record.of(start=NAT64, end=NAT64)
FETCH_LOGS_ARGS = Record.of(canister_id=PRINCIPAL,
                            filter=Opt(Variant.of(by_idx=LOG_RANGE, by_timestamp_nanos=LOG_RANGE)))
FETCH_LOGS_RESULT = Record.of(canister_log_records=Vec(Record.of(idx=NAT64, timestamp_nanos=NAT64, content=BLOB)))
TOP_UP_ARGS = Record.of(canister_id=PRINCIPAL, amount=NAT)
SNAPSHOT = Record.of(id=BLOB, taken_at_timestamp=NAT64, total_size=NAT64)
TAKE_SNAPSHOT_ARGS = Record.of(canister_id=PRINCIPAL, replace_snapshot=Opt(BLOB), uninstall_code=Opt(BOOL),
                               sender_canister_version=Opt(NAT64))
LOAD_SNAPSHOT_ARGS = Record.of(canister_id=PRINCIPAL, snapshot_id=BLOB, sender_canister_version=Opt(NAT64))
DELETE_SNAPSHOT_ARGS = Record.of(canister_id=PRINCIPAL, snapshot_id=BLOB)
ECDSA_KEY_ID = Record.of(curve=Variant.of(secp256k1=NULL), name=TEXT)
SCHNORR_KEY_ID = Record.of(algorithm=Variant.of(bip340secp256k1=NULL, ed25519=NULL), name=TEXT)
ECDSA_PUBLIC_KEY_ARGS = Record.of(canister_id=Opt(PRINCIPAL), derivation_path=Vec(BLOB), key_id=ECDSA_KEY_ID)
SCHNORR_PUBLIC_KEY_ARGS = Record.of(canister_id=Opt(PRINCIPAL), derivation_path=Vec(BLOB), key_id=SCHNORR_KEY_ID)
PUBLIC_KEY_RESULT = Record.of(public_key=BLOB, chain_code=BLOB)
SIGN_WITH_ECDSA_ARGS = Record.of(message_hash=BLOB, derivation_path=Vec(BLOB), key_id=ECDSA_KEY_ID)
SCHNORR_AUX = Variant.of(bip341=Record.of(merkle_root_hash=BLOB))
SIGN_WITH_SCHNORR_ARGS = Record.of(message=BLOB, derivation_path=Vec(BLOB), key_id=SCHNORR_KEY_ID, aux=Opt(SCHNORR_AUX))
SIGNATURE_RESULT = Record.of(signature=BLOB)
SUBNET_INFO_ARGS = Record.of(subnet_id=PRINCIPAL)
SUBNET_INFO_RESULT = Record.of(replica_version=TEXT, registry_version=NAT64)
CYCLES_CONSUMED = Record.of(memory=NAT, compute_allocation=NAT, ingress_induction=NAT, instructions=NAT,
                            request_and_response_transmission=NAT, uninstall=NAT, canister_creation=NAT,
                            http_outcalls=NAT, burned_cycles=NAT)
CANISTER_METRICS_RESULT = Record.of(cycles_consumed=CYCLES_CONSUMED)
SNAPSHOT_GLOBAL = Variant.of(i32=INT32, i64=INT64, f32=FLOAT32, f64=FLOAT64, v128=NAT)
SNAPSHOT_SOURCE = Variant.of(taken_from_canister=RESERVED, metadata_upload=RESERVED)
SNAPSHOT_TIMER = Variant.of(inactive=NULL, active=NAT64)
LOW_MEMORY_HOOK = Variant.of(condition_not_satisfied=NULL, ready=NULL, executed=NULL)
READ_SNAPSHOT_METADATA_ARGS = Record.of(canister_id=PRINCIPAL, snapshot_id=BLOB)
READ_SNAPSHOT_METADATA_RESULT = Record.of(
    source=Opt(SNAPSHOT_SOURCE), taken_at_timestamp=NAT64, wasm_module_size=NAT64, globals=Vec(Opt(SNAPSHOT_GLOBAL)),
    wasm_memory_size=NAT64, stable_memory_size=NAT64, wasm_chunk_store=Vec(CHUNK_HASH), canister_version=NAT64,
    certified_data=BLOB, global_timer=Opt(SNAPSHOT_TIMER), on_low_wasm_memory_hook_status=Opt(LOW_MEMORY_HOOK))
SLICE = Record.of(offset=NAT64, size=NAT64)
READ_SNAPSHOT_DATA_ARGS = Record.of(canister_id=PRINCIPAL, snapshot_id=BLOB, kind=Variant.of(
    wasm_module=SLICE, wasm_memory=SLICE, stable_memory=SLICE, wasm_chunk=Record.of(hash=BLOB)))
READ_SNAPSHOT_DATA_RESULT = Record.of(chunk=BLOB)
UPLOAD_SNAPSHOT_METADATA_ARGS = Record.of(
    canister_id=PRINCIPAL, replace_snapshot=Opt(BLOB), wasm_module_size=NAT64, globals=Vec(SNAPSHOT_GLOBAL),
    wasm_memory_size=NAT64, stable_memory_size=NAT64, certified_data=BLOB, global_timer=Opt(SNAPSHOT_TIMER),
    on_low_wasm_memory_hook_status=Opt(LOW_MEMORY_HOOK))
UPLOAD_SNAPSHOT_METADATA_RESULT = Record.of(snapshot_id=BLOB)
OFFSET = Record.of(offset=NAT64)
UPLOAD_SNAPSHOT_DATA_ARGS = Record.of(canister_id=PRINCIPAL, snapshot_id=BLOB, kind=Variant.of(
    wasm_module=OFFSET, wasm_memory=OFFSET, stable_memory=OFFSET, wasm_chunk=NULL), chunk=BLOB)


class ManagementError(Exception):
    """A management call rejected with a reason."""

    def __init__(self, reject: Reject) -> None:
        super().__init__(reject.message)
        self.reject = reject


def _fail(error_code: str, message: str) -> ManagementError:
    return ManagementError(reject_for(error_code, message))


DEFER = object()  # the response comes later (stop_canister)

# method -> (argument type, ingress allowed, needs controller of the canister named in the argument)
_METHODS: dict[str, tuple[candid.Type, bool]] = {
    "provisional_create_canister_with_cycles": (PROVISIONAL_CREATE_ARGS, True),
    "provisional_top_up_canister": (TOP_UP_ARGS, True),
    "create_canister": (CREATE_ARGS, False),
    "install_code": (INSTALL_CODE_ARGS, True),
    "install_chunked_code": (INSTALL_CHUNKED_ARGS, True),
    "upload_chunk": (UPLOAD_CHUNK_ARGS, True),
    "clear_chunk_store": (CANISTER_ID_ARGS, True),
    "stored_chunks": (CANISTER_ID_ARGS, True),
    "uninstall_code": (UNINSTALL_ARGS, True),
    "canister_status": (CANISTER_ID_ARGS, True),
    "update_settings": (UPDATE_SETTINGS_ARGS, True),
    "start_canister": (CANISTER_ID_ARGS, True),
    "stop_canister": (CANISTER_ID_ARGS, True),
    "delete_canister": (CANISTER_ID_ARGS, True),
    "deposit_cycles": (CANISTER_ID_ARGS, False),
    "raw_rand": (Record(()), False),
    "canister_info": (CANISTER_INFO_ARGS, False),
    "canister_metadata": (CANISTER_METADATA_ARGS, False),
    "take_canister_snapshot": (TAKE_SNAPSHOT_ARGS, True),
    "load_canister_snapshot": (LOAD_SNAPSHOT_ARGS, True),
    "list_canister_snapshots": (CANISTER_ID_ARGS, True),
    "delete_canister_snapshot": (DELETE_SNAPSHOT_ARGS, True),
    "read_canister_snapshot_metadata": (READ_SNAPSHOT_METADATA_ARGS, True),
    "read_canister_snapshot_data": (READ_SNAPSHOT_DATA_ARGS, True),
    "upload_canister_snapshot_metadata": (UPLOAD_SNAPSHOT_METADATA_ARGS, True),
    "upload_canister_snapshot_data": (UPLOAD_SNAPSHOT_DATA_ARGS, True),
    "subnet_info": (SUBNET_INFO_ARGS, False),
    "canister_metrics": (CANISTER_ID_ARGS, True),
    "ecdsa_public_key": (ECDSA_PUBLIC_KEY_ARGS, False),
    "sign_with_ecdsa": (SIGN_WITH_ECDSA_ARGS, False),
    "schnorr_public_key": (SCHNORR_PUBLIC_KEY_ARGS, False),
    "sign_with_schnorr": (SIGN_WITH_SCHNORR_ARGS, False),
    "http_request": (http_outcalls.ARGS, False),
}


METHOD_NAMES = frozenset(_METHODS)


def decode_args(method: str, arg: bytes) -> dict[str, Any]:
    arg_type = _METHODS[method][0]
    try:
        if method == "raw_rand":  # `() -> (blob)`: any well-formed Candid message (extra arguments are skipped)
            candid.decode(arg, [])
            return {}
        return candid.decode(arg, [arg_type])[0]  # type: ignore[no-any-return]
    except candid.CandidError as exc:
        raise _fail(ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
                    f"Error decoding candid arguments of management method '{method}': {exc}") from exc


def target_of(args: dict[str, Any]) -> bytes | None:
    """The canister a management call is about (its effective canister id), if it names one."""
    p = args.get("canister_id") or args.get("target_canister")
    return p.raw if isinstance(p, Principal) else None


def check_ingress(replica: Replica, sender: bytes, method: str, arg: bytes, effective: object) -> None:
    """Reject at submission what the IC would never accept from a user."""
    if method not in _METHODS:
        raise CallRejected(reject_for(ErrorCode.UNKNOWN_MANAGEMENT_MESSAGE,
                                      f"Management canister has no method '{method}'"))
    if not _METHODS[method][1]:
        raise CallRejected(reject_for(ErrorCode.CANISTER_REJECTED_MESSAGE,
                                      f"Only canisters can call ic00 method {method}"))
    try:
        args = decode_args(method, arg)
    except ManagementError as exc:
        raise CallRejected(exc.reject) from exc
    target = target_of(args)
    if target is not None and target not in replica.canisters:
        raise CallRejected(reject_for(ErrorCode.CANISTER_NOT_FOUND, f"Canister {Principal(target)} not found."))


def handle(replica: Replica, req: Request) -> None:
    """Execute a management call and deliver its response (or defer it, for stop_canister)."""
    origin: tuple = ("ingress", req.message_id) if req.is_ingress else ("canister", req.src, req.callback_id)
    try:
        if req.method not in _METHODS:
            raise _fail(ErrorCode.UNKNOWN_MANAGEMENT_MESSAGE, f"Management canister has no method '{req.method}'")
        if req.is_ingress and not _METHODS[req.method][1]:
            raise _fail(ErrorCode.CANISTER_REJECTED_MESSAGE, f"Only canisters can call ic00 method {req.method}")
        args = decode_args(req.method, req.arg)
        result = _HANDLERS[req.method](replica, req, origin, args)
    except ManagementError as exc:
        replica.respond(origin, reject=exc.reject, refund=req.cycles)
        return
    if isinstance(result, bytes):  # otherwise DEFER: stop_canister answers when the canister has stopped
        replica.respond(origin, reply=result, refund=0 if req.method in _KEEPS_CYCLES else req.cycles)


_QUERY_METHODS = {"fetch_canister_logs": FETCH_LOGS_ARGS, "canister_status": CANISTER_ID_ARGS,
                  "canister_metrics": CANISTER_ID_ARGS}


def query(replica: Replica, sender: bytes, method: str, arg: bytes, effective: object) -> bytes:
    """The management canister's query methods for users: fetch_canister_logs, canister_status,
    canister_metrics. A canister-only method (canister_info: "Users cannot call this method") is rejected as
    the IC rejects it from a user."""
    if method in _METHODS and not _METHODS[method][1]:
        raise CallRejected(reject_for(ErrorCode.CANISTER_REJECTED_MESSAGE,
                                      f"Only canisters can call ic00 method {method}"))
    if method not in _QUERY_METHODS:
        raise CallRejected(reject_for(ErrorCode.CANISTER_METHOD_NOT_FOUND,
                                      f"Management canister has no query method '{method}'"))
    try:
        try:
            args = candid.decode(arg, [_QUERY_METHODS[method]])[0]
        except candid.CandidError as exc:
            raise _fail(ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
                        f"Error decoding candid arguments of management method '{method}': {exc}") from exc
        canister = _canister(replica, args["canister_id"].raw)
        if method == "canister_status":
            _require_viewer(canister, sender, "status_visibility")
            return candid.encode([CANISTER_STATUS_RESULT], [status_record(canister)])
        if method == "canister_metrics":
            _require_viewer(canister, sender, "status_visibility")
            return _metrics_reply()
        _require_viewer(canister, sender, "log_visibility")
        return logs_reply(canister, args)
    except ManagementError as exc:
        raise CallRejected(exc.reject) from exc


def logs_reply(canister: Canister, args: dict[str, Any]) -> bytes:
    records = list(canister.logs)
    if args.get("filter"):
        kind, bounds = next(iter(args["filter"][0].items()))
        start, end = bounds["start"], bounds["end"]  # a half-open range [start, end)
        field_of = (lambda r: r.idx) if kind == "by_idx" else (lambda r: r.timestamp_nanos)
        records = [r for r in records if start <= field_of(r) < end]
    values = [{"idx": r.idx, "timestamp_nanos": r.timestamp_nanos, "content": r.content} for r in records]
    return candid.encode([FETCH_LOGS_RESULT], [{"canister_log_records": values}])


# ---------------------------------------------------------------- helpers


def _canister(replica: Replica, cid: bytes) -> Canister:
    canister = replica.canisters.get(cid)
    if canister is None:
        raise _fail(ErrorCode.CANISTER_NOT_FOUND, f"Canister {Principal(cid)} not found.")
    return canister


def _require_controller(canister: Canister, caller: bytes) -> None:
    if caller not in canister.controllers:
        controllers = " ".join(str(Principal(c)) for c in canister.controllers)
        raise _fail(ErrorCode.CANISTER_INVALID_CONTROLLER,
                    f"Only the controllers of the canister {Principal(canister.canister_id)} can control it.\n"
                    f"Canister's controllers: {controllers}\nSender's ID: {Principal(caller)}")


def _require_viewer(canister: Canister, caller: bytes, setting: str) -> None:
    """Controllers, and whoever the visibility setting lets see what it guards."""
    if canister.may_view(setting, caller):
        return
    if setting != "log_visibility":
        _require_controller(canister, caller)  # as the IC: IC0512, naming the controllers
    raise _fail(ErrorCode.CANISTER_REJECTED_MESSAGE,
                f"Caller {Principal(caller)} is not allowed to query ic00 method fetch_canister_logs")


def _cycles(amount: int) -> int:
    if amount > MAX_CYCLES:
        raise _fail(ErrorCode.INVALID_MANAGEMENT_PAYLOAD, f"{amount} cycles do not fit a nat128")
    return amount


def _controlled(replica: Replica, req: Request, args: dict[str, Any], key: str = "canister_id") -> Canister:
    canister = _canister(replica, args[key].raw)
    _require_controller(canister, req.src)
    return canister


def _change_origin(replica: Replica, req: Request) -> tuple:
    if req.is_ingress:
        return ("user", req.src)
    caller = replica.canisters.get(req.src)
    return ("canister", req.src, caller.version if caller else None)


def _controllers_from(settings: dict[str, Any] | None, default: list[bytes]) -> list[bytes]:
    if settings and settings.get("controllers"):
        controllers = [p.raw for p in settings["controllers"][0]]
        if len(controllers) > MAX_CONTROLLERS:
            raise _fail(ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
                        f"Invalid settings: at most {MAX_CONTROLLERS} controllers are allowed, got {len(controllers)}")
        return list(dict.fromkeys(controllers))
    return default


_SETTING_BOUNDS = {"compute_allocation": 100, "memory_allocation": 1 << 48, "freezing_threshold": (1 << 64) - 1,
                   "reserved_cycles_limit": MAX_CYCLES, "minimum_incoming_canister_call_cycles": MAX_CYCLES,
                   "log_memory_limit": MAX_LOG_MEMORY_LIMIT, "wasm_memory_limit": 1 << 48,
                   "wasm_memory_threshold": MAX_WASM_MEMORY_THRESHOLD}


def _check_settings(settings: dict[str, Any]) -> None:
    """Validate every field before any is applied (a bad one changes nothing)."""
    for name, bound in _SETTING_BOUNDS.items():
        if settings.get(name) and settings[name][0] > bound:
            raise _fail(ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
                        f"Invalid settings: {name} must be at most {bound}, got {settings[name][0]}")
    for name in ("log_visibility", "snapshot_visibility", "status_visibility"):
        if settings.get(name):
            viewers = settings[name][0].get("allowed_viewers")
            if viewers is not None and len(viewers) > MAX_CONTROLLERS:
                raise _fail(ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
                            f"Invalid settings: at most {MAX_CONTROLLERS} allowed viewers, got {len(viewers)}")
    if settings.get("environment_variables"):
        env = settings["environment_variables"][0]
        if len(env) > MAX_ENV_VARS:
            raise _fail(ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
                        f"Invalid settings: at most {MAX_ENV_VARS} environment variables, got {len(env)}")
        for v in env:
            if len(v["name"].encode()) > MAX_ENV_NAME or len(v["value"].encode()) > MAX_ENV_VALUE:
                raise _fail(ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
                            f"Invalid settings: environment variable names and values are at most "
                            f"{MAX_ENV_NAME} bytes ({v['name'][:40]!r})")
        if len({v["name"] for v in env}) != len(env):
            raise _fail(ErrorCode.INVALID_MANAGEMENT_PAYLOAD, "Invalid settings: duplicate environment variable")


def _apply_settings(canister: Canister, settings: dict[str, Any]) -> None:
    _check_settings(settings)
    if settings.get("freezing_threshold"):
        canister.freezing_threshold = settings["freezing_threshold"][0]
    for name in _SETTING_BOUNDS:
        if name != "freezing_threshold" and settings.get(name):
            canister.settings[name] = settings[name][0]
    for name in ("log_visibility", "snapshot_visibility", "status_visibility"):
        if settings.get(name):
            kind, value = next(iter(settings[name][0].items()))
            canister.settings[name] = (kind, [p.raw for p in value] if kind == "allowed_viewers" else [])
    if settings.get("environment_variables"):
        canister.env_vars = {v["name"]: v["value"] for v in settings["environment_variables"][0]}
    if settings.get("log_memory_limit"):
        canister.trim_logs()  # a lower limit drops the oldest records at once


_EMPTY_REPLY = candid.encode([], [])
_EMPTY_HISTORY_BYTES = len(candid.encode([Vec(CHANGE)], [[]]))


# ---------------------------------------------------------------- handlers


def _provisional_create(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    settings = args["settings"][0] if args["settings"] else None
    controllers = _controllers_from(settings, [req.src])
    if settings:
        _check_settings(settings)
    specified = args["specified_id"][0].raw if args["specified_id"] else None
    if specified is not None:
        _check_specified_id(replica, specified)
    amount = _cycles(args["amount"][0]) if args["amount"] else 100_000_000_000_000
    canister = replica.new_canister(controllers, amount, specified)
    if settings:
        _apply_settings(canister, settings)
    canister.record_change(_change_origin(replica, req), ("creation", list(canister.controllers)))
    return candid.encode([CREATE_RESULT], [{"canister_id": Principal(canister.canister_id)}])


def _check_specified_id(replica: Replica, specified: bytes) -> None:
    """As the IC: an id of this subnet's range (or of the IC's own ranges, which this one subnet hosts too, as
    PocketIC hosts mainnet canister ids), not taken yet."""
    if specified in replica.canisters:
        raise _fail(CANISTER_ALREADY_INSTALLED, f"Canister {Principal(specified)} is already installed.")
    index = canister_index(Principal(specified))
    own = replica.next_canister_index >> 20  # this subnet's range: the 2^20 ids its allocation runs in
    if index is None or not (index < MAINNET_CANISTER_INDEX_LIMIT or index >> 20 == own):
        raise _fail(CANISTER_NOT_HOSTED_BY_SUBNET,
                    f"Specified CanisterId {Principal(specified)} is not hosted by subnet "
                    f"{Principal(replica.subnet_id)}.")


def _create(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    settings = args["settings"][0] if args["settings"] else None
    if settings:
        _check_settings(settings)
    canister = replica.new_canister(_controllers_from(settings, [req.src]), req.cycles)
    if settings:
        _apply_settings(canister, settings)
    canister.record_change(_change_origin(replica, req), ("creation", list(canister.controllers)))
    return candid.encode([CREATE_RESULT], [{"canister_id": Principal(canister.canister_id)}])


def _top_up(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    canister = _canister(replica, args["canister_id"].raw)
    canister.cycles = min(canister.cycles + _cycles(args["amount"]), MAX_CYCLES)
    return _EMPTY_REPLY


def _deposit_cycles(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    _canister(replica, args["canister_id"].raw).cycles += req.cycles
    return _EMPTY_REPLY


def install_mode(mode: str, skip_pre_upgrade: bool | None = None,
                 wasm_memory_persistence: str | None = None) -> dict[str, Any]:
    """The `canister_install_mode` Candid value for a mode name and the upgrade options."""
    if mode != "upgrade":
        return {mode: None}
    return {"upgrade": [{
        "skip_pre_upgrade": [skip_pre_upgrade] if skip_pre_upgrade is not None else [],
        "wasm_memory_persistence": [{wasm_memory_persistence: None}] if wasm_memory_persistence else [],
    }]}


def _mode_of(mode: dict[str, Any]) -> tuple[str, bool | None, str | None]:
    name, value = next(iter(mode.items()))
    if name != "upgrade" or not value:
        return name, None, None
    options = value[0]
    skip = options["skip_pre_upgrade"][0] if options.get("skip_pre_upgrade") else None
    persistence = next(iter(options["wasm_memory_persistence"][0])) if options.get("wasm_memory_persistence") else None
    return name, skip, persistence


def _install_code(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    canister = _controlled(replica, req, args)
    mode, skip, persistence = _mode_of(args["mode"])
    install(replica, canister, mode, args["wasm_module"], args["arg"], req, skip, persistence)
    return _EMPTY_REPLY


def _install_chunked(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    target = _controlled(replica, req, args, "target_canister")
    store = target
    if args["store_canister"]:  # the caller controls the store canister, or is it (this subnet holds every canister)
        store = _canister(replica, args["store_canister"][0].raw)
        if req.src != store.canister_id:
            _require_controller(store, req.src)
    parts = []
    for entry in args["chunk_hashes_list"]:
        chunk = store.chunk_store.get(entry["hash"])
        if chunk is None:
            raise _fail(ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
                        f"Error from Wasm chunk store: chunk {entry['hash'].hex()} is not in the chunk store of "
                        f"{Principal(store.canister_id)}")
        parts.append(chunk)
    wasm = b"".join(parts)
    if hashlib.sha256(wasm).digest() != args["wasm_module_hash"]:
        raise _fail(ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
                    f"Error from Wasm chunk store: wasm module hash {hashlib.sha256(wasm).hexdigest()} does not "
                    f"match the expected hash {args['wasm_module_hash'].hex()}")
    mode, skip, persistence = _mode_of(args["mode"])
    install(replica, target, mode, wasm, args["arg"], req, skip, persistence)
    return _EMPTY_REPLY


def _upload_chunk(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    canister = _controlled(replica, req, args)
    chunk = args["chunk"]
    if len(chunk) > MAX_CHUNK_BYTES:
        raise _fail(ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
                    f"Error from Wasm chunk store: chunk is {len(chunk)} bytes, at most {MAX_CHUNK_BYTES}")
    digest = hashlib.sha256(chunk).digest()
    if digest not in canister.chunk_store and len(canister.chunk_store) >= MAX_CHUNKS:
        raise _fail(ErrorCode.INVALID_MANAGEMENT_PAYLOAD, "Error from Wasm chunk store: the chunk store is full")
    canister.chunk_store[digest] = chunk
    return candid.encode([CHUNK_HASH], [{"hash": digest}])


def _clear_chunk_store(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    _controlled(replica, req, args).chunk_store.clear()
    return _EMPTY_REPLY


def _stored_chunks(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    canister = _controlled(replica, req, args)
    return candid.encode([Vec(CHUNK_HASH)], [[{"hash": h} for h in canister.chunk_store]])


def _uninstall(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    canister = _controlled(replica, req, args)
    uninstall(replica, canister)
    canister.record_change(_change_origin(replica, req), ("code_uninstall",))
    return _EMPTY_REPLY


def uninstall(replica: Replica, canister: Canister) -> None:
    """Drop code and memories; open calls are rejected, responses to its own calls will be dropped."""
    for cc in canister.call_contexts.values():
        if cc.needs_to_respond and not cc.deleted:
            cc.needs_to_respond = False
            replica.respond(cc.origin, reject=Reject(RejectCode.CANISTER_REJECT, "Canister has been uninstalled."),
                            refund=cc.available_cycles)
        cc.deleted = True
    canister.call_contexts = {k: cc for k, cc in canister.call_contexts.items() if cc.outstanding > 0}
    canister.runtime, canister.module, canister.wasm = None, None, b""
    canister.stable = StableMemory()
    canister.certified_data, canister.global_timer = b"", 0
    canister.version += 1


def _status(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    canister = _canister(replica, args["canister_id"].raw)
    _require_viewer(canister, req.src, "status_visibility")
    return candid.encode([CANISTER_STATUS_RESULT], [status_record(canister)])


def _visibility_value(setting: tuple[str, list[bytes]]) -> dict[str, Any]:
    kind, viewers = setting
    return {kind: [Principal(v) for v in viewers] if kind == "allowed_viewers" else None}


def status_record(canister: Canister) -> dict[str, Any]:
    """Every field of `canister_status_result` in the current `ic.did`."""
    wasm_memory = canister.runtime.memory_size() if canister.runtime else 0
    settings = canister.settings
    # the history's size: its changes as canister_info encodes them (the IC counts their in-memory size)
    history_size = (len(candid.encode([Vec(CHANGE)], [[_change_value(c) for c in canister.history]]))
                    - _EMPTY_HISTORY_BYTES)
    return {
        "status": {canister.status.value: None},
        "ready_for_migration": False,
        "version": canister.version,
        "settings": {
            "controllers": [Principal(c) for c in canister.controllers],
            "compute_allocation": settings["compute_allocation"],
            "memory_allocation": settings["memory_allocation"], "freezing_threshold": canister.freezing_threshold,
            "reserved_cycles_limit": settings["reserved_cycles_limit"],
            "minimum_incoming_canister_call_cycles": settings["minimum_incoming_canister_call_cycles"],
            "log_visibility": _visibility_value(settings["log_visibility"]),
            "log_memory_limit": settings["log_memory_limit"],
            "snapshot_visibility": _visibility_value(settings["snapshot_visibility"]),
            "status_visibility": _visibility_value(settings["status_visibility"]),
            "wasm_memory_limit": settings["wasm_memory_limit"],
            "wasm_memory_threshold": settings["wasm_memory_threshold"],
            "environment_variables": [{"name": k, "value": v} for k, v in sorted(canister.env_vars.items())],
        },
        "module_hash": [canister.module.module_hash] if canister.module else [],
        # the IC's sum: execution memory (heap, stable, globals, module, custom sections) + system memory
        "memory_size": canister.memory_size() + history_size + _custom_sections_size(canister),
        "memory_metrics": {
            "wasm_memory_size": wasm_memory, "stable_memory_size": canister.stable.size_bytes,
            "global_memory_size": 8 * (canister.module.global_count if canister.module else 0),
            "wasm_binary_size": len(canister.wasm),
            "custom_sections_size": _custom_sections_size(canister),
            "canister_history_size": history_size,
            "wasm_chunk_store_size": sum(len(c) for c in canister.chunk_store.values()),
            "snapshots_size": canister.snapshots_size(),
            "log_memory_store_size": canister.log_memory_store_size(),
        },
        "cycles": canister.cycles, "reserved_cycles": 0, "idle_cycles_burned_per_day": 0,
        "query_stats": {"num_calls_total": 0, "num_instructions_total": 0, "request_payload_bytes_total": 0,
                        "response_payload_bytes_total": 0},
    }


def _custom_sections_size(canister: Canister) -> int:
    if canister.module is None:
        return 0
    sections = canister.module.public_metadata | canister.module.private_metadata
    return sum(len(v) for v in sections.values())


def _update_settings(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    canister = _controlled(replica, req, args)
    settings = args["settings"]
    _check_settings(settings)
    if settings.get("controllers"):
        canister.controllers = _controllers_from(settings, canister.controllers)
        canister.record_change(_change_origin(replica, req), ("controllers_change", list(canister.controllers)))
    _apply_settings(canister, settings)
    canister.version += 1
    return _EMPTY_REPLY


def _start(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    canister = _controlled(replica, req, args)
    if canister.status is Status.STOPPING:
        waiters, canister.stop_waiters = canister.stop_waiters, []
        for waiter in waiters:
            replica.respond(waiter, reject=reject_for(  # type: ignore[arg-type]
                ErrorCode.CANISTER_STOPPING_CANCELLED,
                f"Canister {Principal(canister.canister_id)} has been restarted while stopping"))
    if canister.status is not Status.RUNNING:
        canister.status = Status.RUNNING
        canister.version += 1
    return _EMPTY_REPLY


def _stop(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> object:
    canister = _controlled(replica, req, args)
    if canister.status is Status.STOPPED:
        return _EMPTY_REPLY
    if canister.status is Status.RUNNING:
        canister.status = Status.STOPPING
        canister.version += 1
    canister.stop_waiters.append(origin)
    return DEFER


def _delete(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    canister = _controlled(replica, req, args)
    cid = Principal(canister.canister_id)
    if canister.canister_id == req.src:
        raise _fail(ErrorCode.CANISTER_CONTRACT_VIOLATION, f"Canister {cid} cannot delete itself.")
    if canister.status is not Status.STOPPED:
        raise _fail(ErrorCode.CANISTER_NOT_STOPPED, f"Canister {cid} must be stopped before it is deleted.")
    del replica.canisters[canister.canister_id]
    return _EMPTY_REPLY


def _raw_rand(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    return candid.encode([BLOB], [os.urandom(32)])


REPLICA_VERSION = "ic_replica"


def _subnet_info(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    if args["subnet_id"].raw != replica.subnet_id:
        raise _fail("IC0404", f"Subnet {args['subnet_id']} not found.")  # SubnetNotFound
    return candid.encode([SUBNET_INFO_RESULT], [{"replica_version": REPLICA_VERSION, "registry_version": 1}])


def _metrics_reply() -> bytes:
    """Cycles consumed by kind: all 0, as this replica charges nothing."""
    return candid.encode([CANISTER_METRICS_RESULT], [{"cycles_consumed": {n: 0 for n, _ in CYCLES_CONSUMED.fields}}])


def _canister_metrics(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    _require_viewer(_canister(replica, args["canister_id"].raw), req.src, "status_visibility")
    return _metrics_reply()


def _metadata(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    """A `icp:public` custom section for anyone, an `icp:private` one for controllers."""
    canister = _canister(replica, args["canister_id"].raw)
    name, module = args["name"], canister.module
    if module is not None and name in module.public_metadata:
        return candid.encode([CANISTER_METADATA_RESULT], [{"value": module.public_metadata[name]}])
    if module is not None and name in module.private_metadata:
        _require_controller(canister, req.src)
        return candid.encode([CANISTER_METADATA_RESULT], [{"value": module.private_metadata[name]}])
    raise _fail(ErrorCode.CANISTER_CONTRACT_VIOLATION,
                f"Custom section {name} not found in the Wasm module of canister {Principal(canister.canister_id)}")


# ---------------------------------------------------------------- snapshots


def _snapshot_value(snap: snapshots.CanisterSnapshot) -> dict[str, Any]:
    return {"id": snap.snapshot_id, "taken_at_timestamp": snap.taken_at_timestamp, "total_size": snap.total_size}


def _find_snapshot(canister: Canister, snapshot_id: bytes) -> snapshots.CanisterSnapshot:
    snap = canister.snapshots.get(snapshot_id)
    if snap is None:
        if len(snapshot_id) > 8 and snapshot_id[8:] != canister.canister_id:
            raise _fail(ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
                        f"The snapshot {snapshot_id.hex()} does not belong to canister "
                        f"{Principal(canister.canister_id)}")
        raise _fail(CANISTER_SNAPSHOT_NOT_FOUND, f"Could not find the snapshot ID {snapshot_id.hex()} for canister "
                                                 f"{Principal(canister.canister_id)}.")
    return snap


def _take_snapshot(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    canister = _controlled(replica, req, args)
    cid = Principal(canister.canister_id)
    replaced = _find_snapshot(canister, args["replace_snapshot"][0]) if args["replace_snapshot"] else None
    if canister.runtime is None:
        raise _fail(ErrorCode.CANISTER_CONTRACT_VIOLATION, f"Canister {cid} is empty: it has no state to snapshot.")
    if replaced is None and len(canister.snapshots) >= snapshots.MAX_SNAPSHOTS_PER_CANISTER:
        raise _fail(ErrorCode.CANISTER_REJECTED_MESSAGE,
                    f"Canister {cid} has reached the maximum number of snapshots allowed: "
                    f"{snapshots.MAX_SNAPSHOTS_PER_CANISTER}.")
    snap = snapshots.take(canister, canister.next_snapshot_id, replica.time_ns)
    canister.next_snapshot_id += 1
    if replaced is not None:
        del canister.snapshots[replaced.snapshot_id]
    canister.snapshots[snap.snapshot_id] = snap
    if args.get("uninstall_code") and args["uninstall_code"][0]:
        uninstall(replica, canister)
        canister.record_change(_change_origin(replica, req), ("code_uninstall",))
    return candid.encode([SNAPSHOT], [_snapshot_value(snap)])


def _load_snapshot(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    """Load a snapshot of this canister, or (as the IC allows) of another canister the caller also controls."""
    canister = _controlled(replica, req, args)
    snapshot_id, owner = args["snapshot_id"], canister
    if len(snapshot_id) > 8 and snapshot_id[8:] != canister.canister_id and snapshot_id[8:] in replica.canisters:
        owner = replica.canisters[snapshot_id[8:]]
        if req.src not in owner.controllers:
            raise _fail(ErrorCode.CANISTER_INVALID_CONTROLLER,
                        f"Only a controller of the canister that snapshot {snapshot_id.hex()} belongs to can load it "
                        f"on canister {Principal(canister.canister_id)}. Sender: {Principal(req.src)}.")
    snap = _find_snapshot(owner, snapshot_id)
    module = snap.module if snap.module is not None else load_module(replica, bytes(snap.wasm))  # uploaded
    try:
        snapshots.load(canister, snap, module)
    except snapshots.SnapshotMismatch as exc:
        raise _fail(ErrorCode.INVALID_MANAGEMENT_PAYLOAD, f"Snapshot {snapshot_id.hex()} cannot be loaded: {exc}") \
            from None
    except wasmtime.WasmtimeError as exc:  # the module compiled before; only a resource failure gets here
        raise _fail(ErrorCode.CANISTER_INVALID_WASM,
                    f"Snapshot could not be loaded: {str(exc).splitlines()[0]}") from None
    canister.version += 1
    source = owner.canister_id if owner is not canister else b""
    canister.record_change(_change_origin(replica, req),
                           ("load_snapshot", snap.snapshot_id, snap.canister_version, snap.taken_at_timestamp, source))
    return _EMPTY_REPLY


def _list_snapshots(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    canister = _canister(replica, args["canister_id"].raw)
    _require_viewer(canister, req.src, "snapshot_visibility")
    return candid.encode([Vec(SNAPSHOT)], [[_snapshot_value(s) for s in canister.snapshots.values()]])


def _global_value(kind: str, value: int | float | None) -> dict[str, Any]:
    return {kind: value if kind != "v128" else int(value or 0)}


def _read_snapshot_metadata(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    canister = _canister(replica, args["canister_id"].raw)
    _require_viewer(canister, req.src, "snapshot_visibility")
    snap = _find_snapshot(canister, args["snapshot_id"])
    timer = {"active": snap.global_timer} if snap.global_timer else {"inactive": None}
    return candid.encode([READ_SNAPSHOT_METADATA_RESULT], [{
        "source": [{snap.source: None}], "taken_at_timestamp": snap.taken_at_timestamp,
        "wasm_module_size": len(snap.wasm),
        "globals": [[_global_value(t, v)] for t, v in zip(snap.global_types, snap.globals)],
        "wasm_memory_size": len(snap.heap), "stable_memory_size": snap.stable_size,
        "wasm_chunk_store": [{"hash": h} for h in snap.chunk_store], "canister_version": snap.canister_version,
        "certified_data": snap.certified_data, "global_timer": [timer],
        "on_low_wasm_memory_hook_status": [{"condition_not_satisfied": None}],
    }])


def _slice(what: str, length: int, offset: int, size: int) -> None:
    if size > snapshots.MAX_SLICE:
        raise _fail(ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
                    f"Invalid snapshot data slice: {size} bytes, at most {snapshots.MAX_SLICE} per call")
    if offset + size > length:
        raise _fail(ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
                    f"Invalid snapshot data slice: offset {offset} + size {size} is past the end of the {what} "
                    f"({length} bytes)")


def _read_snapshot_data(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    canister = _canister(replica, args["canister_id"].raw)
    _require_viewer(canister, req.src, "snapshot_visibility")
    snap = _find_snapshot(canister, args["snapshot_id"])
    kind, where = next(iter(args["kind"].items()))
    if kind == "wasm_chunk":
        chunk = snap.chunk_store.get(where["hash"])
        if chunk is None:
            raise _fail(ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
                        f"The snapshot's chunk store has no chunk {where['hash'].hex()}")
        return candid.encode([READ_SNAPSHOT_DATA_RESULT], [{"chunk": chunk}])
    offset, size = where["offset"], where["size"]
    if kind == "stable_memory":
        _slice("stable memory", snap.stable_size, offset, size)
        data = snap.read_stable(offset, size)
    else:
        source = snap.wasm if kind == "wasm_module" else snap.heap
        _slice(kind.replace("_", " "), len(source), offset, size)
        data = bytes(source[offset : offset + size])
    return candid.encode([READ_SNAPSHOT_DATA_RESULT], [{"chunk": data}])


MAX_UPLOADED_MODULE = 100 * 1024 * 1024
MAX_UPLOADED_MEMORY = 1 << 36  # 64 GiB: the IC's largest Wasm memory (wasm64) and stable memory


def _upload_snapshot_metadata(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    """A snapshot to be filled by upload_canister_snapshot_data, then loaded; checked against its module then."""
    canister = _controlled(replica, req, args)
    replaced = _find_snapshot(canister, args["replace_snapshot"][0]) if args["replace_snapshot"] else None
    if replaced is None and len(canister.snapshots) >= snapshots.MAX_SNAPSHOTS_PER_CANISTER:
        raise _fail(ErrorCode.CANISTER_REJECTED_MESSAGE,
                    f"Canister {Principal(canister.canister_id)} has reached the maximum number of snapshots "
                    f"allowed: {snapshots.MAX_SNAPSHOTS_PER_CANISTER}.")
    memory, stable = args["wasm_memory_size"], args["stable_memory_size"]
    if args["wasm_module_size"] > MAX_UPLOADED_MODULE or memory > MAX_UPLOADED_MEMORY or stable > MAX_UPLOADED_MEMORY:
        raise _fail(ErrorCode.INVALID_MANAGEMENT_PAYLOAD, "Snapshot metadata: a size is over the IC's limits")
    if memory % (64 * 1024) or stable % (64 * 1024):
        raise _fail(ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
                    "Snapshot metadata: memory sizes must be whole 64 KiB pages")
    if len(args["certified_data"]) > 32:
        raise _fail(ErrorCode.INVALID_MANAGEMENT_PAYLOAD, "Snapshot metadata: certified data is at most 32 bytes")
    if memory > 4 * 1024 ** 3:  # held in this process's memory: keep what a test may upload reasonable
        raise _fail(ErrorCode.INVALID_MANAGEMENT_PAYLOAD, "Snapshot metadata: this replica takes Wasm memories "
                                                          "of at most 4 GiB")
    globals_ = [next(iter(g.items())) for g in args["globals"]]
    timer = args["global_timer"][0] if args["global_timer"] else {"inactive": None}
    snap = snapshots.CanisterSnapshot(
        snapshot_id=snapshots.snapshot_id(canister.next_snapshot_id, canister.canister_id),
        taken_at_timestamp=replica.time_ns, canister_version=canister.version,
        wasm=bytearray(args["wasm_module_size"]), module=None, heap=bytearray(memory),
        globals=[v for _, v in globals_], stable_chunks={}, stable_pages=stable // (64 * 1024),
        certified_data=args["certified_data"], global_timer=timer.get("active") or 0,
        global_types=[t for t, _ in globals_], source="metadata_upload")
    canister.next_snapshot_id += 1
    if replaced is not None:
        del canister.snapshots[replaced.snapshot_id]
    canister.snapshots[snap.snapshot_id] = snap
    return candid.encode([UPLOAD_SNAPSHOT_METADATA_RESULT], [{"snapshot_id": snap.snapshot_id}])


def _upload_snapshot_data(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    canister = _controlled(replica, req, args)
    snap = _find_snapshot(canister, args["snapshot_id"])
    if snap.source != "metadata_upload":
        raise _fail(ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
                    f"Snapshot {snap.snapshot_id.hex()} was taken from the canister: only uploaded snapshots take data")
    kind, where = next(iter(args["kind"].items()))
    chunk = args["chunk"]
    if kind == "wasm_chunk":
        if len(chunk) > MAX_CHUNK_BYTES or len(snap.chunk_store) >= MAX_CHUNKS:
            raise _fail(ErrorCode.INVALID_MANAGEMENT_PAYLOAD, "Error from Wasm chunk store: chunk too large or "
                                                              "store full")
        snap.chunk_store[hashlib.sha256(chunk).digest()] = chunk
        return _EMPTY_REPLY
    offset = where["offset"]
    if kind == "stable_memory":
        _slice("stable memory", snap.stable_size, offset, len(chunk))
        snap.write_stable(offset, chunk)
    else:
        target = snap.wasm if kind == "wasm_module" else snap.heap
        _slice(kind.replace("_", " "), len(target), offset, len(chunk))
        target[offset : offset + len(chunk)] = chunk  # type: ignore[index]
    return _EMPTY_REPLY


def _delete_snapshot(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    canister = _controlled(replica, req, args)
    del canister.snapshots[_find_snapshot(canister, args["snapshot_id"]).snapshot_id]
    return _EMPTY_REPLY


# ---------------------------------------------------------------- threshold keys


def _key_seed(replica: Replica) -> bytes:
    """Seeded by the root subnet's id, not this subnet's: the IC's threshold keys serve canisters on every
    subnet, so every subnet of a PocketIC instance derives the same keys."""
    root_subnet_id = Principal.self_authenticating(replica.root_key_der).raw
    return hashlib.sha256(b"ic_replica threshold keys" + root_subnet_id).digest()


def _key_name(kind: str, detail: str, name: str) -> str:
    if name not in threshold_keys.KEY_NAMES:
        existing = ", ".join(f"{kind}:{detail}:{n}" for n in threshold_keys.KEY_NAMES)
        raise _fail(ErrorCode.CANISTER_REJECTED_MESSAGE,
                    f"Requested unknown threshold key: {kind}:{detail}:{name}, existing enabled keys: [{existing}]")
    return name


def _derivation_path(caller: bytes, path: list[bytes]) -> list[bytes]:
    if len(path) > threshold_keys.MAX_DERIVATION_PATH:
        raise _fail(ErrorCode.INVALID_MANAGEMENT_PAYLOAD,
                    f"The derivation path has {len(path)} elements, at most {threshold_keys.MAX_DERIVATION_PATH}")
    return [caller, *path]


def _ecdsa_public_key(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    name = _key_name("ecdsa", "Secp256k1", args["key_id"]["name"])
    owner = args["canister_id"][0].raw if args["canister_id"] else req.src
    public_key, chain = threshold_keys.ecdsa_public_key(_key_seed(replica), name,
                                                        _derivation_path(owner, args["derivation_path"]))
    return candid.encode([PUBLIC_KEY_RESULT], [{"public_key": public_key, "chain_code": chain}])


def _sign_with_ecdsa(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    name = _key_name("ecdsa", "Secp256k1", args["key_id"]["name"])
    try:
        signature = threshold_keys.sign_with_ecdsa(_key_seed(replica), name,
                                                   _derivation_path(req.src, args["derivation_path"]),
                                                   args["message_hash"])
    except threshold_keys.ThresholdKeyError as exc:
        raise _fail(ErrorCode.INVALID_MANAGEMENT_PAYLOAD, str(exc)) from None
    return candid.encode([SIGNATURE_RESULT], [{"signature": signature}])


def _schnorr_public_key(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    algorithm = next(iter(args["key_id"]["algorithm"]))
    name = _key_name("schnorr", {"ed25519": "Ed25519", "bip340secp256k1": "Bip340Secp256k1"}[algorithm],
                     args["key_id"]["name"])
    owner = args["canister_id"][0].raw if args["canister_id"] else req.src
    public_key, chain = threshold_keys.schnorr_public_key(_key_seed(replica), algorithm, name,
                                                          _derivation_path(owner, args["derivation_path"]))
    return candid.encode([PUBLIC_KEY_RESULT], [{"public_key": public_key, "chain_code": chain}])


def _sign_with_schnorr(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    algorithm = next(iter(args["key_id"]["algorithm"]))
    name = _key_name("schnorr", {"ed25519": "Ed25519", "bip340secp256k1": "Bip340Secp256k1"}[algorithm],
                     args["key_id"]["name"])
    path = _derivation_path(req.src, args["derivation_path"])
    aux = args["aux"][0] if args.get("aux") else None
    try:
        if algorithm == "ed25519":
            if aux is not None:
                raise threshold_keys.ThresholdKeyError("auxiliary inputs are only for bip340secp256k1")
            signature = threshold_keys.sign_ed25519(_key_seed(replica), name, path, args["message"])
        else:
            merkle_root = aux["bip341"]["merkle_root_hash"] if aux is not None else None
            signature = threshold_keys.sign_bip340(_key_seed(replica), name, path, args["message"], merkle_root)
    except threshold_keys.ThresholdKeyError as exc:
        raise _fail(ErrorCode.INVALID_MANAGEMENT_PAYLOAD, str(exc)) from None
    return candid.encode([SIGNATURE_RESULT], [{"signature": signature}])


def _http_request(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> object:
    """An HTTPS outcall: checked now, answered in a later round (see http_outcalls)."""
    try:
        outcall = http_outcalls.parse(replica, req.src, args, req.cycles, origin, replica.outcalls.next_id())
    except http_outcalls.Refused as exc:
        raise ManagementError(exc.reject) from None
    replica.outcalls.submit(outcall)
    return DEFER


def _info(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    return info_reply(_canister(replica, args["canister_id"].raw), args)


def info_reply(canister: Canister, args: dict[str, Any]) -> bytes:
    n = args["num_requested_changes"][0] if args.get("num_requested_changes") else 0
    changes = canister.history[-n:] if n else []
    return candid.encode([CANISTER_INFO_RESULT], [{
        "total_num_changes": canister.total_changes,
        "recent_changes": [_change_value(c) for c in changes],
        "module_hash": [canister.module.module_hash] if canister.module else [],
        "controllers": [Principal(c) for c in canister.controllers],
    }])


def _change_value(change: Any) -> dict[str, Any]:
    origin = change.origin
    if origin[0] == "user":
        origin_value: dict[str, Any] = {"from_user": {"user_id": Principal(origin[1])}}
    else:
        origin_value = {"from_canister": {"canister_id": Principal(origin[1]),
                                          "canister_version": [origin[2]] if origin[2] is not None else []}}
    kind = change.details[0]
    details: dict[str, Any]
    if kind == "creation":
        details = {"creation": {"controllers": [Principal(c) for c in change.details[1]],
                                "environment_variables_hash": []}}
    elif kind == "code_deployment":
        details = {"code_deployment": {"mode": {change.details[1]: None}, "module_hash": change.details[2]}}
    elif kind == "controllers_change":
        details = {"controllers_change": {"controllers": [Principal(c) for c in change.details[1]]}}
    elif kind == "load_snapshot":
        snapshot_id, version, taken_at = change.details[1:4]
        source = change.details[4] if len(change.details) > 4 else b""
        details = {"load_snapshot": {"from_canister_id": [Principal(source)] if source else [],
                                     "snapshot_id": snapshot_id, "canister_version": version,
                                     "taken_at_timestamp": taken_at, "source": {"taken_from_canister": None}}}
    else:
        details = {"code_uninstall": None}
    return {"timestamp_nanos": change.timestamp_nanos, "canister_version": change.canister_version,
            "origin": origin_value, "details": [details]}


_HANDLERS = {
    "provisional_create_canister_with_cycles": _provisional_create,
    "provisional_top_up_canister": _top_up,
    "create_canister": _create,
    "install_code": _install_code,
    "install_chunked_code": _install_chunked,
    "upload_chunk": _upload_chunk,
    "clear_chunk_store": _clear_chunk_store,
    "stored_chunks": _stored_chunks,
    "uninstall_code": _uninstall,
    "canister_status": _status,
    "update_settings": _update_settings,
    "start_canister": _start,
    "stop_canister": _stop,
    "delete_canister": _delete,
    "deposit_cycles": _deposit_cycles,
    "raw_rand": _raw_rand,
    "canister_info": _info,
    "canister_metadata": _metadata,
    "take_canister_snapshot": _take_snapshot,
    "load_canister_snapshot": _load_snapshot,
    "list_canister_snapshots": _list_snapshots,
    "delete_canister_snapshot": _delete_snapshot,
    "read_canister_snapshot_metadata": _read_snapshot_metadata,
    "read_canister_snapshot_data": _read_snapshot_data,
    "upload_canister_snapshot_metadata": _upload_snapshot_metadata,
    "upload_canister_snapshot_data": _upload_snapshot_data,
    "subnet_info": _subnet_info,
    "canister_metrics": _canister_metrics,
    "ecdsa_public_key": _ecdsa_public_key,
    "sign_with_ecdsa": _sign_with_ecdsa,
    "schnorr_public_key": _schnorr_public_key,
    "sign_with_schnorr": _sign_with_schnorr,
    "http_request": _http_request,
}
_KEEPS_CYCLES = {"create_canister", "deposit_cycles"}


# ---------------------------------------------------------------- code installation


def load_module(replica: Replica, wasm: bytes) -> ModuleInfo:
    """Validate a module the way install_code does; errors name what is wrong."""
    try:
        info = prepare(wasm)
    except InvalidModule as exc:
        raise _fail(ErrorCode.CANISTER_INVALID_WASM, f"Wasm module is invalid: {exc}") from exc
    problems = import_problems(info)  # every import the runtime cannot link, not just the first
    if problems:
        raise _fail(ErrorCode.CANISTER_INVALID_WASM,
                    "Wasm module has an invalid import section. " + " ".join(problems))
    for name in info.exports:
        if name.startswith("canister_") and not _valid_entry_point(name):
            raise _fail(ErrorCode.CANISTER_INVALID_WASM,
                        f"Wasm module has an invalid export section. Exporting a function named '{name}' is "
                        "not allowed.")
    try:
        replica.modules.get(info)
    except wasmtime.WasmtimeError as exc:
        raise _fail(ErrorCode.CANISTER_INVALID_WASM,
                    f"Wasm module is invalid: {str(exc).splitlines()[0]}") from exc
    return info


_ENTRY_POINTS = {"canister_init", "canister_inspect_message", "canister_pre_upgrade", "canister_post_upgrade",
                 "canister_heartbeat", "canister_global_timer", "canister_on_low_wasm_memory"}


def _valid_entry_point(name: str) -> bool:
    if name in _ENTRY_POINTS:
        return True
    return any(name.startswith(prefix) and len(name) > len(prefix)
               for prefix in ("canister_update ", "canister_query ", "canister_composite_query "))


def install(replica: Replica, canister: Canister, mode: str, wasm: bytes, arg: bytes, req: Request,
            skip_pre_upgrade: bool | None = None, persistence: str | None = None) -> None:
    """install / reinstall / upgrade, all or nothing: on any failure the canister is as it was."""
    cid = Principal(canister.canister_id)
    if mode == "install" and canister.runtime is not None:
        raise _fail(ErrorCode.CANISTER_NON_EMPTY,
                    f"Canister {cid} cannot be installed because the canister is not empty. Try installing with "
                    "mode='reinstall' instead.")
    if mode == "upgrade" and canister.runtime is None:
        raise _fail(ErrorCode.CANISTER_WASM_MODULE_NOT_FOUND,
                    f"Canister {cid} is empty: there is no code to upgrade. Install it first.")
    info = load_module(replica, wasm)
    old_eop = canister.module.uses_eop if (mode == "upgrade" and canister.module) else False
    if mode == "upgrade":
        if old_eop and persistence is None:
            raise _fail(ErrorCode.CANISTER_CONTRACT_VIOLATION,
                        "Missing upgrade option: Enhanced orthogonal persistence requires the "
                        "`wasm_memory_persistence` upgrade option.")
        if persistence == "keep" and not info.uses_eop:
            raise _fail(ErrorCode.CANISTER_CONTRACT_VIOLATION,
                        "Invalid upgrade option: The `wasm_memory_persistence: opt Keep` upgrade option requires "
                        "that the new canister module supports enhanced orthogonal persistence.")
    limit = replica.limits.install
    replica.rollback_buffer.owner = None  # pre_upgrade may change the old heap outside a Transaction
    old = (canister.runtime, canister.module, canister.wasm, canister.stable, canister.certified_data,
           canister.global_timer, canister.cycles)
    old_snapshot = canister.runtime.snapshot() if canister.runtime is not None else None
    new_timer: int | None = None
    try:
        if mode == "upgrade":
            assert canister.runtime is not None
            canister.stable.begin()
            if not skip_pre_upgrade and canister.runtime.has_export("canister_pre_upgrade"):
                ctx = ExecutionContext(Kind.PRE_UPGRADE, caller=req.src, balance=canister.cycles)
                canister.runtime.run_export("canister_pre_upgrade", ctx, limit)
                new_timer = ctx.new_timer
                if ctx.new_certified_data is not None:
                    canister.certified_data = ctx.new_certified_data
            kept_heap = canister.runtime.snapshot().memory if persistence == "keep" else None
        else:
            canister.stable = StableMemory()
            canister.certified_data = b""
            kept_heap = None
        try:
            runtime = WasmRuntime(replica.engine, replica.modules.get(info), info, canister, replica.rollback_buffer)
        except wasmtime.WasmtimeError as exc:
            raise Trap(f"Wasm module could not be instantiated: {str(exc).splitlines()[0]}",
                       ErrorCode.CANISTER_INVALID_WASM) from None
        if kept_heap is not None:
            runtime.load_memory_only(kept_heap)
        ctx = ExecutionContext(Kind.START, caller=req.src, balance=canister.cycles)
        runtime.run_start(ctx, limit)
        ctx = ExecutionContext(Kind.INIT, caller=req.src, arg=arg, balance=canister.cycles)
        entry = "canister_post_upgrade" if mode == "upgrade" else "canister_init"
        if runtime.has_export(entry):
            runtime.run_export(entry, ctx, limit)
        if ctx.new_certified_data is not None:
            canister.certified_data = ctx.new_certified_data
        new_timer = ctx.new_timer if ctx.new_timer is not None else None
    except Trap as trap:
        (canister.runtime, canister.module, canister.wasm, canister.stable, canister.certified_data,
         canister.global_timer, canister.cycles) = old
        if canister.runtime is not None and old_snapshot is not None and not canister.runtime.restore(old_snapshot):
            canister.rebuild_runtime(old_snapshot)
        canister.stable.rollback()
        canister.log(f"[TRAP]: {trap.message}".encode())
        stage = {"install": "Canister init", "reinstall": "Canister init", "upgrade": "Canister upgrade"}[mode]
        raise ManagementError(reject_for(trap.error_code, f"Error from Canister {cid}: {stage} failed: "
                                                          f"{trap.message}")) from None
    canister.stable.commit()
    canister.runtime, canister.module = runtime, info
    canister.wasm = decompress(wasm)
    canister.global_timer = new_timer or 0
    canister.version += 1
    canister.record_change(_change_origin(replica, req), ("code_deployment", mode, info.module_hash))

