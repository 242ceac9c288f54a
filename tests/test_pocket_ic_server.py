"""`prometheus-pocket-ic` through the unmodified `pocket-ic` Python client (it starts the binary named by
POCKET_IC_BIN with `--port-file`, as it starts PocketIC), plus the REST shapes the client does not reach."""

from __future__ import annotations

import base64
import gc
import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest

from ic_replica import candid
from ic_replica.principal import MANAGEMENT, Principal
from tests.conftest import ALICE, BOB, decode1, nat_arg, no_args

pocket_ic = pytest.importorskip("pocket_ic")
ic_py = pytest.importorskip("ic")

BIN = Path(sys.executable).parent / "prometheus-pocket-ic"
pytestmark = pytest.mark.skipif(not BIN.exists(), reason="prometheus-pocket-ic is not installed (pip install -e .)")


def _server_pids(port_file: str) -> list[int]:
    """Our server processes started with this port file (the client starts them with os.system)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"prometheus-pocket-ic" in c for c in cmd) and port_file.encode() in cmd:
            pids.append(int(entry.name))
    return pids


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    """One server for the module, started by the client; stopped (by its pid) at the end."""
    port_file = f"{tempfile.gettempdir()}/pocket_ic_{os.getpid()}.port"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POCKET_IC_BIN", str(BIN))
        mp.setenv("POCKET_IC_MUTE_SERVER", "1")
        srv = pocket_ic.PocketICServer()
        yield srv
    gc.collect()  # clients the tests did not delete() delete their instances in __del__: while the server is up
    pids = _server_pids(port_file)
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    # The next module's pocketic backend (same process, same port file) must not find a server that is exiting.
    deadline = time.monotonic() + 30
    while any(pid in _server_pids(port_file) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


class _Deleted:
    """The server of a client whose instance is deleted: the client's `__del__` deletes it again whenever it is
    collected, by then perhaps after this module's server has stopped (an ignored-exception warning)."""

    @staticmethod
    def delete_instance(instance_id: int) -> None:
        pass


def delete(instance: Any) -> None:
    """Delete a `pocket_ic.PocketIC` client's instance, once."""
    try:
        instance.server.delete_instance(instance.instance_id)
    finally:
        instance.server = _Deleted()


@pytest.fixture
def pic(server: Any) -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POCKET_IC_BIN", str(BIN))
        mp.setenv("POCKET_IC_MUTE_SERVER", "1")
        instance = pocket_ic.PocketIC(pocket_ic.SubnetConfig(application=2, nns=True, ii=True, system=1))
    yield instance
    delete(instance)


def server_url(pic: Any) -> str:
    return str(pic.server.url)


def ip(p: Principal | str) -> Any:
    return ic_py.Principal(Principal.from_text(p).raw if isinstance(p, str) else p.raw)


def raw(p: Any) -> bytes:
    return bytes(p.bytes)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read()
            return resp.status, json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        with exc:
            text = exc.read()
        return exc.code, json.loads(text) if text else None


def install_counter(pic: Any, wasms: dict[str, bytes], initial: int = 0, subnet: Any = None) -> Any:
    cid = pic.create_canister(subnet=subnet)
    payload = candid.encode([candid.Record.of(mode=candid.Variant.of(install=candid.NULL),
                                              canister_id=candid.PRINCIPAL, wasm_module=candid.BLOB,
                                              arg=candid.BLOB)],
                            [{"mode": {"install": None}, "canister_id": Principal(raw(cid)),
                              "wasm_module": wasms["counter"], "arg": nat_arg(initial)}])
    pic.update_call_with_effective_principal(None, {"CanisterId": b64(raw(cid))}, "install_code", payload)
    return cid


def call(pic: Any, cid: Any, method: str, arg: bytes = b"", query: bool = False) -> Any:
    out = (pic.query_call if query else pic.update_call)(cid, method, arg or no_args())
    return decode1(bytes(out))


# ------------------------------------------------------------------ instances and topology


def test_instances_are_resources_with_a_multi_subnet_topology(server: Any, pic: Any) -> None:
    kinds = sorted(k.value for k in pic.topology().values())
    assert kinds == ["Application", "Application", "II", "NNS", "System"]
    status, topo = http("GET", f"{server.url}/instances/{pic.instance_id}/_/topology")
    assert status == 200 and topo == server.instance_get("read/topology", pic.instance_id)
    configs = topo["subnet_configs"]
    ranges = {sid: [(base64.b64decode(r["start"]["canister_id"]), base64.b64decode(r["end"]["canister_id"]))
                    for r in c["canister_ranges"]] for sid, c in configs.items()}
    flat = sorted(r for rs in ranges.values() for r in rs)
    assert all(a[1] < b[0] for a, b in zip(flat, flat[1:])), "canister ranges of different subnets overlap"
    nns = next(sid for sid, c in configs.items() if c["subnet_kind"] == "NNS")
    assert (Principal.from_text("rwlgt-iiaaa-aaaaa-aaaaa-cai").raw,
            Principal.from_text("renrk-eyaaa-aaaaa-aaada-cai").raw) in ranges[nns]
    assert all(len(c["subnet_seed"]) == 32 and c["instruction_config"] == "Production" for c in configs.values())
    default = base64.b64decode(topo["default_effective_canister_id"]["canister_id"])
    first_app = next(sid for sid, c in configs.items() if c["subnet_kind"] == "Application")
    assert any(lo <= default <= hi for lo, hi in ranges[first_app])
    # create canisters through the client: the default goes to the first application subnet
    cid = pic.create_canister()
    assert raw(cid) == default
    assert pic.get_subnet(cid).to_str() == first_app
    # listed, deleted, then gone
    assert server.list_instances()[pic.instance_id] == "Available"
    other = server.new_instance(pocket_ic.SubnetConfig(application=1)._json())
    server.delete_instance(other)
    assert server.list_instances()[other] == "Deleted"
    status, body = http("GET", f"{server.url}/instances/{other}/read/get_time")
    assert status == 400 and "deleted" in body["message"]
    status, body = http("GET", f"{server.url}/instances/999999/read/get_time")
    assert status == 404 and "message" in body


def test_bad_instance_configs_are_refused_with_an_error(server: Any) -> None:
    status, body = http("POST", f"{server.url}/instances", {"subnet_config_set": {"application": []}})
    assert status == 400 and "at least one subnet" in body["Error"]["message"]
    spec = {"state_config": {"FromPath": "/tmp/x"}, "instruction_config": "Production"}
    status, body = http("POST", f"{server.url}/instances", {"subnet_config_set": {"application": [spec]}})
    assert status == 400 and "state_config" in body["Error"]["message"]


def test_canisters_on_named_subnets_and_specified_ids(pic: Any, wasms: dict[str, bytes]) -> None:
    topo = {k.to_str(): v.value for k, v in pic.topology().items()}
    nns = ip(next(s for s, kind in topo.items() if kind == "NNS"))
    on_nns = install_counter(pic, wasms, 7, subnet=nns)
    assert pic.get_subnet(on_nns).to_str() == nns.to_str()
    assert call(pic, on_nns, "inc") == 8
    ii_id = ip("rdmx6-jaaaa-aaaaa-aaadq-cai")  # Internet Identity's mainnet id, hosted by the II subnet
    assert pic.create_canister(canister_id=ii_id).to_str() == ii_id.to_str()
    assert topo[pic.get_subnet(ii_id).to_str()] == "II"
    with pytest.raises(ValueError, match="already"):
        pic.create_canister(canister_id=ii_id)
    ledger = ip("ryjl3-tyaaa-aaaaa-aaaba-cai")  # the ICP ledger's id: NNS range
    assert topo[pic.get_subnet(pic.create_canister(canister_id=ledger)).to_str()] == "NNS"
    outside = ip(Principal(bytes.fromhex("00000001000000000101")))  # in no subnet's ranges: a new subnet, as on
    assert pic.create_canister(canister_id=outside).to_str() == outside.to_str()  # PocketIC
    assert pic.get_subnet(outside).to_str() not in topo
    assert not pic.check_canister_exists(ip("qoctq-giaaa-aaaaa-aaaea-cai"))


# ------------------------------------------------------------------ calls, cycles, memory, controllers


def test_update_query_cycles_and_controllers(server: Any, pic: Any, wasms: dict[str, bytes]) -> None:
    cid = install_counter(pic, wasms, 41)
    assert call(pic, cid, "get", query=True) == 41
    assert call(pic, cid, "inc") == 42
    assert call(pic, cid, "get", query=True) == 42
    pic.set_sender(ip(ALICE))
    assert decode1(bytes(pic.update_call(cid, "whoami", no_args()))) == ALICE
    pic.set_anonymous_sender()
    before = pic.get_cycles_balance(cid)
    assert before > 0
    assert pic.add_cycles(cid, 1_000_000) == before + 1_000_000
    assert pic.get_cycles_balance(cid) == before + 1_000_000
    controllers = server.instance_post("read/get_controllers", pic.instance_id, {"canister_id": b64(raw(cid))})
    assert [base64.b64decode(c["principal_id"]) for c in controllers] == [Principal.anonymous().raw]
    status, body = http("POST", f"{server.url}/instances/{pic.instance_id}/read/get_cycles",
                        {"canister_id": b64(Principal.from_text("qoctq-giaaa-aaaaa-aaaea-cai").raw)})
    assert status == 400 and body["message"].startswith("CanisterNotFound(")


def test_stable_memory_get_and_set_plain_and_gzip(pic: Any, wasms: dict[str, bytes]) -> None:
    cid = install_counter(pic, wasms)
    pic.update_call(cid, "stableWrite", candid.encode([candid.NAT64, candid.BLOB], [0, b"written by the canister"]))
    assert b"written by the canister" in pic.get_stable_memory(cid)  # (in a Motoko region, not at offset 0)
    pic.set_stable_memory(cid, b"set through the REST API")
    memory = pic.get_stable_memory(cid)
    assert memory.startswith(b"set through the REST API") and len(memory) % 65536 == 0
    assert not memory[24:].strip(b"\x00")  # the rest is zeros: the old contents are gone
    big = bytes(range(256)) * 600  # more than two pages
    pic.set_stable_memory(cid, gzip.compress(big), compression="gzip")
    memory = pic.get_stable_memory(cid)
    assert memory[: len(big)] == big and len(memory) >= 3 * 65536


# ------------------------------------------------------------------ time and rounds


def test_time_set_forward_refused_backwards_and_ticks(server: Any, pic: Any, wasms: dict[str, bytes]) -> None:
    cid = install_counter(pic, wasms)
    start = pic.get_time()["nanos_since_epoch"]
    pic.tick()
    assert pic.get_time()["nanos_since_epoch"] == start + 1  # a round moves time by 1 ns, nothing else does
    time.sleep(0.05)
    assert pic.get_time()["nanos_since_epoch"] == start + 1
    target = start + 3600 * 10**9
    pic.set_time(target)
    assert pic.get_time()["nanos_since_epoch"] == target
    assert call(pic, cid, "now", query=True) == start + 1  # not certified: queries see the last round's time
    pic.tick()
    assert pic.get_time()["nanos_since_epoch"] == target  # the next round runs at exactly the time set
    assert call(pic, cid, "now", query=True) == target
    pic.advance_time(60 * 10**9)
    assert pic.get_time()["nanos_since_epoch"] == target + 60 * 10**9
    with pytest.raises(ConnectionError, match=r"SettingTimeIntoPast"):
        pic.set_time(start)
    assert pic.get_time()["nanos_since_epoch"] == target + 60 * 10**9
    server.instance_post("update/set_certified_time", pic.instance_id, {"nanos_since_epoch": target + 61 * 10**9})
    assert pic.get_time()["nanos_since_epoch"] == target + 61 * 10**9
    # every subnet shares the clock: a canister on the NNS subnet sees the same time
    nns = next(k for k, v in pic.topology().items() if v.value == "NNS")
    other = install_counter(pic, wasms, subnet=nns)
    assert call(pic, other, "now", query=True) == call(pic, cid, "now", query=True)


def test_auto_progress_follows_wall_clock(server: Any, pic: Any, wasms: dict[str, bytes]) -> None:
    cid = install_counter(pic, wasms)
    assert server.instance_get("auto_progress", pic.instance_id) is False
    server.instance_post("auto_progress", pic.instance_id, {"artificial_delay_ms": 10})
    try:
        assert server.instance_get("auto_progress", pic.instance_id) is True
        first = pic.get_time()["nanos_since_epoch"]
        time.sleep(0.3)
        second = pic.get_time()["nanos_since_epoch"]
        assert second - first >= 200_000_000  # wall-clock time, not 1 ns per round
        assert abs(second - time.time_ns()) < 5 * 10**9
        submitted = server.instance_post("update/submit_ingress_message", pic.instance_id, {
            "sender": b64(Principal.anonymous().raw), "canister_id": b64(raw(cid)),
            "effective_principal": "None", "method": "inc", "payload": b64(no_args())})
        deadline = time.monotonic() + 10
        status = None
        while status is None and time.monotonic() < deadline:  # nobody ticks: the instance does
            status = server.instance_post("read/ingress_status", pic.instance_id,
                                          {"raw_message_id": submitted["Ok"], "raw_caller": None})
            time.sleep(0.02)
        assert status is not None and decode1(base64.b64decode(status["Ok"])) == 1
    finally:
        server.instance_post("stop_progress", pic.instance_id, {})
    assert server.instance_get("auto_progress", pic.instance_id) is False
    frozen = pic.get_time()["nanos_since_epoch"]
    time.sleep(0.05)
    assert pic.get_time()["nanos_since_epoch"] == frozen


# ------------------------------------------------------------------ ingress messages and errors


def test_submit_await_and_ingress_status(server: Any, pic: Any, wasms: dict[str, bytes]) -> None:
    cid = install_counter(pic, wasms)
    body = {"sender": b64(ALICE.raw), "canister_id": b64(raw(cid)), "effective_principal": "None",
            "method": "inc", "payload": b64(no_args())}
    submitted = server.instance_post("update/submit_ingress_message", pic.instance_id, body)
    message = submitted["Ok"]
    assert message["effective_principal"] == {"CanisterId": b64(raw(cid))}
    args = {"raw_message_id": message, "raw_caller": None}
    assert server.instance_post("read/ingress_status", pic.instance_id, args) is None  # not executed yet
    result = server.instance_post("update/await_ingress_message", pic.instance_id, message)
    assert decode1(base64.b64decode(result["Ok"])) == 1
    assert server.instance_post("read/ingress_status", pic.instance_id, args) == result
    mine = {"raw_message_id": message, "raw_caller": {"principal_id": b64(ALICE.raw)}}
    assert server.instance_post("read/ingress_status", pic.instance_id, mine) == result
    status, err = http("POST", f"{server.url}/instances/{pic.instance_id}/read/ingress_status",
                       {"raw_message_id": message, "raw_caller": {"principal_id": b64(BOB.raw)}})
    assert status == 403 and "different user" in err["message"]
    executed = server.instance_post("update/execute_ingress_message", pic.instance_id, body)
    assert decode1(base64.b64decode(executed["Ok"])) == 2


def test_reject_shapes_match_pocket_ic(server: Any, pic: Any, wasms: dict[str, bytes]) -> None:
    cid = install_counter(pic, wasms)
    with pytest.raises(ValueError) as trap:
        pic.update_call(cid, "incThenTrap", no_args())
    assert "reject code CanisterError" in str(trap.value) and "error code CanisterCalledTrap" in str(trap.value)
    assert call(pic, cid, "get", query=True) == 0  # rolled back
    body = {"sender": b64(Principal.anonymous().raw), "canister_id": b64(raw(cid)), "effective_principal": "None",
            "method": "incThenTrap", "payload": b64(no_args())}
    result = server.instance_post("update/execute_ingress_message", pic.instance_id, body)
    assert result["Err"]["reject_code"] == "CanisterError" and result["Err"]["error_code"] == "CanisterCalledTrap"
    assert result["Err"]["certified"] is True
    assert "deliberate trap" in result["Err"]["reject_message"]
    missing = server.instance_post("read/query", pic.instance_id, {**body, "method": "nope"})
    assert missing["Err"]["error_code"] == "CanisterMethodNotFound" and missing["Err"]["certified"] is False
    app = [k for k, v in pic.topology().items() if v.value == "Application"]
    ghost = Principal(raw(cid)[:7] + bytes([raw(cid)[7] + 5]) + b"\x01\x01")  # in the range, never created
    for target in (ghost, Principal.from_text("qoctq-giaaa-aaaaa-aaaea-cai"), Principal.from_text("2vxsx-fae")):
        res = server.instance_post("read/query", pic.instance_id, {**body, "canister_id": b64(target.raw)})
        assert res["Err"]["reject_code"] == "DestinationInvalid" and res["Err"]["error_code"] == "CanisterNotFound"
        assert res["Err"]["reject_message"] == f"Canister {target} not found."
        sub = server.instance_post("update/submit_ingress_message", pic.instance_id,
                                   {**body, "canister_id": b64(target.raw)})
        assert sub["Err"]["error_code"] == "CanisterNotFound"
    assert app
    unknown_method = server.instance_post("update/submit_ingress_message", pic.instance_id,
                                          {**body, "canister_id": b64(MANAGEMENT.raw), "method": "no_such"})
    assert unknown_method["Err"]["reject_code"] == "CanisterReject"
    assert unknown_method["Err"]["error_code"] == "UnknownManagementMessage"


# ------------------------------------------------------------------ keys and the IC HTTP interface


def test_pub_key_and_the_instance_ic_http_interface(server: Any, pic: Any, wasms: dict[str, bytes]) -> None:
    root_key = pic.get_root_key()
    assert root_key is not None and len(root_key) == 133
    with urllib.request.urlopen(f"{server.url}/instances/{pic.instance_id}/api/v2/status", timeout=10) as resp:
        status = cbor2.loads(resp.read())
    assert getattr(status, "value", status)["root_key"] == root_key
    # every subnet reports the same root key
    for subnet in pic.topology():
        assert bytes(server.instance_post("read/pub_key", pic.instance_id,
                                          {"subnet_id": b64(raw(subnet))})) == root_key
    status_code, err = http("POST", f"{server.url}/instances/{pic.instance_id}/read/pub_key",
                            {"subnet_id": b64(Principal.from_text("2vxsx-fae").raw)})
    assert status_code == 400 and err["message"].startswith("SubnetNotFound(")


def test_an_agent_calls_canisters_on_two_subnets_through_the_instance_url(server: Any, pic: Any,
                                                                          wasms: dict[str, bytes]) -> None:
    from prometheus_sdk.agent import connect
    from prometheus_sdk.network import Network

    nns = next(k for k, v in pic.topology().items() if v.value == "NNS")
    on_app, on_nns = install_counter(pic, wasms, 10), install_counter(pic, wasms, 20, subnet=nns)
    server.instance_post("auto_progress", pic.instance_id, {})
    try:
        conn = connect(Network("pocket", f"{server.url}/instances/{pic.instance_id}"))
        for cid, expected in ((on_app, 11), (on_nns, 21)):
            target = Principal(raw(cid)).to_text()
            assert decode1(conn.call(target, "inc", no_args())) == expected
            assert decode1(conn.query(target, "get", no_args())) == expected
    finally:
        server.instance_post("stop_progress", pic.instance_id, {})


# ------------------------------------------------------------------ the existing PocketIC backend


BASICS = ["test_install_update_query_with_init_arg", "test_caller_is_the_sender",
          "test_trap_rolls_back_the_heap_and_rejects_with_canister_error", "test_missing_method_is_rejected",
          "test_unknown_canister_is_destination_invalid", "test_empty_canister_rejects_calls",
          "test_only_controllers_install_and_manage", "test_lifecycle_stop_start_delete",
          "test_controllers_can_be_changed", "test_time_is_settable", "test_chunked_install"]


@pytest.mark.parametrize("name", BASICS)
def test_the_pocket_ic_backend_runs_replica_tests_on_this_server(server: Any, name: str,
                                                                 wasms: dict[str, bytes]) -> None:
    """tests/test_replica_basics.py on `testkit.backends.PocketIcBackend`, i.e. the path real PocketIC takes."""
    import inspect

    import tests.test_replica_basics as basics
    from testkit.backends import PocketIcBackend

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POCKET_IC_BIN", str(BIN))
        mp.setenv("POCKET_IC_MUTE_SERVER", "1")
        backend = PocketIcBackend()
    try:
        test = getattr(basics, name)
        if "wasms" in inspect.signature(test).parameters:
            test(backend, wasms)
        else:
            test(backend)
    finally:
        delete(backend.pic)


# ------------------------------------------------------------------ the command line


def test_cli_port_file_reuse_ttl_and_version(tmp_path: Path) -> None:
    out = subprocess.run([str(BIN), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("pocket-ic-server ")
    port_file = tmp_path / "pic.port"
    first = subprocess.Popen([str(BIN), "--port-file", str(port_file), "--ttl", "2"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not (port_file.exists() and port_file.read_text().endswith("\n")) and time.monotonic() < deadline:
            time.sleep(0.02)
        port = int(port_file.read_text())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as resp:
            assert resp.status == 200
        second = subprocess.run([str(BIN), "--port-file", str(port_file)], timeout=20)
        assert second.returncode == 0 and int(port_file.read_text()) == port  # the live server is shared
        assert first.wait(timeout=20) == 0  # idle for --ttl seconds: it exits
        assert not port_file.exists()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


# ------------------------------------------------------------------ PicJS


PIC_DIR = Path(__file__).parent / "js" / "pic"


def run_picjs(script: str, wasm: bytes, tmp_path: Path) -> dict[str, Any]:
    """A PicJS script of tests/js/pic against our server, given a canister's wasm: the JSON line it prints."""
    path = tmp_path / "canister.wasm"
    path.write_bytes(wasm)
    # TMPDIR: PicJS's port file is named after the parent pid (ours); keep it apart from the module's server
    env = {**os.environ, "POCKET_IC_BIN": str(BIN), "TMPDIR": str(tmp_path)}
    run = subprocess.run([picjs(), str(PIC_DIR / script), str(path)], cwd=PIC_DIR, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return dict(json.loads(run.stdout.strip().splitlines()[-1]))


def picjs() -> str:
    """node, with @dfinity/pic installed in tests/js/pic (scripts disabled: no PocketIC download)."""
    import shutil

    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are required for the PicJS tests")
    if not (PIC_DIR / "node_modules" / "@dfinity" / "pic").is_dir():
        subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PIC_DIR,
                       check=True, timeout=300)
    return node


def test_picjs_runs_unmodified_against_the_server(wasms: dict[str, bytes], tmp_path: Path) -> None:
    """@dfinity/pic (installed with scripts disabled: no PocketIC download) starts our binary through
    POCKET_IC_BIN, creates an NNS + two application subnets, sets up canisters, moves time, reads cycles,
    stable memory, controllers and the root key, then goes live behind the HTTP gateway for an HttpAgent."""
    out = run_picjs("pic_probe.mjs", wasms["counter"], tmp_path)
    assert out["kinds"] == ["Application", "Application", "NNS"] and out["apps"] == 2
    assert (out["get"], out["inc"]) == (5, 6) and out["onApp"] and out["onNns"] and out["nnsInc"] == 6
    assert "Reject code: CanisterError. Error code: CanisterCalledTrap. Certified: true" in out["trap"]
    assert out["advanced"] == 60000 and out["nowMatches"]
    assert "SettingTimeIntoPast" in out["backwards"]
    assert out["addCycles"] == "1000" and out["stable"] == "from picjs"
    assert out["controllers"] == ["2vxsx-fae"] and out["rootKey"] == 133
    assert (out["liveInc"], out["liveGet"]) == (7, 7) and out["ok"]


def test_picjs_mocks_a_canisters_https_outcall(wasms: dict[str, bytes], tmp_path: Path) -> None:
    """PocketIC's outcall API as PicJS drives it: pending requests listed after a tick (method, URL, headers,
    body, max_response_bytes), a mocked reply passed through the canister's transform, a mocked reject, and
    a request answered twice refused."""
    out = run_picjs("pic_outcalls.mjs", wasms["outcall"], tmp_path)
    assert out["pending"] == [
        {"url": url, "method": "POST", "body": "question", "headers": [["Accept", "text/plain"]], "max": 4096}
        for url in ("https://example.com/answer", "https://example.com/other")]
    assert out["ok"] == {"status": 200, "headers": [], "body": "42"}  # the transform dropped the header
    assert out["rejected"] == ["system_transient", "unreachable host"]
    assert out["afterwards"] == 0 and "Could not find a pending canister http request" in out["again"]


def test_canisters_call_canisters_on_other_subnets(pic: Any, wasms: dict[str, bytes]) -> None:
    """relay (application subnet) -> counter (NNS subnet) and back; rejects travel back too."""
    from ic_replica.candid import BLOB, PRINCIPAL, TEXT, Tuple, Variant

    nns = next(k for k, v in pic.topology().items() if v.value == "NNS")
    counter = install_counter(pic, wasms, 9, subnet=nns)
    relay = pic.create_canister()
    payload = candid.encode([candid.Record.of(mode=candid.Variant.of(install=candid.NULL),
                                              canister_id=candid.PRINCIPAL, wasm_module=candid.BLOB,
                                              arg=candid.BLOB)],
                            [{"mode": {"install": None}, "canister_id": Principal(raw(relay)),
                              "wasm_module": wasms["relay"], "arg": no_args()}])
    pic.update_call_with_effective_principal(None, {"CanisterId": b64(raw(relay))}, "install_code", payload)
    assert pic.get_subnet(relay).to_str() != pic.get_subnet(counter).to_str()
    result_type = Variant.of(ok=BLOB, err=Tuple(TEXT, TEXT))

    def forward(method: str) -> Any:
        arg = candid.encode([PRINCIPAL, TEXT, BLOB], [Principal(raw(counter)), method, no_args()])
        return decode1(bytes(pic.update_call(relay, "forward", arg)), result_type)

    assert decode1(forward("inc")["ok"]) == 10
    assert call(pic, counter, "get", query=True) == 10
    direct_type = Variant.of(ok=candid.NAT, err=Tuple(TEXT, TEXT))
    arg = candid.encode([PRINCIPAL, TEXT], [Principal(raw(counter)), "incThenTrap"])
    trapped = decode1(bytes(pic.update_call(relay, "direct", arg)), direct_type)["err"]
    assert trapped[0] == "canister_error" and "deliberate trap" in trapped[1]  # the reject code travels back
    assert call(pic, counter, "get", query=True) == 10
    # a management call naming a canister of another subnet goes there (canister_info: canisters only)
    info_type = [candid.NAT64, candid.Opt(BLOB), candid.Vec(PRINCIPAL)]
    arg = candid.encode([PRINCIPAL], [Principal(raw(counter))])
    changes, module_hash, controllers = candid.decode(bytes(pic.update_call(relay, "info", arg)), info_type)
    assert changes >= 2 and module_hash == [hashlib.sha256(wasms["counter"]).digest()]
    assert controllers == [Principal.anonymous()]
    # an agent's synchronous call (/api/v4 call) runs rounds of the whole instance, not only the relay's
    # subnet, so the cross-subnet call completes without auto progress
    from prometheus_sdk.agent import connect
    from prometheus_sdk.network import Network

    conn = connect(Network("pocket", f"{server_url(pic)}/instances/{pic.instance_id}"))
    arg = candid.encode([PRINCIPAL, TEXT, BLOB], [Principal(raw(counter)), "inc", no_args()])
    assert decode1(decode1(conn.call(Principal(raw(relay)).to_text(), "forward", arg), result_type)["ok"]) == 11


def _http_canister() -> bytes:
    """A canister whose `http_request` query answers 200 "hello from the gateway" (WAT, reply bytes baked in)."""
    import wasmtime

    headers = candid.Vec(candid.Tuple(candid.TEXT, candid.TEXT))
    http_response = candid.Record.of(status_code=candid.NAT16, headers=headers, body=candid.BLOB,
                                     upgrade=candid.Opt(candid.BOOL))
    reply = candid.encode([http_response], [{"status_code": 200, "headers": [("content-type", "text/plain")],
                                             "body": b"hello from the gateway", "upgrade": []}])
    data = "".join(f"\\{b:02x}" for b in reply)
    return bytes(wasmtime.wat2wasm(f"""(module
      (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
      (import "ic0" "msg_reply" (func $reply))
      (memory 1)
      (data (i32.const 0) "{data}")
      (func (export "canister_query http_request") (call $append (i32.const 0) (i32.const {len(reply)})) (call $reply)))
    """))


def test_http_gateway_serves_the_api_and_canister_http_requests(server: Any, pic: Any) -> None:
    """POST /http_gateway: the instance's IC API at /api/..., canisters through ic_replica.http_gateway."""
    cid = pic.create_canister()
    payload = candid.encode([candid.Record.of(mode=candid.Variant.of(install=candid.NULL),
                                              canister_id=candid.PRINCIPAL, wasm_module=candid.BLOB,
                                              arg=candid.BLOB)],
                            [{"mode": {"install": None}, "canister_id": Principal(raw(cid)),
                              "wasm_module": _http_canister(), "arg": b""}])
    pic.update_call_with_effective_principal(None, {"CanisterId": b64(raw(cid))}, "install_code", payload)
    status, created = http("POST", f"{server.url}/http_gateway", {"forward_to": {"PocketIcInstance": pic.instance_id}})
    assert status == 201
    gateway_id, port = created["Created"]["instance_id"], created["Created"]["port"]
    try:
        # the canister certifies nothing: raw access serves it, certified access refuses it (503), as on PocketIC
        req = urllib.request.Request(f"http://127.0.0.1:{port}/index.html",
                                     headers={"Host": f"{cid.to_str()}.raw.localhost"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200 and resp.read() == b"hello from the gateway"
            assert resp.headers["content-type"] == "text/plain"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/?canisterId={cid.to_str()}", timeout=10)
        with refused.value as resp:
            assert resp.code == 503 and b"verification" in resp.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/status", timeout=10) as resp:
            assert cbor2.loads(resp.read())["root_key"] == pic.get_root_key()
    finally:
        http("POST", f"{server.url}/http_gateway/{gateway_id}/stop")
