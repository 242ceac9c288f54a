"""Copies the files the commands need into the package when a wheel is built (all metadata is in pyproject.toml).

The repository keeps `candid/`, `canister_src/` and `toolchain/{package.json,package-lock.json}` at its top
(docs, tests and the Makefile use them there); a wheel carries copies under `prometheus_build/_assets/`, where
`prometheus_build.assets` finds them. MANIFEST.in puts the same folders into the sdist, so a wheel built from
the sdist gets them too. node_modules and build outputs are never copied.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
ASSETS = {  # folder -> glob patterns copied (relative to the folder)
    "candid": ("*.did",),
    "canister_src": ("**/*.mo", "README.md"),
    "toolchain": ("package.json", "package-lock.json"),
}


class BuildPyWithAssets(build_py):
    """build_py, then the asset folders into build_lib/prometheus_build/_assets (not in editable mode: an
    editable install reads the checkout's folders directly)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "prometheus_build" / "_assets"
        shutil.rmtree(target, ignore_errors=True)  # a stale build/lib never carries removed files
        for folder, patterns in ASSETS.items():
            source = ROOT / folder
            if not source.is_dir():
                raise SystemExit(f"setup.py: {source} is missing: build from a checkout or an sdist")
            for pattern in patterns:
                for path in sorted(source.glob(pattern)):
                    rel = path.relative_to(source)
                    if not path.is_file() or "node_modules" in rel.parts or path.is_symlink():
                        continue
                    dest = target / folder / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, dest)


setup(cmdclass={"build_py": BuildPyWithAssets})
