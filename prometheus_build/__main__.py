"""`python -m prometheus_build`: build every canister under a source folder and print its sha256."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from prometheus_build.recipe import BuildError, build_all, write_manifest
from prometheus_build.toolchain import PROJECT_ROOT, ToolchainMissing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prometheus_build", description=__doc__)
    parser.add_argument("--src", type=Path, default=PROJECT_ROOT / "canister_src", help="folder of <name>/main.mo")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "build" / "canisters")
    parser.add_argument("--cache", type=Path, default=PROJECT_ROOT / "build" / "cache")
    parser.add_argument("--jobs", type=int, default=2, help="compilers run at once (each needs ~1 GB)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args(argv)
    if not args.src.is_dir():
        print(f"error: source folder {args.src} does not exist", file=sys.stderr)
        return 2
    try:
        results = build_all(args.src, args.out, args.cache, args.jobs)
    except (BuildError, ToolchainMissing, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
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
