"""Benchmark signed provenance: `python bench/provenance_bench.py [--wasms 10000] [--json]`.

On the embedded replica: one wasm gets 5 signed attestations (5 verifiers); the bundle `prometheus attestation
export` would write is measured (bytes), then verified in process (`verify --offline`: certificate, witness,
records, 5 signatures) -- cold and warm. Then other wasms get one signed attestation each, up to `--wasms`
(each in its own verification round), and the first wasm's bundle is measured again: its size grows with
log2 of the number of wasms with signed filings, not with the registry's size. Also reports the time a
signed filing takes end to end (submit, bounty, reserve, attest) as the tree grows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prometheus_build.recipe import build_all  # noqa: E402
from prometheus_sdk.provenance import bundles, envelopes, statements  # noqa: E402
from testkit.backends import EmbeddedBackend  # noqa: E402
from testkit.protocol import DEV, IDENTITIES, MINTER, PRINCIPALS, SPONSOR, Stack, account  # noqa: E402

NOW = datetime(2026, 12, 1, tzinfo=UTC)
VERIFIER_ROLES = [f"verifier{i}" for i in range(6)]


def signed(role: str, wasm_id: str) -> list[dict[str, Any]]:
    build = statements.Build("https://example.com/app.git", "01" * 20, None, "moc 1.10.1",
                             {"toolchain": "ab" * 32}, "cd" * 32)
    identity = IDENTITIES[role]
    s = envelopes.sign(identity, statements.provenance(wasm_id, "app.wasm", build, str(identity.sender()), NOW, NOW,
                                                       "bench"))
    return [{"payload_type": statements.PAYLOAD_TYPE, "payload": s.envelope.payload, "signature": s.signature,
             "public_key": s.public_key}]


def attest_once(stack: Stack, namespace: str, role: str) -> str:
    wasm_id = stack.submit(wasm=b"\x00asm" + os.urandom(64), namespace=namespace)
    bounty = stack.bounty(wasm_id, amount=100_000)
    assert "ok" in stack.reserve(PRINCIPALS[role], bounty)
    assert "ok" in stack.attest(PRINCIPALS[role], wasm_id, bounty, signed=signed(role, wasm_id))
    return wasm_id


def export(stack: Stack, wasm_id: str) -> bytes:
    (answer,) = stack.registry("get_provenance", bytes.fromhex(wasm_id), [])
    return bundles.export(answer, str(stack.registry.canister_id), wasm_id)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--wasms", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    built = build_all(ROOT / "canister_src", ROOT / "build" / "canisters", ROOT / "build" / "cache", jobs=2)
    ic = EmbeddedBackend()
    stack = Stack.deploy(ic, {r.name: r for r in built})
    root = bundles.root_key_from(ic.root_public_key)
    registry = str(stack.registry.canister_id)
    for role in VERIFIER_ROLES:
        stack.stake(PRINCIPALS[role], amount=10**12)
    minted = stack.ledger("icrc1_transfer", {"to": account(SPONSOR), "amount": 150_000 * (args.wasms + 10),
                                             "fee": [], "memo": [], "from_subaccount": [], "created_at_time": []},
                          sender=MINTER)
    assert "Ok" in minted, minted
    namespaces = [f"com.example.bench{i}" for i in range(10)]  # 1,000 wasms per namespace at most
    for ns in namespaces:
        assert "ok" in stack.registry("icrc118_create_canister_type", {"namespace": ns, "description": "bench"},
                                      sender=DEV)
    stack.namespaces.update(namespaces)

    # One wasm, five signed attestations (reserved before the first decides the round).
    first = stack.submit(wasm=b"\x00asm" + os.urandom(64), namespace=namespaces[0])
    held = [(role, stack.bounty(first)) for role in VERIFIER_ROLES[:5]]
    for role, bounty in held:
        assert "ok" in stack.reserve(PRINCIPALS[role], bounty)
    for role, bounty in held:
        assert "ok" in stack.attest(PRINCIPALS[role], first, bounty, signed=signed(role, first))

    results: dict[str, Any] = {"signatures": 5}
    small = export(stack, first)
    times = []
    for _ in range(21):
        t = time.perf_counter()
        report = bundles.verify(small, root, registry, threshold=5)
        times.append((time.perf_counter() - t) * 1000)
        assert report.status is bundles.Status.VERIFIED, report.problem
    results["verify_ms_first"] = round(times[0], 2)
    results["verify_ms_p50"] = round(statistics.median(times[1:]), 2)
    sizes = {1: len(small)}
    total, next_mark = 1, 10
    started = time.perf_counter()
    while total < args.wasms:
        attest_once(stack, namespaces[total // 1000], VERIFIER_ROLES[total % 6])
        total += 1
        if total == next_mark:
            sizes[total] = len(export(stack, first))
            next_mark *= 10
    sizes[total] = len(export(stack, first))
    results["filing_seconds_each"] = round((time.perf_counter() - started) / max(1, total - 1), 4)
    results["bundle_bytes_by_wasms_with_signed_filings"] = sizes
    big = export(stack, first)
    t = time.perf_counter()
    assert bundles.verify(big, root, registry, threshold=5).status is bundles.Status.VERIFIED
    results["verify_ms_at_largest"] = round((time.perf_counter() - t) * 1000, 2)
    if args.json:
        print(json.dumps(results))
    else:
        for k, v in results.items():
            print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
