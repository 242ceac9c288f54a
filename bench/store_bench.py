"""Benchmark the store: `python bench/store_bench.py [--listings 10000] [--json]`.

A registry on the embedded replica (served over the IC HTTP interface in this process) gets `--listings` apps,
each its own namespace with one wasm and a verification request carrying listing metadata (one in ten verified
by two verifiers). Then, as a user runs them, in their own processes:
- `prometheus store index` builds the index from the registry's certified log (time, blocks per second),
  at 1,000 listings and again (incrementally) at the full count;
- `prometheus store serve` answers searches: `GET /v0/servers?search=...` (the REST endpoint) and the search
  page `GET /?q=...` with the catalog's 40 queries repeated (p50 / p99 per request, one client, keep-alive);
- the listing page `GET /?verified=0` (render time).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from ic_replica.http_server import IcHttpServer  # noqa: E402
from ic_replica.principal import Principal  # noqa: E402
from prometheus_build.recipe import build_all  # noqa: E402
from testkit.backends import EmbeddedBackend  # noqa: E402
from testkit.catalog import LISTINGS, QUERIES  # noqa: E402
from testkit.protocol import MINTER, SPONSOR, Stack, account  # noqa: E402
from testkit.store import prepare, submit_app  # noqa: E402

PROMETHEUS = str(Path(sys.executable).parent / "prometheus")
WORDS = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "lambda", "theta", "zeta", "nova",
         "orbit", "pixel", "vector", "quartz", "ember", "harbor", "summit", "canyon", "meadow"]


def fill(stack: Stack, start: int, end: int) -> None:
    """Apps `start`..`end`: the catalog's 52 first (so its queries have answers), then generated ones."""
    for i in range(start, end):
        developer = Principal(i.to_bytes(4, "big") + b"\x01" * 25)  # a principal creates at most 10 namespaces
        if i < len(LISTINGS):
            namespace, name, description, tools, tags, category = LISTINGS[i]
        else:
            a, b = WORDS[i % len(WORDS)], WORDS[(i // len(WORDS)) % len(WORDS)]
            namespace, name = f"org.gen{i}.{a}", f"{a.title()} {b.title()} {i}"
            description, tools, tags, category = (f"Generated {a} service for {b} tasks number {i}", f"{a}_{b}, run",
                                                  f"{a}, {b}", "generated")
        outcome = "verified" if i % 10 == 0 else None
        submit_app(stack, namespace, name, description, outcome=outcome, tools=tools, tags=tags, category=category,
                   developer=developer)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2)}


def timed_get(client: httpx.Client, url: str, params: dict[str, str]) -> float:
    started = time.perf_counter()
    response = client.get(url, params=params)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, (url, params, response.status_code)
    return elapsed


def measure_http(env: dict[str, str], rounds: int) -> dict[str, Any]:
    with socket_port() as port:
        proc = subprocess.Popen([PROMETHEUS, "store", "serve", "--port", str(port), "--interval", "60"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=30) as client:
            while True:
                try:
                    if client.get(f"{url}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
                if proc.poll() is not None:
                    raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "serve exited")
            for query, _ in QUERIES[:5]:  # warm up
                timed_get(client, f"{url}/v0/servers", {"search": query})
            rest = [timed_get(client, f"{url}/v0/servers", {"search": q, "limit": "10"})
                    for _ in range(rounds) for q, _ in QUERIES]
            pages = [timed_get(client, url + "/", {"q": q}) for _ in range(rounds) for q, _ in QUERIES]
            listing = [timed_get(client, url + "/", {"verified": "0"}) for _ in range(20)]
            app = [timed_get(client, f"{url}/apps/{LISTINGS[0][0]}", {}) for _ in range(20)]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return {"rest_search": percentiles(rest), "search_page": percentiles(pages), "listing_page": percentiles(listing),
            "app_page": percentiles(app), "requests": len(rest) + len(pages) + len(listing) + len(app)}


class socket_port:  # noqa: N801 - used as a context manager
    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def index(env: dict[str, str]) -> dict[str, Any]:
    started = time.perf_counter()
    out = subprocess.run([PROMETHEUS, "--json", "store", "index"], env=env, capture_output=True, text=True,
                         check=True)
    elapsed = time.perf_counter() - started
    report = json.loads(out.stdout)
    return {"seconds": round(elapsed, 2), "blocks": report["applied"], "listings": report["listings"],
            "blocks_per_s": round(report["applied"] / elapsed)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listings", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5, help="times the 40 queries are sent")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    product = {r.name: r for r in build_all(ROOT / "canister_src", ROOT / "build" / "canisters",
                                            ROOT / "build" / "cache", jobs=2)}
    ic = EmbeddedBackend()
    server = IcHttpServer(ic.replica).start()
    out: dict[str, Any] = {"listings": args.listings}
    try:
        stack = Stack.deploy(ic, product)
        prepare(stack)
        funds = {"from_subaccount": [], "to": account(SPONSOR), "fee": [], "amount": args.listings * 600_000,
                 "memo": [], "created_at_time": []}
        assert "Ok" in stack.ledger("icrc1_transfer", funds, sender=MINTER)
        tmp = Path(tempfile.mkdtemp(prefix="store-bench-"))
        env = {**os.environ, "PROMETHEUS_NETWORK": server.url,
               "PROMETHEUS_MCP_REGISTRY_ID": str(stack.registry.canister_id), "XDG_DATA_HOME": str(tmp)}
        first = min(1_000, args.listings)
        started = time.perf_counter()
        fill(stack, 0, first)
        out["fill_1000_s"] = round(time.perf_counter() - started, 1)
        out["index_1000"] = index(env)
        out["http_1000"] = measure_http(env, args.rounds)
        if args.listings > first:
            started = time.perf_counter()
            fill(stack, first, args.listings)
            out["fill_rest_s"] = round(time.perf_counter() - started, 1)
            out["index_incremental"] = index(env)
            for leftover in (tmp / "prometheus" / "store").glob(f"{stack.registry.canister_id}.sqlite*"):
                leftover.unlink()
            out["index_from_scratch"] = index(env)
            out[f"http_{args.listings}"] = measure_http(env, args.rounds)
    finally:
        server.stop()
        ic.replica.close()
    print(json.dumps(out, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
