"""Agent attestation throughput and latency, side by side with the reference implementation's own benchmark.

    python bench/attest_bench.py [--reference DIR] [--json] [-n N]

DIR is a checkout of the reference (github.com/JAVillarino/mcp-agent-attestation) in a temporary directory: its
`benchmarks/benchmark.py` runs unmodified in a subprocess, in this run, on this machine, and its SUMMARY table
is parsed. Ours measures the same operations the same way (token creation; verification of fresh tokens; the
full flow = create + verify, replay check included) with p50/p99 per operation, then the full flow on every
core (one process per core, each with its own verifier and memory replay cache, as separate server
processes run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prometheus_attest import Issuer, Policy, SigningKey, StaticKeys, Verifier  # noqa: E402

ISS, AUD = "https://api.anthropic.com", "https://server.com"
IDENTITY = {"model_family": "claude-4", "model_version": "claude-sonnet-4", "provider": "anthropic"}


def stats(times: list[float], total: float) -> dict[str, float]:
    ordered = sorted(times)
    return {"ops_per_s": round(len(times) / total), "avg_ms": round(statistics.mean(times) * 1e3, 4),
            "p50_ms": round(ordered[len(ordered) // 2] * 1e3, 4),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3, 4)}


def setup() -> tuple[Issuer, Verifier]:
    key = SigningKey.generate()
    return Issuer(ISS, key), Verifier(Policy(frozenset({ISS}), AUD), StaticKeys({ISS: [key.public]}))


async def measure(n: int) -> dict[str, dict[str, float]]:
    issuer, verifier = setup()
    out: dict[str, dict[str, float]] = {}
    for _ in range(min(100, n // 10)):  # warm-up, as the reference does
        await verifier.verify(issuer.issue(AUD, IDENTITY))
    times = []
    start = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        issuer.issue(AUD, IDENTITY)
        times.append(time.perf_counter() - t)
    out["token creation"] = stats(times, time.perf_counter() - start)
    fresh = [issuer.issue(AUD, IDENTITY) for _ in range(n)]
    times = []
    start = time.perf_counter()
    for token in fresh:
        t = time.perf_counter()
        await verifier.verify(token)
        times.append(time.perf_counter() - t)
    out["token verification"] = stats(times, time.perf_counter() - start)
    times = []
    start = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        await verifier.verify(issuer.issue(AUD, IDENTITY))
        times.append(time.perf_counter() - t)
    out["full flow (create + verify + replay check)"] = stats(times, time.perf_counter() - start)
    return out


def _worker(args: tuple[int, Any]) -> tuple[int, float]:
    n, barrier = args
    issuer, verifier = setup()

    async def go() -> float:
        for _ in range(100):
            await verifier.verify(issuer.issue(AUD, IDENTITY))
        barrier.wait()
        start = time.perf_counter()
        for _ in range(n):
            await verifier.verify(issuer.issue(AUD, IDENTITY))
        return time.perf_counter() - start

    return n, asyncio.run(go())


def every_core(n: int, processes: int) -> dict[str, float]:
    with multiprocessing.Manager() as manager:
        barrier = manager.Barrier(processes)
        with multiprocessing.Pool(processes) as pool:
            started = time.perf_counter()
            done = pool.map(_worker, [(n, barrier)] * processes)
            wall = time.perf_counter() - started
    slowest = max(seconds for _, seconds in done)
    return {"processes": processes, "ops_per_s": round(sum(k for k, _ in done) / slowest), "wall_s": round(wall, 2)}


ROW = re.compile(r"^(?P<name>.+?)\s{2,}(?P<avg>[\d.]+)\s+(?P<p99>[\d.]+)\s+(?P<ops>[\d,]+)\s*$")


def reference(directory: Path) -> dict[str, dict[str, float]]:
    out = subprocess.run([sys.executable, "benchmarks/benchmark.py"], cwd=directory, capture_output=True,
                         text=True, timeout=900, check=True).stdout
    summary = out.split("SUMMARY", 1)[1].split("OVERHEAD", 1)[0]
    rows: dict[str, dict[str, float]] = {}
    for line in summary.splitlines():
        m = ROW.match(line.strip())
        if m:
            rows[m["name"].strip()] = {"ops_per_s": float(m["ops"].replace(",", "")), "avg_ms": float(m["avg"]),
                                       "p99_ms": float(m["p99"])}
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, help="a checkout of the reference implementation")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("-n", type=int, default=5000, help="operations per measurement (default 5000)")
    args = parser.parse_args()
    result: dict[str, Any] = {"cores": os.cpu_count()}
    if args.reference:
        result["reference"] = reference(args.reference)
    result["ours"] = asyncio.run(measure(args.n))
    result["ours"]["full flow, every core"] = every_core(args.n, os.cpu_count() or 1)
    if args.reference:
        ref, ours = result["reference"], result["ours"]
        pairs = {"token creation": "Token Creation (Sign)", "token verification": "Token Verification (Verify)",
                 "full flow (create + verify + replay check)": "Full Flow (Create + Verify)",
                 "full flow, every core": "Full Flow (Create + Verify)"}
        result["ratio_vs_reference"] = {k: round(ours[k]["ops_per_s"] / ref[v]["ops_per_s"], 2)
                                        for k, v in pairs.items() if v in ref}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for section in ("reference", "ours"):
            for name, row in result.get(section, {}).items():
                print(f"{section:9} {name:45} " + "  ".join(f"{k}={v}" for k, v in row.items()))
        for name, ratio in result.get("ratio_vs_reference", {}).items():
            print(f"ratio     {name:45} {ratio}x the reference's ops/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
