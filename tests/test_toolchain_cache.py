"""The per-user toolchain cache's safety rules (no network: a fake npm copies this checkout's node_modules):
never install over a folder that is not ours, a readable folder for other users, an absolute
$PROMETHEUS_TOOLCHAIN_DIR only, the install marker checked at use (and file hashes with `list --verify`), and
leftovers of killed installs removed."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from prometheus_build import toolchain
from tests.conftest import ROOT
from tests.test_packaging import COPY_NPM, fake_npm

PROMETHEUS = Path(sys.executable).parent / "prometheus"


@pytest.fixture
def no_checkout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """As in an installed wheel (as in tests/test_packaging.py): no checkout toolchain, no
    $PROMETHEUS_TOOLCHAIN_DIR; the user cache under tmp_path, whose install folder this returns."""
    monkeypatch.setattr(toolchain, "checkout_dir", lambda: None)
    monkeypatch.delenv(toolchain.ENV_DIR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    toolchain.set_auto_install(None)
    return tmp_path / "cache" / "prometheus" / "toolchain" / toolchain.lock_sha256()[:16]


@pytest.fixture
def npm(tmp_path: Path) -> str:
    return str(fake_npm(tmp_path / "bin", COPY_NPM))


@pytest.fixture
def umask022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def cli(*args: str, env: dict[str, str], code: int) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(PROMETHEUS), *args], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL, cwd=ROOT)
    assert proc.returncode == code, f"exit {proc.returncode}\n{proc.stderr}{proc.stdout}"
    assert "Traceback" not in proc.stderr + proc.stdout
    return proc


# ---- 13: never install over a folder that is not ours ------------------------------------------------------

def test_a_js_project_is_never_installed_over(no_checkout: Path, tmp_path: Path, npm: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "myproj"
    (project / "node_modules" / "left-pad").mkdir(parents=True)
    (project / "package.json").write_text('{"name": "myproj"}\n')
    (project / "package-lock.json").write_text('{"name": "myproj", "lockfileVersion": 3}\n')
    (project / "node_modules" / "left-pad" / "index.js").write_text("module.exports = 1\n")
    before = {p: p.read_bytes() for p in project.rglob("*") if p.is_file()}
    monkeypatch.setenv(toolchain.ENV_DIR, str(project))
    for force in (False, True):
        with pytest.raises(toolchain.ToolchainDirRefused) as refused:
            toolchain.install_toolchain(force=force, npm=npm)
        assert str(project) in str(refused.value) and "neither empty nor a toolchain folder" in str(refused.value)
        assert "new or empty folder" in refused.value.hint
    # first use with auto-install: refused the same way, nothing downloaded
    toolchain.set_auto_install(lambda line: pytest.fail(f"must not install: {line}"))
    try:
        with pytest.raises(toolchain.ToolchainDirRefused):
            toolchain.find_toolchain()
    finally:
        toolchain.set_auto_install(None)
    # the CLI: exit 1 with the error and hint, no traceback
    refused_cli = cli("toolchain", "install", "--force", env={toolchain.ENV_DIR: str(project)}, code=1)
    assert str(project) in refused_cli.stderr and "new or empty folder" in refused_cli.stderr
    assert {p: p.read_bytes() for p in project.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".myproj")] == []
    # a file is not a folder either
    (tmp_path / "afile").write_text("x")
    with pytest.raises(toolchain.ToolchainDirRefused, match="is not a folder"):
        toolchain.install_toolchain(tmp_path / "afile", npm=npm)


def test_an_empty_folder_or_one_of_ours_is_installed_into(no_checkout: Path, tmp_path: Path, npm: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert toolchain.install_toolchain(empty, npm=npm) == empty
    assert toolchain.installed(empty) and (empty / toolchain.MARKER).is_file()
    (empty / "notes.txt").write_text("mine\n")  # ours now: a reinstall swaps node_modules, keeps the rest
    assert toolchain.install_toolchain(empty, npm=npm, force=True) == empty
    assert toolchain.installed(empty) and (empty / "notes.txt").read_text() == "mine\n"
    assert sorted(p.name for p in empty.iterdir()) == sorted(
        [".prometheus-toolchain.json", "node_modules", "notes.txt", "package-lock.json", "package.json"])


# ---- 14: readable by other users -----------------------------------------------------------------------------

def test_a_new_install_folder_is_readable_by_others(no_checkout: Path, tmp_path: Path, npm: str,
                                                    umask022: None) -> None:
    dest = tmp_path / "opt" / "prometheus-toolchain"
    toolchain.install_toolchain(dest, npm=npm)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755
    for name in (toolchain.MARKER, "package.json", "package-lock.json"):
        assert stat.S_IMODE((dest / name).stat().st_mode) == 0o644, name
    ic_wasm = dest / "node_modules" / toolchain.IC_WASM_PACKAGE / "bin" / "ic-wasm"
    assert stat.S_IMODE(ic_wasm.stat().st_mode) & 0o005 == 0o005  # others may read and run it
    # a stricter umask is respected: private stays private
    os.umask(0o077)
    private = tmp_path / "private"
    toolchain.install_toolchain(private, npm=npm)
    assert stat.S_IMODE(private.stat().st_mode) == 0o700


# ---- 15: an absolute $PROMETHEUS_TOOLCHAIN_DIR only --------------------------------------------------------

@pytest.mark.parametrize("value", ["tc", "./tc", "../tc", "~/tc"])
def test_a_relative_toolchain_dir_is_refused(no_checkout: Path, monkeypatch: pytest.MonkeyPatch, npm: str,
                                             value: str) -> None:
    monkeypatch.setenv(toolchain.ENV_DIR, value)
    for call in (toolchain.locate, toolchain.install_dir, toolchain.find_toolchain,
                 lambda: toolchain.install_toolchain(npm=npm)):
        with pytest.raises(toolchain.ToolchainDirRefused) as refused:
            call()
        assert "relative path" in str(refused.value) and value in str(refused.value)
        assert "absolute path" in refused.value.hint


def test_the_cli_refuses_a_relative_toolchain_dir(tmp_path: Path) -> None:
    app = tmp_path / "app"
    (app / "tc").mkdir(parents=True)
    for args in (("toolchain", "path"), ("toolchain", "list"), ("toolchain", "install")):
        proc = subprocess.run([str(PROMETHEUS), *args], env={**os.environ, toolchain.ENV_DIR: "tc"}, cwd=app,
                              capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "PROMETHEUS_TOOLCHAIN_DIR=tc is a relative path" in proc.stderr and "absolute path" in proc.stderr
    assert list((app / "tc").iterdir()) == []


# ---- 16: the marker checked at use; file hashes with `list --verify` ---------------------------------------

def test_the_marker_is_required_and_must_name_this_lockfile(no_checkout: Path, npm: str) -> None:
    toolchain.install_toolchain(npm=npm)
    marker = no_checkout / toolchain.MARKER
    record = json.loads(marker.read_text())
    assert record["lock_sha256"] == toolchain.lock_sha256()
    assert set(record["files"]) == set(toolchain.executable_files())
    assert toolchain.find_toolchain().motoko_dir == no_checkout / "node_modules" / "motoko"

    marker.write_text(json.dumps({**record, "lock_sha256": "ab" * 32}))
    assert not toolchain.installed(no_checkout)
    with pytest.raises(toolchain.ToolchainMissing) as other:
        toolchain.find_toolchain()
    assert "is for another lockfile" in str(other.value) and "abababababab" in str(other.value)
    assert other.value.hint == "run `prometheus toolchain install`"

    marker.unlink()  # e.g. a copy without it, or an install from before the marker was checked
    assert not toolchain.installed(no_checkout)
    with pytest.raises(toolchain.ToolchainMissing) as unmarked:
        toolchain.find_toolchain()
    assert "another lockfile or incomplete" in str(unmarked.value) and toolchain.MARKER in str(unmarked.value)
    assert unmarked.value.hint == "run `prometheus toolchain install`"

    marker.write_text("{not json")
    with pytest.raises(toolchain.ToolchainMissing, match="incomplete"):
        toolchain.find_toolchain()
    # the remedy works: a reinstall (no --force needed) writes the marker again
    toolchain.install_toolchain(npm=npm)
    assert toolchain.installed(no_checkout) and toolchain.find_toolchain().moc_version == toolchain.DEFAULT_MOC


def test_a_make_setup_folder_without_marker_is_accepted(no_checkout: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkout's toolchain/ as `make setup` (npm ci) leaves it: the packaged lockfile next to node_modules
    and npm's record of the finished install; named by $PROMETHEUS_TOOLCHAIN_DIR it is used as is."""
    checkout = tmp_path / "checkout"
    (checkout / "prometheus_build").mkdir(parents=True)
    for name in ("pyproject.toml", "prometheus_build/compile.js"):
        shutil.copyfile(ROOT / name, checkout / name)
    copy = checkout / "toolchain"
    copy.mkdir()
    shutil.copyfile(ROOT / "toolchain" / "package-lock.json", copy / "package-lock.json")
    (copy / "node_modules").symlink_to(ROOT / "toolchain" / "node_modules")
    monkeypatch.setenv(toolchain.ENV_DIR, str(copy))
    assert (ROOT / "toolchain" / "node_modules" / ".package-lock.json").is_file()
    assert toolchain.check_folder(copy) is None and toolchain.installed(copy)
    assert toolchain.find_toolchain().motoko_dir == copy / "node_modules" / "motoko"
    # another lockfile next to it: not this Prometheus's toolchain
    (copy / "package-lock.json").write_text('{"lockfileVersion": 3}\n')
    with pytest.raises(toolchain.ToolchainMissing, match="another lockfile or incomplete"):
        toolchain.find_toolchain()
    # an unmarked folder that is not a checkout's toolchain/: refused (see also the marker test)
    other = tmp_path / "toolchain"
    other.mkdir()
    shutil.copyfile(ROOT / "toolchain" / "package-lock.json", other / "package-lock.json")
    (other / "node_modules").symlink_to(ROOT / "toolchain" / "node_modules")
    assert not toolchain.installed(other) and "incomplete" in str(toolchain.check_folder(other))
    # the checkout's own toolchain/ (found as "checkout") is accepted as it always was
    monkeypatch.delenv(toolchain.ENV_DIR)
    monkeypatch.setattr(toolchain, "checkout_dir", lambda: ROOT / "toolchain")
    assert toolchain.find_toolchain().motoko_dir == ROOT / "toolchain" / "node_modules" / "motoko"
    assert toolchain.verify_files(ROOT / "toolchain") is None  # make setup records no hashes


def test_list_verify_compares_the_executables_with_the_install_record(no_checkout: Path, tmp_path: Path,
                                                                      npm: str) -> None:
    dest = tmp_path / "tc"
    toolchain.install_toolchain(dest, npm=npm)
    assert toolchain.verify_files(dest) == []
    env = {toolchain.ENV_DIR: str(dest)}
    rows = json.loads(cli("toolchain", "list", "--verify", "--json", env=env, code=0).stdout)
    assert [(r["installed"], r["verified"], r["problems"]) for r in rows] == [(True, True, [])] * 4
    assert "files verified" in cli("toolchain", "list", "--verify", env=env, code=0).stdout
    assert "verified" not in json.loads(cli("toolchain", "list", "--json", env=env, code=0).stdout)[0]

    moc = dest / "node_modules" / "motoko-3.14.3" / "versions" / "latest" / "moc.min.js"  # a copy, not the checkout's
    moc.write_bytes(moc.read_bytes() + b"\n// changed\n")
    problems = toolchain.verify_files(dest)
    assert problems and len(problems) == 1 and "motoko-3.14.3/versions/latest/moc.min.js changed" in problems[0]
    assert toolchain.verify_files(dest, toolchain.TOOLCHAINS["1.10.1"]) == []
    failed = cli("toolchain", "list", "--verify", env=env, code=1)
    assert "motoko-3.14.3/versions/latest/moc.min.js changed since install" in failed.stderr
    assert "prometheus toolchain install --force" in failed.stderr
    toolchain.install_toolchain(dest, npm=npm, force=True)
    assert toolchain.verify_files(dest) == []


# ---- 17: leftovers of killed installs --------------------------------------------------------------------------

def test_leftovers_of_killed_installs_are_removed(no_checkout: Path, npm: str) -> None:
    parent = no_checkout.parent
    parent.mkdir(parents=True)
    mine = parent / f".{no_checkout.name}.installing-killed1"  # this lockfile's: its lock is ours during install
    other_free = parent / ".0123456789abcdef.installing-old"  # another lockfile's, lock free
    other_busy = parent / ".fedcba9876543210.installing-busy"  # another lockfile's, being installed right now
    other_nolock = parent / ".aaaaaaaaaaaaaaaa.installing-recent"  # no lock file, recent: left alone
    for leftover in (mine, other_free, other_busy, other_nolock):
        (leftover / "node_modules" / "motoko").mkdir(parents=True)
    (parent / ".0123456789abcdef.lock").touch()
    (parent / ".fedcba9876543210.lock").touch()
    lines: list[str] = []
    with open(parent / ".fedcba9876543210.lock", "a") as busy:
        fcntl.flock(busy, fcntl.LOCK_EX)
        toolchain.install_toolchain(progress=lines.append, npm=npm)
    assert not mine.exists() and not other_free.exists()
    assert other_busy.exists() and other_nolock.exists()
    assert any(str(mine) in line and "interrupted install" in line for line in lines)
    # an old one without a lock file goes too, the other one now that its lock is free, and a swap's old
    # node_modules inside the folder
    os.utime(other_nolock, (0, 0))
    old_modules = no_checkout / ".node_modules.old-4242"
    (old_modules / "x").mkdir(parents=True)
    toolchain.install_toolchain(npm=npm, force=True)
    assert not other_nolock.exists() and not old_modules.exists() and not other_busy.exists()
    assert toolchain.installed(no_checkout)
