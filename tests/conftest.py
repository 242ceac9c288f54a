"""Shared fixtures: test canisters built with the project's one build recipe, and IC backends."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ic_replica import candid
from ic_replica.principal import Principal
from prometheus_build.recipe import build_all
from testkit import ALICE, BOB, ROOT, TEST_CANISTERS, git_server  # noqa: F401 - re-exported for the test modules
from testkit.backends import EmbeddedBackend, available_backends, make_backend
from testkit.protocol import Stack
from testkit.verifier import Net, principal


def _share_the_build_cache() -> None:
    """Commands the tests run (`prometheus localnet deploy-protocol`, `prometheus build`, the demo) cache what
    they compile per user, under $XDG_CACHE_HOME/prometheus/build; the fixtures below cache in build/cache. Unless
    the caller chose an XDG_CACHE_HOME, the run uses build/xdg-cache, whose build cache is build/cache: each
    canister is compiled once per run (outputs are keyed by source digest, and a lock per entry makes parallel
    workers wait for one compile), and the user's own cache is left alone."""
    if os.environ.get("XDG_CACHE_HOME"):
        return
    xdg = ROOT / "build" / "xdg-cache"
    link = xdg / "prometheus" / "build"
    target = Path("..", "..", "cache")  # relative: a moved or copied checkout keeps its own cache
    (ROOT / "build" / "cache").mkdir(parents=True, exist_ok=True)
    link.parent.mkdir(parents=True, exist_ok=True)
    if not (link.is_symlink() and Path(os.readlink(link)) == target):
        made = link.with_name(f"build.{os.getpid()}")
        made.unlink(missing_ok=True)
        made.symlink_to(target, target_is_directory=True)
        try:
            os.replace(made, link)  # atomic, whichever worker is last
        except OSError:  # a real folder there: leave it, and the user's cache, alone
            made.unlink()
            return
    os.environ["XDG_CACHE_HOME"] = str(xdg)


_share_the_build_cache()


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


def install(ic: Any, wasms: dict[str, bytes], name: str, arg: bytes | None = None,
            controller: Principal = ALICE) -> Principal:
    """Create a canister controlled by `controller` and install a test canister on it."""
    cid = ic.create_canister(controllers=[controller], sender=controller)
    default_arg = nat_arg(0) if name == "counter" else no_args()
    ic.install_code(cid, wasms[name], default_arg if arg is None else arg, sender=controller)
    return cid  # type: ignore[no-any-return]

@pytest.fixture(params=["inproc", "http"])
def stack(request: pytest.FixtureRequest, ic: Any, product: dict[str, Any]) -> Iterator[Stack]:
    """The protocol, called in process or over the IC HTTP interface through the SDK (signed requests,
    verified certificates). Tests that travel in time or need calls in one round are `inproc_only`."""
    if request.param == "inproc":
        yield Stack.deploy(ic, product)
        return
    if ic.name == "pocketic":  # the instance's own IC HTTP interface
        yield Stack.deploy(ic, product, ic.http_url)
        return
    from ic_replica.http_server import IcHttpServer

    server = IcHttpServer(ic.replica).start()
    try:
        yield Stack.deploy(ic, product, server.url)
    finally:
        server.stop()

def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`inproc_only` tests have no HTTP variant: they move the replica's clock or deliver calls in one round."""
    dropped = [item for item in items if item.get_closest_marker("inproc_only")
               and getattr(getattr(item, "callspec", None), "params", {}).get("stack") == "http"]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if all(item is not d for d in dropped)]


@pytest.fixture(scope="module")
def git_repos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("repos")
    with git_server.serve(root) as url:
        yield url, root

@pytest.fixture
def net(product: dict[str, Any], git_repos: tuple[str, Path], tmp_path: Path) -> Iterator[Net]:
    """A fresh protocol deployment per test (so no test sees another's bounties), served over HTTP."""
    from ic_replica.http_server import IcHttpServer

    ic = EmbeddedBackend()
    server = IcHttpServer(ic.replica).start()
    try:
        stack = Stack.deploy(ic, product, server.url)
        stack.stake(principal())
        yield Net(stack, server.url, git_repos[0], git_repos[1], ROOT / "build" / "cache")
    finally:
        server.stop()
        ic.replica.close()
