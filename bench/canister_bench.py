"""Benchmark the protocol canisters: `python bench/canister_bench.py [--json]`.

Instructions per call for the main endpoints (wasm instructions counted by the replica's fuel, summed over
every message a call causes, inter-canister calls included), the registry's memory growth per 10,000
verification requests, and the cost of a `list_pending_verifications` page at different totals.
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
from testkit.protocol import DEV, VERIFIERS, Stack  # noqa: E402


def instructions(stack: Stack, fn: Any) -> int:
    replica = stack.ic.replica
    before = replica.instructions_executed
    fn()
    return int(replica.instructions_executed - before)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--requests", type=int, default=10_000)
    args = parser.parse_args()
    built = build_all(ROOT / "canister_src", ROOT / "build" / "canisters", ROOT / "build" / "cache")
    product = {r.name: r for r in built}
    stack = Stack.deploy(EmbeddedBackend(limits=Limits()), product)  # the IC's instruction limits
    out: dict[str, Any] = {}

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
    chunk = b"\x01" * (1024 * 1024)
    digest = hashlib.sha256(chunk).digest()
    ins["icrc118_upload_wasm_chunk (1 MiB, sha256 twice)"] = instructions(stack, lambda: stack.registry(
        "icrc118_upload_wasm_chunk", {"namespace": "com.example.app", "wasm_hash": digest, "total_chunks": 1,
                                      "chunk_index": 0, "chunk": chunk, "chunk_hash": digest}, sender=DEV))

    registry = stack.ic.canister(stack.registry.canister_id)
    memory_before = registry.runtime.memory_size()
    page_cost = {}
    for i in range(args.requests):
        namespace = f"org.bench{i // 1000}.app"  # a namespace holds at most 1,000 wasm modules
        if i % 1000 == 0:
            stack.registry("icrc118_create_canister_type", {"namespace": namespace, "description": ""}, sender=DEV)
        data = i.to_bytes(4, "big") * 8
        h = hashlib.sha256(data).digest()
        stack.registry("icrc118_upload_wasm_chunk", {"namespace": namespace, "wasm_hash": h, "total_chunks": 1,
                                                     "chunk_index": 0, "chunk": data, "chunk_hash": h}, sender=DEV)
        stack.request(h.hex(), namespace=namespace)
        if i % 4 == 0:
            stack.fund(h.hex(), amount=100_000)
        if (i + 1) in (1_000, args.requests):
            page_cost[f"{i + 1} requests"] = {
                f"page of {n}": instructions(stack, lambda n=n: stack.registry(
                    "list_pending_verifications", {"after": [], "limit": n})) for n in (10, 100)}
    out["registry_memory_mib_per_10k_requests"] = round(
        (registry.runtime.memory_size() - memory_before) / 2**20 * 10_000 / args.requests, 1)
    out["list_pending_verifications_instructions"] = page_cost
    print(json.dumps(out, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
