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
`$PROMETHEUS_TOOLCHAIN_DIR` must be absolute: a relative one would name another folder in every working
directory (inside an app, that app's `tc/` and its `ic-wasm`).

What is used is checked (`check_folder`): a folder `install_toolchain` made carries the marker
`.prometheus-toolchain.json`, written last, with the sha256 of the lockfile it was installed from; at use it
must equal the packaged lockfile's, else the folder is for another lockfile or incomplete. A folder without
the marker is accepted only as `make setup` leaves a checkout's `toolchain/` (as it always was): `npm ci`
verified every package against the lockfile next to it, so that lockfile must be the packaged one and npm's
record of a finished install (`node_modules/.package-lock.json`) must be there. The marker also records the
sha256 of each toolchain's executable files (moc.min.js, ic-wasm), checked on demand by `verify_files`
(`prometheus toolchain list --verify`), not at each use: npm checked them at install, and whoever can change
them can change the marker too, so a per-use check would only catch accidental corruption.

`install_toolchain` installs only into a missing or empty folder or one carrying the marker (never over a
JS project of the user's), makes the folder readable by others as the umask allows (a shared
`/opt/prometheus-toolchain` for the verifier's user), and removes what a killed install left behind.
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
from typing import Any

from prometheus_build import assets

IC_WASM_VERSION = "0.11.1"
IC_WASM_PACKAGE = "@icp-sdk/ic-wasm-linux-x64"
ENV_DIR = "PROMETHEUS_TOOLCHAIN_DIR"
MARKER = ".prometheus-toolchain.json"  # written after a verified install: which lockfile it came from
INSTALLING = ".installing-"  # the temporary sibling: .<folder name>.installing-<random>
STALE_AFTER_S = 3600  # a temporary folder of another lockfile's install whose lock cannot be tested
REINSTALL_HINT = "run `prometheus toolchain install`"
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


class ToolchainDirRefused(ToolchainMissing):
    """$PROMETHEUS_TOOLCHAIN_DIR is relative, or names a folder that is not a toolchain folder of ours."""


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


def env_dir(env: Mapping[str, str] | None = None) -> Path | None:
    """`$PROMETHEUS_TOOLCHAIN_DIR` as a Path (None when unset or empty); a relative value is refused."""
    env = os.environ if env is None else env
    value = env.get(ENV_DIR)
    if not value:
        return None
    path = Path(value)
    if not path.is_absolute():
        raise ToolchainDirRefused(
            f"{ENV_DIR}={value} is a relative path: it would name another folder in each folder a command runs in",
            f"give an absolute path, e.g. {ENV_DIR}=\"$PWD/{value.removeprefix('./')}\" or {ENV_DIR}=$HOME/...")
    return path


def install_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where `prometheus toolchain install` puts the toolchain: `$PROMETHEUS_TOOLCHAIN_DIR`, else the cache."""
    env = os.environ if env is None else env
    return env_dir(env) or cache_dir(env)


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
    explicit = env_dir(env)
    if explicit is not None:
        return explicit, f"${ENV_DIR}"
    checkout = checkout_dir()
    if checkout is not None:
        return checkout, "checkout"
    return cache_dir(env), "user cache"


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The install marker's record, None when there is none (or it is unreadable)."""
    try:
        data = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check_folder(folder: Path) -> str | None:
    """Why `folder` is not a complete install for the packaged lockfile (None: it is); see the module docstring.
    The pinned versions are checked separately (`installed`)."""
    if folder == checkout_dir():
        return None  # `make setup` ran npm ci from this very lockfile (kept as it always was)
    marker = read_marker(folder)
    if marker is not None:
        recorded = str(marker.get("lock_sha256", ""))
        if recorded != lock_sha256():
            return (f"the installed toolchain in {folder} is for another lockfile (sha256 {recorded[:12] or '?'}, "
                    f"this Prometheus pins {lock_sha256()[:12]})")
        return None
    if (folder / MARKER).exists():
        return f"the installed toolchain in {folder} is incomplete (its {MARKER} is unreadable)"
    if is_checkout_toolchain(folder):
        return None
    if not (folder / "node_modules").exists():
        return None  # nothing installed: `installed` says so, with the usual hint
    return (f"the installed toolchain in {folder} is for another lockfile or incomplete (no {MARKER}, which "
            "`prometheus toolchain install` writes last; only a checkout's `make setup` toolchain/ goes without)")


def is_checkout_toolchain(folder: Path) -> bool:
    """Whether `folder` is a Prometheus checkout's `toolchain/` as `make setup` leaves it (named, say, by
    $PROMETHEUS_TOOLCHAIN_DIR from an installed wheel): `npm ci` installed it from the lockfile next to it, which
    must be the packaged one, and finished (npm's `node_modules/.package-lock.json`)."""
    root = folder.parent
    if folder.name != "toolchain" or not ((root / "pyproject.toml").is_file()
                                          and (root / "prometheus_build" / "compile.js").is_file()):
        return False
    try:
        same_lock = hashlib.sha256((folder / "package-lock.json").read_bytes()).hexdigest() == lock_sha256()
    except OSError:
        return False
    return same_lock and (folder / "node_modules" / ".package-lock.json").is_file()


def installed(folder: Path, spec: ToolchainSpec | None = None) -> bool:
    """Whether `folder/node_modules` holds the pinned versions of `spec` (default: every supported toolchain),
    installed from the packaged lockfile (`check_folder`)."""
    specs = [spec] if spec is not None else list(TOOLCHAINS.values())
    modules = folder / "node_modules"
    try:
        versions = (_installed_version(modules / IC_WASM_PACKAGE) == IC_WASM_VERSION
                    and all(_installed_version(modules / s.folder) == s.npm for s in specs))
    except ToolchainMissing:
        return False
    return versions and check_folder(folder) is None


def executable_files(spec: ToolchainSpec | None = None) -> list[str]:
    """The files (relative to node_modules) whose sha256 the marker records: each moc.min.js and ic-wasm."""
    specs = [spec] if spec is not None else list(TOOLCHAINS.values())
    return [f"{s.folder}/versions/latest/moc.min.js" for s in specs] + [f"{IC_WASM_PACKAGE}/bin/ic-wasm"]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_files(folder: Path, spec: ToolchainSpec | None = None) -> list[str] | None:
    """Compare the executable files with the sha256 the marker recorded at install: the problems found (empty:
    all match); None when the folder records no hashes (a checkout's `make setup`, an older install)."""
    recorded = (read_marker(folder) or {}).get("files")
    if not isinstance(recorded, dict):
        return None
    problems = []
    for rel in executable_files(spec):
        try:
            actual = _file_sha256(folder / "node_modules" / rel)
        except OSError:
            problems.append(f"{rel} is missing")
            continue
        if recorded.get(rel) != actual:
            problems.append(f"{rel} changed since install (sha256 {actual[:12]}, recorded "
                            f"{str(recorded.get(rel) or 'nothing')[:12]})")
    return problems


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
    problem = check_folder(folder) if origin != "checkout" else None  # a checkout's: `make setup` (npm ci) made it
    if problem is not None:
        raise ToolchainMissing(problem, REINSTALL_HINT if origin != "argument" else
                               f"install it there with `{ENV_DIR}={folder} prometheus toolchain install`")
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
    if not dest.is_absolute():
        raise ToolchainDirRefused(f"the toolchain folder {dest} is a relative path", "give an absolute path")
    if installed(dest) and not force:
        say(f"the Motoko toolchain is already installed in {dest}")
        return dest
    refuse_foreign(dest)
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
        refuse_foreign(dest)
        for stale in remove_stale(dest):
            say(f"removed {stale}, left by an interrupted install")
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}{INSTALLING}", dir=dest.parent))
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
            modules = tmp / "node_modules"
            try:
                versions_ok = (_installed_version(modules / IC_WASM_PACKAGE) == IC_WASM_VERSION
                               and all(_installed_version(modules / s.folder) == s.npm for s in TOOLCHAINS.values()))
                files = {rel: _file_sha256(modules / rel) for rel in executable_files()}
            except (ToolchainMissing, OSError):
                versions_ok = False
            if not versions_ok:
                raise ToolchainMissing(f"npm ci finished but {tmp}/node_modules lacks a pinned package",
                                       "run `prometheus toolchain install --force`")
            (tmp / MARKER).write_text(json.dumps({"lock_sha256": lock_sha256(), "packages": packages_text(),
                                                  "files": files}, indent=1, sort_keys=True) + "\n")
            # mkdtemp made it 0700: the final folder is readable (and its tools runnable) by others as the umask
            # allows, so a shared /opt/prometheus-toolchain serves the verifier's user too
            tmp.chmod(0o755 & ~_umask())
            if not dest.exists():
                os.rename(tmp, dest)
            else:  # empty, or ours (refuse_foreign): swap node_modules, the marker last; keep whatever else is there
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


def refuse_foreign(dest: Path) -> None:
    """Install only into a missing or empty folder, or one an install of ours made (it carries the marker):
    never over a JS project's package.json, package-lock.json and node_modules."""
    if not dest.exists() and not dest.is_symlink():
        return
    if not dest.is_dir():
        raise ToolchainDirRefused(f"{dest} is not a folder: the Motoko toolchain is not installed over it",
                                  f"point {ENV_DIR} at a new or empty folder")
    if (dest / MARKER).exists() or not any(dest.iterdir()):
        return
    raise ToolchainDirRefused(
        f"{dest} is neither empty nor a toolchain folder of Prometheus (it has no {MARKER}): installing would "
        "replace its package.json, package-lock.json and node_modules",
        f"point {ENV_DIR} at a new or empty folder (e.g. {dest.parent / 'prometheus-toolchain'}), or unset it "
        "to use the per-user cache")


def remove_stale(dest: Path) -> list[Path]:
    """Remove what killed installs left: temporary `.<name>.installing-*` siblings and `.node_modules.old-*` in
    `dest`. Called with the install lock of `dest` held, so no live install of `dest` owns one; another
    folder's temporary sibling is removed when its lock is free (or, lacking a lock file, after an hour)."""
    import fcntl

    removed = []
    for path in sorted(dest.parent.glob(f".*{INSTALLING}*")):
        name = path.name[1:].split(INSTALLING, 1)[0]
        if not path.is_dir() or path.is_symlink():
            continue
        if name != dest.name:
            lock_path = dest.parent / f".{name}.lock"
            if lock_path.is_file():
                with open(lock_path, "a") as other:
                    try:
                        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError:
                        continue  # that install is running
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
                continue
            try:
                if time.time() - path.stat().st_mtime < STALE_AFTER_S:
                    continue
            except OSError:
                continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    if dest.is_dir() and (dest / MARKER).exists():
        for path in sorted(dest.glob(".node_modules.old-*")):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows (/proc), else set and restored."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
