"""The README's main job (`make demo`) runs the whole lifecycle and says so."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT


def test_lifecycle_demo_runs_end_to_end(docker_host: str) -> None:
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py")], capture_output=True, text=True,
                         timeout=600, cwd=ROOT, env={**os.environ, "DOCKER_HOST": docker_host})
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "bounty #0: filed, verdict attest" in out and "sandboxed build" in out
    assert "outcome Verified, bounty state Paid" in out
    assert "verifier paid 5.00 PUSD, reputation 1" in out
    assert "versions: ['1.0.0']" in out
    assert "ICRC-3 log: 126request, 127bounty, 126attest, 126verified, 127payout, 118version" in out
