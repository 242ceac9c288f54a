"""Locate the pinned Motoko toolchain installed by `make setup` under `toolchain/node_modules`."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TOOLCHAIN_DIR = PROJECT_ROOT / "toolchain"
MOTOKO_VERSION = "4.10.0"
IC_WASM_VERSION = "0.11.1"


class ToolchainMissing(RuntimeError):
    """The pinned toolchain is not installed (run `make setup`)."""


@dataclass(frozen=True)
class Toolchain:
    node: Path
    compile_js: Path
    motoko_dir: Path
    ic_wasm: Path
    motoko_version: str
    ic_wasm_version: str

    def digest_input(self) -> str:
        """Everything about the toolchain that can change output bytes."""
        return f"motoko@{self.motoko_version} ic-wasm@{self.ic_wasm_version}"


def _installed_version(package_dir: Path) -> str:
    try:
        return str(json.loads((package_dir / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError) as exc:
        raise ToolchainMissing(f"{package_dir} is not installed; run `make setup`") from exc


def find_toolchain(toolchain_dir: Path = TOOLCHAIN_DIR) -> Toolchain:
    """Return the pinned toolchain, refusing any other installed version."""
    modules = toolchain_dir / "node_modules"
    node = shutil.which("node")
    if node is None:
        raise ToolchainMissing("node is not on PATH; install Node.js 18 or newer")
    motoko = _installed_version(modules / "motoko")
    ic_wasm_pkg = modules / "@icp-sdk" / "ic-wasm-linux-x64"
    ic_wasm = _installed_version(ic_wasm_pkg)
    if (motoko, ic_wasm) != (MOTOKO_VERSION, IC_WASM_VERSION):
        raise ToolchainMissing(
            f"toolchain mismatch: motoko {motoko} / ic-wasm {ic_wasm}, "
            f"expected {MOTOKO_VERSION} / {IC_WASM_VERSION}; run `make setup`"
        )
    return Toolchain(
        node=Path(node),
        compile_js=Path(__file__).resolve().parent / "compile.js",
        motoko_dir=modules / "motoko",
        ic_wasm=ic_wasm_pkg / "bin" / "ic-wasm",
        motoko_version=motoko,
        ic_wasm_version=ic_wasm,
    )
