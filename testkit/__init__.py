"""Helpers shared by the tests, the benchmarks and the demo (not part of the product, not installed):
IC backends, typed canister calls, the deployed protocol, loopback HTTP and git servers, the verifier's
world. pytest fixtures live in `tests/conftest.py` and wrap these."""

from __future__ import annotations

from pathlib import Path

from ic_replica.principal import Principal

ROOT = Path(__file__).resolve().parent.parent
TEST_CANISTERS = ROOT / "tests" / "canisters"
ALICE = Principal(b"\x0a" * 29)
BOB = Principal(b"\x0b" * 29)
