"""Compiled modules are shared by every replica of the process (one wasmtime engine), bounded in number, and
never mixed across engines: a second deployment of the same code skips compilation."""

from __future__ import annotations

from typing import Any

import wasmtime

from ic_replica import Replica
from ic_replica.runtime import ModuleCache, new_engine, shared_engine
from ic_replica.wasm_module import prepare
from tests.conftest import nat_arg


def test_a_second_replica_reuses_the_first_ones_compiled_module(wasms: dict[str, Any]) -> None:
    first, second = Replica(), Replica()
    assert first.engine is second.engine is shared_engine()
    info = prepare(wasms["counter"])
    compiled = first.modules.get(info)
    assert second.modules.get(info) is compiled  # the same compiled object: no second compilation
    cid = second.create_canister()
    second.install_code(cid, wasms["counter"], nat_arg(5))
    assert second.query_call(cid, "get", b"DIDL\x00\x00")[-1] == 5


def test_the_cache_keeps_the_most_recent_modules_only() -> None:
    cache = ModuleCache(shared_engine())
    saved = dict(cache._modules)
    try:
        for n in range(ModuleCache.MAX_IN_MEMORY + 3):
            cache.get(prepare(wasmtime.wat2wasm(f'(module (func (export "f{n}")))')))
        assert len(cache._modules) == ModuleCache.MAX_IN_MEMORY
    finally:
        cache._modules.clear()
        cache._modules.update(saved)


def test_another_engine_gets_a_cache_of_its_own() -> None:
    engine = new_engine()
    assert ModuleCache(engine)._modules is not ModuleCache(shared_engine())._modules


def test_compiled_modules_on_disk_serve_another_process(tmp_path: Any, wasms: dict[str, Any],
                                                       monkeypatch: Any) -> None:
    """A localnet keeps compiled modules in a per-user folder (`--module-cache`, default under
    $XDG_CACHE_HOME): a new or reset localnet loads them instead of compiling (another engine stands in for
    another process)."""
    from ic_replica.http_server import default_module_cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = default_module_cache()
    assert folder == tmp_path / "xdg" / "ic_replica" / "modules"
    info = prepare(wasms["counter"])
    ModuleCache(new_engine(), folder).get(info)
    (saved,) = folder.iterdir()
    assert saved.suffix == ".cwasm" and oct(folder.stat().st_mode & 0o777) == "0o700"
    other = ModuleCache(new_engine(), folder)

    def no_compiling(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("compiled again instead of loading the compiled copy")

    monkeypatch.setattr(wasmtime.Module, "__init__", no_compiling)
    module = other.get(info)  # deserialized: far cheaper than the second it takes to compile
    assert {e.name for e in module.exports} >= {"canister_query get"}
