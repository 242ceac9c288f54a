"""The README's main job (`make demo`): the lifecycle through the real `prometheus` and `prometheus-verifier`
commands as subprocesses, each printed before it runs, against a background localnet and git on loopback."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

from tests.conftest import ROOT

DEMO = ROOT / "scripts" / "demo.py"


def test_demo_imports_nothing_from_tests_nor_product_internals() -> None:
    """A user types commands: the demo may use testkit's git server (standing in for GitHub), nothing else."""
    modules = set()
    for node in ast.walk(ast.parse(DEMO.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module.split(".")[0])
    assert not modules & {"tests", "prometheus_cli", "prometheus_build", "verifier_bot", "ic_replica"}, modules


def test_lifecycle_demo_runs_end_to_end(docker_host: str) -> None:
    run = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, timeout=600, cwd=ROOT,
                         env={**os.environ, "DOCKER_HOST": docker_host})
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    commands = [line[2:] for line in out.splitlines() if line.startswith("$ ")]
    assert commands[0].startswith("prometheus localnet start --background")
    assert "prometheus localnet deploy-protocol" in commands
    assert any(c.startswith("prometheus init --yes --name greeter") for c in commands)
    assert any(c.startswith("prometheus submit") and "--bounty 5000000" in c for c in commands)
    for expected in ("prometheus localnet fund developer 20000000", "prometheus localnet stake verifier 1000",
                     "prometheus build", "prometheus verify", "prometheus-verifier doctor", "prometheus-verifier once",
                     "prometheus status", "prometheus publish 1.0.0", "prometheus localnet stop"):
        assert expected in commands, (expected, commands)
    assert "eval \"$(prometheus-verifier dockerd start)\"" not in commands  # DOCKER_HOST given: no private daemon
    assert "packages: core (bundled), strutil (git), textutil (vendored)" in out  # prometheus build
    assert ": matches" in out  # prometheus verify
    assert "bounty     0  filed     attest" in out  # the worker's journal
    assert "in io.prometheus.demo.greeter: Verified" in out and "Paid to" in out
    assert "published io.prometheus.demo.greeter 1.0.0" in out
    # A stale commit in prometheus.yml: rejected, found by `verify`, fixed, verified in a new round.
    fix = out[out.index("# Version 1.1.0"):]
    assert "not submitted: the wasm was built from other source than commit" in fix  # submit's guard
    assert "prometheus submit --force --bounty 5000000" in fix
    assert "filed     diverge" in fix and ": Rejected" in fix
    assert "(a new round after #1)" in fix and ": Verified" in fix.split("a new round after #1")[1]
    assert "published io.prometheus.demo.greeter 1.1.0" in fix
    # The agent's side: the store finds the app, an MCP client sees its verification.
    agent = out[out.index("# An AI agent looks for a tool"):]
    assert "io.prometheus.demo.greeter" in agent and "verified" in agent
    assert "found io.prometheus.demo/greeter 1.1.0" in agent and "tier verified" in agent
    assert "attested by" in agent and "verify --offline" in agent
    assert "Traceback" not in out + run.stderr
