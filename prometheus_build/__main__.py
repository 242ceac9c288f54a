"""`python -m prometheus_build`: build every canister under a source folder and print its sha256."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from prometheus_build import assets
from prometheus_build.recipe import BuildError, build_all, write_manifest
from prometheus_build.toolchain import ToolchainMissing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prometheus_build", description=__doc__)
    parser.add_argument("--src", type=Path, default=None,
                        help="folder of <name>/main.mo (default: the protocol canisters' packaged sources)")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: build/canisters in a checkout, else $XDG_CACHE_HOME/prometheus/build/canisters")
    parser.add_argument("--cache", type=Path, default=None, help="compiled canisters by source digest "
                                                                 "(default: next to --out's default)")
    parser.add_argument("--jobs", type=int, default=2, help="compilers run at once (each needs ~1 GB)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args(argv)
    try:
        args.src = args.src or assets.canister_src_dir()
    except assets.AssetsMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out = args.out or assets.default_build_dir() / "canisters"
    args.cache = args.cache or assets.default_build_dir() / "cache"
    if not args.src.is_dir():
        print(f"error: source folder {args.src} does not exist", file=sys.stderr)
        return 2
    try:
        results = build_all(args.src, args.out, args.cache, args.jobs)
    except (BuildError, ToolchainMissing, OSError) as exc:
        hint = f" ({exc.hint})" if isinstance(exc, ToolchainMissing) else ""
        print(f"error: {exc}{hint}", file=sys.stderr)
        return 1
    write_manifest(results, args.out)
    if not results and not args.json:
        print(f"no canisters under {args.src} (expected <name>/main.mo)")
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        for r in results:
            origin = "cached" if r.cached else f"built in {r.seconds:.1f}s"
            print(f"{r.sha256}  {r.wasm}  ({origin})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
