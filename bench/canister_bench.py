"""Benchmark the protocol canisters: `python bench/canister_bench.py [--json]`.

Instructions per call for the main endpoints (wasm instructions counted by the replica's fuel, summed over
every message a call causes, inter-canister calls included), SHA-256 in Motoko per MiB (the canisters' own
`canister_src/lib/Sha256.mo`, through a probe canister), the most any one message of a 10 MiB upload costs,
the registry's and audit hub's memory growth per 10,000 verification requests (one in four funded, one in
eight reserved by a verifier and attested: the hub's stake lock and settlement run too), the cost of a
`list_pending_verifications` page at different totals, and what 256 modules of 1 MiB cost a fresh registry in
wasm and stable memory.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ic_replica.replica import Limits  # noqa: E402
from prometheus_build.recipe import build_all  # noqa: E402
from testkit.backends import EmbeddedBackend  # noqa: E402
from testkit.protocol import DEV, GOV, MINTER, PRINCIPALS, SPONSOR, STRANGER, VERIFIERS, Stack, account  # noqa: E402
from testkit.sha256_probe import blob_arg, build_probe  # noqa: E402

MIB = 1024 * 1024
# Who owns the benchmark's namespaces, in turn, 1,000 requests each: a principal creates at most 10 namespaces
# and each holds at most 1,000 modules. DEV created one before the loop, so it comes last: these eleven allow
# 109,000 requests.
OWNERS = [STRANGER, PRINCIPALS["gov"], PRINCIPALS["minter"], SPONSOR, *VERIFIERS, DEV]
MAX_REQUESTS = 100_000
PUBLISHED_SHA256_PER_MIB = {"Motoko (DFINITY canister-profiling)": 268_000_000, "Rust": 83_000_000}


def sha256_per_mib(backend: EmbeddedBackend) -> int:
    """Instructions the probe's `hash` spends on 1 MiB more than on 0 bytes (the message's own overhead)."""
    replica = backend.replica
    probe = replica.create_canister()
    replica.install_code(probe, build_probe(), b"DIDL\x00\x00")
    cost = []
    for size in (0, MIB):
        before = replica.instructions_executed
        replica.update_call(probe, "hash", blob_arg(bytes(size)))
        cost.append(replica.instructions_executed - before)
    return int(cost[1] - cost[0])


def instructions(stack: Stack, fn: Any) -> int:
    replica = stack.ic.replica
    before = replica.instructions_executed
    fn()
    return int(replica.instructions_executed - before)


def memory_mib(stack: Stack) -> dict[str, dict[str, float]]:
    """Both canisters' runtime memory figures (`memory_stats`), in MiB."""
    return {name: {key.removesuffix("_bytes"): round(value / 2**20, 1) for key, value in stats.items()}
            for name, stats in (("mcp_registry", stack.registry("memory_stats", sender=GOV)["ok"]),
                                ("audit_hub", stack.hub("memory_stats", sender=GOV)["ok"]))}


def upload_ten_mib(stack: Stack) -> dict[str, int]:
    """The most one message costs uploading a 10 MiB wasm: in order, and with each window of 4 chunks sent
    backwards (the worst order the registry accepts: the last chunk of a window hashes the whole window)."""
    module = bytes(range(256)) * (10 * MIB // 256)
    chunks = [module[i:i + MIB] for i in range(0, len(module), MIB)]
    out: dict[str, int] = {}
    for name, order in (("in order", list(range(10))), ("windows backwards", [4, 3, 2, 1, 0, 8, 7, 6, 5, 9])):
        module = bytes([len(out)]) + module[1:]  # a new module each time
        chunks[0] = module[:MIB]
        digest = hashlib.sha256(module).digest()
        worst = 0
        for index in order:
            arg = {"namespace": "com.example.app", "wasm_hash": digest, "total_chunks": 10, "chunk_index": index,
                   "chunk": chunks[index], "chunk_hash": hashlib.sha256(chunks[index]).digest()}
            worst = max(worst, instructions(stack, lambda a=arg: stack.registry("icrc118_upload_wasm_chunk", a,
                                                                                sender=DEV)))
        assert stack.registry("get_wasm_status", digest.hex(), ["com.example.app"])[0]["complete"]
        out[name] = worst
    return out


def per_ten_thousand(memory: dict[str, Any], curve: list[dict[str, float]], requests: int) -> dict[str, float]:
    """The registry's wasm-memory growth over the first 10,000 requests, and per 10,000 after them: between the
    end points and as the least-squares slope of the curve (the high-water moves in 64 MiB steps, so an end point
    just before or after a step moves the first figure by up to a step; the slope much less). moc's first
    collection starts only when the heap fills one 64 MiB partition, and takes two more at once."""
    def wasm(key: str) -> float:
        return float(memory[key]["mcp_registry"]["wasm_memory"])

    out: dict[str, float] = {}
    if requests >= 10_000:
        out["first 10000"] = round(wasm("after 10000 requests") - wasm("before"), 1)
    if requests >= 20_000:
        last = requests // 5_000 * 5_000
        out[f"per 10000 from 10000 to {last}"] = round(
            (wasm(f"after {last} requests") - wasm("after 10000 requests")) * 10_000 / (last - 10_000), 1)
        points = [(p["requests"], p["wasm_memory"]) for p in curve if p["requests"] >= 10_000]
        mean_x = sum(x for x, _ in points) / len(points)
        mean_y = sum(y for _, y in points) / len(points)
        slope = (sum((x - mean_x) * (y - mean_y) for x, y in points)
                 / sum((x - mean_x) ** 2 for x, _ in points))
        out[f"per 10000 from 10000 to {points[-1][0]}, fitted"] = round(slope * 10_000, 1)
    return out


def module_memory(backend: EmbeddedBackend, product: dict[str, Any], count: int = 256) -> dict[str, Any]:
    """A fresh registry's memory before and after `count` complete uploads of 1 MiB each (one chunk)."""
    stack = Stack.deploy(backend, product)
    before = memory_mib(stack)["mcp_registry"]
    for i in range(count):
        module = i.to_bytes(4, "big") * (MIB // 4)
        stack.upload(module, namespace="org.modules.app", chunk_size=MIB)
    return {"modules": f"{count} x 1 MiB", "before": before, "after": memory_mib(stack)["mcp_registry"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--requests", type=int, default=10_000, help=f"at most {MAX_REQUESTS:,}")
    args = parser.parse_args()
    if not 1 <= args.requests <= MAX_REQUESTS:
        parser.error(f"--requests must be 1 to {MAX_REQUESTS:,} (namespace quotas)")
    built = build_all(ROOT / "canister_src", ROOT / "build" / "canisters", ROOT / "build" / "cache")
    product = {r.name: r for r in built}
    backend = EmbeddedBackend(limits=Limits())  # the IC's instruction limits
    stack = Stack.deploy(backend, product)
    out: dict[str, Any] = {"sha256_instructions_per_mib": sha256_per_mib(backend),
                           "published_sha256_per_mib": PUBLISHED_SHA256_PER_MIB}

    wasm_id = stack.upload(b"\x00asm" + bytes(3000))
    out["instructions"] = {}
    ins = out["instructions"]
    ins["icrc126_verification_request"] = instructions(stack, lambda: stack.request(wasm_id))
    ins["icrc127_create_bounty (with escrow transfer)"] = instructions(stack, lambda: stack.fund(wasm_id))
    bounty = stack.registry("get_bounties_for_wasm", wasm_id)[0]["bounty_id"]
    stack.stake(VERIFIERS[0])
    ins["reserve_bounty (with registry check)"] = instructions(stack, lambda: stack.reserve(VERIFIERS[0], bounty))
    ins["icrc126_file_attestation (finalize + payout)"] = instructions(
        stack, lambda: stack.attest(VERIFIERS[0], wasm_id, bounty))
    ins["get_wasm_status"] = instructions(stack, lambda: stack.status(wasm_id))
    chunk = b"\x01" * MIB
    digest = hashlib.sha256(chunk).digest()
    ins["icrc118_upload_wasm_chunk (1 MiB, incl. the module digest)"] = instructions(stack, lambda: stack.registry(
        "icrc118_upload_wasm_chunk", {"namespace": "com.example.app", "wasm_hash": digest, "total_chunks": 1,
                                      "chunk_index": 0, "chunk": chunk, "chunk_hash": digest}, sender=DEV))
    out["upload_10_mib_max_instructions_per_message"] = upload_ten_mib(stack)

    bounties = args.requests // 4 + 1  # the sponsor's balance must cover them (a transfer from the minter mints)
    assert "Ok" in stack.ledger("icrc1_transfer", {"from_subaccount": [], "to": account(SPONSOR), "fee": [],
                                                   "amount": bounties * 200_000, "memo": [], "created_at_time": []},
                                sender=MINTER)
    for verifier in VERIFIERS[1:]:  # VERIFIERS[0] staked above; a lock is released when its filing settles
        stack.stake(verifier)
    memory: dict[str, Any] = {"before": memory_mib(stack)}
    curve: list[dict[str, float]] = []  # the registry's wasm memory, heap and allocation every 1,000 requests
    page_cost = {}
    for i in range(args.requests):
        namespace = f"org.bench{i // 1000}.app"  # a namespace holds at most 1,000 wasm modules
        owner = OWNERS[i // 1000 % len(OWNERS)]
        if i % 1000 == 0:
            created = stack.registry("icrc118_create_canister_type", {"namespace": namespace, "description": ""},
                                     sender=owner)
            assert "ok" in created, (i, created)
        data = i.to_bytes(4, "big") * 8
        h = hashlib.sha256(data).digest()
        uploaded = stack.registry("icrc118_upload_wasm_chunk", {
            "namespace": namespace, "wasm_hash": h, "total_chunks": 1, "chunk_index": 0, "chunk": data,
            "chunk_hash": h}, sender=owner)
        assert "ok" in uploaded, (i, uploaded)
        requested = stack.request(h.hex(), namespace=namespace, sender=owner)
        assert "ok" in requested, (i, requested)
        if i % 4 == 0:
            funded = stack.fund(h.hex(), amount=100_000)
            assert "ok" in funded, (i, funded)
            if i % 8 == 0:  # half the bounties are worked (stake locked, filed, paid); half stay pending
                bounty_id, verifier = int(funded["ok"]), VERIFIERS[(i // 8) % len(VERIFIERS)]
                assert "ok" in stack.reserve(verifier, bounty_id)
                assert "ok" in stack.attest(verifier, h.hex(), bounty_id)
        if (i + 1) % 1_000 == 0 or (i + 1) == args.requests:
            now = memory_mib(stack)  # one query serves the curve and the table
            if (i + 1) % 5_000 == 0 or (i + 1) == args.requests:
                memory[f"after {i + 1} requests"] = now
            if (i + 1) % 1_000 == 0:
                registry = now["mcp_registry"]
                curve.append({"requests": i + 1, "wasm_memory": registry["wasm_memory"], "heap": registry["heap"],
                              "allocated": registry["allocated"]})
        if (i + 1) in (1_000, args.requests):
            page_cost[f"{i + 1} requests"] = {
                f"page of {n}": instructions(stack, lambda n=n: stack.registry(
                    "list_pending_verifications", {"after": [], "limit": n})) for n in (10, 100)}
    out["memory_mib"] = memory
    out["registry_memory_curve_mib"] = curve
    out["registry_high_water_per_10000_mib"] = per_ten_thousand(memory, curve, args.requests)
    out["module_memory_mib"] = module_memory(backend, product)
    out["list_pending_verifications_instructions"] = page_cost
    print(json.dumps(out, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
