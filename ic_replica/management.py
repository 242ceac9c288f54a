"""The management canister (`aaaaa-aa`): canister lifecycle, code installation, status, chunks, logs.

Reached by users (ingress) and by canisters (inter-canister requests) through the same `handle`; every
method that changes or reveals a canister checks that the caller controls it. Arguments are decoded at their
`ic.did` types (the Candid decoder checks wire types and caps its work by the argument's size): a mistyped
argument is an IC0408 reject, never an exception inside a round.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Any

import wasmtime

from ic_replica import candid
from ic_replica.candid import BLOB, BOOL, NAT, NAT64, NULL, PRINCIPAL, TEXT, Opt, Record, Variant, Vec
from ic_replica.canister import Canister, Status
from ic_replica.context import ExecutionContext, Kind, Trap
from ic_replica.errors import CallRejected, ErrorCode, Reject, RejectCode, reject_for
from ic_replica.messages import Request
from ic_replica.principal import Principal
from ic_replica.runtime import WasmRuntime
from ic_replica.stable_memory import StableMemory
from ic_replica.system_api import import_problems
from ic_replica.wasm_module import InvalidModule, ModuleInfo, decompress, prepare

if TYPE_CHECKING:
    from ic_replica.replica import Replica

MAX_CONTROLLERS = 10
MAX_CHUNK_BYTES = 1024 * 1024
MAX_CHUNKS = 10_000
MAX_CYCLES = (1 << 128) - 1  # cycles are a nat128 on the IC

# ---------------------------------------------------------------- candid types (ic.did)

VISIBILITY = Variant.of(controllers=NULL, public=NULL, allowed_viewers=Vec(PRINCIPAL))
ENV_VAR = Record.of(name=TEXT, value=TEXT)
CANISTER_SETTINGS = Record.of(
    controllers=Opt(Vec(PRINCIPAL)), compute_allocation=Opt(NAT), memory_allocation=Opt(NAT),
    freezing_threshold=Opt(NAT), reserved_cycles_limit=Opt(NAT), minimum_incoming_canister_call_cycles=Opt(NAT),
    log_visibility=Opt(VISIBILITY), snapshot_visibility=Opt(VISIBILITY), status_visibility=Opt(VISIBILITY),
    wasm_memory_limit=Opt(NAT), wasm_memory_threshold=Opt(NAT), environment_variables=Opt(Vec(ENV_VAR)),
)
DEFINITE_SETTINGS = Record.of(
    controllers=Vec(PRINCIPAL), compute_allocation=NAT, memory_allocation=NAT, freezing_threshold=NAT,
    reserved_cycles_limit=NAT, minimum_incoming_canister_call_cycles=NAT, log_visibility=VISIBILITY,
    snapshot_visibility=VISIBILITY, status_visibility=VISIBILITY, wasm_memory_limit=NAT,
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
                             wasm_chunk_store_size=NAT, snapshots_size=NAT),
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
    controllers_change=Record.of(controllers=Vec(PRINCIPAL)),
)
CHANGE = Record.of(timestamp_nanos=NAT64, canister_version=NAT64, origin=CHANGE_ORIGIN, details=CHANGE_DETAILS)
CANISTER_INFO_ARGS = Record.of(canister_id=PRINCIPAL, num_requested_changes=Opt(NAT64))
CANISTER_INFO_RESULT = Record.of(total_num_changes=NAT64, recent_changes=Vec(CHANGE), module_hash=Opt(BLOB),
                                 controllers=Vec(PRINCIPAL))
FETCH_LOGS_RESULT = Record.of(canister_log_records=Vec(Record.of(idx=NAT64, timestamp_nanos=NAT64, content=BLOB)))
TOP_UP_ARGS = Record.of(canister_id=PRINCIPAL, amount=NAT)


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
}


METHOD_NAMES = frozenset(_METHODS)


def decode_args(method: str, arg: bytes) -> dict[str, Any]:
    arg_type = _METHODS[method][0]
    if method == "raw_rand":
        return {}
    try:
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


def query(replica: Replica, sender: bytes, method: str, arg: bytes, effective: object) -> bytes:
    """The management canister's query methods (fetch_canister_logs)."""
    if method != "fetch_canister_logs":
        raise CallRejected(reject_for(ErrorCode.CANISTER_METHOD_NOT_FOUND,
                                      f"Management canister has no query method '{method}'"))
    try:
        args = candid.decode(arg, [CANISTER_ID_ARGS])[0]
        canister = _canister(replica, args["canister_id"].raw)
        if canister.log_visibility != "public":
            _require_controller(canister, sender)
    except candid.CandidError as exc:
        raise CallRejected(reject_for(ErrorCode.INVALID_MANAGEMENT_PAYLOAD, str(exc))) from exc
    except ManagementError as exc:
        raise CallRejected(exc.reject) from exc
    records = [{"idx": r.idx, "timestamp_nanos": r.timestamp_nanos, "content": r.content} for r in canister.logs]
    return candid.encode([FETCH_LOGS_RESULT], [{"canister_log_records": records}])


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


def _apply_settings(canister: Canister, settings: dict[str, Any]) -> None:
    if settings.get("freezing_threshold"):
        canister.freezing_threshold = settings["freezing_threshold"][0]
    if settings.get("log_visibility"):
        canister.log_visibility = next(iter(settings["log_visibility"][0]))
    if settings.get("environment_variables"):
        canister.env_vars = {v["name"]: v["value"] for v in settings["environment_variables"][0]}


_EMPTY_REPLY = candid.encode([], [])


# ---------------------------------------------------------------- handlers


def _provisional_create(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    settings = args["settings"][0] if args["settings"] else None
    controllers = _controllers_from(settings, [req.src])
    specified = args["specified_id"][0].raw if args["specified_id"] else None
    amount = _cycles(args["amount"][0]) if args["amount"] else 100_000_000_000_000
    canister = replica.new_canister(controllers, amount, specified)
    if settings:
        _apply_settings(canister, settings)
    canister.record_change(_change_origin(replica, req), ("creation", list(canister.controllers)))
    return candid.encode([CREATE_RESULT], [{"canister_id": Principal(canister.canister_id)}])


def _create(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    settings = args["settings"][0] if args["settings"] else None
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
    store = _controlled(replica, req, {"canister_id": args["store_canister"][0]}) if args["store_canister"] else target
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
    canister = _controlled(replica, req, args)
    return candid.encode([CANISTER_STATUS_RESULT], [status_record(canister)])


def status_record(canister: Canister) -> dict[str, Any]:
    wasm_memory = canister.runtime.memory_size() if canister.runtime else 0
    visibility: dict[str, Any] = ({canister.log_visibility: None} if canister.log_visibility != "allowed_viewers"
                                  else {"allowed_viewers": []})
    return {
        "status": {canister.status.value: None},
        "ready_for_migration": False,
        "version": canister.version,
        "settings": {
            "controllers": [Principal(c) for c in canister.controllers], "compute_allocation": 0,
            "memory_allocation": 0, "freezing_threshold": canister.freezing_threshold,
            "reserved_cycles_limit": 5_000_000_000_000, "minimum_incoming_canister_call_cycles": 0,
            "log_visibility": visibility, "snapshot_visibility": {"controllers": None},
            "status_visibility": {"controllers": None}, "wasm_memory_limit": 3 * 1024 ** 3,
            "wasm_memory_threshold": 0,
            "environment_variables": [{"name": k, "value": v} for k, v in sorted(canister.env_vars.items())],
        },
        "module_hash": [canister.module.module_hash] if canister.module else [],
        "memory_size": canister.memory_size(),
        "memory_metrics": {
            "wasm_memory_size": wasm_memory, "stable_memory_size": canister.stable.size_bytes,
            "global_memory_size": 8 * (canister.module.global_count if canister.module else 0),
            "wasm_binary_size": len(canister.wasm),
            "custom_sections_size": _custom_sections_size(canister),
            "canister_history_size": 0,
            "wasm_chunk_store_size": sum(len(c) for c in canister.chunk_store.values()), "snapshots_size": 0,
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


def _info(replica: Replica, req: Request, origin: tuple, args: dict[str, Any]) -> bytes:
    canister = _canister(replica, args["canister_id"].raw)
    n = args["num_requested_changes"][0] if args["num_requested_changes"] else 0
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
    else:
        details = {"code_uninstall": None}
    return {"timestamp_nanos": change.timestamp_nanos, "canister_version": change.canister_version,
            "origin": origin_value, "details": details}


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

