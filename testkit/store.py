"""Apps on a real registry for the store's tests and benchmark: submitted with listing metadata, then verified,
rejected or left pending by real filings, and optionally published."""

from __future__ import annotations

import hashlib
import os

from ic_replica.principal import Principal
from prometheus_sdk.icrc16 import to_map
from testkit.protocol import DEV, VERIFIERS, Stack


def submit_app(stack: Stack, namespace: str, name: str, description: str = "", *, outcome: str | None = "verified",
               version: tuple[int, int, int] | None = None, verifiers: int = 2, wasm: bytes | None = None,
               audits: tuple[str, ...] = (), developer: Principal = DEV, **listing: str) -> str:
    """Upload a wasm to `namespace`, request its verification with the listing metadata, then (outcome
    "verified" / "rejected") have `verifiers` verifiers attest or diverge, and publish `version` if given.
    Extra audit types in `audits` are funded and attested too. Returns the wasm id."""
    wasm = wasm or os.urandom(200)
    wasm_id = stack.upload(wasm, namespace, sender=developer)
    metadata = to_map({"name": name, "description": description, **{f"listing:{k}": v for k, v in listing.items()}})
    result = stack.registry("icrc126_verification_request", {
        "wasm_hash": bytes.fromhex(wasm_id), "repo": f"https://example.com/{namespace}.git",
        "commit_hash": hashlib.sha1(wasm).hexdigest(), "metadata": metadata, "namespace": [namespace]},
        sender=developer)
    assert "ok" in result, result
    if outcome is None:
        return wasm_id
    if audits:  # bounties are taken for the audit types the policy requires, while the round is open
        assert "ok" in stack.set_policy(quorum=verifiers, required=("build_reproducibility_v1", *audits))
    # Every bounty before the first filing: a round decided by its build audit refunds what is left unclaimed.
    bounties = {audit: [stack.bounty(wasm_id, audit=audit) for _ in range(verifiers)]
                for audit in (*audits, "build_reproducibility_v1")}
    for audit, funded in bounties.items():  # the extra audits first, the build audit last
        for verifier, bounty in zip(VERIFIERS[:verifiers], funded, strict=True):
            reserved = stack.reserve(verifier, bounty, audit)
            assert "ok" in reserved, reserved
            filed = (stack.attest(verifier, wasm_id, bounty, audit) if outcome == "verified"
                     else stack.diverge(verifier, wasm_id, bounty, audit))
            assert "ok" in filed, filed
    if audits:
        assert "ok" in stack.set_policy(quorum=verifiers)
    if version is not None:
        published = stack.registry("icrc118_update_wasm", {"namespace": namespace, "version": version,
                                                           "wasm_hash": bytes.fromhex(wasm_id), "previous": []},
                                   sender=developer)
        assert "ok" in published, published
    return wasm_id


def prepare(stack: Stack, verifiers: int = 3, quorum: int = 2) -> None:
    """Stakes for `verifiers` verifiers in every audit type the helpers use, and the quorum."""
    for audit in ("build_reproducibility_v1", "tools_v1", "app_info_v1", "data_safety_v1"):
        for verifier in VERIFIERS[:verifiers]:
            stack.stake(verifier, audit=audit)
    assert "ok" in stack.set_policy(quorum=quorum), "set_policy"
