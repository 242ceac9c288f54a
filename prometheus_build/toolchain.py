"""Locate, and install on first use, the pinned Motoko toolchain (motoko's moc.js and ic-wasm, from npm).

Apps pin the *moc* version (`[toolchain] moc = "0.16.1"` in mops.toml, `toolchain:` in prometheus.yml); npm's
`motoko` package has its own version numbers and reports only a build id, so the mapping is a table here.
Each npm version is installed side by side (package.json aliases, locked by integrity hash in the committed
package-lock.json); the default stays `motoko@4.10.0` so existing hashes never change.

Where a toolchain is looked for, in order (`find_toolchain`):
1. an explicit folder (the `toolchain_dir` argument), or `$PROMETHEUS_TOOLCHAIN_DIR`;
2. a checkout's `toolchain/node_modules`, when `make setup` installed it (keeps checkouts and CI as they were);
3. the per-user cache `$XDG_CACHE_HOME/prometheus/toolchain/<first 16 hex of sha256(package-lock.json)>`
   (`~/.cache/...`), where `prometheus toolchain install` puts it — never site-packages. A new lockfile gets
   a new folder, so an upgrade never mixes versions.
A folder is always one holding `node_modules/`. The bytes a toolchain produces do not depend on where it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from prometheus_build import assets

IC_WASM_VERSION = "0.11.1"
IC_WASM_PACKAGE = "@icp-sdk/ic-wasm-linux-x64"
ENV_DIR = "PROMETHEUS_TOOLCHAIN_DIR"
MARKER = ".prometheus-toolchain.json"  # written after a verified install: which lockfile it came from
NPM_TIMEOUT_S = 900
INSTALL_HINT = "run `prometheus toolchain install` (downloads it once from the npm registry)"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ToolchainSpec:
    """One supported toolchain: the moc version users write, the npm package carrying it, what it bundles."""

    moc: str
    npm: str
    folder: str  # under node_modules
    bundles: str  # human-readable: the packages in packages/latest/


# moc version -> npm `motoko` version. The npm package reports only a build id (`mo.version`); the moc
# versions were found by comparing each moc.js with the native moc releases (docs/build.md). motoko@3.20.0
# carries the same moc.js as 4.0.0 (identical sha256) with an older core, so only 4.0.0 is offered.
TOOLCHAINS: dict[str, ToolchainSpec] = {
    "0.14.11": ToolchainSpec("0.14.11", "3.13.0", "motoko-3.13.0", "base moc-0.14.11"),
    "0.16.1": ToolchainSpec("0.16.1", "3.14.3", "motoko-3.14.3", "base moc-0.15.0, core preview-0.6.0"),
    "1.3.0": ToolchainSpec("1.3.0", "4.0.0", "motoko-4.0.0", "core v2.3.1"),
    "1.10.1": ToolchainSpec("1.10.1", "4.10.0", "motoko", "core v2.5.0"),
}
DEFAULT_MOC = "1.10.1"
MOTOKO_VERSION = TOOLCHAINS[DEFAULT_MOC].npm  # the default npm package (kept for callers of the old name)


class ToolchainMissing(RuntimeError):
    """The pinned toolchain is not installed, or cannot be (no node/npm); `hint` is the command to run next."""

    def __init__(self, message: str, hint: str = INSTALL_HINT) -> None:
        super().__init__(message)
        self.hint = hint


class UnknownToolchain(ValueError):
    """An app pins a moc version this recipe does not carry."""


def supported() -> str:
    """`0.14.11, 0.16.1, ...` for error messages."""
    return ", ".join(f"{moc} (npm motoko@{s.npm})" for moc, s in TOOLCHAINS.items())


def resolve_moc(version: str | None) -> ToolchainSpec:
    """The toolchain for a moc version as a user writes it (`1.10.1`, `v1.10.1`, `moc-1.10.1`); None -> default."""
    if version is None or version == "":
        return TOOLCHAINS[DEFAULT_MOC]
    text = str(version).strip()
    for prefix in ("moc-", "moc@", "v"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    spec = TOOLCHAINS.get(text)
    if spec is None:
        raise UnknownToolchain(f"moc {version!r} is not a supported toolchain; supported: {supported()}")
    return spec


@dataclass(frozen=True)
class Toolchain:
    node: Path
    compile_js: Path
    motoko_dir: Path
    ic_wasm: Path
    motoko_version: str  # the npm package's version
    ic_wasm_version: str
    moc_version: str = DEFAULT_MOC

    def digest_input(self) -> str:
        """Everything about the toolchain that can change output bytes (unchanged for the default toolchain)."""
        return f"motoko@{self.motoko_version} ic-wasm@{self.ic_wasm_version}"

    def bundled(self) -> dict[str, str]:
        """The packages this moc.js ships (`packages/latest/<name>.json`): name -> version label."""
        found = {}
        for path in sorted((self.motoko_dir / "packages" / "latest").glob("*.json")):
            try:
                found[path.stem] = str(json.loads(path.read_text()).get("version", ""))
            except (OSError, ValueError):
                continue
        return found


def lockfile() -> Path:
    """The committed package-lock.json (packaged in a wheel): every tarball's integrity hash."""
    return assets.toolchain_manifest_dir() / "package-lock.json"


def lock_sha256() -> str:
    return hashlib.sha256(lockfile().read_bytes()).hexdigest()


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """The per-user install folder for this lockfile: `$XDG_CACHE_HOME/prometheus/toolchain/<16 hex>`."""
    return assets.user_cache_dir(env) / "toolchain" / lock_sha256()[:16]


def install_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where `prometheus toolchain install` puts the toolchain: `$PROMETHEUS_TOOLCHAIN_DIR`, else the cache."""
    env = os.environ if env is None else env
    return Path(env[ENV_DIR]) if env.get(ENV_DIR) else cache_dir(env)


def checkout_dir() -> Path | None:
    """A checkout's `toolchain/` when `make setup` installed its node_modules, else None."""
    root = assets.checkout_root()
    if root is not None and (root / "toolchain" / "node_modules").is_dir():
        return root / "toolchain"
    return None


def locate(toolchain_dir: Path | None = None, env: Mapping[str, str] | None = None) -> tuple[Path, str]:
    """(folder, origin) the toolchain is taken from, in the lookup order of this module's docstring; origin is
    `argument`, `$PROMETHEUS_TOOLCHAIN_DIR`, `checkout` or `user cache`. The folder may not be installed yet."""
    env = os.environ if env is None else env
    if toolchain_dir is not None:
        return Path(toolchain_dir), "argument"
    if env.get(ENV_DIR):
        return Path(env[ENV_DIR]), f"${ENV_DIR}"
    checkout = checkout_dir()
    if checkout is not None:
        return checkout, "checkout"
    return cache_dir(env), "user cache"


def installed(folder: Path, spec: ToolchainSpec | None = None) -> bool:
    """Whether `folder/node_modules` holds the pinned versions of `spec` (default: every supported toolchain)."""
    specs = [spec] if spec is not None else list(TOOLCHAINS.values())
    modules = folder / "node_modules"
    try:
        return (_installed_version(modules / IC_WASM_PACKAGE) == IC_WASM_VERSION
                and all(_installed_version(modules / s.folder) == s.npm for s in specs))
    except ToolchainMissing:
        return False


def _installed_version(package_dir: Path) -> str:
    try:
        return str(json.loads((package_dir / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError) as exc:
        raise ToolchainMissing(f"{package_dir} is not installed") from exc


_AUTO_INSTALL: Progress | None = None
_AUTO_LOCK = threading.Lock()


def set_auto_install(progress: Progress | None) -> None:
    """Let `find_toolchain` install a missing toolchain into `install_dir()` on first use, reporting each step
    to `progress` (the CLI does this when a person is at the terminal); None turns it off (the default: the
    worker and scripts get ToolchainMissing with its hint instead of a surprise download)."""
    global _AUTO_INSTALL
    _AUTO_INSTALL = progress


def _missing(spec: ToolchainSpec, folder: Path, origin: str) -> ToolchainMissing:
    what = f"the Motoko toolchain for moc {spec.moc} (npm motoko@{spec.npm}, ic-wasm {IC_WASM_VERSION})"
    if origin == "checkout":
        return ToolchainMissing(f"{what} is not installed in {folder}/node_modules (an older `make setup`?)",
                                "run `make setup` in the checkout")
    if origin == "argument":
        return ToolchainMissing(f"{what} is not installed in {folder}/node_modules",
                                f"install it there with `PROMETHEUS_TOOLCHAIN_DIR={folder} prometheus toolchain "
                                "install`")
    return ToolchainMissing(f"{what} is not installed in {folder} ({origin})", INSTALL_HINT)


def find_toolchain(toolchain_dir: Path | None = None, moc: str | None = None) -> Toolchain:
    """Return the pinned toolchain for `moc` (default: the recipe's), refusing any other installed version.

    Looks where `locate` says; when that is the install location and nothing is there, installs it first if
    `set_auto_install` allowed it, else raises ToolchainMissing with the command to run."""
    spec = resolve_moc(moc)
    node = shutil.which("node")
    if node is None:
        raise ToolchainMissing("node is not on PATH: the build recipe runs the Motoko compiler with Node.js 18 or "
                               "newer", "install Node.js and npm (Debian: `apt-get install nodejs npm`)")
    folder, origin = locate(toolchain_dir)
    if not installed(folder, spec) and origin in ("user cache", f"${ENV_DIR}") and _AUTO_INSTALL is not None:
        with _AUTO_LOCK:
            if not installed(folder, spec):
                install_toolchain(folder, _AUTO_INSTALL)
    modules = folder / "node_modules"
    try:
        motoko = _installed_version(modules / spec.folder)
        ic_wasm = _installed_version(modules / IC_WASM_PACKAGE)
    except ToolchainMissing:
        raise _missing(spec, folder, origin) from None
    if (motoko, ic_wasm) != (spec.npm, IC_WASM_VERSION):
        hint = ("run `make setup` in the checkout" if origin == "checkout"
                else "run `prometheus toolchain install --force`")
        raise ToolchainMissing(f"toolchain mismatch in {folder}: {spec.folder} {motoko} / ic-wasm {ic_wasm}, "
                               f"expected {spec.npm} / {IC_WASM_VERSION}", hint)
    return Toolchain(
        node=Path(node),
        compile_js=assets.compile_js(),
        motoko_dir=modules / spec.folder,
        ic_wasm=modules / IC_WASM_PACKAGE / "bin" / "ic-wasm",
        motoko_version=motoko,
        ic_wasm_version=ic_wasm,
        moc_version=spec.moc,
    )


def packages_text() -> str:
    """`motoko 4.10.0, 3.13.0, ...; @icp-sdk/ic-wasm-linux-x64 0.11.1` for progress lines."""
    return "motoko " + ", ".join(s.npm for s in TOOLCHAINS.values()) + f"; {IC_WASM_PACKAGE} {IC_WASM_VERSION}"


def install_toolchain(dest: Path | None = None, progress: Progress | None = None, force: bool = False,
                      npm: str | None = None) -> Path:
    """Install every pinned toolchain into `dest` (default `install_dir()`) with `npm ci` from the packaged
    lockfile, so npm checks each tarball against its integrity hash; returns `dest`.

    Atomic: npm installs into a temporary sibling folder that is renamed into place only after the installed
    versions were checked, so an interrupted install leaves nothing half-made. A file lock makes concurrent
    first uses wait for one download. `--ignore-scripts`: none of the locked packages has an install script
    (package-lock.json has no `hasInstallScript`; ic-wasm ships its binary in the tarball), and a supply-chain
    tool should not run any."""
    import fcntl

    say = progress or (lambda _line: None)
    dest = Path(dest) if dest is not None else install_dir()
    if installed(dest) and not force:
        say(f"the Motoko toolchain is already installed in {dest}")
        return dest
    npm = npm or shutil.which("npm")
    if npm is None:
        raise ToolchainMissing(
            "npm is not on PATH: the Motoko toolchain (moc.js and ic-wasm) is installed from the npm registry",
            "install Node.js and npm (Debian: `apt-get install nodejs npm`), or set PROMETHEUS_TOOLCHAIN_DIR to a "
            "folder whose node_modules holds an installed toolchain")
    manifest = assets.toolchain_manifest_dir()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / f".{dest.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed(dest) and not force:  # another process installed it while this one waited
            say(f"the Motoko toolchain is already installed in {dest}")
            return dest
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.installing-", dir=dest.parent))
        try:
            for name in ("package.json", "package-lock.json"):
                shutil.copyfile(manifest / name, tmp / name)
            say(f"installing the Motoko toolchain ({packages_text()}) into {dest}")
            say("downloading from the npm registry with `npm ci` (about 35 MB; each package is checked against "
                "package-lock.json's integrity hash)")
            started = time.monotonic()
            try:
                run = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error",
                                      "--progress=false"], cwd=tmp, capture_output=True, text=True,
                                     timeout=NPM_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False)
            except subprocess.TimeoutExpired:
                raise ToolchainMissing(f"npm ci did not finish within {NPM_TIMEOUT_S} s",
                                       "check the network to the npm registry (or npm's proxy settings), then "
                                       "`prometheus toolchain install` again") from None
            if run.returncode != 0:
                tail = " / ".join((run.stderr or run.stdout).strip().splitlines()[-4:]) or "no output"
                raise ToolchainMissing(f"npm ci failed (exit {run.returncode}): {tail}",
                                       "check the network to the npm registry (or npm's proxy settings), then "
                                       "`prometheus toolchain install` again")
            if not installed(tmp):
                raise ToolchainMissing(f"npm ci finished but {tmp}/node_modules lacks a pinned package",
                                       "run `prometheus toolchain install --force`")
            (tmp / MARKER).write_text(json.dumps({"lock_sha256": lock_sha256(), "packages": packages_text()}) + "\n")
            if not dest.exists():
                os.rename(tmp, dest)
            else:  # a folder the user named, or a reinstall: swap node_modules only, keep whatever else is there
                old = dest / f".node_modules.old-{os.getpid()}"
                if (dest / "node_modules").exists():
                    os.rename(dest / "node_modules", old)
                os.rename(tmp / "node_modules", dest / "node_modules")
                for name in ("package.json", "package-lock.json", MARKER):
                    os.replace(tmp / name, dest / name)
                shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file() and not p.is_symlink())
    say(f"installed in {time.monotonic() - started:.0f} s: {size / 2**20:.0f} MB in {dest}")
    return dest
