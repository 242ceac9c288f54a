"""The reproducible build recipe: moc.js (+ mo:core) -> ic-wasm shrink -> public candid:service metadata.

The steps and their order are fixed, and all of them live in `compile.js`, so the host and the verifier's
sandbox run one implementation: the same sources give the same sha256 on any machine with the same pinned
toolchain. Outputs are cached by a digest of the recipe, the toolchain and every source file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_build.packages import SKIPPED_DIRS, Package
from prometheus_build.toolchain import Toolchain, find_toolchain

RECIPE_VERSION = "prometheus-recipe-1"
COMPILE_TIMEOUT_S = 600


class BuildError(RuntimeError):
    """A canister failed to compile; the message carries `file:line:col` diagnostics, `hint` what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


_UNDEFINED_PACKAGE = re.compile(r'\[M0010\] package "([^"]+)" not defined')


def hint_for(diagnostics: str) -> str | None:
    """What to do about the compiler errors users meet first."""
    missing = _UNDEFINED_PACKAGE.search(diagnostics)
    if missing:
        name = missing.group(1)
        return (f"declare {name} under [dependencies] in mops.toml (a ./path, a git URL pinned to a commit, or a "
                f"vendored .mops/{name}@<version>) or under packages: in prometheus.yml; see docs/build.md")
    return None


@dataclass(frozen=True)
class BuildResult:
    name: str
    wasm: Path
    did: Path
    sha256: str
    cached: bool
    seconds: float
    toolchain: str = ""  # moc version
    motoko: str = ""  # npm motoko package version
    packages: list[dict[str, str]] = field(default_factory=list)  # Package.as_dict() of every package

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "wasm": str(self.wasm),
            "did": str(self.did),
            "sha256": self.sha256,
            "cached": self.cached,
            "seconds": round(self.seconds, 3),
            "toolchain": {"moc": self.toolchain, "motoko": self.motoko},
            "packages": self.packages,
        }


def discover_canisters(source_root: Path) -> dict[str, str]:
    """Every `<name>/main.mo` under `source_root`, as name -> path relative to the root."""
    found = {}
    for main in sorted(source_root.glob("*/main.mo")):
        found[main.parent.name] = f"{main.parent.name}/main.mo"
    return found


def source_digest(source_root: Path, main_rel: str, toolchain: Toolchain, packages: Sequence[Package] = ()) -> str:
    """Hash of everything that determines the output bytes (paths are relative to the root)."""
    h = hashlib.sha256()
    h.update(f"{RECIPE_VERSION}\0{toolchain.digest_input()}\0{main_rel}\0".encode())
    for package in packages:
        if package.base is not None:  # bundled ones are part of the toolchain
            h.update(f"package\0{package.name}\0{package.virtual}\0{package.sha256}\0".encode())
    for path in sorted(source_root.rglob("*.mo")):
        if not path.is_file() or SKIPPED_DIRS.intersection(path.relative_to(source_root).parts[:-1]):
            continue
        rel = path.relative_to(source_root).as_posix()
        data = path.read_bytes()
        h.update(f"{rel}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise BuildError(f"{what} failed:\n{detail}", hint_for(detail))


def plan_json(packages: Sequence[Package], place: dict[str, str] | None = None) -> str:
    """compile.js's package plan; `place` maps a package name to its folder as compile.js sees it (the
    sandbox's mounts), otherwise the folder on this machine. Bundled packages need no entry."""
    entries = [{"name": p.name, "dir": (place or {}).get(p.name, str(p.base)), "virtual": p.virtual}
               for p in packages if p.base is not None]
    return json.dumps({"packages": entries}, sort_keys=True)


def compile_to(source_root: Path, main_rel: str, wasm_out: Path, did_out: Path, toolchain: Toolchain,
               packages: Sequence[Package] = ()) -> None:
    """Run the recipe (compile.js does every step) without the cache, writing the wasm and its interface."""
    with tempfile.TemporaryDirectory(prefix="prometheus-build-") as tmp:
        final, did = Path(tmp, "final.wasm"), Path(tmp, "service.did")
        plan = [plan_json(packages)] if any(p.base is not None for p in packages) else []
        _run([str(toolchain.node), str(toolchain.compile_js), str(toolchain.motoko_dir), str(toolchain.ic_wasm),
              str(source_root), main_rel, str(final), str(did), *plan], f"moc {main_rel}")
        _atomic_copy(final, wasm_out)
        _atomic_copy(did, did_out)


def _atomic_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_canister(
    name: str,
    source_root: Path,
    main_rel: str,
    out_dir: Path,
    cache_dir: Path,
    toolchain: Toolchain | None = None,
    packages: Sequence[Package] = (),
) -> BuildResult:
    """Build one canister to `out_dir/<name>.wasm` and `.did`, reusing the cache when sources are unchanged.
    `packages` come from `prometheus_build.packages.resolve` (or `project.plan`)."""
    started = time.perf_counter()
    toolchain = toolchain or find_toolchain()
    source_root = source_root.resolve()
    digest = source_digest(source_root, main_rel, toolchain, packages)
    cached_wasm, cached_did = cache_dir / f"{digest}.wasm", cache_dir / f"{digest}.did"
    hit = cached_wasm.is_file() and cached_did.is_file()  # a hit needs no lock: a read-only cache serves it
    if not hit:
        with _building(cache_dir, digest):
            hit = cached_wasm.is_file() and cached_did.is_file()  # another process built it meanwhile
            if not hit:
                compile_to(source_root, main_rel, cached_wasm, cached_did, toolchain, packages)
    wasm, did = out_dir / f"{name}.wasm", out_dir / f"{name}.did"
    _atomic_copy(cached_wasm, wasm)
    _atomic_copy(cached_did, did)
    return BuildResult(name, wasm, did, sha256_file(wasm), hit, time.perf_counter() - started,
                       toolchain.moc_version, toolchain.motoko_version, [p.as_dict() for p in packages])


@contextlib.contextmanager
def _building(cache_dir: Path, digest: str) -> Iterator[None]:
    """Hold the cache entry's lock while compiling it: a second build of the same sources (another process, e.g.
    a parallel test worker or a second `prometheus build`) waits for the first and then reuses its output
    instead of compiling again. The lock file stays (it is empty); the kernel releases the lock if the process
    dies. Where the cache cannot be locked (no permission on a shared lock file, a file system without
    `flock`), the build runs unlocked, as it did before: at worst two processes compile the same thing."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(cache_dir / f".{digest}.lock", os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass  # ENOLCK, EOPNOTSUPP, ...: unlocked
        yield
    finally:
        os.close(fd)  # releases the lock


def build_all(source_root: Path, out_dir: Path, cache_dir: Path, jobs: int = 2,
              names: Sequence[str] | None = None) -> list[BuildResult]:
    """Build every canister under `source_root` (`<name>/main.mo`), or those in `names` (any other name is left
    out: the caller reports it), `jobs` compilers at a time."""
    toolchain = find_toolchain()
    canisters = discover_canisters(source_root)
    if names is not None:
        canisters = {name: rel for name, rel in canisters.items() if name in set(names)}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [
            pool.submit(build_canister, name, source_root, rel, out_dir, cache_dir, toolchain)
            for name, rel in canisters.items()
        ]
        return [f.result() for f in futures]


def write_manifest(results: list[BuildResult], out_dir: Path) -> Path:
    """`out_dir/manifest.json`: name -> sha256, for deploy scripts and the verifier."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "manifest.json"
    path.write_text(json.dumps({r.name: r.sha256 for r in results}, indent=2, sort_keys=True) + "\n")
    return path
