"""The reproducible build recipe: identical hashes across builds and checkout paths, cache, diagnostics."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from prometheus_build.recipe import build_canister, discover_canisters, source_digest
from prometheus_build.toolchain import find_toolchain
from tests.conftest import ROOT, TEST_CANISTERS

SMALL = "incompatible"  # the quickest test canister to compile


def _copy_sources(dest: Path) -> Path:
    src = dest / "src"
    shutil.copytree(TEST_CANISTERS / SMALL, src / SMALL)
    return src


def test_two_checkouts_give_identical_hashes(tmp_path: Path) -> None:
    one = _copy_sources(tmp_path / "checkout-one")
    two = _copy_sources(tmp_path / "a" / "deeper" / "checkout-two")
    (two / SMALL / "main.mo").touch()  # different mtime too
    r1 = build_canister(SMALL, one, f"{SMALL}/main.mo", tmp_path / "out1", tmp_path / "cache1")
    r2 = build_canister(SMALL, two, f"{SMALL}/main.mo", tmp_path / "out2", tmp_path / "cache2")
    assert not r1.cached and not r2.cached
    assert r1.sha256 == r2.sha256
    assert r1.wasm.read_bytes() == r2.wasm.read_bytes()
    assert "service" in r1.did.read_text()


def test_cache_is_keyed_by_source(tmp_path: Path) -> None:
    src = _copy_sources(tmp_path)
    first = build_canister(SMALL, src, f"{SMALL}/main.mo", tmp_path / "out", tmp_path / "cache")
    again = build_canister(SMALL, src, f"{SMALL}/main.mo", tmp_path / "out", tmp_path / "cache")
    assert again.cached and again.sha256 == first.sha256
    toolchain = find_toolchain()
    before = source_digest(src, f"{SMALL}/main.mo", toolchain)
    main = src / SMALL / "main.mo"
    main.write_text(main.read_text() + "\n// a comment changes the digest\n")
    assert source_digest(src, f"{SMALL}/main.mo", toolchain) != before


def test_concurrent_builds_of_the_same_sources_compile_once(tmp_path: Path) -> None:
    """Two processes (parallel test workers, two `prometheus build`s) building the same sources into one cache:
    one compiles, the other waits for it and reuses its output."""
    src = _copy_sources(tmp_path)
    script = ("import sys; from pathlib import Path; from prometheus_build.recipe import build_canister; "
              f"r = build_canister({SMALL!r}, Path(sys.argv[1]), {SMALL + '/main.mo'!r}, Path(sys.argv[2]), "
              "Path(sys.argv[3])); print(r.cached, r.sha256)")
    runs = [subprocess.Popen([sys.executable, "-c", script, str(src), str(tmp_path / f"out{i}"),
                              str(tmp_path / "cache")], cwd=ROOT, stdout=subprocess.PIPE, text=True)
            for i in range(2)]
    outputs = sorted(run.communicate(timeout=300)[0].split() for run in runs)
    assert all(run.returncode == 0 for run in runs)
    assert [cached for cached, _ in outputs] == ["False", "True"], outputs
    assert outputs[0][1] == outputs[1][1]


def test_a_cache_that_cannot_be_locked_still_builds(tmp_path: Path) -> None:
    """Where the entry's lock cannot be taken (here its path is a folder; elsewhere a lock file of another user,
    or a file system without flock), the build runs unlocked; a cache hit never touches the lock."""
    src = _copy_sources(tmp_path)
    digest = source_digest(src.resolve(), f"{SMALL}/main.mo", find_toolchain())
    (tmp_path / "cache" / f".{digest}.lock").mkdir(parents=True)
    first = build_canister(SMALL, src, f"{SMALL}/main.mo", tmp_path / "out", tmp_path / "cache")
    again = build_canister(SMALL, src, f"{SMALL}/main.mo", tmp_path / "out", tmp_path / "cache")
    assert not first.cached and again.cached and again.sha256 == first.sha256


def test_public_candid_metadata_is_embedded(tmp_path: Path) -> None:
    from ic_replica.wasm_module import prepare

    src = _copy_sources(tmp_path)
    result = build_canister(SMALL, src, f"{SMALL}/main.mo", tmp_path / "out", tmp_path / "cache")
    info = prepare(result.wasm.read_bytes())
    assert info.public_metadata["candid:service"].decode() == result.did.read_text()
    assert info.uses_eop and info.memory64


def test_compile_error_reports_file_line_col(tmp_path: Path) -> None:
    bad = tmp_path / "src" / "broken"
    bad.mkdir(parents=True)
    (bad / "main.mo").write_text('persistent actor {\n  public func f() : async Nat { "text" };\n};\n')
    proc = subprocess.run(
        [sys.executable, "-m", "prometheus_build", "--src", str(tmp_path / "src"), "--out", str(tmp_path / "out"),
         "--cache", str(tmp_path / "cache")],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )
    assert proc.returncode == 1
    assert "broken/main.mo:2:33: error [M0050]" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_source_folder_is_a_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "prometheus_build", "--src", str(tmp_path / "nope")],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_discovery_finds_every_canister() -> None:
    assert set(discover_canisters(TEST_CANISTERS)) == {"counter", "fake_registry", "incompatible", "outcall", "probe",
                                                       "relay", "ticker", "web"}


def test_checked_in_interfaces_match_the_canisters(product: dict[str, Any]) -> None:
    """candid/*.did is what clients are generated from: it must be the compiler's interface, byte for byte."""
    for name, result in product.items():
        assert (ROOT / "candid" / f"{name}.did").read_text() == result.did.read_text(), f"candid/{name}.did is stale"
