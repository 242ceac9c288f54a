"""Does a call cost the same after 100,000 earlier calls? `python bench/ingress_scale_bench.py [--json]`.

In process, on the deterministic clock (1 ns per round, so no ingress expiry ever passes): N update calls
(default 100,000) to a canister whose heap never grows (a WAT counter, so only the replica's own per-call
cost is measured, not a growing canister heap); prints the p50 of the first and the last 1,000, their
ratio, RSS before and after (and at each tenth), and the sizes of the ingress structures. `--http N` adds a
run of N update calls through the HTTP interface with the SDK (signed, certificate verified), p50 of the
first and last 10 %.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import wasmtime  # noqa: E402

from ic_replica.principal import Principal  # noqa: E402
from ic_replica.replica import INGRESS_HISTORY_ROUNDS, Replica  # noqa: E402

OWNER = Principal(b"\x0a" * 29)
COUNTER_WAT = """
(module
  (import "ic0" "msg_reply" (func $reply))
  (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
  (memory 1)
  (global $n (mut i32) (i32.const 0))
  (func (export "canister_update inc")
    (global.set $n (i32.add (global.get $n) (i32.const 1)))
    (i32.store (i32.const 0) (global.get $n))
    (call $append (i32.const 0) (i32.const 4)) (call $reply))
  (func (export "canister_query get")
    (i32.store (i32.const 0) (global.get $n))
    (call $append (i32.const 0) (i32.const 4)) (call $reply)))
"""


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def p50_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


def in_process(n: int) -> dict[str, object]:
    r = Replica(time_ns=1_700_000_000_000_000_000)
    cid = r.create_canister(controllers=[OWNER], sender=OWNER)
    r.install_code(cid, bytes(wasmtime.wat2wasm(COUNTER_WAT)), sender=OWNER)
    for _ in range(100):  # warm up
        r.update_call(cid, "inc")
    gc.collect()
    rss = {"before": rss_mib()}
    samples: list[float] = []
    t0 = r.get_time()
    for i in range(n):
        t = time.perf_counter()
        r.update_call(cid, "inc")
        samples.append(time.perf_counter() - t)
        if (i + 1) % (n // 10) == 0:
            rss[f"after_{i + 1}"] = rss_mib()
    first, last = p50_ms(samples[:1000]), p50_ms(samples[-1000:])
    return {"calls": n, "p50_first_1000_ms": first, "p50_last_1000_ms": last, "ratio": round(last / first, 2),
            "ic_time_elapsed_ns": r.get_time() - t0, "rss_mib": rss, "ingress": r.ingress_counts(),
            "history_rounds": INGRESS_HISTORY_ROUNDS}


def over_http(n: int) -> dict[str, object]:
    from icp_identity.identity import Identity  # type: ignore[import-not-found]

    from prometheus_sdk import Network, connect
    from testkit.http_helpers import running_server

    r = Replica()
    cid = r.create_canister(controllers=[OWNER], sender=OWNER)
    r.install_code(cid, bytes(wasmtime.wat2wasm(COUNTER_WAT)), sender=OWNER)
    with running_server(r) as server:
        conn = connect(Network("local", server.url), Identity())
        for _ in range(20):
            conn.call(str(cid), "inc", b"DIDL\x00\x00")
        rss_before = rss_mib()
        samples = []
        for _ in range(n):
            t = time.perf_counter()
            conn.call(str(cid), "inc", b"DIDL\x00\x00")
            samples.append(time.perf_counter() - t)
        tenth = max(1, n // 10)
        first, last = p50_ms(samples[:tenth]), p50_ms(samples[-tenth:])
        return {"calls": n, f"p50_first_{tenth}_ms": first, f"p50_last_{tenth}_ms": last,
                "ratio": round(last / first, 2), "rss_mib": {"before": rss_before, "after": rss_mib()},
                "ingress": r.ingress_counts()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=100_000, help="in-process update calls")
    parser.add_argument("--http", type=int, default=0, help="update calls over HTTP (0: none)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out: dict[str, object] = {"in_process": in_process(args.n)}
    if args.http:
        out["http"] = over_http(args.http)
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        for name, result in out.items():
            print(f"{name}:")
            for key, value in result.items():  # type: ignore[attr-defined]
                print(f"  {key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
