"""Benchmark the embedded replica in process: `python bench/replica_bench.py [--json]`.

Prints module compile, install from the module cache, update and query on a canister with a >= 5 MiB heap,
an inter-canister round trip, an EOP upgrade, the extra RSS of 100 installed canisters, and the cost of a
certificate with 10 to 20,000 canisters. Run it again with
`IC_REPLICA_DIRTY_PAGES=0` for the cost without the kernel's dirty page tracking (whole heaps copied).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import wasmtime  # noqa: E402

from ic_replica import candid, dirty_pages  # noqa: E402
from ic_replica.principal import Principal  # noqa: E402
from ic_replica.replica import Replica  # noqa: E402
from ic_replica.runtime import new_engine  # noqa: E402
from ic_replica.wasm_module import prepare  # noqa: E402
from prometheus_build.recipe import build_all  # noqa: E402

OWNER = Principal(b"\x0a" * 29)
NO_ARGS = candid.encode([], [])
READ_256K = candid.encode([candid.NAT64, candid.NAT], [0, 256 << 10])  # a 256 KiB blob from stable memory


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Callable[[], object], n: int) -> dict[str, float]:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    return {"p50_ms": round(statistics.median(samples), 3), "p99_ms": round(samples[int(len(samples) * 0.99) - 1], 3),
            "n": n}


def certificates() -> dict[str, object]:
    """A certificate of `/time` and one canister's certified data (what every data certificate and update reply
    needs) on replicas with 10 to 20,000 canisters; then with one canister's certified data changed before
    each, and with a canister created before each."""
    out: dict[str, object] = {}
    for count in (10, 1_000, 20_000):
        out.update(_certificates_with(count))
    return out


def _certificates_with(count: int) -> dict[str, object]:
    r = Replica()
    ids = [r.create_canister().raw for _ in range(count)]
    r.certify_data(ids[0])  # the first certificate hashes every canister's entry
    changing = r.canister(ids[-1])

    def changed() -> None:
        changing.certified_data = bytes([len(changing.certified_data) % 7]) * 3
        r.certify_data(ids[0])

    return {f"certificate_{count}_canisters": timed(lambda: r.certify_data(ids[0]), 20),
            f"certificate_{count}_canisters_one_changed": timed(changed, 20),
            f"certificate_{count}_canisters_one_created": timed(lambda: (r.create_canister(), r.certify_data(ids[0])),
                                                                10)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = build_all(ROOT / "tests" / "canisters", ROOT / "build" / "test_canisters", ROOT / "build" / "cache")
    wasm = {r.name: r.wasm.read_bytes() for r in results}
    counter_arg = candid.encode([candid.NAT], [0])
    out: dict[str, object] = {"module_bytes": len(wasm["counter"]),
                              "dirty_page_tracking": dirty_pages.tracker() is not None}

    info = prepare(wasm["counter"])
    out["module_compile"] = timed(lambda: wasmtime.Module(new_engine(), info.prepared), 5)

    fresh = Replica()  # first: nothing else allocated yet
    fresh.install_code(fresh.create_canister(sender=OWNER), wasm["counter"], counter_arg, sender=OWNER)
    gc.collect()
    before = rss_mib()
    for _ in range(100):
        c = fresh.create_canister(sender=OWNER)
        fresh.install_code(c, wasm["counter"], counter_arg, sender=OWNER)
        fresh.update_call(c, "inc", NO_ARGS)
    gc.collect()
    out["rss_100_canisters_mib"] = round(rss_mib() - before, 1)
    del fresh
    r = Replica()
    r.install_code(r.create_canister(controllers=[OWNER], sender=OWNER), wasm["counter"], counter_arg, sender=OWNER)

    def install_once() -> None:
        cid = r.create_canister(controllers=[OWNER], sender=OWNER)
        r.install_code(cid, wasm["counter"], counter_arg, sender=OWNER)

    out["create_and_install_cached"] = timed(install_once, 50)

    cid = r.create_canister(controllers=[OWNER], sender=OWNER)
    r.install_code(cid, wasm["counter"], counter_arg, sender=OWNER)
    r.update_call(cid, "stableWrite", candid.encode([candid.NAT64, candid.BLOB], [0, bytes(256 << 10)]), sender=OWNER)
    for label, grow_mib in (("", 0), ("_large_heap", 4)):
        if grow_mib:
            r.update_call(cid, "grow", candid.encode([candid.NAT], [grow_mib]), sender=OWNER)
        out[f"heap_mib{label}"] = round(r.canister(cid).runtime.memory_size() / 2**20, 1)  # type: ignore[union-attr]
        out[f"update{label}"] = timed(lambda: r.update_call(cid, "inc", NO_ARGS), 500)
        out[f"query{label}"] = timed(lambda: r.query_call(cid, "get", NO_ARGS), 500)
        # a query that allocates past the end of memory: undone on a new instance (memory cannot shrink)
        out[f"query_growing_memory{label}"] = timed(lambda: r.query_call(cid, "stableRead", READ_256K), 200)
        out[f"upgrade_keep{label}"] = timed(
            lambda: r.upgrade_canister(cid, wasm["counter"], counter_arg, sender=OWNER), 10)

    relay = r.create_canister(controllers=[OWNER], sender=OWNER)
    r.install_code(relay, wasm["relay"], NO_ARGS, sender=OWNER)
    out["inter_canister_round_trip"] = timed(
        lambda: r.update_call(relay, "selfCall", candid.encode([candid.NAT], [1])), 200)
    out.update(certificates())

    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for key, value in out.items():
            print(f"{key:28} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
