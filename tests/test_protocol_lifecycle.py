"""The whole protocol on real canisters: submit, fund, reserve, attest or diverge, finalize, settle, publish."""

from __future__ import annotations

from typing import Any

import pytest

from testkit.protocol import AUDIT, DEV, FEE, GOV, REWARD, SPONSOR, STAKE, VERIFIERS, Stack


def test_one_verifier_verifies_and_is_paid(stack: Stack) -> None:
    wasm_id = stack.submit()
    sponsor_before = stack.balance(SPONSOR)
    bounty = stack.bounty(wasm_id)
    # approve fee + escrow (reward + payout fee) + the escrow transfer's fee
    assert stack.balance(SPONSOR) == sponsor_before - REWARD - 3 * FEE
    assert stack.escrow() == REWARD + FEE == stack.balance(stack.registry.canister_id)
    pending = stack.registry("list_pending_verifications", {"after": [], "limit": 10})
    assert [p["wasm_id"] for p in pending] == [wasm_id] and pending[0]["audit_types"] == [AUDIT]
    assert pending[0]["request_id"] == stack.request_id(wasm_id) and pending[0]["open_bounties"] == 1

    v = VERIFIERS[0]
    stack.stake(v)
    lock = stack.reserve(v, bounty)["ok"]
    assert lock["claimant"] == v and lock["wasm_id"] == wasm_id and lock["audit_type"] == AUDIT
    assert lock["expires_at"] > stack.ic.get_time()
    assert stack.hub("is_bounty_ready_for_collection", bounty, v) is True
    assert "ok" in stack.attest(v, wasm_id, bounty)

    status = stack.status(wasm_id)
    assert status["outcome"] == [{"Verified": None}]
    (summary,) = status["audits"]
    assert summary["attestations"] == 1 and summary["outcome"] == [{"Verified": None}]
    assert status["bounties"][0]["state"]["Paid"]["claimant"] == v
    assert stack.balance(v) == REWARD
    assert stack.escrow() == 0 and stack.balance(stack.registry.canister_id) == 0
    profile = stack.profile(v)
    assert profile["reputation"] == 1 and profile["verifications"] == 1 and profile["earnings"] == REWARD
    assert dict(profile["available"])[AUDIT] == 10 * STAKE and dict(profile["staked"])[AUDIT] == 0
    assert stack.registry("list_pending_verifications", {"after": [], "limit": 10}) == []

    assert "ok" in stack.registry("icrc118_update_wasm", {"namespace": "com.example.app", "version": (1, 0, 0),
                                                          "wasm_hash": bytes.fromhex(wasm_id)}, sender=DEV)
    assert stack.registry("icrc118_update_wasm", {"namespace": "com.example.app", "version": (1, 0, 0),
                                                  "wasm_hash": bytes.fromhex(wasm_id)}, sender=DEV) == {
        "err": {"VersionExists": None}}
    assert stack.block_types() == ["126request", "127bounty", "126attest", "126verified", "127payout", "118version"]


def test_five_verifiers_quorum_three_dissenter_slashed_and_unpaid(stack: Stack) -> None:
    assert stack.set_policy(quorum=3) == {"ok": None}
    wasm_id = stack.submit()
    bounties = [stack.bounty(wasm_id) for _ in range(5)]
    for v, b in zip(VERIFIERS[:5], bounties):
        stack.stake(v)
        assert "ok" in stack.reserve(v, b)
    sponsor_before = stack.balance(SPONSOR)
    # two agree, the dissenter files, then the third agreement reaches the quorum
    for i, filing in enumerate(["attest", "attest", "diverge", "attest"]):
        result = getattr(stack, filing)(VERIFIERS[i], wasm_id, bounties[i])
        assert "ok" in result, result
        expected = [] if i < 3 else [{"Verified": None}]
        assert stack.status(wasm_id)["outcome"] == expected
    # a late agreeing verifier is still paid; the outcome does not change
    assert "ok" in stack.attest(VERIFIERS[4], wasm_id, bounties[4])
    assert stack.status(wasm_id)["outcome"] == [{"Verified": None}]
    for i in (0, 1, 3, 4):
        assert stack.balance(VERIFIERS[i]) == REWARD
        assert stack.profile(VERIFIERS[i])["reputation"] == 1
    dissenter = stack.profile(VERIFIERS[2])
    assert stack.balance(VERIFIERS[2]) == 0
    assert dissenter["reputation"] == -1 and dissenter["slashed"] == STAKE
    assert dict(dissenter["available"])[AUDIT] == 9 * STAKE
    assert stack.balance(SPONSOR) == sponsor_before + REWARD  # the dissenter's bounty went back
    assert stack.escrow() == 0 == stack.balance(stack.registry.canister_id)


def test_divergence_rejects_and_publish_is_refused(stack: Stack) -> None:
    wasm_id = stack.submit()
    bounty = stack.bounty(wasm_id)
    stack.stake(VERIFIERS[0])
    stack.reserve(VERIFIERS[0], bounty)
    assert "ok" in stack.diverge(VERIFIERS[0], wasm_id, bounty)
    assert stack.status(wasm_id)["outcome"] == [{"Rejected": None}]
    assert stack.balance(VERIFIERS[0]) == REWARD  # the divergence agreed with the final outcome
    assert stack.registry("icrc118_update_wasm", {"namespace": "com.example.app", "version": (1, 0, 0),
                                                  "wasm_hash": bytes.fromhex(wasm_id)}, sender=DEV) == {
        "err": {"WasmRejected": None}}
    unverified = stack.submit()
    assert stack.registry("icrc118_update_wasm", {"namespace": "com.example.app", "version": (1, 0, 1),
                                                  "wasm_hash": bytes.fromhex(unverified)}, sender=DEV) == {
        "err": {"NotVerified": None}}


@pytest.mark.inproc_only
def test_bounty_timeout_refund(stack: Stack) -> None:
    wasm_id = stack.submit()
    bounty = stack.bounty(wasm_id, timeout_ns=2 * 3600 * 10**9)
    after_funding = stack.balance(SPONSOR)
    assert "TimeoutNotReached" in stack.registry("icrc127_refund_bounty", bounty, sender=SPONSOR)["err"]
    stack.ic.advance_time(2 * 3600 * 10**9 + 1)
    stack.stake(VERIFIERS[0])
    assert stack.reserve(VERIFIERS[0], bounty) == {"err": {"BountyNotOpen": "it closes too soon"}}
    assert dict(stack.profile(VERIFIERS[0])["available"])[AUDIT] == 10 * STAKE  # stake handed back
    assert "Refunded" in stack.registry("icrc127_refund_bounty", bounty, sender=DEV)["ok"]  # anyone may trigger
    assert stack.balance(SPONSOR) == after_funding + REWARD
    assert stack.registry("icrc127_refund_bounty", bounty, sender=SPONSOR) == {"err": {"BountyNotOpen": None}}
    assert stack.escrow() == 0 == stack.balance(stack.registry.canister_id)


def test_governance_finalization_after_quorum(stack: Stack) -> None:
    stack.set_policy(mode="Governance")
    wasm_id = stack.submit()
    bounty = stack.bounty(wasm_id)
    stack.stake(VERIFIERS[0])
    stack.reserve(VERIFIERS[0], bounty)
    assert "ok" in stack.attest(VERIFIERS[0], wasm_id, bounty)
    assert stack.status(wasm_id)["outcome"] == []  # waits for governance
    request = stack.request_id(wasm_id)
    assert stack.registry("finalize_verification", request, AUDIT, {"Rejected": None}, sender=GOV) == {
        "err": {"NotFinalizable": "the quorum for that outcome is not reached"}}
    assert stack.registry("finalize_verification", request, AUDIT, {"Verified": None}, sender=DEV) == {
        "err": {"NotAuthorized": None}}
    assert stack.registry("finalize_verification", request, AUDIT, {"Verified": None}, sender=GOV) == {"ok": None}
    assert stack.status(wasm_id)["outcome"] == [{"Verified": None}]
    assert stack.balance(VERIFIERS[0]) == REWARD
    assert stack.registry("finalize_verification", request, AUDIT, {"Verified": None}, sender=GOV) == {
        "err": {"AlreadyFinalized": None}}


def icrc3_hash(value: dict[str, Any]) -> bytes:
    """ICRC-3's representation-independent hash of a Value, written here independently of the canister."""
    import hashlib

    from ic_replica.candid import leb, sleb

    (kind, inner), = value.items()
    if kind == "Blob":
        return hashlib.sha256(inner).digest()
    if kind == "Text":
        return hashlib.sha256(inner.encode()).digest()
    if kind == "Nat":
        return hashlib.sha256(leb(inner)).digest()
    if kind == "Int":
        return hashlib.sha256(sleb(inner)).digest()
    if kind == "Array":
        return hashlib.sha256(b"".join(icrc3_hash(v) for v in inner)).digest()
    parts = sorted(hashlib.sha256(k.encode()).digest() + icrc3_hash(v) for k, v in inner)
    return hashlib.sha256(b"".join(parts)).digest()


def test_icrc3_log_is_hash_chained_and_its_tip_certified(stack: Stack) -> None:
    import cbor2

    from ic_replica import hash_tree
    from ic_replica.candid import leb
    from ic_replica.certification import STATE_ROOT_SEPARATOR, bls_verify
    from ic_replica.http_server import _thaw

    wasm_id = stack.submit()
    stack.bounty(wasm_id)
    blocks = stack.registry("icrc3_get_blocks", [{"start": 0, "length": 100}])["blocks"]
    assert [b["id"] for b in blocks] == [0, 1]
    for previous, block in zip(blocks, blocks[1:]):
        assert dict(block["block"]["Map"])["phash"] == {"Blob": icrc3_hash(previous["block"])}
    (tip,) = stack.registry("icrc3_get_tip_certificate")
    cert = _thaw(cbor2.loads(tip["certificate"]))
    tree = hash_tree.from_cbor(cert["tree"])
    root = hash_tree.reconstruct(tree)
    assert bls_verify(stack.ic.root_public_key, cert["signature"], STATE_ROOT_SEPARATOR + root)
    tip_tree = hash_tree.from_cbor(_thaw(cbor2.loads(tip["hash_tree"])))
    certified = hash_tree.lookup(tree, [b"canister", stack.registry.canister_id.raw, b"certified_data"])[1]
    assert certified == hash_tree.reconstruct(tip_tree)
    assert hash_tree.lookup(tip_tree, [b"last_block_index"])[1] == leb(1)
    assert hash_tree.lookup(tip_tree, [b"last_block_hash"])[1] == icrc3_hash(blocks[1]["block"])
