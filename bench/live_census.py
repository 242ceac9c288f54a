"""Live heap bytes per registry call: `python bench/live_census.py [--requests N] [--json]`.

The registry's own collector (incremental, 64-bit, enhanced orthogonal persistence) never says what is live
right now, only what survived its last run. So this builds a measurement-only variant of `mcp_registry`: classical
persistence, the copying collector, forced after every message. Its `memory_stats` heap is then exactly the live
data, and the difference across one call is what that call keeps. Pointers are 32-bit there: small objects in
the real build are two to three times larger, blobs and texts about the same.

The variant is compiled by a copy of `prometheus_build/compile.js` with the collector flags added (the recipe itself
has no such switch: its output must depend on the source only). It is never deployed anywhere but here. The
workload is `canister_bench.py`'s: an upload and a verification request per request, one in four funded, one in
eight reserved and attested.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ic_replica.replica import Limits  # noqa: E402
from prometheus_build.recipe import build_all  # noqa: E402
from prometheus_build.toolchain import find_toolchain  # noqa: E402
from testkit.backends import EmbeddedBackend  # noqa: E402
from testkit.protocol import DEV, GOV, MINTER, SPONSOR, VERIFIERS, Stack, account  # noqa: E402

GC_FLAGS = ["classicOP", "copying", "force"]  # moc.js `gcFlags`: 32-bit heap, copying collector after every message
KINDS = ("upload", "request", "bounty", "reservation", "attestation")


def build_variant(out: Path) -> Path:
    """The registry compiled with `GC_FLAGS`, by a copy of the recipe that sets them."""
    toolchain = find_toolchain()
    recipe = toolchain.compile_js.read_text()
    anchor = "mo.setPublicMetadata("
    assert anchor in recipe, "compile.js changed: update build_variant"
    flags = "".join(f"mo.compiler.gcFlags({json.dumps(f)});\n" for f in GC_FLAGS)
    script = out / "compile_census.js"
    script.write_text(recipe.replace(anchor, flags + anchor, 1))
    wasm = out / "mcp_registry_census.wasm"
    subprocess.run([str(toolchain.node), str(script), str(toolchain.motoko_dir), str(toolchain.ic_wasm),
                    str(ROOT / "canister_src"), "mcp_registry/main.mo", str(wasm), str(out / "census.did")],
                   check=True, timeout=600)
    return wasm


def census(wasm: Path, requests: int) -> dict[str, Any]:
    built = build_all(ROOT / "canister_src", ROOT / "build" / "canisters", ROOT / "build" / "cache")
    product = {r.name: r for r in built}
    product["mcp_registry"] = dataclasses.replace(product["mcp_registry"], wasm=wasm)
    stack = Stack.deploy(EmbeddedBackend(limits=Limits()), product)
    assert "Ok" in stack.ledger("icrc1_transfer", {"from_subaccount": [], "to": account(SPONSOR), "fee": [],
                                                   "amount": (requests // 4 + 1) * 200_000, "memo": [],
                                                   "created_at_time": []}, sender=MINTER)
    for verifier in VERIFIERS:
        stack.stake(verifier)
    kept = dict.fromkeys(KINDS, 0)
    calls = dict.fromkeys(KINDS, 0)

    def heap() -> int:
        return int(stack.registry("memory_stats", sender=GOV)["ok"]["heap_bytes"])

    def measured(kind: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        before = heap()
        result = call(*args, **kwargs)
        assert "ok" in result, (kind, result)
        kept[kind] += heap() - before
        calls[kind] += 1
        return result

    namespace = "org.census.app"
    assert "ok" in stack.registry("icrc118_create_canister_type", {"namespace": namespace, "description": ""},
                                  sender=DEV)
    start = heap()
    for i in range(requests):
        data = i.to_bytes(4, "big") * 8
        digest = hashlib.sha256(data).digest()
        measured("upload", stack.registry, "icrc118_upload_wasm_chunk", {
            "namespace": namespace, "wasm_hash": digest, "total_chunks": 1, "chunk_index": 0, "chunk": data,
            "chunk_hash": digest}, sender=DEV)
        measured("request", stack.request, digest.hex(), namespace=namespace, sender=DEV)
        if i % 4 == 0:
            stack.approve(100_000)
            funded = measured("bounty", stack.registry, "icrc127_create_bounty",
                              stack.bounty_arg(digest.hex(), 100_000), sender=SPONSOR)
            if i % 8 == 0:
                bounty, verifier = int(funded["ok"]), VERIFIERS[(i // 8) % len(VERIFIERS)]
                measured("reservation", stack.reserve, verifier, bounty)
                measured("attestation", stack.attest, verifier, digest.hex(), bounty)
    return {"requests": requests,
            "live_bytes_per_call": {k: round(kept[k] / calls[k]) for k in KINDS if calls[k]},
            "live_bytes_per_request": round((heap() - start) / requests)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200, help="at most 1,000 (one namespace)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.requests <= 1000:
        parser.error("--requests must be 1 to 1,000")
    with tempfile.TemporaryDirectory(prefix="live-census-") as tmp:
        out = census(build_variant(Path(tmp)), args.requests)
    print(json.dumps(out, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
