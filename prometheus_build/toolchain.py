"""Locate a pinned Motoko toolchain installed by `make setup` under `toolchain/node_modules`.

Apps pin the *moc* version (`[toolchain] moc = "0.16.1"` in mops.toml, `toolchain:` in prometheus.yml); npm's
`motoko` package has its own version numbers and reports only a build id, so the mapping is a table here.
Each npm version is installed side by side (`toolchain/package.json` aliases, locked by integrity hash in
the committed package-lock.json); the default stays `motoko@4.10.0` so existing hashes never change.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TOOLCHAIN_DIR = PROJECT_ROOT / "toolchain"
IC_WASM_VERSION = "0.11.1"


@dataclass(frozen=True)
class ToolchainSpec:
    """One supported toolchain: the moc version users write, the npm package carrying it, what it bundles."""

    moc: str
    npm: str
    folder: str  # under toolchain/node_modules
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
    """The pinned toolchain is not installed (run `make setup`)."""


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


def _installed_version(package_dir: Path) -> str:
    try:
        return str(json.loads((package_dir / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError) as exc:
        raise ToolchainMissing(f"{package_dir} is not installed; run `make setup`") from exc


def find_toolchain(toolchain_dir: Path = TOOLCHAIN_DIR, moc: str | None = None) -> Toolchain:
    """Return the pinned toolchain for `moc` (default: the recipe's), refusing any other installed version."""
    spec = resolve_moc(moc)
    modules = toolchain_dir / "node_modules"
    node = shutil.which("node")
    if node is None:
        raise ToolchainMissing("node is not on PATH; install Node.js 18 or newer")
    motoko = _installed_version(modules / spec.folder)
    ic_wasm_pkg = modules / "@icp-sdk" / "ic-wasm-linux-x64"
    ic_wasm = _installed_version(ic_wasm_pkg)
    if (motoko, ic_wasm) != (spec.npm, IC_WASM_VERSION):
        raise ToolchainMissing(
            f"toolchain mismatch: {spec.folder} {motoko} / ic-wasm {ic_wasm}, "
            f"expected {spec.npm} / {IC_WASM_VERSION}; run `make setup`"
        )
    return Toolchain(
        node=Path(node),
        compile_js=Path(__file__).resolve().parent / "compile.js",
        motoko_dir=modules / spec.folder,
        ic_wasm=ic_wasm_pkg / "bin" / "ic-wasm",
        motoko_version=motoko,
        ic_wasm_version=ic_wasm,
        moc_version=spec.moc,
    )
