"""Where the files the commands need live: the Candid interfaces, the canister sources, the toolchain lockfiles.

An installed wheel carries them inside this package (`prometheus_build/_assets/{candid,canister_src,toolchain}`,
copied there by setup.py when the wheel is built); a checkout or an editable install uses the repository's own
folders (`candid/`, `canister_src/`, `toolchain/`). Every command asks here, so none depends on the current
directory or on where site-packages happens to be. Outputs (built canisters, the toolchain) go to per-user
folders (`user_cache_dir()`), never into site-packages.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGED = PACKAGE_DIR / "_assets"  # filled only inside a built wheel (git-ignored in a checkout)
ASSET_FOLDERS = ("candid", "canister_src", "toolchain")
DISTRIBUTION = "prometheus-ic"


class AssetsMissing(RuntimeError):
    """The installation lacks its packaged files (a broken install); says how to repair it."""


def checkout_root() -> Path | None:
    """The repository this package runs from (a checkout or an editable install), else None (a wheel)."""
    root = PACKAGE_DIR.parent
    if (root / "pyproject.toml").is_file() and all((root / name).is_dir() for name in ASSET_FOLDERS):
        return root
    return None


def packaged() -> bool:
    """Whether the files come from the installed package (a wheel) rather than a checkout."""
    return (PACKAGED / "candid").is_dir()


def _folder(name: str) -> Path:
    if (PACKAGED / name).is_dir():
        return PACKAGED / name
    root = checkout_root()
    if root is not None:
        return root / name
    raise AssetsMissing(f"this installation of {DISTRIBUTION} lacks its packaged {name} files ({PACKAGED / name}); "
                        f"reinstall it: pip install --force-reinstall {DISTRIBUTION} (or pipx reinstall)")


def candid_dir() -> Path:
    """The protocol canisters' interfaces (`<name>.did`) the CLI and the worker build typed clients from."""
    return _folder("candid")


def canister_src_dir() -> Path:
    """The protocol canisters' Motoko sources (`<name>/main.mo`) that `localnet deploy-protocol` builds."""
    return _folder("canister_src")


def toolchain_manifest_dir() -> Path:
    """The folder holding the toolchain's package.json and package-lock.json (what `npm ci` installs)."""
    return _folder("toolchain")


def compile_js() -> Path:
    """The recipe's compile.js (always next to this module: package data in a wheel)."""
    return PACKAGE_DIR / "compile.js"


def interfaces() -> dict[str, str]:
    """`{name: sha256 hex}` of every packaged interface, for `prometheus --version`."""
    return {p.stem: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(candid_dir().glob("*.did"))}


def user_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """`$XDG_CACHE_HOME/prometheus`, else `~/.cache/prometheus`: downloads and build outputs, safe to delete."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "prometheus"


def build_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where compiled canisters are cached by source digest (shared with `prometheus build`)."""
    return user_cache_dir(env) / "build"


def default_build_dir() -> Path:
    """`python -m prometheus_build`'s output folder: the checkout's `build/` (what `make build` and the tests
    share), else the per-user cache."""
    root = checkout_root()
    return root / "build" if root is not None and not packaged() else build_cache_dir()
