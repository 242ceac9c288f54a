"""Probe canisters for the canisters' shared libraries (`canister_src/lib`), built with the product's recipe.

The libraries live outside any test canister's source root, so a probe is assembled in a temporary folder (its
`main.mo` + the libraries under `lib/`) and built through the recipe's cache like every other canister."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from prometheus_build.recipe import build_canister
from testkit import ROOT

LIB = ROOT / "canister_src" / "lib"


def build_probe(name: str, main: Path, libraries: Sequence[str]) -> tuple[bytes, str]:
    """The probe's wasm and Candid interface; `libraries` are file names in `canister_src/lib`."""
    with tempfile.TemporaryDirectory(prefix=f"{name}-") as tmp:
        src = Path(tmp, "src")
        (src / "lib").mkdir(parents=True)
        shutil.copyfile(main, src / "main.mo")
        for library in libraries:
            shutil.copyfile(LIB / library, src / "lib" / library)
        result = build_canister(name, src, "main.mo", Path(tmp, "out"), ROOT / "build" / "cache")
        return result.wasm.read_bytes(), result.did.read_text()
