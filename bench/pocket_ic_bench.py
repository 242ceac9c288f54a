"""Benchmark issue 12's targets: `python bench/pocket_ic_bench.py [--json] [-n CALLS]`.

1. Install + first call of real Rust (ic-cdk) canisters, in process: the icp CLI 1.5.0's Candid UI backend
   (1.27 MB, the ~1.3 MB target) and Azle 0.33.0's canister template (3.0 MB, the largest available). Modules
   come from npm via the helpers of tests/test_system_api_complete.py (cached in build/npm/, sha256-pinned)
   and are installed gzipped, as the tests do. Each run uses a fresh `Replica` (empty module cache): create +
   install (includes compiling the module), first call; then a second canister with the same module (module
   cache hit) and its first call. Median of 5 runs.
2. p50/p90 of update (`inc`) and query (`get`) calls to the `counter` test canister three ways: in process
   (`Replica.update_call` / `query_call`), through the IC HTTP interface with the SDK (`IcHttpServer` in this
   process, signed requests, certificates verified), and through the PocketIC REST API with the unmodified
   `pocket_ic` client (`POCKET_IC_BIN` = .venv/bin/prometheus-pocket-ic; its update_call submits, ticks
   and polls the ingress status: 3 HTTP requests per update).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from icp_identity.identity import Identity  # type: ignore[import-not-found]  # noqa: E402

from ic_replica import candid  # noqa: E402
from ic_replica.http_server import IcHttpServer  # noqa: E402
from ic_replica.principal import Principal  # noqa: E402
from ic_replica.replica import Replica  # noqa: E402
from prometheus_build.recipe import build_canister  # noqa: E402
from prometheus_sdk import Network, connect  # noqa: E402
from prometheus_sdk import candid as sdk_candid  # noqa: E402
from testkit import ALICE  # noqa: E402

NO_ARGS = candid.encode([], [])
COUNTER_INIT = candid.encode([candid.NAT], [0])
RUNS = 5
WARMUP = 50


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# ------------------------------------------------------------------ 1. Rust canisters, in process

def rust_modules() -> dict[str, tuple[bytes, str, bytes]]:
    """name -> (module, method of its first call (a query), argument)."""
    from tests.test_system_api_complete import azle_modules, icp_cli_modules

    did = "service : { greet : (text) -> (text) query }"
    return {
        "candid_ui (icp-cli 1.5.0)": (icp_cli_modules()["candid_ui"], "did_to_js",
                                      candid.encode([candid.TEXT], [did])),
        "azle 0.33.0 template": (azle_modules()["stable"], "_azle_heap_allocation", NO_ARGS),
    }


def install_once(replica: Replica, module_gz: bytes, method: str, arg: bytes) -> tuple[float, float]:
    started = time.perf_counter()
    cid = replica.create_canister(controllers=[ALICE], sender=ALICE)
    replica.install_code(cid, module_gz, b"", sender=ALICE)
    installed = time.perf_counter()
    replica.query_call(cid, method, arg, sender=ALICE)
    return installed - started, time.perf_counter() - installed


def bench_rust(runs: int) -> dict[str, dict[str, Any]]:
    out = {}
    for name, (module, method, arg) in rust_modules().items():
        module_gz = gzip.compress(module)
        samples: dict[str, list[float]] = {k: [] for k in ("install", "first_call", "install_cached",
                                                             "first_call_cached")}
        for _ in range(runs):
            replica = Replica()  # no state dir: an empty module cache, so the first install compiles
            install, call = install_once(replica, module_gz, method, arg)
            install2, call2 = install_once(replica, module_gz, method, arg)
            for key, value in zip(samples, (install, call, install2, call2)):
                samples[key].append(value)
        out[name] = {"bytes": len(module), "gzip_bytes": len(module_gz), "method": method,
                     **{f"{k}_ms": ms(statistics.median(v)) for k, v in samples.items()}}
    return out


# ------------------------------------------------------------------ 2. update/query three ways

def counter_wasm() -> bytes:
    result = build_canister("counter", ROOT / "tests" / "canisters", "counter/main.mo",
                            ROOT / "build" / "test_canisters", ROOT / "build" / "cache")
    return result.wasm.read_bytes()


def measure(call: Callable[[], object], n: int) -> dict[str, float]:
    for _ in range(WARMUP):
        call()
    samples = []
    started = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - started
    samples.sort()
    return {"p50_ms": ms(statistics.median(samples)), "p90_ms": ms(samples[int(len(samples) * 0.9) - 1]),
            "per_second": round(n / elapsed, 1), "n": n}


def bench_in_process(wasm: bytes, n: int) -> dict[str, dict[str, float]]:
    replica = Replica()
    cid = replica.create_canister()
    replica.install_code(cid, wasm, COUNTER_INIT)
    return {"update": measure(lambda: replica.update_call(cid, "inc", NO_ARGS), n),
            "query": measure(lambda: replica.query_call(cid, "get", NO_ARGS), n)}


def bench_ic_http(wasm: bytes, n: int) -> dict[str, dict[str, float]]:
    replica = Replica()
    cid = replica.create_canister()
    replica.install_code(cid, wasm, COUNTER_INIT)
    server = IcHttpServer(replica).start()
    try:
        conn = connect(Network("local", server.url), Identity())
        no_args = sdk_candid.encode([], [])  # the client side encodes with the SDK's codec
        return {"update": measure(lambda: conn.call(str(cid), "inc", no_args), n),
                "query": measure(lambda: conn.query(str(cid), "get", no_args), n)}
    finally:
        server.stop()


def bench_pocket_ic(wasm: bytes, n: int, trust_env: bool = True) -> dict[str, dict[str, float]]:
    """`trust_env=False`: the client's `requests` session skips its per-request proxy and ~/.netrc lookups in
    the environment (as the tests' PocketIC backend does), which leaves the server's share of each request."""
    os.environ.setdefault("POCKET_IC_BIN", str(ROOT / ".venv" / "bin" / "prometheus-pocket-ic"))
    from pocket_ic import PocketIC  # type: ignore[import-untyped]

    pic = PocketIC()
    pic.server.request_client.trust_env = trust_env
    try:
        cid = pic.create_canister()
        install_arg = candid.Record.of(mode=candid.Variant.of(install=candid.NULL), canister_id=candid.PRINCIPAL,
                                       wasm_module=candid.BLOB, arg=candid.BLOB)
        payload = candid.encode([install_arg], [{"mode": {"install": None}, "canister_id": Principal(cid.bytes),
                                                 "wasm_module": wasm, "arg": COUNTER_INIT}])
        effective = {"CanisterId": base64.b64encode(cid.bytes).decode()}
        pic.update_call_with_effective_principal(None, effective, "install_code", payload)
        return {"update": measure(lambda: pic.update_call(cid, "inc", NO_ARGS), n),
                "query": measure(lambda: pic.query_call(cid, "get", NO_ARGS), n)}
    finally:
        try:
            pic.server.delete_instance(pic.instance_id)
        except Exception:  # the server exits by itself after its idle TTL anyway
            pass


# ------------------------------------------------------------------ report

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("-n", type=int, default=500, help="measured calls per path and kind (after a warm-up)")
    args = parser.parse_args()
    started = time.perf_counter()
    rust = bench_rust(RUNS)
    wasm = counter_wasm()
    paths = {"in process": bench_in_process(wasm, args.n), "IC HTTP (SDK)": bench_ic_http(wasm, args.n),
             "PocketIC REST": bench_pocket_ic(wasm, args.n),
             "PocketIC REST, no env lookups": bench_pocket_ic(wasm, args.n, trust_env=False)}
    total = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps({"rust": rust, "calls": paths, "total_s": total}, indent=2))
        return 0
    print(f"Rust canisters, in process, median of {RUNS} runs (module installed gzipped)")
    print(f"{'canister':28} {'size':>10} {'install':>10} {'1st call':>10} {'install*':>10} {'1st call*':>10}")
    for name, r in rust.items():
        print(f"{name:28} {r['bytes'] / 1e6:>8.2f}MB {r['install_ms']:>8.1f}ms {r['first_call_ms']:>8.2f}ms "
              f"{r['install_cached_ms']:>8.1f}ms {r['first_call_cached_ms']:>8.2f}ms")
    print("  install = create + install_code with an empty module cache (compiles); * = second canister, "
          "same module (module cache hit); first call = " + ", ".join(r["method"] for r in rust.values()))
    print()
    print(f"counter canister ({len(wasm) // 1000} KB), {args.n} calls each after {WARMUP} warm-up calls")
    print(f"{'path':30} {'kind':7} {'p50':>9} {'p90':>9} {'calls/s':>9} {'p50 / in-process':>17}")
    for path, kinds in paths.items():
        for kind, m in kinds.items():
            ratio = m["p50_ms"] / paths["in process"][kind]["p50_ms"]
            print(f"{path:30} {kind:7} {m['p50_ms']:>7.2f}ms {m['p90_ms']:>7.2f}ms {m['per_second']:>9.1f} "
                  f"{ratio:>16.1f}x")
    print(f"\ntotal {total} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
