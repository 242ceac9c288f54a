"""What to build from a repository: the manifest's canister, its toolchain and its packages, as one plan.

Shared by `prometheus build`/`verify` (the developer's checkout) and the verifier (a fetched commit), so
both read prometheus.yml and mops.toml the same way. The manifest fields used here: `source_dir`, `main`,
`canister`, `candid`, `toolchain`, `packages` (prometheus.yml may name packages for apps without mops.toml).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from prometheus_build.packages import GitFetcher, Package, PackageError, find_mops, resolve
from prometheus_build.recipe import BuildResult, build_canister
from prometheus_build.toolchain import Toolchain, UnknownToolchain, find_toolchain

MANIFEST = "prometheus.yml"
DEFAULT_MAIN = "src/main.mo"
MAX_MANIFEST_BYTES = 64 * 1024
CANISTER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class ProjectError(ValueError):
    """The manifest or mops.toml asks for something the recipe cannot build; one line naming the file."""


@dataclass
class Project:
    root: Path  # the repository (or the developer's checkout)
    source_dir: str
    main: str
    canister: str  # the output's name
    candid: str | None  # a checked-in interface, compared with the compiler's (never changes the wasm)
    toolchain: Toolchain
    packages: list[Package] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    toolchain_from: str = "default"

    @property
    def source(self) -> Path:
        return self.root / self.source_dir

    def describe(self) -> dict[str, Any]:
        """The build's identity for metadata: canister, entry point, toolchain, package set with digests."""
        return {"canister": self.canister, "source_dir": self.source_dir, "main": self.main,
                "toolchain": {"moc": self.toolchain.moc_version, "motoko": self.toolchain.motoko_version,
                              "from": self.toolchain_from},
                "packages": [p.as_dict() for p in self.packages]}


def relative(value: Any, key: str, label: str = MANIFEST) -> str:
    """A path that stays inside the repository, in posix form."""
    if not isinstance(value, str) or not value:
        raise ProjectError(f"{label}: {key} must be a non-empty relative path")
    path = PurePosixPath(value)
    if path.is_absolute() or any(part in ("..", ".git") for part in path.parts) or "\\" in value:
        raise ProjectError(f"{label}: {key} {value!r} must stay inside the repository")
    return path.as_posix()


def _packages(value: Any, label: str) -> dict[str, str]:
    if value in (None, {}):
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ProjectError(f"{label}: packages must map a package name to a folder, e.g. textutil: vendor/textutil")
    return dict(value)


def _default_name(name: Any, main: str) -> str:
    """`<folder>` for `<folder>/main.mo` (not `src`), else the manifest's name as a slug, else `app`."""
    folder = PurePosixPath(main).parent.name
    if folder not in ("", "src"):
        return folder
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", str(name or "")).strip("-").lower()[:64]
    return slug or "app"


def entry_point(tree: Path) -> tuple[str, str]:
    """(source_dir, main) from the repository's prometheus.yml; defaults to ('.', 'src/main.mo')."""
    data = load_manifest(tree, MANIFEST, MAX_MANIFEST_BYTES)  # its errors are ValueErrors (ProjectError)
    source_dir = relative(data.get("source_dir", "."), "source_dir")
    main = relative(data.get("main", DEFAULT_MAIN), "main")
    if not (tree / source_dir / main).is_file():
        raise ValueError(f"the entry point {PurePosixPath(source_dir, main)} is not in the repository")
    return source_dir, main


def plan(root: Path, manifest: Mapping[str, Any] | None, fetch_git: GitFetcher | None = None,
         label: str = MANIFEST, toolchain_dir: Path | None = None) -> Project:
    """Resolve the manifest's canister in `root`: entry point, toolchain (prometheus.yml `toolchain:` or
    mops.toml `[toolchain] moc`, else the default) and every package (git ones through `fetch_git`)."""
    data = dict(manifest or {})
    source_dir = relative(data.get("source_dir") or ".", "source_dir", label)
    main = relative(data.get("main") or DEFAULT_MAIN, "main", label)
    if not (root / source_dir / main).is_file():
        raise ProjectError(f"{label}: the entry point {PurePosixPath(source_dir, main)} is not in the repository")
    canister = data.get("canister") or _default_name(data.get("name"), main)
    if not isinstance(canister, str) or not CANISTER.match(canister):
        raise ProjectError(f"{label}: canister {canister!r} must be 1-64 letters, digits, '_' or '-'")
    candid = data.get("candid")
    if candid is not None:
        candid = relative(candid, "candid", label)
    try:
        mops = find_mops(root, source_dir)
        moc, origin = data.get("toolchain"), label
        if moc is not None and not isinstance(moc, str):
            raise ProjectError(f"{label}: toolchain must be a moc version in quotes, e.g. toolchain: \"1.10.1\"")
        if mops is not None and mops.moc:
            if moc and moc != mops.moc:
                raise ProjectError(f"{label}: toolchain {moc} differs from {mops.label} [toolchain] moc = "
                                   f"\"{mops.moc}\"; keep one")
            moc, origin = mops.moc, mops.label
        try:
            toolchain = find_toolchain(toolchain_dir, moc)
        except UnknownToolchain as exc:
            raise ProjectError(f"{origin}: {exc}") from None
        resolution = resolve(root, source_dir, _packages(data.get("packages"), label), label,
                             toolchain.bundled(), toolchain.motoko_dir, fetch_git, mops)
    except PackageError as exc:
        raise ProjectError(str(exc)) from None
    return Project(root, source_dir, main, canister, candid, toolchain, resolution.packages, resolution.warnings,
                   origin if moc else "default")


def build(project: Project, out_dir: Path, cache_dir: Path, name: str | None = None) -> BuildResult:
    """Compile the project's canister on this machine (the same compile.js as the sandbox)."""
    return build_canister(name or project.canister, project.source, project.main, out_dir, cache_dir,
                          project.toolchain, project.packages)


MAX_MANIFEST_DEPTH = 64


def _nesting(text: str) -> int:
    """How deep the YAML's collections nest, from PyYAML's scanner (a loop, not recursion): refused before the
    composer's recursion could run out of stack (a few KB of `[` would)."""
    import yaml

    depth = deepest = 0
    for token in yaml.scan(text):
        if isinstance(token, (yaml.FlowSequenceStartToken, yaml.FlowMappingStartToken,
                              yaml.BlockSequenceStartToken, yaml.BlockMappingStartToken)):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_MANIFEST_DEPTH:
                break
        elif isinstance(token, (yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken, yaml.BlockEndToken)):
            depth -= 1
    return deepest


def load_manifest(root: Path, label: str = MANIFEST, max_bytes: int = 64 * 1024) -> dict[str, Any]:
    """The committed prometheus.yml of `root` as a mapping ({} when there is none)."""
    import yaml

    path = root / label
    if not path.is_file() or path.is_symlink():
        return {}
    if path.stat().st_size > max_bytes:
        raise ProjectError(f"{label} is larger than {max_bytes} bytes")
    try:
        text = path.read_text()
        if _nesting(text) > MAX_MANIFEST_DEPTH:
            raise ProjectError(f"{label} nests too deeply (more than {MAX_MANIFEST_DEPTH} levels)")
        data = yaml.safe_load(text)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ProjectError(f"{label} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ProjectError(f"{label} must be a mapping")
    return data
