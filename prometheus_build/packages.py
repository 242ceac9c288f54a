"""The app's Motoko packages: `mops.toml` [dependencies] and prometheus.yml `packages:`, resolved to folders.

What mops does, without its registry (unreachable for verifiers): a dependency is a registry version
(`map = "9.0.1"`), a git repository pinned to a commit (`"https://host/o/r#<ref>@<40-hex commit>"`), or a
local path (`"./vendor/lib"`). `mo:<name>` maps to the package's `baseDir` from its own mops.toml, else
`src/`, else (as mops does for local packages) the package folder itself. A registry version is usable only
when vendored (`.mops/<name>@<version>/` committed next to mops.toml, or named in prometheus.yml
`packages:`); `core` and `base` may instead come bundled with the pinned compiler. The root's declarations
win over a package's own (mops: the root's pin wins); transitive dependencies are read from each package's
mops.toml. Every package is placed in the compiler at one canonical path derived from its name and version
(`.mops/<name>@<version>/...`, git: `.mops/_github/<name>#<ref>@<commit>/...`), so where it sits on disk
never changes the hash. Errors name the file and the package.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

MOPS_TOML = "mops.toml"
MAX_CONFIG_BYTES = 64 * 1024
MAX_PACKAGES = 200
SKIPPED_DIRS = frozenset({".git", ".mops"})  # compile.js skips the same folders
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
GIT = re.compile(r"^(?P<url>https?://[^#\s]+)(?:#(?P<ref>[^@\s]*))?(?:@(?P<commit>\S*))?$")
REF = re.compile(r"^[A-Za-z0-9._-]{0,100}$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
BUNDLED_DIR = ".node-motoko"  # where node-motoko's loadPackage puts bundled packages

# (name, repository URL, commit) -> the root of that commit's tree on this machine.
GitFetcher = Callable[[str, str, str], Path]


class PackageError(ValueError):
    """A dependency cannot be used; the message names the file and the package, and says what to do."""


@dataclass(frozen=True)
class Package:
    name: str
    kind: str  # "vendored" (a folder in the repository), "git" (fetched at a commit), "bundled" (with moc)
    version: str  # the declared version, the package's own version, "local", or the git ref
    virtual: str  # where the compiler sees it; `mo:<name>` maps here
    sha256: str  # over its .mo files: sorted relative paths + bytes
    base: Path | None = None  # the folder whose .mo files are the package (None when bundled)
    declared_in: str = ""
    path: str = ""  # vendored: the folder relative to the repository root
    repo: str = ""  # git only
    commit: str = ""  # git only

    def as_dict(self) -> dict[str, str]:
        data = {"name": self.name, "kind": self.kind, "version": self.version, "virtual": self.virtual,
                "sha256": self.sha256, "declared_in": self.declared_in}
        data.update({k: v for k, v in (("path", self.path), ("repo", self.repo), ("commit", self.commit)) if v})
        return data


@dataclass
class MopsConfig:
    path: Path
    label: str  # how errors name it (relative to the repository)
    dependencies: dict[str, Any]
    moc: str | None
    version: str | None  # [package] version
    base_dir: str | None  # [package] baseDir


@dataclass
class Resolution:
    packages: list[Package] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def read_toml(path: Path, label: str) -> MopsConfig:
    """Parse a mops.toml (size-capped, untrusted on the verifier) into what the recipe uses."""
    if path.is_symlink() or not path.is_file():
        raise PackageError(f"{label}: not a regular file")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise PackageError(f"{label}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PackageError(f"{label}: not valid TOML ({exc})") from None
    deps = data.get("dependencies", {})
    toolchain = data.get("toolchain", {})
    package = data.get("package", {})
    if not isinstance(deps, dict) or not isinstance(toolchain, dict) or not isinstance(package, dict):
        raise PackageError(f"{label}: [dependencies], [toolchain] and [package] must be tables")
    moc = toolchain.get("moc")
    if moc is not None and not isinstance(moc, str):
        raise PackageError(f"{label}: [toolchain] moc must be a version string such as \"1.10.1\"")
    version, base_dir = package.get("version"), package.get("baseDir")
    return MopsConfig(path, label, deps, moc, version if isinstance(version, str) else None,
                      base_dir if isinstance(base_dir, str) else None)


def find_mops(repo_root: Path, source_dir: str) -> MopsConfig | None:
    """The app's mops.toml: in its source folder, else at the repository root."""
    for rel in (PurePosixPath(source_dir, MOPS_TOML), PurePosixPath(MOPS_TOML)):
        path = repo_root / rel
        if path.is_file() or path.is_symlink():
            return read_toml(path, rel.as_posix())
    return None


def tree_digest(base: Path) -> str:
    """sha256 over every .mo file under `base` (skipping .git/.mops): `<relative path>\\0<size>\\0<bytes>`."""
    h = hashlib.sha256()
    for path in sorted(base.rglob("*.mo")):
        rel = path.relative_to(base)
        if not path.is_file() or path.is_symlink() or SKIPPED_DIRS.intersection(rel.parts[:-1]):
            continue
        data = path.read_bytes()
        h.update(f"{rel.as_posix()}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def _bundled_digest(motoko_dir: Path, name: str) -> str:
    data = json.loads((motoko_dir / "packages" / "latest" / f"{name}.json").read_text())
    h = hashlib.sha256()
    for rel in sorted(data.get("files", {})):
        content = str(data["files"][rel].get("content", "")).encode()
        h.update(f"{rel}\0{len(content)}\0".encode())
        h.update(content)
    return h.hexdigest()


def _bare_version(text: str) -> str:
    for prefix in ("moc-", "preview-", "v"):
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


@dataclass
class _Scope:
    """Where a declaration's relative paths start, and the folder they must stay inside."""

    origin: Path  # the folder holding the declaring file
    boundary: Path  # the repository (vendored) or the fetched tree (git)
    boundary_label: str
    vendored: bool  # inside the app's repository: record `path` relative to its root
    repo: str = ""  # inside a fetched git package: its repository and commit
    commit: str = ""


class Resolver:
    """Resolve the root's declarations, then each package's own mops.toml, breadth first."""

    def __init__(self, repo_root: Path, bundled: Mapping[str, str], motoko_dir: Path | None,
                 fetch_git: GitFetcher | None) -> None:
        self.repo_root = repo_root.resolve()
        self.bundled, self.motoko_dir, self.fetch_git = dict(bundled), motoko_dir, fetch_git
        self.result = Resolution()
        self.done: dict[str, Package] = {}
        self.fetched: dict[tuple[str, str], Path] = {}  # (url, commit) -> tree: fetched once across passes

    def resolve(self, manifest_packages: Mapping[str, str], manifest_label: str, mops: MopsConfig | None) -> Resolution:
        """As mops: the root's declaration wins; among packages' own declarations of a registry version, the
        highest requested wins (resolved again with that version pinned until nothing changes)."""
        pins: dict[str, str] = {}
        for _ in range(MAX_PACKAGES):
            requested = self._resolve_once(manifest_packages, manifest_label, mops, pins)
            chosen = {p.name: p.version for p in self.result.packages}
            top = {name: max(versions, key=_version_key) for name, versions in requested.items()}
            higher = {name: v for name, v in top.items() if chosen.get(name) != v and pins.get(name) != v}
            if not higher:
                return self.result
            pins.update(higher)
            self.result, self.done = Resolution(), {}
        raise PackageError(f"{manifest_label}: package versions do not settle")

    def _resolve_once(self, manifest_packages: Mapping[str, str], manifest_label: str, mops: MopsConfig | None,
                      pins: Mapping[str, str]) -> dict[str, list[str]]:
        """One breadth-first pass; returns the registry versions packages requested for names the root does
        not declare."""
        requested: dict[str, list[str]] = {}
        roots = set(manifest_packages) | (set(mops.dependencies) if mops is not None else set())
        repo = _Scope(self.repo_root, self.repo_root, "the repository", True)
        queue: list[tuple[str, Any, str, _Scope]] = []
        for name, spec in manifest_packages.items():
            queue.append((name, spec, manifest_label, repo))
        if mops is not None:
            scope = _Scope(mops.path.parent.resolve(), self.repo_root, "the repository", True)
            for name, spec in mops.dependencies.items():
                if name not in manifest_packages:  # prometheus.yml names a package directly: it wins
                    queue.append((name, spec, mops.label, scope))
        transitive_from = len(queue)  # entries after the root's are packages' own declarations
        index = 0
        while queue:
            name, spec, label, scope = queue.pop(0)
            index += 1
            if index > transitive_from and name not in roots and isinstance(spec, str) and VERSION.match(spec) \
                    and not spec.startswith(("./", "../", "/")):
                requested.setdefault(name, []).append(spec)
                if name in pins and spec != pins[name]:
                    continue  # resolved where the pinned (highest) version is declared, in that package's scope
            if name in self.done:
                continue
            if len(self.done) >= MAX_PACKAGES:
                raise PackageError(f"{label}: more than {MAX_PACKAGES} packages")
            package, own, child = self._one(name, spec, label, scope)
            self.done[name] = package
            self.result.packages.append(package)
            if own is not None and child is not None:
                queue.extend((dep, value, own.label, child) for dep, value in own.dependencies.items())
        for name in sorted(set(self.bundled) - set(self.done)):  # mo:core etc., available to every app
            self.result.packages.append(self._bundled(name, "", "the toolchain"))
        self.result.packages.sort(key=lambda p: p.name)
        return {name: versions for name, versions in requested.items() if len(set(versions)) > 1}

    def _one(self, name: str, spec: Any, label: str,
             scope: _Scope) -> tuple[Package, MopsConfig | None, _Scope | None]:
        """The package, its own mops.toml, and the scope its own declarations resolve in."""
        where = f"{label}: package {name!r}"
        if not NAME.match(str(name)):
            raise PackageError(f"{where}: not a valid package name")
        if not isinstance(spec, str) or not spec:
            raise PackageError(f"{where}: the value must be a version, a path or a git URL, got {spec!r}")
        if spec.startswith(("https://", "http://")):
            return self._git(name, spec, where, label)
        if spec.startswith(("./", "../", "/")) or label.endswith(".yml") or label.endswith(".yaml"):
            return self._folder(name, spec, None, where, label, scope)
        if not VERSION.match(spec):
            raise PackageError(f"{where}: {spec!r} is neither a version, a path (./...) nor a git URL")
        mops_dir = scope.origin / ".mops" / f"{name}@{spec}"
        if mops_dir.is_dir() and scope.vendored:
            return self._folder(name, str(mops_dir.relative_to(scope.origin)), spec, where, label, scope)
        if name in self.bundled:
            return self._bundled(name, spec, label), None, None
        raise PackageError(
            f"{where} = \"{spec}\" comes from the mops registry, which verifiers cannot reach: vendor it (commit "
            f".mops/{name}@{spec}/ next to {MOPS_TOML}, or a folder named in prometheus.yml packages:) or pin a "
            f"git commit ({name} = \"https://github.com/<owner>/<repo>#<tag>@<40-hex commit>\")")

    def _bundled(self, name: str, requested: str, label: str) -> Package:
        have = self.bundled[name]
        if requested and _bare_version(requested) != _bare_version(have):
            self.result.warnings.append(f"{label}: package {name!r} = \"{requested}\": using {name} {have} bundled "
                                        f"with the pinned compiler (vendor {requested} to build with it)")
        digest = _bundled_digest(self.motoko_dir, name) if self.motoko_dir else ""
        return Package(name, "bundled", have, f"{BUNDLED_DIR}/{name}/{have}", digest, declared_in=label)

    def _folder(self, name: str, rel: str, version: str | None, where: str, label: str,
                scope: _Scope) -> tuple[Package, MopsConfig | None, _Scope]:
        root = (scope.origin / rel).resolve()
        try:
            inside = root.relative_to(scope.boundary)
        except ValueError:
            raise PackageError(f"{where}: {rel!r} is outside {scope.boundary_label}") from None
        if not root.is_dir():
            raise PackageError(f"{where}: folder {rel!r} does not exist")
        own = self._own_config(root, name, where, scope)
        base = self._base(root, own, where)
        version = version or (own.version if own and own.version and VERSION.match(own.version) else "local")
        virtual = _virtual(f".mops/{name}@{version}", root, base)
        path = inside.as_posix() if scope.vendored else ""
        package = Package(name, "vendored" if scope.vendored else "git", version, virtual, tree_digest(base),
                          base, label, path, scope.repo, scope.commit)
        return package, own, _Scope(root, scope.boundary, scope.boundary_label, scope.vendored, scope.repo,
                                    scope.commit)

    def _git(self, name: str, spec: str, where: str,
             label: str) -> tuple[Package, MopsConfig | None, _Scope]:
        match = GIT.match(spec)
        if not match or not REF.match(match["ref"] or ""):
            raise PackageError(f"{where}: {spec!r} is not a git dependency of the form <https URL>#<ref>@<commit>")
        url, ref, commit = match["url"], match["ref"] or "", match["commit"] or ""
        if not COMMIT.match(commit):
            raise PackageError(f"{where}: {spec!r} is not pinned to a commit; write "
                               f"\"{url}#{ref or '<ref>'}@<full 40-hex commit>\" so every verifier builds the same")
        if self.fetch_git is None:
            raise PackageError(f"{where}: git dependencies need a fetcher here")
        tree = self.fetched.get((url, commit))
        if tree is None:
            try:
                tree = self.fetch_git(name, url, commit).resolve()
            except Exception as exc:  # the fetcher's errors are one line already
                raise PackageError(f"{where}: {exc}") from exc
            self.fetched[(url, commit)] = tree
        scope = _Scope(tree, tree, f"the repository of {name}", False, url, commit)
        own = self._own_config(tree, name, where, scope)
        base = self._base(tree, own, where)
        virtual = _virtual(f".mops/_github/{name}#{ref}@{commit}", tree, base)
        return Package(name, "git", ref, virtual, tree_digest(base), base, label, repo=url, commit=commit), own, scope

    @staticmethod
    def _own_config(root: Path, name: str, where: str, scope: _Scope) -> MopsConfig | None:
        path = root / MOPS_TOML
        if not (path.is_file() or path.is_symlink()):
            return None
        try:
            label = f"{path.relative_to(scope.boundary).as_posix()}" if scope.vendored else f"{name}/{MOPS_TOML}"
        except ValueError:
            label = f"{name}/{MOPS_TOML}"
        return read_toml(path, label)

    @staticmethod
    def _base(root: Path, own: MopsConfig | None, where: str) -> Path:
        """mops: `mo:<name>` is the package's baseDir (default src/); the package folder when that is absent."""
        base_dir = own.base_dir if own and own.base_dir else "src"
        base = (root / base_dir).resolve()
        try:
            base.relative_to(root)
        except ValueError:
            raise PackageError(f"{where}: baseDir {base_dir!r} is outside the package") from None
        return base if base.is_dir() else root


def _version_key(version: str) -> tuple[tuple[int, str], ...]:
    """Orders versions as mops does for the usual `MAJOR.MINOR.PATCH`: numerically, part by part."""
    return tuple((int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"[.+-]", version))


def _virtual(prefix: str, root: Path, base: Path) -> str:
    rel = base.relative_to(root).as_posix()
    return prefix if rel == "." else f"{prefix}/{rel}"


def resolve(repo_root: Path, source_dir: str, manifest_packages: Mapping[str, str] | None = None,
            manifest_label: str = "prometheus.yml", bundled: Mapping[str, str] | None = None,
            motoko_dir: Path | None = None, fetch_git: GitFetcher | None = None,
            mops: MopsConfig | None = None) -> Resolution:
    """Every package the app's compile sees (sorted by name), with its digest, and warnings to show."""
    if mops is None:
        mops = find_mops(repo_root, source_dir)
    return Resolver(repo_root, bundled or {}, motoko_dir, fetch_git).resolve(
        dict(manifest_packages or {}), manifest_label, mops)
