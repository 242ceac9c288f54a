"""Prometheus as users install it (issue 19): the wheel carries the interfaces, the canister sources, compile.js and
the toolchain lockfile (no node_modules, no tests); installed into a fresh virtual environment outside the
repository it runs from any folder; the toolchain is found in the documented order and installed atomically into
the per-user cache; `localnet start --port 0` reports the port it got.

No network: the wheel is built with the dev venv's setuptools (`python -m build --no-isolation`: sdist, then the
wheel from the sdist) and installed with `--no-deps`, its dependencies taken from this venv through a .pth file.
The full lifecycle with dependencies from PyPI and the toolchain from npm is `scripts/wheel_smoke.sh` (.ci/run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from prometheus_build import assets, toolchain
from tests.conftest import ROOT

PROTOCOL = ("ledger", "audit_hub", "mcp_registry")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from the sdist as `python -m build` does (so the sdist must carry the assets too)."""
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, ("python -m build failed (is `build` installed? run make setup):\n"
                                  f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    (found,) = out.glob("prometheus_ic-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment outside the repository with the wheel installed (`--no-deps`): only the
    dependencies come from this venv, as symlinks in a folder named by a .pth line — without this checkout's
    editable install (its hook and its metadata would shadow the wheel, and pip would think it installed)."""
    base = tmp_path_factory.mktemp("venv")
    root, deps = base / "venv", base / "deps"
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(("prometheus_ic", "__editable__", "_prometheus")) and entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    (site,) = root.glob("lib/python3*/site-packages")
    (site / "_prometheus_test_deps.pth").write_text(f"{deps}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(root / "bin" / "python"), "install",
                           "--no-deps", "--no-index", "--disable-pip-version-check", str(wheel)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert (root / "bin" / "prometheus").is_file(), proc.stdout + proc.stderr
    return root


@pytest.fixture
def user(venv: Path, tmp_path: Path) -> Iterator[Any]:
    """Run the installed `prometheus` from a folder that is not a checkout, with a private HOME, XDG folders and
    localnet; stops a localnet it left running."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMETHEUS_", "XDG_", "PYTHON", "VIRTUAL_ENV"))}
    env.update({"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "XDG_CONFIG_HOME": str(home / ".config"),
                "XDG_DATA_HOME": str(home / ".local" / "share"), "PROMETHEUS_LOCALNET_DIR": str(tmp_path / "ln"),
                "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"})

    def run(*args: str, code: int = 0, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(venv / "bin" / "prometheus"), *args], cwd=elsewhere, env={**env, **(extra or {})},
                              capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        said = f"prometheus {' '.join(args)}: exit {proc.returncode}\n{proc.stderr}{proc.stdout}"
        assert proc.returncode == code, said
        assert "Traceback" not in proc.stderr + proc.stdout
        return proc

    run.env = env  # type: ignore[attr-defined]
    yield run
    subprocess.run([str(venv / "bin" / "prometheus"), "localnet", "stop"], cwd=elsewhere, env=env,
                   capture_output=True, timeout=60)


def test_the_wheel_carries_the_assets_and_nothing_of_the_checkout(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    prefix = "prometheus_build/_assets/"
    expected = {"prometheus_build/compile.js", f"{prefix}toolchain/package.json",
                f"{prefix}toolchain/package-lock.json", *(f"{prefix}candid/{n}.did" for n in PROTOCOL),
                *(f"{prefix}canister_src/{n}/main.mo" for n in PROTOCOL)}
    assert expected <= names, sorted(expected - names)
    # PEP 561: users' mypy reads the typed SDK clients (prometheus_sdk/clients/) instead of treating them as untyped
    assert {"prometheus_sdk/py.typed", "prometheus_sdk/clients/ledger.py"} <= names
    # every canister source file, as in the repository
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "canister_src").rglob("*.mo")}
    assert {f"{prefix}{s}" for s in sources} <= names
    assert not [n for n in names if "node_modules" in n]
    assert not [n for n in names if n.split("/")[0] in ("tests", "testkit", "build", "bench", "scripts")]
    # the packaged lockfile is the committed one: the user cache's folder name is derived from it
    packaged_lock = zipfile.ZipFile(wheel).read(f"{prefix}toolchain/package-lock.json")
    assert packaged_lock == (ROOT / "toolchain" / "package-lock.json").read_bytes()


def test_installed_prometheus_runs_outside_a_checkout(user: Any, venv: Path, tmp_path: Path) -> None:
    version = json.loads(user("--version", "--json").stdout)
    assert version["assets"] == "packaged" and version["version"] == "0.1.0"
    for name in PROTOCOL:
        assert version["interfaces"][name] == assets.interfaces()[name][:12]
    human = user("--version").stdout
    assert human.startswith("prometheus 0.1.0") and "mcp_registry" in human
    assert "Build and deploy ledger" in user("localnet", "deploy-protocol", "--help").stdout
    # the code runs from site-packages, not from this checkout
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import prometheus_build.assets as a; "
                            "print(a.candid_dir()); print(a.checkout_root())"], cwd=tmp_path, capture_output=True,
                           text=True, check=True, env=user.env).stdout.split()
    assert where[0].startswith(str(venv)) and where[1] == "None"

    # no toolchain yet in this fresh HOME: a clear error naming the install command and the cache folder
    missing = user("toolchain", "path", code=1)
    assert "prometheus toolchain install" in missing.stderr
    assert str(tmp_path / "home" / ".cache" / "prometheus" / "toolchain") in missing.stderr
    # pointed at an installed toolchain (the checkout's), it is used as is
    found = user("toolchain", "path", "--moc", "0.16.1", extra={"PROMETHEUS_TOOLCHAIN_DIR": str(ROOT / "toolchain")})
    assert found.stdout.strip() == str(ROOT / "toolchain" / "node_modules" / "motoko-3.14.3")
    listed = json.loads(user("toolchain", "list", "--json").stdout)
    assert [r["moc"] for r in listed] == list(toolchain.TOOLCHAINS) and not any(r["installed"] for r in listed)


def test_localnet_start_with_port_0_reports_the_real_port(user: Any) -> None:
    started = json.loads(user("localnet", "start", "--background", "--port", "0", "--json").stdout)
    port = started["port"]
    assert port > 0 and started["url"] == f"http://127.0.0.1:{port}"
    status = json.loads(user("localnet", "status", "--json").stdout)
    assert (status["port"], status["url"], status["pid"]) == (port, started["url"], started["pid"])
    # deploy-protocol from the installed wheel, no toolchain, not at a terminal: the hint, no traceback, no download
    refused = user("localnet", "deploy-protocol", code=1)
    assert "is not installed" in refused.stderr and "prometheus toolchain install" in refused.stderr
    user("localnet", "stop")
    user("localnet", "status", code=1)


# ---- the toolchain's location and installation (in process) ---------------------------------------------------

@pytest.fixture
def no_checkout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """As in an installed wheel: no checkout toolchain, no $PROMETHEUS_TOOLCHAIN_DIR; the cache under tmp_path."""
    monkeypatch.setattr(toolchain, "checkout_dir", lambda: None)
    monkeypatch.delenv(toolchain.ENV_DIR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    toolchain.set_auto_install(None)
    return tmp_path / "cache" / "prometheus" / "toolchain" / toolchain.lock_sha256()[:16]


def fake_npm(folder: Path, script: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    npm = folder / "npm"
    npm.write_text("#!/bin/sh\n" + script + "\n")
    npm.chmod(0o755)
    return npm


COPY_NPM = f'[ "$1" = ci ] && [ -f package-lock.json ] && cp -r "{ROOT}/toolchain/node_modules" node_modules'


def test_lookup_order_argument_env_checkout_then_user_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(toolchain.ENV_DIR, str(tmp_path / "env"))
    assert toolchain.locate(tmp_path / "arg") == (tmp_path / "arg", "argument")
    assert toolchain.locate() == (tmp_path / "env", f"${toolchain.ENV_DIR}")
    monkeypatch.delenv(toolchain.ENV_DIR)
    assert toolchain.locate() == (ROOT / "toolchain", "checkout")  # `make setup` installed it in this checkout
    monkeypatch.setattr(toolchain, "checkout_dir", lambda: None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    lock16 = toolchain.lock_sha256()[:16]
    assert toolchain.locate() == (tmp_path / "xdg" / "prometheus" / "toolchain" / lock16, "user cache")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert toolchain.locate()[0] == tmp_path / "home" / ".cache" / "prometheus" / "toolchain" / lock16
    assert len(lock16) == 16 and toolchain.lock_sha256() == __import__("hashlib").sha256(
        (ROOT / "toolchain" / "package-lock.json").read_bytes()).hexdigest()


def test_install_into_the_user_cache_is_atomic_and_found(no_checkout: Path, tmp_path: Path) -> None:
    with pytest.raises(toolchain.ToolchainMissing) as missing:
        toolchain.find_toolchain()
    assert missing.value.hint == toolchain.INSTALL_HINT and str(no_checkout) in str(missing.value)
    lines: list[str] = []
    npm = fake_npm(tmp_path / "bin", COPY_NPM)
    assert toolchain.install_toolchain(progress=lines.append, npm=str(npm)) == no_checkout
    assert any(str(no_checkout) in line and "motoko 3.13.0" in line for line in lines)
    marker = json.loads((no_checkout / toolchain.MARKER).read_text())
    assert marker["lock_sha256"] == toolchain.lock_sha256()
    found = toolchain.find_toolchain(moc="1.3.0")
    assert found.motoko_dir == no_checkout / "node_modules" / "motoko-4.0.0" and found.motoko_version == "4.0.0"
    assert found.compile_js == assets.compile_js()
    assert [p.name for p in no_checkout.parent.iterdir() if p.name.startswith(".") and p.is_dir()] == []
    # already there: nothing runs (an npm that fails would say so)
    broken = fake_npm(tmp_path / "broken", "exit 7")
    assert toolchain.install_toolchain(progress=lines.append, npm=str(broken)) == no_checkout
    assert "already installed" in lines[-1]


def test_a_failed_npm_leaves_nothing_and_says_what_to_do(no_checkout: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    npm = fake_npm(tmp_path / "bin", 'echo "npm ERR! network request to https://registry.npmjs.org failed" >&2; exit 1')
    with pytest.raises(toolchain.ToolchainMissing) as failed:
        toolchain.install_toolchain(npm=str(npm))
    assert "npm ci failed (exit 1)" in str(failed.value) and "registry.npmjs.org" in str(failed.value)
    assert "prometheus toolchain install" in failed.value.hint
    assert not no_checkout.exists()
    assert [p.name for p in no_checkout.parent.iterdir() if p.is_dir()] == []
    # no npm at all: name what to install
    real_which = toolchain.shutil.which
    monkeypatch.setattr(toolchain.shutil, "which", lambda name: None if name == "npm" else real_which(name))
    with pytest.raises(toolchain.ToolchainMissing) as no_npm:
        toolchain.install_toolchain()
    assert "npm is not on PATH" in str(no_npm.value) and "apt-get install nodejs npm" in no_npm.value.hint
    assert "PROMETHEUS_TOOLCHAIN_DIR" in no_npm.value.hint


def test_first_use_installs_when_allowed(no_checkout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_npm(tmp_path / "bin", COPY_NPM)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    lines: list[str] = []
    toolchain.set_auto_install(lines.append)
    try:
        found = toolchain.find_toolchain()
    finally:
        toolchain.set_auto_install(None)
    assert found.motoko_dir == no_checkout / "node_modules" / "motoko"
    assert lines and "installing the Motoko toolchain" in lines[0] and str(no_checkout) in lines[0]


def test_an_explicit_folder_is_never_installed_into_on_the_fly(no_checkout: Path, tmp_path: Path) -> None:
    toolchain.set_auto_install(lambda _line: pytest.fail("must not install into an explicit folder"))
    try:
        with pytest.raises(toolchain.ToolchainMissing) as missing:
            toolchain.find_toolchain(tmp_path / "mine")
    finally:
        toolchain.set_auto_install(None)
    assert f"PROMETHEUS_TOOLCHAIN_DIR={tmp_path / 'mine'}" in missing.value.hint
