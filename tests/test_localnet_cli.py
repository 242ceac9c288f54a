"""`prometheus localnet` end to end: the real CLI, a background replica process, deploy, restart, reset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ic_replica import candid
from prometheus_sdk import Network, connect
from testkit.ports import free_port
from tests.conftest import ROOT, TEST_CANISTERS, nat_arg, no_args


@pytest.fixture
def cli(tmp_path: Path) -> Iterator:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "PROMETHEUS_LOCALNET_DIR": str(tmp_path / "ln")}
    project = tmp_path / "project"
    project.mkdir()

    def run(*args: str, check: bool = True, extra_env: dict[str, str] | None = None, code: int = 0,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """The real CLI in a subprocess; `check` asserts the exit code is `code`."""
        proc = subprocess.run([sys.executable, "-m", "prometheus_cli", *args], cwd=cwd or project,
                              env={**env, **(extra_env or {})}, capture_output=True, text=True, timeout=300)
        if check:
            assert proc.returncode == code, proc.stderr + proc.stdout
        return proc

    run.project = project  # type: ignore[attr-defined]
    run.env = env  # type: ignore[attr-defined]
    yield run
    run("localnet", "stop", check=False)


def test_start_deploy_restart_reset(cli, wasms: dict[str, bytes]) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    started = json.loads(cli("localnet", "start", "--background", "--port", str(port), "--json").stdout)
    url = started["url"]
    assert url == f"http://127.0.0.1:{port}"
    again = cli("localnet", "start", "--background", "--port", str(port), check=False)
    assert again.returncode == 1 and "already running" in again.stderr and "Traceback" not in again.stderr

    deployed = json.loads(cli("localnet", "deploy", "--src", str(TEST_CANISTERS), "counter",
                              "--arg", f"counter={nat_arg(40).hex()}", "--json").stdout)
    (row,) = deployed
    assert row["action"] == "installed"
    cid = row["canister_id"]
    conn = connect(Network("local", url))
    assert candid.decode(conn.call(cid, "inc", no_args()))[0] == 41
    assert json.loads(cli("localnet", "deploy", "--src", str(TEST_CANISTERS), "counter", "--json").stdout)[0][
        "action"] == "unchanged"

    status = json.loads(cli("localnet", "status", "--json").stdout)
    assert status["canisters"] == [cid] and len(status["root_key_sha256"]) == 64
    refused = cli("localnet", "reset", "--yes", check=False)
    assert refused.returncode == 1 and "running" in refused.stderr

    cli("localnet", "stop")
    assert cli("localnet", "status", check=False).returncode == 1
    cli("localnet", "start", "--background", "--port", str(port))
    restarted = json.loads(cli("localnet", "status", "--json").stdout)
    assert restarted["root_key_sha256"] == status["root_key_sha256"]  # the same network keys
    assert candid.decode(connect(Network("local", url)).query(cid, "get", no_args()))[0] == 41  # state kept

    cli("localnet", "stop")
    cli("localnet", "reset", "--yes")
    cli("localnet", "start", "--background", "--port", str(port))
    assert json.loads(cli("localnet", "status", "--json").stdout)["canisters"] == []


def test_errors_are_one_line_with_a_hint(cli) -> None:  # type: ignore[no-untyped-def]
    stopped = cli("localnet", "stop", check=False)
    assert stopped.returncode == 1
    assert stopped.stderr.startswith("error: no local replica is running") and "hint:" in stopped.stderr
    missing = cli("localnet", "deploy", "--url", "http://127.0.0.1:9", "--src", "nowhere", check=False)
    assert missing.returncode == 1 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    unreachable = cli("localnet", "deploy", "--url", "http://127.0.0.1:9", "--src", str(TEST_CANISTERS), "ticker",
                      check=False)
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr


def test_help_is_fast_and_lists_commands() -> None:
    proc = subprocess.run([sys.executable, "-m", "prometheus_cli", "localnet", "--help"], capture_output=True,
                          text=True, cwd=ROOT, check=True)
    for command in ("start", "stop", "status", "reset", "deploy"):
        assert command in proc.stdout


def test_deploy_protocol_wires_the_canisters(cli) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    url = json.loads(cli("localnet", "start", "--background", "--port", str(port), "--json").stdout)["url"]
    first = json.loads(cli("localnet", "deploy-protocol", "--json").stdout)
    ids = {name: row["id"] for name, row in first["canisters"].items()}
    assert {row["action"] for row in first["canisters"].values()} == {"installed"}
    again = json.loads(cli("localnet", "deploy-protocol", "--json").stdout)
    assert {row["action"] for row in again["canisters"].values()} == {"unchanged"}
    assert {name: row["id"] for name, row in again["canisters"].items()} == ids
    from prometheus_sdk.canister import CanisterClient

    conn = connect(Network("local", url))
    hub = CanisterClient.from_did(conn, ids["audit_hub"], ROOT / "candid" / "audit_hub.did")
    registry = CanisterClient.from_did(conn, ids["mcp_registry"], ROOT / "candid" / "mcp_registry.did")
    assert registry.get_policy()["quorum"] == 1
    assert registry.icrc127_get_bounty(0) == [] and registry.escrow_summary() == []
    assert registry.get_policy()["min_bounty_reward"] == 100_000
    assert hub.get_locks([], 10) == []
    assert str(hub.get_auditor_profile(conn.agent.identity.sender())["principal"]) == conn.principal
    orchestrator = CanisterClient.from_did(conn, ids["mcp_orchestrator"], ROOT / "candid" / "mcp_orchestrator.did")
    assert str(orchestrator.get_governance()) == first["governance"]
    assert orchestrator.list_instances({"namespace": [], "after": [], "limit": 10}) == []


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="zombies are told apart through /proc")
def test_a_replica_that_exited_is_not_running_before_it_is_reaped(tmp_path: Path) -> None:
    """The background replica's parent is init, which may reap it seconds after it exits; until then its pid
    still answers kill(pid, 0). `localnet stop` (and every client asking whether a localnet runs) must see it gone
    as soon as it exits, not when it is reaped."""
    from prometheus_sdk.localnet import STATE_FILE, running

    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    (tmp_path / STATE_FILE).write_text(json.dumps({"pid": child.pid, "url": "http://127.0.0.1:1"}))
    try:
        assert running(tmp_path) == {"pid": child.pid, "url": "http://127.0.0.1:1"}
        assert child.stdin is not None
        child.stdin.close()  # it exits; not reaped (no wait) until the end of the test
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child did not exit"
            time.sleep(0.01)
        os.kill(child.pid, 0)  # a zombie still answers
        assert running(tmp_path) is None
    finally:
        child.kill()
        child.wait()
