"""Dependencies point one way: canister interfaces <- SDK <- build, store <- CLI / worker (attestation stands alone,
used by the CLI); the replica is a peer
reached over its HTTP interface (or started as a process), never imported by the clients that test it."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.conftest import ROOT

PACKAGES = ("ic_replica", "prometheus_sdk", "prometheus_attest", "prometheus_build", "prometheus_cli",
            "prometheus_store", "verifier_bot")
ALLOWED: dict[str, set[str]] = {
    "ic_replica": set(),
    "prometheus_sdk": set(),
    "prometheus_attest": set(),  # agent attestation stands alone: MCP servers use it without the IC
    "prometheus_build": {"prometheus_sdk"},
    "prometheus_cli": {"prometheus_sdk", "prometheus_build", "prometheus_store", "prometheus_attest"},
    "prometheus_store": {"prometheus_sdk"},
    "verifier_bot": {"prometheus_sdk", "prometheus_build"},
}


def imports_of(package: str) -> dict[str, set[str]]:
    """Our packages each module of `package` imports (at any depth: imports inside functions count)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = {n for n in names if n in PACKAGES and n != package}
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_each_layer_imports_only_the_layers_below_it(package: str) -> None:
    wrong = {module: sorted(deps - ALLOWED[package]) for module, deps in imports_of(package).items()
             if deps - ALLOWED[package]}
    assert not wrong, f"{package} may import only {sorted(ALLOWED[package]) or 'nothing of ours'}: {wrong}"


def test_the_sdk_clients_load_without_the_replica_or_the_tools() -> None:
    probe = ("import sys, prometheus_sdk, prometheus_sdk.protocol, prometheus_sdk.codegen\n"
             "from prometheus_sdk.clients import audit_hub, ledger, management, mcp_registry\n"
             "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
             "('ic_replica', 'prometheus_cli', 'verifier_bot', 'prometheus_build', 'testkit'))\n"
             "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == ""


def test_the_cli_and_the_worker_load_without_the_replica() -> None:
    probe = ("import sys, prometheus_cli.main, verifier_bot.cli, verifier_bot.worker, prometheus_cli.developer, "
             "prometheus_cli.deploy, prometheus_cli.protocol, prometheus_store.web, prometheus_store.discovery\n"
             "print(','.join(sorted(m for m in sys.modules if m.startswith('ic_replica'))))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == ""
