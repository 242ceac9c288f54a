"""Canister snapshots: take, load (state restored bit for bit), list, delete, replace, limits, controllers;
`canister_status` with every field of the current `ic.did`; `specified_id` checks."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from ic_replica import Replica, candid, management
from ic_replica.candid import BLOB, NAT, NAT64, PRINCIPAL, Opt, Record, Vec
from ic_replica.errors import CallRejected
from ic_replica.principal import MANAGEMENT, Principal, canister_id_from_index
from tests.conftest import ALICE, BOB, decode1, nat_arg, no_args


def call(replica: Replica, method: str, types: list[candid.Type], values: list[Any], sender: Principal = ALICE,
         effective: Principal | None = None) -> bytes:
    return replica.update_call(MANAGEMENT, method, candid.encode(types, values), sender,
                               effective_canister_id=effective)


def take(replica: Replica, cid: Principal, replace: bytes | None = None, sender: Principal = ALICE) -> dict[str, Any]:
    out = call(replica, "take_canister_snapshot", [management.TAKE_SNAPSHOT_ARGS],
               [{"canister_id": cid, "replace_snapshot": [replace] if replace else [], "uninstall_code": [],
                 "sender_canister_version": []}], sender, cid)
    return decode1(out, management.SNAPSHOT)  # type: ignore[no-any-return]


def load(replica: Replica, cid: Principal, snapshot_id: bytes, sender: Principal = ALICE) -> None:
    call(replica, "load_canister_snapshot", [management.LOAD_SNAPSHOT_ARGS],
         [{"canister_id": cid, "snapshot_id": snapshot_id, "sender_canister_version": []}], sender, cid)


def listed(replica: Replica, cid: Principal, sender: Principal = ALICE) -> list[dict[str, Any]]:
    out = call(replica, "list_canister_snapshots", [management.CANISTER_ID_ARGS], [{"canister_id": cid}], sender, cid)
    return decode1(out, Vec(management.SNAPSHOT))  # type: ignore[no-any-return]


def delete(replica: Replica, cid: Principal, snapshot_id: bytes, sender: Principal = ALICE) -> None:
    call(replica, "delete_canister_snapshot", [management.DELETE_SNAPSHOT_ARGS],
         [{"canister_id": cid, "snapshot_id": snapshot_id}], sender, cid)


def state_of(replica: Replica, cid: Principal) -> tuple[bytes, list[Any], bytes, int, bytes, bytes, int]:
    c = replica.canisters[cid.raw]
    assert c.runtime is not None
    snap = c.runtime.snapshot()
    return (hashlib.sha256(snap.memory).digest(), snap.globals, hashlib.sha256(c.stable.data).digest(),
            c.stable.pages, c.certified_data, c.wasm, c.global_timer)


def status_of(replica: Replica, cid: Principal, sender: Principal = ALICE) -> dict[str, Any]:
    return replica.canister_status(cid, sender=sender)


@pytest.fixture()
def replica() -> Replica:
    return Replica()


@pytest.fixture()
def counter(replica: Replica, wasms: dict[str, bytes]) -> Principal:
    cid = replica.create_canister(controllers=[ALICE], sender=ALICE)
    replica.install_code(cid, wasms["counter"], nat_arg(5), sender=ALICE)
    return cid


def test_take_mutate_load_restores_state_exactly(replica: Replica, counter: Principal) -> None:
    replica.update_call(counter, "inc", no_args())
    replica.update_call(counter, "stableWrite", candid.encode([NAT64, BLOB], [70_000, b"before"]))
    replica.update_call(counter, "certify", candid.encode([BLOB], [b"c" * 32]))
    before = state_of(replica, counter)
    snap = take(replica, counter)
    assert snap["id"] == (0).to_bytes(8, "big") + counter.raw and snap["total_size"] > 0
    assert [s["id"] for s in listed(replica, counter)] == [snap["id"]]

    for _ in range(3):
        replica.update_call(counter, "inc", no_args())
    replica.update_call(counter, "stableWrite", candid.encode([NAT64, BLOB], [70_000, b"after!"]))
    replica.update_call(counter, "grow", nat_arg(2))  # the heap grows past the snapshot's size
    replica.update_call(counter, "certify", candid.encode([BLOB], [b"d" * 32]))
    assert decode1(replica.query_call(counter, "get", no_args())) == 9
    version = status_of(replica, counter, sender=ALICE)["version"]

    load(replica, counter, snap["id"])
    assert state_of(replica, counter) == before
    assert decode1(replica.query_call(counter, "get", no_args())) == 6
    read = replica.query_call(counter, "stableRead", candid.encode([NAT64, NAT], [70_000, 6]))
    assert decode1(read) == b"before"
    status = status_of(replica, counter, sender=ALICE)
    assert status["version"] == version + 1
    # the canister runs on from the loaded state
    assert decode1(replica.update_call(counter, "inc", no_args())) == 7


def test_load_restores_the_module_after_a_reinstall(replica: Replica, counter: Principal,
                                                    wasms: dict[str, bytes]) -> None:
    snap = take(replica, counter)
    replica.install_code(counter, wasms["ticker"], no_args(), mode="reinstall", sender=ALICE)
    load(replica, counter, snap["id"])
    assert decode1(replica.query_call(counter, "get", no_args())) == 5
    status = status_of(replica, counter, sender=ALICE)
    assert status["module_hash"] == [hashlib.sha256(wasms["counter"]).digest()]


def test_list_replace_delete_and_limits(replica: Replica, counter: Principal) -> None:
    ids = [take(replica, counter)["id"] for _ in range(10)]
    assert [s["id"] for s in listed(replica, counter)] == ids
    with pytest.raises(CallRejected) as exc:
        take(replica, counter)
    assert exc.value.error_code == "IC0406" and "maximum number of snapshots" in str(exc.value)
    replaced = take(replica, counter, replace=ids[3])
    assert ids[3] not in [s["id"] for s in listed(replica, counter)]
    assert replaced["id"] in [s["id"] for s in listed(replica, counter)]
    delete(replica, counter, ids[0])
    assert len(listed(replica, counter)) == 9
    with pytest.raises(CallRejected) as exc:
        delete(replica, counter, ids[0])
    assert exc.value.error_code == "IC0305"
    with pytest.raises(CallRejected) as exc:
        load(replica, counter, b"\x00" * 8 + counter.raw + b"x")
    assert exc.value.error_code in ("IC0305", "IC0408")
    status = status_of(replica, counter, sender=ALICE)
    sizes = sum(s["total_size"] for s in listed(replica, counter))
    assert status["memory_metrics"]["snapshots_size"] == sizes
    assert status["memory_size"] >= sizes


def test_snapshots_need_a_controller(replica: Replica, counter: Principal) -> None:
    snap = take(replica, counter)
    for attempt in (lambda: take(replica, counter, sender=BOB), lambda: load(replica, counter, snap["id"], BOB),
                    lambda: delete(replica, counter, snap["id"], BOB), lambda: listed(replica, counter, BOB)):
        with pytest.raises(CallRejected) as exc:
            attempt()
        assert exc.value.error_code == "IC0512"
    # a snapshot of another canister loads only for a controller of both (the IC allows it since 2025)
    other = replica.create_canister(controllers=[BOB], sender=BOB)
    with pytest.raises(CallRejected) as exc:
        load(replica, other, snap["id"], BOB)
    assert exc.value.error_code == "IC0512" and "Only a controller of the canister that snapshot" in str(exc.value)
    with pytest.raises(CallRejected) as exc:  # nor can it be deleted through another canister
        delete(replica, other, snap["id"], BOB)
    assert exc.value.error_code == "IC0408"


def test_load_a_snapshot_of_another_canister(replica: Replica, counter: Principal, wasms: dict[str, bytes]) -> None:
    replica.update_call(counter, "inc", no_args())
    snap = take(replica, counter)
    copy = replica.create_canister(controllers=[ALICE], sender=ALICE)
    load(replica, copy, snap["id"])
    assert decode1(replica.query_call(copy, "get", no_args())) == 6
    value = management._change_value(replica.canisters[copy.raw].history[-1])
    assert value["details"][0]["load_snapshot"]["from_canister_id"] == [counter]


def test_empty_canister_and_uninstall_code(replica: Replica, counter: Principal) -> None:
    empty = replica.create_canister(controllers=[ALICE], sender=ALICE)
    with pytest.raises(CallRejected):
        take(replica, empty)
    out = call(replica, "take_canister_snapshot", [management.TAKE_SNAPSHOT_ARGS],
               [{"canister_id": counter, "replace_snapshot": [], "uninstall_code": [True],
                 "sender_canister_version": []}], ALICE, counter)
    snap = decode1(out, management.SNAPSHOT)
    assert status_of(replica, counter, sender=ALICE)["module_hash"] == []
    load(replica, counter, snap["id"])
    assert decode1(replica.query_call(counter, "get", no_args())) == 5


def test_canister_info_records_a_loaded_snapshot(replica: Replica, counter: Principal) -> None:
    snap = take(replica, counter)
    load(replica, counter, snap["id"])
    c = replica.canisters[counter.raw]
    value = management._change_value(c.history[-1])
    assert value["details"] == [{"load_snapshot": {
        "from_canister_id": [], "snapshot_id": snap["id"], "canister_version": 1,
        "taken_at_timestamp": snap["taken_at_timestamp"], "source": {"taken_from_canister": None}}}]
    encoded = candid.encode([management.CHANGE], [value])
    assert candid.decode(encoded, [management.CHANGE])[0]["details"][0]["load_snapshot"]["snapshot_id"] == snap["id"]


# ---------------------------------------------------------------- canister_status, settings, specified_id


def test_canister_status_has_every_field_of_ic_did(replica: Replica, counter: Principal) -> None:
    status = status_of(replica, counter, sender=ALICE)
    settings = status["settings"]
    assert set(settings) == {"controllers", "compute_allocation", "memory_allocation", "freezing_threshold",
                             "reserved_cycles_limit", "minimum_incoming_canister_call_cycles", "log_visibility",
                             "log_memory_limit", "snapshot_visibility", "status_visibility", "wasm_memory_limit",
                             "wasm_memory_threshold", "environment_variables"}
    assert set(status["memory_metrics"]) == {
        "wasm_memory_size", "stable_memory_size", "global_memory_size", "wasm_binary_size", "custom_sections_size",
        "canister_history_size", "wasm_chunk_store_size", "snapshots_size", "log_memory_store_size"}
    replica.update_call(counter, "inc", no_args())  # prints a log line
    status = status_of(replica, counter, sender=ALICE)
    assert status["memory_metrics"]["log_memory_store_size"] == len(b"count=6")


def test_settings_are_stored_and_reported(replica: Replica, counter: Principal) -> None:
    settings: dict[str | int, Any] = {name: [] for name, _ in management.CANISTER_SETTINGS.fields}
    settings.update(log_memory_limit=[8192], wasm_memory_threshold=[1 << 20], compute_allocation=[3],
                    status_visibility=[{"allowed_viewers": [BOB]}], snapshot_visibility=[{"public": None}])
    call(replica, "update_settings", [management.UPDATE_SETTINGS_ARGS],
         [{"canister_id": counter, "settings": settings, "sender_canister_version": []}], ALICE, counter)
    status = status_of(replica, counter, sender=ALICE)["settings"]
    assert status["log_memory_limit"] == 8192 and status["wasm_memory_threshold"] == 1 << 20
    assert status["compute_allocation"] == 3
    assert status["status_visibility"] == {"allowed_viewers": [BOB]}
    assert status_of(replica, counter, sender=BOB)["status"] == {"running": None}  # BOB may view status
    assert listed(replica, counter, BOB) == []  # snapshots are public
    settings.update(log_memory_limit=[1 << 40])
    with pytest.raises(CallRejected) as exc:
        call(replica, "update_settings", [management.UPDATE_SETTINGS_ARGS],
             [{"canister_id": counter, "settings": settings, "sender_canister_version": []}], ALICE, counter)
    assert exc.value.error_code == "IC0408"
    assert status_of(replica, counter, sender=ALICE)["settings"]["compute_allocation"] == 3


def test_specified_id_duplicate_and_range(replica: Replica) -> None:
    wanted = canister_id_from_index(7)
    assert replica.create_canister(sender=ALICE, specified_id=wanted) == wanted
    with pytest.raises(CallRejected) as exc:
        replica.create_canister(sender=ALICE, specified_id=wanted)
    assert exc.value.error_code == "IC0538" and "is already installed" in str(exc.value)
    outside = Principal.from_text("nojwb-ieaaa-aaaaa-aaaaa-cai")  # index 2^63: no subnet here holds it
    with pytest.raises(CallRejected) as exc:
        replica.create_canister(sender=ALICE, specified_id=outside)
    assert exc.value.error_code == "IC0405" and "is not hosted by subnet" in str(exc.value)
    with pytest.raises(CallRejected):
        replica.create_canister(sender=ALICE, specified_id=ALICE)  # not a canister id
    # this subnet's own range is fine
    own = canister_id_from_index(replica.next_canister_index + 5)
    assert replica.create_canister(sender=ALICE, specified_id=own) == own


def test_fetch_canister_logs_filter(replica: Replica, counter: Principal) -> None:
    for _ in range(4):
        replica.update_call(counter, "inc", no_args())
    arg = Record.of(canister_id=PRINCIPAL, filter=Opt(management.FETCH_LOGS_ARGS.fields[1][1].inner))  # type: ignore
    out = replica.query_call(MANAGEMENT, "fetch_canister_logs",
                             candid.encode([arg], [{"canister_id": counter, "filter": [{"by_idx": {"start": 1,
                                                                                                   "end": 3}}]}]),
                             sender=ALICE, effective_canister_id=counter)
    records = decode1(out, management.FETCH_LOGS_RESULT)["canister_log_records"]
    assert [r["idx"] for r in records] == [1, 2]


def test_canister_status_as_a_query(replica: Replica, counter: Principal) -> None:
    out = replica.query_call(MANAGEMENT, "canister_status",
                             candid.encode([management.CANISTER_ID_ARGS], [{"canister_id": counter}]),
                             sender=ALICE, effective_canister_id=counter)
    assert decode1(out, management.CANISTER_STATUS_RESULT)["status"] == {"running": None}
    with pytest.raises(CallRejected):
        replica.query_call(MANAGEMENT, "canister_status",
                           candid.encode([management.CANISTER_ID_ARGS], [{"canister_id": counter}]),
                           sender=BOB, effective_canister_id=counter)





def test_snapshots_and_settings_survive_a_restart(tmp_path: Any, wasms: dict[str, bytes]) -> None:
    first = Replica(state_dir=tmp_path)
    cid = first.create_canister(controllers=[ALICE], sender=ALICE)
    first.install_code(cid, wasms["counter"], nat_arg(5), sender=ALICE)
    first.update_call(cid, "stableWrite", candid.encode([NAT64, BLOB], [10, b"kept"]))
    snap = take(first, cid)
    first.update_call(cid, "inc", no_args())
    settings: dict[str | int, Any] = {name: [] for name, _ in management.CANISTER_SETTINGS.fields}
    settings.update(log_visibility=[{"allowed_viewers": [BOB]}], log_memory_limit=[1000])
    call(first, "update_settings", [management.UPDATE_SETTINGS_ARGS],
         [{"canister_id": cid, "settings": settings, "sender_canister_version": []}], ALICE, cid)
    before = state_of(first, cid)
    first.close()

    second = Replica(state_dir=tmp_path)
    assert state_of(second, cid) == before
    status = status_of(second, cid, sender=ALICE)
    assert status["settings"]["log_visibility"] == {"allowed_viewers": [BOB]}
    assert status["settings"]["log_memory_limit"] == 1000
    assert [s["id"] for s in listed(second, cid)] == [snap["id"]]
    load(second, cid, snap["id"])
    assert decode1(second.query_call(cid, "get", no_args())) == 5
    assert decode1(second.query_call(cid, "stableRead", candid.encode([NAT64, NAT], [10, 4]))) == b"kept"
    assert take(second, cid)["id"] == (1).to_bytes(8, "big") + cid.raw
    second.close()


def test_memory_size_adds_up(replica: Replica, counter: Principal) -> None:
    take(replica, counter)
    replica.update_call(counter, "inc", no_args())
    status = status_of(replica, counter)
    metrics = status["memory_metrics"]
    assert metrics["canister_history_size"] > 0
    assert status["memory_size"] == sum(metrics.values())


# ---------------------------------------------------------------- download / upload


def mgmt(replica: Replica, method: str, arg_type: candid.Type, value: dict[str, Any], result: candid.Type | None,
         cid: Principal) -> Any:
    out = call(replica, method, [arg_type], [value], ALICE, cid)
    return decode1(out, result) if result is not None else None


def download(replica: Replica, cid: Principal, snapshot_id: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    meta = mgmt(replica, "read_canister_snapshot_metadata", management.READ_SNAPSHOT_METADATA_ARGS,
                {"canister_id": cid, "snapshot_id": snapshot_id}, management.READ_SNAPSHOT_METADATA_RESULT, cid)
    data = {}
    for kind, size in (("wasm_module", meta["wasm_module_size"]), ("wasm_memory", meta["wasm_memory_size"]),
                       ("stable_memory", meta["stable_memory_size"])):
        parts = []
        for offset in range(0, size, 1_500_000):
            parts.append(mgmt(replica, "read_canister_snapshot_data", management.READ_SNAPSHOT_DATA_ARGS,
                              {"canister_id": cid, "snapshot_id": snapshot_id,
                               "kind": {kind: {"offset": offset, "size": min(1_500_000, size - offset)}}},
                              management.READ_SNAPSHOT_DATA_RESULT, cid)["chunk"])
        data[kind] = b"".join(parts)
    return meta, data


def upload_snapshot(replica: Replica, cid: Principal, meta: dict[str, Any], data: dict[str, bytes]) -> bytes:
    out = mgmt(replica, "upload_canister_snapshot_metadata", management.UPLOAD_SNAPSHOT_METADATA_ARGS, {
        "canister_id": cid, "replace_snapshot": [], "wasm_module_size": meta["wasm_module_size"],
        "globals": [g[0] for g in meta["globals"]], "wasm_memory_size": meta["wasm_memory_size"],
        "stable_memory_size": meta["stable_memory_size"], "certified_data": meta["certified_data"],
        "global_timer": meta["global_timer"], "on_low_wasm_memory_hook_status": []},
        management.UPLOAD_SNAPSHOT_METADATA_RESULT, cid)
    for kind, blob in data.items():
        for offset in range(0, len(blob), 1_000_000):
            mgmt(replica, "upload_canister_snapshot_data", management.UPLOAD_SNAPSHOT_DATA_ARGS,
                 {"canister_id": cid, "snapshot_id": out["snapshot_id"], "kind": {kind: {"offset": offset}},
                  "chunk": blob[offset:offset + 1_000_000]}, None, cid)
    return out["snapshot_id"]  # type: ignore[no-any-return]


def test_download_and_upload_a_snapshot(replica: Replica, counter: Principal) -> None:
    replica.update_call(counter, "inc", no_args())
    replica.update_call(counter, "stableWrite", candid.encode([NAT64, BLOB], [100_000, b"moved"]))
    replica.update_call(counter, "certify", candid.encode([BLOB], [b"e" * 32]))
    before = state_of(replica, counter)
    snap = take(replica, counter)
    meta, data = download(replica, counter, snap["id"])
    assert meta["source"] == [{"taken_from_canister": None}] and meta["certified_data"] == b"e" * 32
    assert data["wasm_module"] == replica.canisters[counter.raw].wasm
    with pytest.raises(CallRejected) as exc:  # past the end
        mgmt(replica, "read_canister_snapshot_data", management.READ_SNAPSHOT_DATA_ARGS,
             {"canister_id": counter, "snapshot_id": snap["id"],
              "kind": {"wasm_module": {"offset": meta["wasm_module_size"], "size": 1}}}, None, counter)
    assert exc.value.error_code == "IC0408"

    target = replica.create_canister(controllers=[ALICE], sender=ALICE)
    uploaded = upload_snapshot(replica, target, meta, data)
    with pytest.raises(CallRejected):  # data only goes into uploaded snapshots
        mgmt(replica, "upload_canister_snapshot_data", management.UPLOAD_SNAPSHOT_DATA_ARGS,
             {"canister_id": counter, "snapshot_id": snap["id"], "kind": {"wasm_module": {"offset": 0}},
              "chunk": b"x"}, None, counter)
    load(replica, target, uploaded)
    assert state_of(replica, target) == before
    assert decode1(replica.query_call(target, "get", no_args())) == 6
    assert decode1(replica.update_call(target, "inc", no_args())) == 7


def test_an_uploaded_snapshot_that_does_not_fit_is_refused(replica: Replica, counter: Principal) -> None:
    snap = take(replica, counter)
    meta, data = download(replica, counter, snap["id"])
    meta = dict(meta, globals=meta["globals"][:-1])  # one global short
    uploaded = upload_snapshot(replica, counter, meta, data)
    with pytest.raises(CallRejected) as exc:
        load(replica, counter, uploaded)
    assert exc.value.error_code == "IC0408" and "globals" in str(exc.value)
    bad = upload_snapshot(replica, counter, dict(meta, wasm_module_size=8), {"wasm_module": b"\x00asm\x09\x00\x00\x00"})
    with pytest.raises(CallRejected) as exc:
        load(replica, counter, bad)
    assert exc.value.error_code == "IC0505"
    assert decode1(replica.query_call(counter, "get", no_args())) == 5  # untouched


def test_an_uploaded_snapshot_survives_a_restart(tmp_path: Any, wasms: dict[str, bytes]) -> None:
    first = Replica(state_dir=tmp_path)
    cid = first.create_canister(controllers=[ALICE], sender=ALICE)
    first.install_code(cid, wasms["counter"], nat_arg(8), sender=ALICE)
    meta, data = download(first, cid, take(first, cid)["id"])
    first.update_call(cid, "inc", no_args())
    uploaded = upload_snapshot(first, cid, meta, data)
    first.close()
    second = Replica(state_dir=tmp_path)
    load(second, cid, uploaded)
    assert decode1(second.query_call(cid, "get", no_args())) == 8
    second.close()
