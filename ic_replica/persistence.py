"""Save and restore a replica to a state directory: every canister comes back with its id, code, heap,
globals, stable memory, controllers, settings, timers and logs; and the ingress history of messages whose
`ingress_expiry` has not passed, so a signed call that executed before a restart is not executed again if it
is replayed after it (messages still in flight at the checkpoint come back rejected: queues and call contexts
are not saved, so they will never complete).

Layout: `state.json` (replica and canister metadata) and `canisters/<id>/{module.wasm,memory.bin,stable.bin}`;
each canister snapshot in `canisters/<id>/snapshots/<snapshot id hex>/` (the same three files).
Files are written to a temporary name and renamed, and `state.json` last, so a crash mid-save leaves the
previous checkpoint usable.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ic_replica.canister import Canister, Change, LogRecord, Status
from ic_replica.errors import Reject, RejectCode
from ic_replica.messages import IngressState, IngressStatus
from ic_replica.principal import Principal
from ic_replica.runtime import Snapshot
from ic_replica.snapshots import CanisterSnapshot
from ic_replica.stable_memory import StableMemory
from ic_replica.wasm_module import prepare

if TYPE_CHECKING:
    from ic_replica.replica import Replica

FORMAT_VERSION = 1


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


def save(replica: Replica, state_dir: Path) -> None:
    canisters_dir = state_dir / "canisters"
    canisters_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for cid, c in replica.canisters.items():
        folder = canisters_dir / Principal(cid).to_text()
        folder.mkdir(exist_ok=True)
        globals_: list[Any] = []
        if c.runtime is not None:
            snap = c.runtime.snapshot()
            _write(folder / "module.wasm", c.wasm)
            _write(folder / "memory.bin", snap.memory)
            globals_ = snap.globals
        _write(folder / "stable.bin", bytes(c.stable.data))
        entries.append({
            "id": Principal(cid).to_text(),
            "controllers": [Principal(p).to_text() for p in c.controllers],
            "cycles": c.cycles, "status": c.status.value, "version": c.version,
            "installed": c.runtime is not None, "globals": globals_,
            "stable_pages": c.stable.pages, "certified_data": _b64(c.certified_data),
            "global_timer": c.global_timer, "env_vars": c.env_vars,
            "freezing_threshold": c.freezing_threshold, "log_visibility": c.log_visibility,
            "logs": [[r.idx, r.timestamp_nanos, _b64(r.content)] for r in c.logs], "next_log_idx": c.next_log_idx,
            "chunks": [_b64(chunk) for chunk in c.chunk_store.values()],
            "history": [[h.timestamp_nanos, h.canister_version, _encode_tuple(h.origin), _encode_tuple(h.details)]
                        for h in c.history],
            "total_changes": c.total_changes,
            "settings": _save_settings(c.settings),
            "snapshots": [_save_snapshot(folder, snap) for snap in c.snapshots.values()],
            "next_snapshot_id": c.next_snapshot_id,
        })
        snapshot_dir = folder / "snapshots"
        if snapshot_dir.is_dir():
            for old in snapshot_dir.iterdir():
                if bytes.fromhex(old.name) not in c.snapshots:
                    shutil.rmtree(old, ignore_errors=True)
    live = {e["id"] for e in entries}
    for folder in canisters_dir.iterdir():
        if folder.name not in live:
            shutil.rmtree(folder, ignore_errors=True)
    state = {"format": FORMAT_VERSION, "time_ns": replica.time_ns, "next_canister_index": replica.next_canister_index,
             "canisters": entries, "ingress": [_save_ingress(s) for s in replica.ingress_history()
                                               if s.expiry >= replica.time_ns]}
    _write(state_dir / "state.json", json.dumps(state, indent=1).encode())


def _save_settings(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: [v[0], [_b64(p) for p in v[1]]] if isinstance(v, tuple) else v for k, v in settings.items()}


def _load_settings(c: Canister, saved: dict[str, Any]) -> None:
    for k, v in saved.items():
        c.settings[k] = (v[0], [_unb64(p) for p in v[1]]) if isinstance(v, list) else v


def _save_snapshot(folder: Path, snap: CanisterSnapshot) -> dict[str, Any]:
    where = folder / "snapshots" / snap.snapshot_id.hex()
    where.mkdir(parents=True, exist_ok=True)
    if snap.source != "taken_from_canister" or not (where / "stable.bin").exists():  # taken ones never change
        _write(where / "module.wasm", bytes(snap.wasm))
        _write(where / "memory.bin", bytes(snap.heap))
        _write(where / "stable.bin", bytes(snap.stable_memory().data))
    return {"id": snap.snapshot_id.hex(), "taken_at": snap.taken_at_timestamp, "version": snap.canister_version,
            "globals": snap.globals, "stable_pages": snap.stable_pages, "certified_data": _b64(snap.certified_data),
            "global_timer": snap.global_timer, "chunks": [_b64(chunk) for chunk in snap.chunk_store.values()],
            "global_types": snap.global_types, "source": snap.source, "checked": snap.module is not None}


def _load_snapshot(folder: Path, e: dict[str, Any]) -> CanisterSnapshot:
    where = folder / "snapshots" / e["id"]
    wasm = (where / "module.wasm").read_bytes()
    stable = StableMemory((where / "stable.bin").read_bytes(), e["stable_pages"])
    return CanisterSnapshot(
        snapshot_id=bytes.fromhex(e["id"]), taken_at_timestamp=e["taken_at"], canister_version=e["version"],
        wasm=wasm, module=prepare(wasm) if e.get("checked", True) else None,
        heap=(where / "memory.bin").read_bytes(), globals=e["globals"],
        stable_chunks={i: bytes(chunk) for i, chunk in stable.chunks.items()}, stable_pages=e["stable_pages"],
        certified_data=_unb64(e["certified_data"]), global_timer=e["global_timer"],
        chunk_store={hashlib.sha256(c).digest(): c for c in (_unb64(x) for x in e["chunks"])},
        global_types=e.get("global_types", []), source=e.get("source", "taken_from_canister"))


def _save_ingress(s: IngressStatus) -> dict[str, Any]:
    reject = [int(s.reject.code), s.reject.message, s.reject.error_code] if s.reject is not None else None
    return {"id": _b64(s.message_id), "sender": _b64(s.sender), "canister": _b64(s.canister_id), "method": s.method,
            "state": s.state.value, "reply": _b64(s.reply) if s.reply is not None else None, "reject": reject,
            "updated_at": s.updated_at, "effective": _b64(s.effective_canister_id), "expiry": s.expiry}


def _load_ingress(e: dict[str, Any]) -> IngressStatus:
    status = IngressStatus(_unb64(e["id"]), _unb64(e["sender"]), _unb64(e["canister"]), e["method"],
                           IngressState(e["state"]), updated_at=e["updated_at"],
                           effective_canister_id=_unb64(e["effective"]), expiry=e["expiry"])
    if e["reply"] is not None:
        status.reply = _unb64(e["reply"])
    if e["reject"] is not None:
        code, message, error_code = e["reject"]
        status.reject = Reject(RejectCode(code), message, error_code)
    if not status.final:  # its queued message or call context was not saved: it can never complete now
        status.state = IngressState.REJECTED
        status.reject = (Reject(RejectCode.SYS_TRANSIENT, "The replica restarted before this call was executed; "
                                                          "it was not executed.")
                         if e["state"] == IngressState.RECEIVED.value else
                         Reject(RejectCode.SYS_UNKNOWN, "The replica restarted while this call was in progress; "
                                                        "its outcome is unknown."))
    return status


def _encode_tuple(t: tuple) -> list[Any]:
    out: list[Any] = []
    for item in t:
        if isinstance(item, bytes):
            out.append({"b": _b64(item)})
        elif isinstance(item, list):
            out.append([{"b": _b64(x)} for x in item])
        else:
            out.append(item)
    return out


def _decode_tuple(items: list[Any]) -> tuple:
    out: list[Any] = []
    for item in items:
        if isinstance(item, dict):
            out.append(_unb64(item["b"]))
        elif isinstance(item, list):
            out.append([_unb64(x["b"]) for x in item])
        else:
            out.append(item)
    return tuple(out)


def load(replica: Replica, state_dir: Path) -> None:
    """Restore a replica from `state_dir` if it holds a checkpoint (an empty or new directory is fine)."""
    path = state_dir / "state.json"
    if not path.is_file():
        state_dir.mkdir(parents=True, exist_ok=True)
        return
    state = json.loads(path.read_text())
    if state.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported state format {state.get('format')!r}")
    replica.time_ns = max(replica.time_ns, state["time_ns"]) if replica.live_time else state["time_ns"]
    replica.next_canister_index = state["next_canister_index"]
    for e in state["canisters"]:
        cid = Principal.from_text(e["id"]).raw
        folder = state_dir / "canisters" / e["id"]
        c = Canister(replica, cid, [Principal.from_text(p).raw for p in e["controllers"]], e["cycles"])
        c.status, c.version = Status(e["status"]), e["version"]
        c.stable = StableMemory((folder / "stable.bin").read_bytes(), e["stable_pages"])
        c.certified_data, c.global_timer = _unb64(e["certified_data"]), e["global_timer"]
        c.env_vars, c.freezing_threshold, c.log_visibility = e["env_vars"], e["freezing_threshold"], e["log_visibility"]
        c.restore_logs([LogRecord(i, t, _unb64(m)) for i, t, m in e["logs"]])
        c.next_log_idx = e["next_log_idx"]
        for chunk in (_unb64(x) for x in e["chunks"]):
            c.chunk_store[hashlib.sha256(chunk).digest()] = chunk
        c.history = [Change(t, v, _decode_tuple(o), _decode_tuple(d)) for t, v, o, d in e["history"]]
        c.total_changes = e["total_changes"]
        _load_settings(c, e.get("settings", {}))  # checkpoints from before these fields have none
        c.snapshots = {bytes.fromhex(x["id"]): _load_snapshot(folder, x) for x in e.get("snapshots", [])}
        c.next_snapshot_id = e.get("next_snapshot_id", 0)
        if e["installed"]:
            c.wasm = (folder / "module.wasm").read_bytes()
            c.module = prepare(c.wasm)
            c.rebuild_runtime(Snapshot((folder / "memory.bin").read_bytes(), e["globals"]))
        replica.canisters[cid] = c
    for entry in state.get("ingress", []):  # checkpoints written before ingress history was saved have none
        replica.remember_ingress(_load_ingress(entry))
