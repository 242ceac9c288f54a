"""Apps on a real registry for the store's tests and benchmark: submitted with listing metadata, then verified,
rejected or left pending by real filings, and optionally published."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from typing import Any

from ic_replica.principal import Principal
from prometheus_sdk.icrc16 import to_map
from prometheus_sdk.provenance import envelopes, statements
from testkit.protocol import DEV, VERIFIERS, Stack, identity_of


def submit_app(stack: Stack, namespace: str, name: str, description: str = "", *, outcome: str | None = "verified",
               version: tuple[int, int, int] | None = None, verifiers: int = 2, wasm: bytes | None = None,
               audits: tuple[str, ...] = (), developer: Principal = DEV, signed: bool | str = False,
               **listing: str) -> str:
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
            statement = signed_arg(verifier, wasm_id, outcome == "verified", namespace) if signed else None
            if statement and signed == "bad signature":  # the registry checks the key, not the signature
                statement[0]["signature"] = bytes([statement[0]["signature"][0] ^ 1]) + statement[0]["signature"][1:]
            filed = (stack.attest(verifier, wasm_id, bounty, audit, signed=statement) if outcome == "verified"
                     else stack.diverge(verifier, wasm_id, bounty, audit, signed=statement))
            assert "ok" in filed, filed
    if audits:
        assert "ok" in stack.set_policy(quorum=verifiers)
    if version is not None:
        published = stack.registry("icrc118_update_wasm", {"namespace": namespace, "version": version,
                                                           "wasm_hash": bytes.fromhex(wasm_id), "previous": []},
                                   sender=developer)
        assert "ok" in published, published
    return wasm_id


def signed_arg(verifier: Principal, wasm_id: str, attested: bool, namespace: str) -> list[dict[str, Any]]:
    """The verifier's verdict signed as the worker signs it (an in-toto statement in a DSSE envelope)."""
    now = datetime.now(UTC)
    identity = identity_of(verifier)
    who = str(identity.sender())
    repo = f"https://example.com/{namespace}.git"
    build = statements.Build(repo, "01" * 20, namespace, "moc 1.10.1", {"toolchain": "ab" * 32}, "cd" * 32)
    statement = (statements.provenance(wasm_id, "app.wasm", build, who, now, now, "bounty") if attested
                 else statements.divergence(wasm_id, "app.wasm", who, now, "rebuilt wasm differs", "00" * 32, repo,
                                            "01" * 20))
    s = envelopes.sign(identity, statement)
    return [{"payload_type": statements.PAYLOAD_TYPE, "payload": s.envelope.payload, "signature": s.signature,
             "public_key": s.public_key}]


def prepare(stack: Stack, verifiers: int = 3, quorum: int = 2) -> None:
    """Stakes for `verifiers` verifiers in every audit type the helpers use, and the quorum."""
    for audit in ("build_reproducibility_v1", "tools_v1", "app_info_v1", "data_safety_v1"):
        for verifier in VERIFIERS[:verifiers]:
            stack.stake(verifier, audit=audit)
    assert "ok" in stack.set_policy(quorum=quorum), "set_policy"
