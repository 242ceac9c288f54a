"""Benchmark the IC HTTP interface through the SDK: `python bench/http_bench.py [--json]`.

A replica with its HTTP server runs in this process, as a localnet would in its own; each client is a separate
process using the SDK (icp-py-core, certificate verification on, Ed25519 identity), as programs talking to a
localnet are. Prints update and query p50/p99 latency and throughput from one client and from 4 concurrent
clients, and the ratio of their throughputs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import multiprocessing.pool
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from icp_identity.identity import Identity  # type: ignore[import-not-found]  # noqa: E402

from ic_replica import candid  # noqa: E402
from ic_replica.http_server import IcHttpServer  # noqa: E402
from ic_replica.replica import Replica  # noqa: E402
from prometheus_build.recipe import build_all  # noqa: E402
from prometheus_sdk import Network, connect  # noqa: E402
from prometheus_sdk import candid as sdk_candid  # noqa: E402

NO_ARGS = sdk_candid.encode([], [])  # the client side encodes with the SDK's codec


def percentiles(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {"p50_ms": round(statistics.median(samples), 2), "p99_ms": round(samples[int(len(samples) * 0.99) - 1], 2)}


def client(args: tuple[int, str, str, str, float]) -> list[float]:
    """One client process: connect, wait for the common start, make `per_client` calls; latencies in ms."""
    per_client, op, url, cid, start_at = args
    conn = connect(Network("local", url), Identity())
    conn.query(cid, "get", NO_ARGS)  # warm up (root key, connection) before the clock starts
    time.sleep(max(0.0, start_at - time.time()))
    out = []
    for _ in range(per_client):
        t = time.perf_counter()
        if op == "update":
            conn.call(cid, "inc", NO_ARGS)
        else:
            conn.query(cid, "get", NO_ARGS)
        out.append((time.perf_counter() - t) * 1000)
    return out


def run(pool: multiprocessing.pool.Pool, clients: int, per_client: int, op: str, url: str,
        cid: str) -> dict[str, float]:
    start_at = time.time() + 2.0  # every client connected and warm by then
    results = pool.map_async(client, [(per_client, op, url, cid, start_at)] * clients)
    samples = [s for chunk in results.get() for s in chunk]
    elapsed = time.time() - start_at
    return {**percentiles(samples), "per_second": round(len(samples) / elapsed, 1), "n": len(samples)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("-n", type=int, default=400, help="calls per client")
    args = parser.parse_args()
    wasm = {r.name: r.wasm.read_bytes() for r in build_all(
        ROOT / "tests" / "canisters", ROOT / "build" / "test_canisters", ROOT / "build" / "cache")}
    replica = Replica()
    cid = replica.create_canister()
    replica.install_code(cid, wasm["counter"], candid.encode([candid.NAT], [0]))
    server = IcHttpServer(replica).start()
    out: dict[str, dict[str, float]] = {}
    try:
        with multiprocessing.get_context("spawn").Pool(4) as pool:
            for clients in (1, 4):
                for op in ("update", "query"):
                    label = f"{op}_{clients}_client{'s' if clients > 1 else ''}"
                    out[label] = run(pool, clients, args.n, op, server.url, str(cid))
    finally:
        server.stop()
    for op in ("update", "query"):
        out[f"{op}_scaling"] = {"4_clients_over_1": round(
            out[f"{op}_4_clients"]["per_second"] / out[f"{op}_1_client"]["per_second"], 2)}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for key, value in out.items():
            print(f"{key:20} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
