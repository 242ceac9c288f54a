"""A client written elsewhere: DFINITY's `icp` CLI (npm `@icp-sdk/icp-cli-linux-x64`, pinned below) drives a
canister's whole life on a replica served over HTTP, as a user would against a localnet.

How the CLI reaches the localnet: `-n <url> -k fetch` (or a project `icp.yaml` with a `mode: connected` network
whose `root-key: fetch`), so it takes the root key from `/api/v2/status` and checks every certificate with it.
Identities live in a temporary HOME (`icp identity new --storage plaintext`); telemetry is off (DO_NOT_TRACK).

Creation: icp 1.5.0 never calls `provisional_create_canister_with_cycles`. It creates through the cycles ledger
(after asking the cycles minting canister for subnets) or, with `--proxy`, through its proxy canister. A localnet
has neither ledger nor CMC, so the test does what icp's own managed networks do: a proxy canister (the module the
CLI carries, dfinity/proxy-canister) is created provisionally, with cycles, and `icp canister create --proxy`
routes `create_canister` through it: a canister-to-management call paying 2T cycles. For the same reason
`icp canister delete` runs with `--no-recover-cycles`: by default it installs a shim that deposits the cycles into
the cycles ledger, and that call is rejected here as on any network without one (checked below).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ic_replica import Replica
from ic_replica.http_server import IcHttpServer
from ic_replica.principal import Principal
from testkit import ROOT
from tests.test_system_api_complete import ICP_CLI, icp_cli_modules, npm_package_file

ICP_CLI_SHA256 = "ce8b4b89a5f06589bdeff578359f2da9581195484811495ae8c95c0ccd57bec9"  # package/bin/icp of 1.5.0
IN_RANGE_UNKNOWN = "bw4dl-smaaa-aaaaa-qaacq-cai"  # in the localnet's canister range, never created
OUT_OF_RANGE = "rkp4c-7iaaa-aaaaa-aaaca-cai"  # the mainnet CMC's id: outside every subnet range here
CYCLES_LEDGER = "um5iw-rqaaa-aaaaq-qaaba-cai"


@functools.cache
def icp_binary() -> Path:
    """The `icp` executable, fetched with npm once and kept in build/npm/icp-cli-1.5.0/icp (sha256 pinned)."""
    path = ROOT / "build" / "npm" / "icp-cli-1.5.0" / "icp"
    if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != ICP_CLI_SHA256:
        data = npm_package_file(*ICP_CLI)  # skips if npm or the registry is unreachable
        assert hashlib.sha256(data).hexdigest() == ICP_CLI_SHA256, "package/bin/icp is not the pinned binary"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # xdist workers may fetch at once
        tmp.write_bytes(data)
        tmp.chmod(0o755)
        tmp.replace(path)
    return path


@dataclass
class Icp:
    """The real CLI against one localnet, in its own HOME and project directory."""
    url: str
    home: Path
    project: Path
    replica: Replica
    proxy: str = ""
    principals: dict[str, str] = field(default_factory=dict)
    canister: str = ""  # the canister the lifecycle steps share

    def run(self, *args: str, network: bool = True, identity: str = "alice") -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home), "DO_NOT_TRACK": "1",
               "NO_COLOR": "1", "RUST_BACKTRACE": "0"}
        argv = [str(icp_binary()), *args]
        if network:
            argv += ["-n", self.url, "-k", "fetch", "--identity", identity]
        return subprocess.run(argv, cwd=self.project, env=env, capture_output=True, text=True, timeout=120,
                              check=False)

    def ok(self, *args: str, network: bool = True, identity: str = "alice") -> str:
        """Its stdout (results, JSON); the test fails with its stderr if it exits non-zero."""
        proc = self.run(*args, network=network, identity=identity)
        assert proc.returncode == 0, f"icp {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        return proc.stdout

    def ok_text(self, *args: str, identity: str = "alice") -> str:
        """Its stdout and stderr (where it reports progress and warnings); it must exit 0."""
        proc = self.run(*args, identity=identity)
        assert proc.returncode == 0, f"icp {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        return proc.stdout + proc.stderr

    def fails(self, *args: str, identity: str = "alice") -> str:
        """Its stdout and stderr; it must exit non-zero."""
        proc = self.run(*args, identity=identity)
        assert proc.returncode != 0, f"icp {' '.join(args)} succeeded:\n{proc.stdout}"
        return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def icp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Icp]:
    home, project = tmp_path_factory.mktemp("icp-home"), tmp_path_factory.mktemp("icp-project")
    cli = Icp("", home, project, Replica())
    for name in ("alice", "bob"):
        cli.ok("identity", "new", name, "--storage", "plaintext", "--quiet", network=False)
        cli.principals[name] = cli.ok("identity", "principal", "--identity", name, network=False).strip()
    cli.ok("identity", "default", "alice", network=False)
    # the proxy icp deploys on its managed networks, made here provisionally with cycles, alice its controller
    alice = Principal.from_text(cli.principals["alice"])
    proxy = cli.replica.create_canister(controllers=[alice], cycles=100 * 10**12, sender=alice)
    cli.replica.install_code(proxy, icp_cli_modules()["proxy"], b"DIDL\x00\x00", sender=alice)
    cli.proxy = proxy.to_text()
    server = IcHttpServer(cli.replica).start()
    cli.url = server.url
    try:
        yield cli
    finally:
        server.stop()
        cli.replica.close()


@pytest.fixture(scope="module")
def counter_wasm(wasms: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("icp-wasm") / "counter.wasm"
    path.write_bytes(wasms["counter"])
    return path


def needs_canister(icp: Icp) -> str:
    if not icp.canister:
        pytest.skip("the create step failed")
    return icp.canister


def test_the_root_key_is_fetched_from_status_for_a_url_and_a_project_network(icp: Icp) -> None:
    (icp.project / "icp.yaml").write_text("networks:\n  - name: localnet\n    mode: connected\n"
                                          f"    url: {icp.url}\n    root-key: fetch\n")
    try:
        proc = icp.run("network", "ping", "localnet", network=False)
    finally:
        (icp.project / "icp.yaml").unlink()
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["replica_health_status"] == "healthy"
    assert bytes(status["root_key"]) == icp.replica.root_key_der
    assert f"fetching the root key from {icp.url}/" in proc.stderr


def test_create_through_the_proxy_with_cycles(icp: Icp) -> None:
    alice = icp.principals["alice"]
    out = icp.ok("canister", "create", "--detached", "--proxy", icp.proxy, "--controller", alice,
                 "--cycles", "2t", "--quiet")
    cid = out.strip()
    assert re.fullmatch(r"[a-z0-9]{5}(-[a-z0-9]{5}){3}-cai", cid), out
    icp.canister = cid


def test_install_then_update_and_query(icp: Icp, counter_wasm: Path) -> None:
    cid = needs_canister(icp)
    out = icp.ok_text("canister", "install", cid, "--wasm", str(counter_wasm), "--args", "(5 : nat)")
    assert f"Canister {cid} installed successfully" in out
    assert icp.ok("canister", "call", cid, "inc", "()").strip() == "(6 : nat)"
    assert icp.ok("canister", "call", cid, "get", "()", "--query").strip() == "(6 : nat)"
    # the Candid interface is read from the certified candid:service metadata: no "inferred types" warning
    proc = icp.run("canister", "call", cid, "get", "()", "--query")
    assert "no Candid interface is available" not in proc.stderr


def test_status_and_settings_as_controller(icp: Icp, counter_wasm: Path) -> None:
    cid = needs_canister(icp)
    status = json.loads(icp.ok("canister", "status", cid, "--json"))
    assert status["id"] == cid and status["status"] == "Running"
    assert status["settings"]["controllers"] == [icp.principals["alice"]]
    assert status["module_hash"] == "0x" + hashlib.sha256(counter_wasm.read_bytes()).hexdigest()
    assert status["cycles"] == "2_000_000_000_000"  # what `--cycles 2t` made the proxy attach
    text = icp.ok_text("canister", "settings", "show", cid)
    assert f"controller: {icp.principals['alice']}" in text
    assert "Freezing threshold: 2_592_000" in text and "Log visibility: Controllers" in text


def test_a_non_controller_reads_public_status_only(icp: Icp) -> None:
    cid = needs_canister(icp)
    out = icp.ok_text("canister", "status", cid, identity="bob")  # falls back to the certified public state
    assert f"controller: {icp.principals['alice']}" in out and "Module hash: 0x" in out and "Cycles" not in out
    err = icp.fails("canister", "logs", cid, identity="bob")
    assert f"Caller {icp.principals['bob']} is not allowed to query ic00 method fetch_canister_logs" in err
    assert 'error code Some("IC0406")' in err


def test_add_a_controller(icp: Icp) -> None:
    cid = needs_canister(icp)
    icp.ok("canister", "settings", "update", cid, "--add-controller", icp.principals["bob"])
    text = icp.ok_text("canister", "settings", "show", cid)
    assert f"controller: {icp.principals['bob']}" in text and f"controller: {icp.principals['alice']}" in text
    # bob now controls it: the full status, as a controller
    assert json.loads(icp.ok("canister", "status", cid, "--json", identity="bob"))["status"] == "Running"


def test_upgrade_keeps_the_heap_and_reinstall_resets_it(icp: Icp, counter_wasm: Path) -> None:
    cid = needs_canister(icp)
    # an EOP (Motoko) canister: icp defaults to wasm_memory_persistence = keep
    icp.ok("canister", "install", cid, "--wasm", str(counter_wasm), "--mode", "upgrade", "--args", "(0 : nat)")
    assert icp.ok("canister", "call", cid, "get", "()", "--query").strip() == "(6 : nat)"
    assert icp.ok("canister", "call", cid, "upgradeCount", "()", "--query").strip() == "(1 : nat)"
    icp.ok("canister", "install", cid, "--wasm", str(counter_wasm), "--mode", "reinstall", "--args", "(100 : nat)",
           "--yes")
    assert icp.ok("canister", "call", cid, "get", "()", "--query").strip() == "(100 : nat)"
    assert icp.ok("canister", "call", cid, "inc", "()").strip() == "(101 : nat)"


def test_logs(icp: Icp) -> None:
    cid = needs_canister(icp)
    records = json.loads(icp.ok("canister", "logs", cid, "--json"))["log_records"]
    contents = [r["content"] for r in records]  # Debug.print in inc
    assert "count=6" in contents and contents[-1] == "count=101"
    assert [r["index"] for r in records] == list(range(len(records)))
    assert records[0]["timestamp"] <= records[-1]["timestamp"]
    text = icp.ok_text("canister", "logs", cid)
    assert re.search(r"\[\d+\. \d{4}-\d\d-\d\dT[\d:.]+Z\]: count=101", text), text


def test_stop_refuses_calls_until_started_again(icp: Icp) -> None:
    cid = needs_canister(icp)
    icp.ok("canister", "stop", cid)
    assert json.loads(icp.ok("canister", "status", cid, "--json"))["status"] == "Stopped"
    err = icp.fails("canister", "call", cid, "inc", "()")
    assert f"Canister {cid} is stopped and therefore does not have a CallContextManager" in err
    assert 'error code Some("IC0508")' in err
    icp.ok("canister", "start", cid)
    assert icp.ok("canister", "call", cid, "get", "()", "--query").strip() == "(101 : nat)"
    icp.ok("canister", "stop", cid)


def test_delete(icp: Icp) -> None:
    cid = needs_canister(icp)
    icp.ok("canister", "delete", cid, "--no-recover-cycles")
    assert f"Canister {cid} was not found." in icp.fails("canister", "status", cid)
    err = icp.fails("canister", "call", cid, "get", "()", "--query")
    assert f"reject code DestinationInvalid, reject message Canister {cid} not found." in err


def test_delete_recovers_cycles_through_the_cycles_ledger_which_the_localnet_lacks(icp: Icp) -> None:
    out = icp.ok("canister", "create", "--detached", "--proxy", icp.proxy, "--controller", icp.principals["alice"],
                 "--cycles", "1t", "--quiet")
    cid = out.strip()
    icp.ok("canister", "stop", cid)
    err = icp.fails("canister", "delete", cid)
    # the shim's deposit to the cycles ledger: a canister call to a canister that does not exist (reject 3)
    assert f"canister {cid} failed to deposit its cycles" in err
    assert f"call rejected: 3 - Canister {CYCLES_LEDGER} not found." in err


@pytest.mark.parametrize("query", [False, True], ids=["update", "query"])
def test_unknown_canister_ids_get_the_ic_errors(icp: Icp, query: bool) -> None:
    flag = ["--query"] if query else []
    # in the subnet's range but never created: reject 3, IC0301, as the IC answers
    err = icp.fails("canister", "call", IN_RANGE_UNKNOWN, "get", "()", *flag)
    assert (f"reject code DestinationInvalid, reject message Canister {IN_RANGE_UNKNOWN} not found., "
            'error code Some("IC0301")') in err
    # outside every range: no subnet to route to, HTTP 400 canister_not_found (before any execution)
    err = icp.fails("canister", "call", OUT_OF_RANGE, "get", "()", *flag)
    assert 'status 400 Bad Request, content type "text/plain", content: canister_not_found' in err
    assert OUT_OF_RANGE in err


def test_status_of_unknown_canister_ids(icp: Icp) -> None:
    assert f"Canister {IN_RANGE_UNKNOWN} was not found." in icp.fails("canister", "status", IN_RANGE_UNKNOWN)
    err = icp.fails("canister", "status", OUT_OF_RANGE)
    assert "status 400 Bad Request" in err and "canister_not_found" in err
