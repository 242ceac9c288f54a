"""Canisters as an earlier release built them, from git history, for tests that upgrade a release in place."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from prometheus_build.recipe import build_all
from testkit import ROOT

# The last commit whose registry kept uploads and log blocks in the old shapes.
REGISTRY_RELEASE = "4c01e47"
# The last commit whose registry kept a complete upload's emptied chunk map with its 31 slots (now slotless).
REGISTRY_SLOTS_RELEASE = "4fcbf3f"
# The orchestrator before ICRC-118 upgrade paths and the ICRC-120 event index (its stable registry reference
# had fewer methods).
ORCHESTRATOR_RELEASE = "525a825"
# The auth server as issue 17's first delivery left it (before client metadata documents and certified responses).
AUTH_SERVER_RELEASE = "c4fadf7"


def released_product(commit: str, tmp: Path, names: Sequence[str] | None = None) -> dict[str, Any]:
    """`canister_src` at `commit`, built by the recipe: name -> BuildResult (skipped without that history);
    `names`: only these canisters (each compile of a release is a cache miss: its sources differ)."""
    if subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{commit}^{{commit}}"],
                      capture_output=True, check=False).returncode != 0:
        pytest.skip(f"this checkout has no history back to {commit}")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "canister_src"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
    built = build_all(Path(tmp) / "canister_src", Path(tmp) / "out", ROOT / "build" / "cache", names=names)
    return {r.name: r for r in built}
