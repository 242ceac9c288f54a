"""Shared fixtures: test canisters built with the project's one build recipe, and IC backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ic_replica import candid
from ic_replica.principal import Principal
from prometheus_build.recipe import build_all
from tests.backends import available_backends, make_backend

ROOT = Path(__file__).resolve().parent.parent
TEST_CANISTERS = ROOT / "tests" / "canisters"
ALICE = Principal(b"\x0a" * 29)
BOB = Principal(b"\x0b" * 29)


@pytest.fixture(scope="session")
def wasms() -> dict[str, bytes]:
    """Every test canister, compiled by the reproducible recipe (cached by source hash)."""
    results = build_all(TEST_CANISTERS, ROOT / "build" / "test_canisters", ROOT / "build" / "cache", jobs=2)
    return {r.name: r.wasm.read_bytes() for r in results}


@pytest.fixture(scope="session")
def product() -> dict[str, Any]:
    """The product canisters in canister_src/, built by the recipe: name -> BuildResult."""
    results = build_all(ROOT / "canister_src", ROOT / "build" / "canisters", ROOT / "build" / "cache", jobs=2)
    return {r.name: r for r in results}


@pytest.fixture(params=available_backends())
def ic(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh IC per test: the embedded replica, and PocketIC too when POCKET_IC_BIN is set."""
    if request.param == "pocketic" and request.node.get_closest_marker("embedded_only"):
        pytest.skip("needs the embedded replica")
    if request.param == "embedded" and request.node.get_closest_marker("pocketic_only"):
        pytest.skip("needs real PocketIC")
    yield make_backend(request.param)


def nat_arg(n: int) -> bytes:
    return candid.encode([candid.NAT], [n])


def no_args() -> bytes:
    return candid.encode([], [])


def decode1(data: bytes, t: candid.Type | None = None) -> Any:
    return candid.decode(data, [t] if t is not None else None)[0]


from tests.docker_env import builder_image, docker_client, docker_host  # noqa: E402,F401 - Docker fixtures
from tests.protocol_stack import stack  # noqa: E402,F401 - the protocol fixture, for every test module
from tests.verifier_harness import git_repos, net  # noqa: E402,F401 - the verifier's world: IC + git + Docker


def install(ic: Any, wasms: dict[str, bytes], name: str, arg: bytes | None = None,
            controller: Principal = ALICE) -> Principal:
    """Create a canister controlled by `controller` and install a test canister on it."""
    cid = ic.create_canister(controllers=[controller], sender=controller)
    default_arg = nat_arg(0) if name == "counter" else no_args()
    ic.install_code(cid, wasms[name], default_arg if arg is None else arg, sender=controller)
    return cid  # type: ignore[no-any-return]
