"""The attacks that worked against the protocol canisters, one test each, and the guarantees that close them:
escrow theft, honest verifiers punished, verdicts that do not mean what they say, squatting and stalling,
and the anonymous principal gaining a role. (The same-round and random races are in test_escrow_races.py.)"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest

from ic_replica.principal import ANONYMOUS
from prometheus_sdk.icrc16 import to_icrc16, to_map
from testkit.invariants import Books, check_exact, quiesce
from testkit.protocol import AUDIT, COMMIT, DEV, GOV, REWARD, SPONSOR, STAKE, STRANGER, VERIFIERS, Stack

HOUR = 3600 * 10**9
DAY = 24 * HOUR
V0, V1, V2 = VERIFIERS[0], VERIFIERS[1], VERIFIERS[2]


def staked(stack: Stack, *verifiers: Any) -> None:
    for v in verifiers:
        stack.stake(v)


def submit_calls(stack: Stack, *calls: tuple[Any, str, tuple[Any, ...], Any]) -> list[Any]:
    """Deliver calls in one round; returns their decoded replies."""
    ids = [(typed, method, typed.submit(method, *args, sender=sender)) for typed, method, args, sender in calls]
    return [typed.decode(method, stack.ic.await_call(i)) for typed, method, i in ids]


# ------------------------------------------------------------------ escrow theft


def bounty_past_its_timeout(stack: Stack) -> tuple[Books, int]:
    """A funded 2-hour bounty nobody reserved, 2 hours later; with the books that follow it."""
    books = Books.open(stack, [V0])
    wasm_id = stack.submit()
    books.approve(stack, REWARD)
    reply = stack.registry("icrc127_create_bounty", stack.bounty_arg(wasm_id, timeout_ns=2 * HOUR), sender=SPONSOR)
    books.note_reply("icrc127_create_bounty", reply)
    stack.ic.advance_time(2 * HOUR + 1)
    return books, int(reply["ok"])


@pytest.mark.inproc_only
def test_refund_and_settle_in_one_round_refund_once(stack: Stack) -> None:
    books, bounty = bounty_past_its_timeout(stack)
    before = stack.balance(SPONSOR)
    submit_calls(stack, (stack.registry, "icrc127_refund_bounty", (bounty,), SPONSOR),
                 (stack.registry, "settle_bounty", (bounty,), STRANGER),
                 (stack.registry, "icrc127_refund_bounty", (bounty,), STRANGER))
    assert stack.balance(SPONSOR) == before + REWARD  # once, not 2 x REWARD out of other sponsors' escrow
    check_exact(stack, books, quiesce(stack, books))


@pytest.mark.inproc_only
@pytest.mark.embedded_only  # injected faults / instruction counters
def test_a_lost_refund_reply_is_retried_without_paying_twice(stack: Stack) -> None:
    books, bounty = bounty_past_its_timeout(stack)
    before = stack.balance(SPONSOR)
    stack.ic.inject_fault("lose_reply", stack.ledger.canister_id, "icrc1_transfer")
    assert stack.registry("icrc127_refund_bounty", bounty, sender=SPONSOR) == {"ok": {"Refunding": None}}
    (transfer,) = [t for t in stack.registry("get_bounty_transfers", bounty) if "Refund" in t["kind"]]
    assert "Unknown" in transfer["state"]  # in doubt, not failed: the ledger did execute it
    assert stack.balance(SPONSOR) == before + REWARD
    for _ in range(3):  # anyone retries; the same deduplication key makes every retry a no-op
        stack.registry("settle_bounty", bounty, sender=STRANGER)
    assert stack.bounty_state(bounty) == "Refunded" and stack.balance(SPONSOR) == before + REWARD
    check_exact(stack, books, quiesce(stack, books))


@pytest.mark.inproc_only
@pytest.mark.embedded_only  # injected faults / instruction counters
def test_a_lost_escrow_reply_leaves_a_retryable_bounty_not_a_free_one(stack: Stack) -> None:
    books = Books.open(stack, [V0])
    wasm_id = stack.submit()
    books.approve(stack, REWARD)
    stack.ic.inject_fault("lose_reply", stack.ledger.canister_id, "icrc2_transfer_from")
    reply = stack.registry("icrc127_create_bounty", stack.bounty_arg(wasm_id), sender=SPONSOR)
    books.note_reply("icrc127_create_bounty", reply)
    bounty = reply["err"]["LedgerOutcomeUnknown"]["bounty_id"]
    assert stack.bounty_state(bounty) == "Funding" and stack.escrow_totals()["incoming"] == REWARD + 10_000
    books.mint(stack, V0, 10 * STAKE)
    assert "BountyNotOpen" in stack.reserve(V0, bounty)["err"]  # nobody works on escrow not yet confirmed
    assert stack.registry("settle_bounty", bounty, sender=STRANGER) == {"ok": {"Open": None}}
    assert stack.escrow() == REWARD + 10_000 == stack.balance(stack.registry.canister_id)
    check_exact(stack, books, quiesce(stack, books))


# ------------------------------------------------------------------ the honest are not punished


@pytest.mark.inproc_only
def test_a_verifier_who_filed_in_time_is_never_slashed(stack: Stack) -> None:
    stack.set_policy(quorum=2)
    wasm_id = stack.submit()
    b0, b1 = stack.bounty(wasm_id, timeout_ns=7 * DAY), stack.bounty(wasm_id, timeout_ns=7 * DAY)
    staked(stack, V0, V1)
    assert "ok" in stack.reserve(V0, b0)
    assert "ok" in stack.attest(V0, wasm_id, b0)  # in time; the quorum is not reached
    stack.ic.advance_time(4 * DAY)  # V0's lock expires while the audit waits
    assert stack.hub("cleanup_expired_lock", b0, sender=STRANGER) == {"err": {"LockFiled": None}}
    assert stack.profile(V0)["slashed"] == 0
    assert "ok" in stack.reserve(V1, b1)
    assert "ok" in stack.attest(V1, wasm_id, b1)  # the quorum: both are rewarded
    for v in (V0, V1):
        profile = stack.profile(v)
        assert profile["slashed"] == 0 and profile["reputation"] == 1 and stack.balance(v) == REWARD
        assert dict(profile["available"])[AUDIT] == 10 * STAKE


@pytest.mark.inproc_only
def test_no_refund_while_a_live_reservation_exists(stack: Stack) -> None:
    wasm_id = stack.submit()
    b0, b1 = stack.bounty(wasm_id), stack.bounty(wasm_id)
    staked(stack, V0, V1)
    assert "ok" in stack.reserve(V0, b0) and "ok" in stack.reserve(V1, b1)
    assert "ok" in stack.attest(V1, wasm_id, b1)  # quorum 1: the audit is final, V0 is still building
    refused = stack.registry("icrc127_refund_bounty", b0, sender=SPONSOR)
    assert "ReservationHeld" in refused["err"] and refused["err"]["ReservationHeld"]["claimant"] == V0
    # V0 files late and is settled against the final outcome: it agrees, so it is paid
    assert "ok" in stack.attest(V0, wasm_id, b0)
    assert stack.bounty_state(b0) == "Paid" and stack.profile(V0)["slashed"] == 0


@pytest.mark.inproc_only
def test_a_claimed_bounty_without_quorum_ends_at_its_timeout(stack: Stack) -> None:
    stack.set_policy(quorum=3)
    wasm_id = stack.submit()
    bounty = stack.bounty(wasm_id, timeout_ns=2 * DAY)
    staked(stack, V0)
    lock = stack.reserve(V0, bounty)["ok"]
    assert lock["expires_at"] <= stack.registry("icrc127_get_bounty", bounty)[0]["timeout_date"]  # capped
    assert "ok" in stack.attest(V0, wasm_id, bounty)
    before = stack.balance(SPONSOR)
    assert "NotFinalizable" not in str(stack.registry("settle_bounty", bounty, sender=STRANGER))
    assert stack.bounty_state(bounty) == "Claimed"  # not yet: the timeout has not passed
    stack.ic.advance_time(2 * DAY + 1)
    assert "Refunded" in stack.registry("settle_bounty", bounty, sender=STRANGER)["ok"]
    assert stack.balance(SPONSOR) == before + REWARD
    (b,) = stack.registry("icrc127_get_bounty", bounty)
    assert b["stake"] == {"Done": {"Release": None}}
    profile = stack.profile(V0)
    assert profile["slashed"] == 0 and dict(profile["available"])[AUDIT] == 10 * STAKE


@pytest.mark.inproc_only
def test_an_abandoned_reservation_reopens_the_bounty_and_costs_its_holder(stack: Stack) -> None:
    wasm_id = stack.submit()
    bounty = stack.bounty(wasm_id, timeout_ns=7 * DAY)
    staked(stack, V0, V1)
    assert "ok" in stack.reserve(V0, bounty)
    pending = stack.registry("list_pending_verifications", {"after": [], "limit": 10})
    assert pending[0]["open_bounties"] == 0  # held: nothing to take
    stack.ic.advance_time(3 * DAY + 1)  # V0 walks away; its lock expires
    pending = stack.registry("list_pending_verifications", {"after": [], "limit": 10})
    assert pending[0]["open_bounties"] == 1 and pending[0]["audit_types"] == [AUDIT]
    assert "ok" in stack.reserve(V1, bounty)  # the hub cleans the abandoned lock up first: V0 is slashed
    assert stack.profile(V0)["slashed"] == STAKE and stack.hub("get_lock", bounty)[0]["claimant"] == V1
    assert "ok" in stack.attest(V1, wasm_id, bounty) and stack.balance(V1) == REWARD


def test_one_verifier_cannot_lock_every_bounty_of_a_wasm(stack: Stack) -> None:
    wasm_id = stack.submit()
    bounties = [stack.bounty(wasm_id) for _ in range(3)]
    staked(stack, V0, V1, V2)
    assert "ok" in stack.reserve(V0, bounties[0])
    for b in bounties[1:]:
        assert stack.reserve(V0, b) == {"err": {"AlreadyHolding": {"bounty_id": bounties[0]}}}
    assert "ok" in stack.reserve(V1, bounties[1]) and "ok" in stack.reserve(V2, bounties[2])
    assert dict(stack.profile(V0)["staked"])[AUDIT] == STAKE  # refused reservations lock nothing


# ------------------------------------------------------------------ verdicts mean what they say


def test_a_request_with_filings_never_changes(stack: Stack) -> None:
    stack.set_policy(quorum=2)
    wasm_id = stack.submit()
    bounty = stack.bounty(wasm_id)
    staked(stack, V0)
    stack.reserve(V0, bounty)
    assert "ok" in stack.attest(V0, wasm_id, bounty)
    request = stack.status(wasm_id)["request"][0]
    assert "RoundInProgress" in stack.request(wasm_id, commit="f" * 40)["err"]
    assert stack.status(wasm_id)["request"][0] == request
    (filing,) = stack.status(wasm_id)["filings"]
    assert filing["request_id"] == request["id"]


def test_a_live_reservation_blocks_a_new_request(stack: Stack) -> None:
    wasm_id = stack.submit()
    bounty = stack.bounty(wasm_id)
    staked(stack, V0)
    stack.reserve(V0, bounty)
    assert "RoundInProgress" in stack.request(wasm_id, commit="f" * 40)["err"]  # V0 builds this commit


def test_filings_that_contradict_their_wasm_or_request_are_refused(stack: Stack) -> None:
    wasm_id = stack.submit()
    bounty = stack.bounty(wasm_id)
    staked(stack, V0)
    stack.reserve(V0, bounty)
    other = "ab" * 32
    attest, diverge = "icrc126_file_attestation", "icrc126_file_divergence"
    cases = [
        (attest, {"126hash": other}),
        (attest, {"126:expected_hash": other}),
        (attest, {"126:found_hash": other}),
        (attest, {"126:repo": "https://example.com/other.git"}),
        (attest, {"126:commit_hash": "f" * 40}),
        (attest, {"126:request_id": 99}),
        (diverge, {"126found_hash": wasm_id}),
    ]
    for method, extra in cases:
        arg: dict[str, Any] = {"wasm_id": wasm_id, "metadata": stack.metadata(bounty, **extra)}
        if method == diverge:
            arg["divergence_report"] = "differs"
        assert "FilingRefused" in stack.registry(method, arg, sender=V0)["err"], extra
    assert stack.status(wasm_id)["filings"] == []
    consistent = stack.metadata(bounty, **{"126hash": wasm_id, "126:found_hash": wasm_id, "126:commit_hash": COMMIT,
                                           "126:repo": "https://example.com/app.git",
                                           "126:request_id": stack.request_id(wasm_id)})
    assert "ok" in stack.registry(attest, {"wasm_id": wasm_id, "metadata": consistent}, sender=V0)


def test_policy_changes_never_alter_a_final_outcome(stack: Stack) -> None:
    wasm_id = stack.submit()
    bounty = stack.bounty(wasm_id)
    staked(stack, V0)
    stack.reserve(V0, bounty)
    assert "ok" in stack.diverge(V0, wasm_id, bounty)
    assert stack.status(wasm_id)["outcome"] == [{"Rejected": None}]
    # governance makes another audit type the only required one: the rejection stands
    assert stack.set_policy(required=("security_v1",)) == {"ok": None}
    assert stack.status(wasm_id)["outcome"] == [{"Rejected": None}]
    assert stack.registry("icrc118_update_wasm", {"namespace": "com.example.app", "version": (1, 0, 0),
                                                  "wasm_hash": bytes.fromhex(wasm_id)}, sender=DEV) == {
        "err": {"WasmRejected": None}}
    # and a verified one stays verified when a new audit type becomes required
    stack.set_policy()
    verified = stack.submit()
    b = stack.bounty(verified)
    stack.reserve(V0, b)
    assert "ok" in stack.attest(V0, verified, b)
    stack.set_policy(required=(AUDIT, "security_v1"))
    assert stack.status(verified)["outcome"] == [{"Verified": None}]
    assert "ok" in stack.registry("icrc118_update_wasm", {"namespace": "com.example.app", "version": (1, 0, 1),
                                                          "wasm_hash": bytes.fromhex(verified)}, sender=DEV)


def test_a_correction_opens_a_new_round_and_keeps_the_old_one(stack: Stack) -> None:
    wasm_id = stack.submit()
    bounty = stack.bounty(wasm_id)
    staked(stack, V0, V1)
    stack.reserve(V0, bounty)
    assert "ok" in stack.diverge(V0, wasm_id, bounty)
    first = stack.request_id(wasm_id)
    corrected = stack.request(wasm_id, commit="c" * 40)
    assert "ok" in corrected and corrected["ok"] != first
    b2 = stack.bounty(wasm_id)
    assert stack.registry("icrc127_get_bounty", b2)[0]["request_id"] == corrected["ok"]
    stack.reserve(V1, b2)
    assert "ok" in stack.attest(V1, wasm_id, b2)
    status = stack.status(wasm_id)
    assert [r["outcome"] for r in status["rounds"]] == [[{"Rejected": None}], [{"Verified": None}]]
    assert status["rounds"][0]["request"]["commit_hash"] == COMMIT and status["outcome"] == [{"Verified": None}]
    types = stack.block_types()
    assert types.count("126request") == 2 and "126rejected" in types and "126verified" in types


# ------------------------------------------------------------------ squatting and stalling


def test_nobody_can_squat_a_wasm_hash(stack: Stack) -> None:
    wasm = os.urandom(5000)
    digest = hashlib.sha256(wasm).digest()
    # a stranger claims the developer's wasm hash first, with a junk chunk, in a namespace of its own
    assert "ok" in stack.registry("icrc118_create_canister_type", {"namespace": "org.squat.app", "description": ""},
                                  sender=STRANGER)
    junk = b"junk"
    assert stack.registry("icrc118_upload_wasm_chunk", {
        "namespace": "org.squat.app", "wasm_hash": digest, "total_chunks": 2, "chunk_index": 0, "chunk": junk,
        "chunk_hash": hashlib.sha256(junk).digest()}, sender=STRANGER)["ok"]["complete"] is False
    # nor may it upload into the developer's namespace
    stack.upload(os.urandom(10))
    assert stack.registry("icrc118_upload_wasm_chunk", {
        "namespace": "com.example.app", "wasm_hash": digest, "total_chunks": 1, "chunk_index": 0, "chunk": wasm,
        "chunk_hash": digest}, sender=STRANGER) == {"err": {"NotAuthorized": None}}
    wasm_id = stack.upload(wasm)  # the developer's own upload is unaffected
    assert "ok" in stack.request(wasm_id, namespace="com.example.app")
    # the stranger uploads the same wasm and files a bogus request: a round of its own, nothing of ours changes
    assert stack.upload(wasm, namespace="org.squat2.app", sender=STRANGER) == wasm_id
    assert "ok" in stack.request(wasm_id, sender=STRANGER, namespace="org.squat2.app", repo="https://evil.example/x")
    assert stack.status(wasm_id, "com.example.app")["request"][0]["repo"] == "https://example.com/app.git"
    assert stack.request(wasm_id, sender=STRANGER, namespace="com.example.app") == {"err": {"NotAuthorized": None}}
    # a bounty for a wasm held in two namespaces names its round
    assert "Ambiguous" in stack.fund(wasm_id)["err"]
    assert "ok" in stack.fund(wasm_id, namespace="com.example.app")


@pytest.mark.inproc_only
def test_incomplete_uploads_expire_and_are_bounded_per_principal(stack: Stack) -> None:
    stack.upload(os.urandom(10))  # creates the namespace

    def start(tag: bytes) -> Any:
        chunk = tag * 10
        return stack.registry("icrc118_upload_wasm_chunk", {
            "namespace": "com.example.app", "wasm_hash": hashlib.sha256(tag).digest(), "total_chunks": 64,
            "chunk_index": 0, "chunk": chunk, "chunk_hash": hashlib.sha256(chunk).digest()}, sender=DEV)

    assert "ok" in start(b"a") and "ok" in start(b"b")
    assert "QuotaExceeded" in start(b"c")["err"]
    assert "ok" in start(b"a")  # continuing one of them is fine
    stack.ic.advance_time(DAY + 1)
    assert "ok" in start(b"c") and "ok" in start(b"d")  # the old ones expired and were dropped
    assert stack.registry("get_wasm_status", hashlib.sha256(b"a").hexdigest(), ["com.example.app"]) == []


def uploaders(stack: Stack, senders: list[Any]) -> Any:
    """A namespace for each sender (`org.upN.app`), and `put(n, wasm, index, chunk, total)`: sender n's chunk of
    `wasm` into its namespace."""
    for i, who in enumerate(senders):
        assert "ok" in stack.registry("icrc118_create_canister_type", {"namespace": f"org.up{i}.app",
                                                                        "description": ""}, sender=who)

    def put(i: int, wasm: bytes, index: int, chunk: bytes, total: int = 2) -> Any:
        return stack.registry("icrc118_upload_wasm_chunk", {
            "namespace": f"org.up{i}.app", "wasm_hash": hashlib.sha256(wasm).digest(), "total_chunks": total,
            "chunk_index": index, "chunk": chunk, "chunk_hash": hashlib.sha256(chunk).digest()}, sender=senders[i])

    return put


@pytest.mark.inproc_only
def test_a_global_budget_bounds_what_uploads_hold_whoever_sends_them(stack: Stack, product: dict[str, Any]) -> None:
    """Principals are free, so per-principal quotas do not bound what uploads hold in all: the registry's upload
    budget does. Many principals' incomplete uploads stop at the heap budget and complete ones at the stored
    budget, each refused chunk with a clear error and nothing lost; the books stay exact through replaced
    chunks, restarts, hash mismatches, completions, expiry and an upgrade."""
    reg = stack.registry
    senders = [DEV, STRANGER, SPONSOR, *VERIFIERS[:3]]
    put = uploaders(stack, senders)

    def held() -> tuple[int, int]:
        budget = reg("upload_budget")
        return budget["incomplete_bytes"], budget["stored_bytes"]

    limits = {"max_incomplete_bytes": 3500, "max_stored_bytes": 1 << 20}
    for who in (DEV, ANONYMOUS, STRANGER):
        assert reg("set_upload_budget", limits, sender=who) == {"err": {"NotAuthorized": None}}
    assert "InvalidArgument" in reg("set_upload_budget", {**limits, "max_stored_bytes": 4 << 30}, sender=GOV)["err"]
    assert "InvalidArgument" in reg("set_upload_budget", {**limits, "max_incomplete_bytes": 2 << 30},
                                    sender=GOV)["err"]
    assert reg("set_upload_budget", limits, sender=GOV) == {"ok": None}
    assert reg("upload_budget") == {**limits, "incomplete_bytes": 0, "stored_bytes": 0}

    wasms = [bytes([i]) * 1400 for i in range(len(senders))]  # chunk 0: 1000 bytes, chunk 1: 400
    for i in range(3):
        assert put(i, wasms[i], 0, wasms[i][:1000]) == {"ok": {"complete": False, "missing": [1]}}
    assert held() == (3000, 0)
    refused = put(3, wasms[3], 0, wasms[3][:1000])
    assert "upload budget is full" in refused["err"]["QuotaExceeded"]
    assert reg("upload_quota", senders[3])["incomplete"] == 0  # the refused chunk left nothing behind
    assert put(0, wasms[0], 1, wasms[0][1000:]) == {"ok": {"complete": True, "missing": []}}  # 400 more fit
    assert held() == (2000, 1400)  # the complete module moved to stable memory
    assert put(3, wasms[3], 0, wasms[3][:1000])["ok"]["complete"] is False
    assert held() == (3000, 1400)

    # a chunk ahead of the hashed prefix replaced by a larger one counts once; a restart and a mismatch give back
    assert reg("set_upload_budget", {**limits, "max_incomplete_bytes": 5000}, sender=GOV) == {"ok": None}
    assert "ok" in put(4, b"x" * 900, 2, b"y" * 300, total=3)
    assert "ok" in put(4, b"x" * 900, 2, b"z" * 500, total=3)
    assert held() == (3500, 1400)
    assert "ok" in put(4, b"x" * 900, 0, b"w" * 100, total=4)  # another total_chunks: the upload starts over
    assert held() == (3100, 1400)
    assert "WasmHashMismatch" in put(1, wasms[1], 1, b"not the rest")["err"]
    assert held() == (2100, 1400)

    # the stored budget counts incomplete bytes as already stored: a completion never finds stable memory full
    assert reg("set_upload_budget", {"max_incomplete_bytes": 5000, "max_stored_bytes": 3500}, sender=GOV) == \
        {"ok": None}
    assert "QuotaExceeded" in put(2, wasms[2], 1, wasms[2][1000:])["err"]  # 1400 + 2100 + 400 > 3500
    assert held() == (2100, 1400) and reg("upload_quota", senders[2])["incomplete"] == 1  # nothing lost
    assert reg("set_upload_budget", {"max_incomplete_bytes": 5000, "max_stored_bytes": 3900}, sender=GOV) == \
        {"ok": None}
    assert put(2, wasms[2], 1, wasms[2][1000:])["ok"]["complete"] is True  # exactly full
    assert held() == (1100, 2800)

    # an upgrade recounts the figures and keeps the expiry order; expired uploads give their bytes back
    arg = reg.interface.encode_init({"governance": GOV, "audit_hub": stack.hub.canister_id,
                                     "ledgers": [stack.ledger.canister_id]})
    stack.ic.upgrade_canister(reg.canister_id, product["mcp_registry"].wasm.read_bytes(), arg, sender=GOV)
    assert reg("upload_budget") == {"max_incomplete_bytes": 5000, "max_stored_bytes": 3900,
                                    "incomplete_bytes": 1100, "stored_bytes": 2800}
    stack.ic.advance_time(DAY + 1)
    assert put(5, wasms[5], 0, wasms[5][:1000])["ok"]["complete"] is False  # sweeps the expired ones first
    assert held() == (1000, 2800)
    for i in (0, 2):  # complete modules stay whole
        got = reg("icrc118_get_wasm_chunk", {"namespace": f"org.up{i}.app",
                                              "wasm_hash": hashlib.sha256(wasms[i]).digest(), "chunk_id": 1})
        assert got["ok"]["chunk"] == wasms[i][1000:]


@pytest.mark.inproc_only
def test_spent_uploads_leave_nothing_that_delays_the_budget(stack: Stack) -> None:
    """Uploads that end (a wrong hash, a restart) leave no trace in the expiry index, so once everything held has
    expired the next chunk finds room at once, and `upload_budget` (what `prometheus submit` checks before
    creating a namespace) no longer counts expired bytes even before any chunk arrives. A restart refused for
    want of room keeps the upload it would have replaced."""
    reg = stack.registry
    senders = [DEV, STRANGER, SPONSOR, VERIFIERS[0]]
    put = uploaders(stack, senders)

    assert reg("set_upload_budget", {"max_incomplete_bytes": 2000, "max_stored_bytes": 1 << 30}, sender=GOV) == \
        {"ok": None}
    assert "ok" in put(0, b"first", 0, b"a")  # the oldest upload, still live when the others come
    for n in range(300):  # each a one-chunk upload that fails its hash, and a started-over one
        assert "WasmHashMismatch" in put(0, b"other", 0, bytes([n % 256]), total=1)["err"]
    stack.ic.advance_time(HOUR)
    assert "ok" in put(1, b"one", 0, b"1" * 999)
    assert "ok" in put(2, b"two", 0, b"2" * 900)
    assert reg("upload_budget")["incomplete_bytes"] == 1900
    held = put(2, b"two", 0, b"3" * 1050, total=3)  # a restart past the budget (900 freed, 100 free): kept
    assert "upload budget is full" in held["err"]["QuotaExceeded"]
    assert reg("upload_budget")["incomplete_bytes"] == 1900 and reg("upload_quota", senders[2])["incomplete"] == 1
    assert "ok" in put(2, b"two", 0, b"3" * 100, total=3)  # a smaller one fits: it replaces the 900 bytes
    assert reg("upload_budget")["incomplete_bytes"] == 1100
    stack.ic.advance_time(DAY + 2 * HOUR)  # everything held has expired
    assert reg("upload_budget")["incomplete_bytes"] == 0
    assert "ok" in put(3, b"honest", 0, b"h" * 1999)  # the first chunk after expiry finds room
    assert reg("upload_budget")["incomplete_bytes"] == 1999


def test_bounties_have_a_minimum_and_a_cap_per_round(stack: Stack) -> None:
    wasm_id = stack.submit()
    minimum = stack.registry("get_policy")["min_bounty_reward"]
    assert "InvalidArgument" in stack.fund(wasm_id, amount=minimum - 1)["err"]
    for _ in range(20):
        assert "ok" in stack.fund(wasm_id, amount=minimum)
    assert "QuotaExceeded" in stack.fund(wasm_id, amount=minimum)["err"]
    assert "QuotaExceeded" not in str(stack.fund(stack.submit(), amount=minimum))  # other rounds are unaffected


@pytest.mark.inproc_only
@pytest.mark.embedded_only  # injected faults / instruction counters
def test_query_cost_follows_the_page_not_the_totals(stack: Stack) -> None:
    replica = stack.ic.replica

    def cost(method: str, *args: Any) -> int:
        before = replica.instructions_executed
        stack.registry(method, *args)
        return int(replica.instructions_executed - before)

    def measure() -> dict[str, int]:
        return {
            "pending page": cost("list_pending_verifications", {"after": [], "limit": 10}),
            "status": cost("get_wasm_status", probe, []),
            "bounties": cost("get_bounties_for_wasm", probe),
            "records": cost("get_audit_records", probe),
            "escrow": cost("escrow_summary"),
            "blocks": cost("icrc3_get_blocks", [{"start": 0, "length": 10}]),
        }

    def grow(n: int) -> None:
        for _ in range(n):
            wasm_id = stack.submit(os.urandom(200))
            for _ in range(2):
                stack.fund(wasm_id, amount=100_000)

    probe = stack.submit()
    stack.bounty(probe)
    grow(20)
    small = measure()
    grow(200)
    large = measure()
    for name in small:
        assert large[name] <= small[name] * 1.5 + 50_000, (name, small[name], large[name])


def test_sizes_are_limited_and_replies_fit_the_ic_limit(stack: Stack) -> None:
    wasm_id = stack.submit()
    too_much = to_map({f"k{i}": "x" for i in range(33)})
    too_big = to_map({"blob": b"x" * 9000})
    too_deep = [("a", {"Map": [("b", {"Map": [("c", {"Map": [("d", {"Map": [("e", {"Text": "x"})]})]})]})]})]
    for metadata in (too_much, too_big, too_deep):
        result = stack.registry("icrc126_verification_request", {
            "wasm_hash": bytes.fromhex(wasm_id), "repo": "https://example.com/b.git", "commit_hash": "b" * 40,
            "metadata": metadata, "namespace": []}, sender=DEV)
        assert "InvalidArgument" in result["err"], metadata
    assert "InvalidArgument" in stack.request(wasm_id, repo="https://example.com/" + "x" * 600)["err"]
    assert "InvalidArgument" in stack.registry("icrc118_create_canister_type", {
        "namespace": "com.big.app", "description": "d" * 1025}, sender=DEV)["err"]
    # 2.3 MB of blocks: one reply stays well under the IC's 2 MiB, and paging gets them all
    big = to_map({f"k{i:02}": "v" * 245 for i in range(28)})
    for i in range(300):
        assert "ok" in stack.registry("icrc126_verification_request", {
            "wasm_hash": bytes.fromhex(stack.upload(i.to_bytes(4, "big") * 25)), "repo": "https://example.com/c.git",
            "commit_hash": "c" * 40, "metadata": big, "namespace": []}, sender=DEV)
    from prometheus_sdk import candid

    rets = stack.registry.interface.methods["icrc3_get_blocks"].rets
    got = stack.registry("icrc3_get_blocks", [{"start": 0, "length": 10**9}] * 20)
    assert len(candid.encode(rets, [got])) < 1.5 * 1024 * 1024 and got["log_length"] > 300
    seen = [b["id"] for b in got["blocks"]]
    while seen[-1] + 1 < got["log_length"]:
        page = stack.registry("icrc3_get_blocks", [{"start": seen[-1] + 1, "length": 10**9}])
        assert page["blocks"] and len(candid.encode(rets, [page])) < 1.5 * 1024 * 1024
        seen += [b["id"] for b in page["blocks"]]
    assert seen == list(range(got["log_length"]))


def test_the_anonymous_principal_never_gains_a_role(stack: Stack) -> None:
    wasm_id = stack.submit()
    bounty = stack.bounty(wasm_id)
    reg, hub = stack.registry, stack.hub
    refused = [
        reg("icrc118_create_canister_type", {"namespace": "org.anon.app", "description": ""}, sender=ANONYMOUS),
        reg("icrc126_verification_request", {"wasm_hash": bytes.fromhex(wasm_id), "repo": "https://a.b/c",
                                             "commit_hash": "a" * 40, "metadata": [], "namespace": []},
            sender=ANONYMOUS),
        reg("icrc127_create_bounty", stack.bounty_arg(wasm_id), sender=ANONYMOUS),
        hub("reserve_bounty", bounty, AUDIT, sender=ANONYMOUS),
        reg("icrc126_file_attestation", {"wasm_id": wasm_id, "metadata": stack.metadata(bounty)}, sender=ANONYMOUS),
        reg("set_policy", {"quorum": 1, "mode": {"Auto": None}, "required_audit_types": [AUDIT],
                           "min_bounty_reward": 1}, sender=ANONYMOUS),
        hub("mint_tokens", V0, AUDIT, 1, sender=ANONYMOUS),
    ]
    for result in refused:
        assert "err" in result and ("NotAuthorized" in result["err"] or "LockInvalid" in result["err"]), result
    # a controller cannot hand the namespace to the anonymous principal, nor governance stake to it
    assert "InvalidArgument" in reg("icrc118_manage_controller", {
        "namespace": "com.example.app", "principal": ANONYMOUS, "add": True}, sender=DEV)["err"]
    assert "InvalidArgument" in hub("mint_tokens", ANONYMOUS, AUDIT, 100, sender=GOV)["err"]
    controllers = reg("icrc118_get_canister_type", "com.example.app")[0]["controllers"]
    assert ANONYMOUS not in controllers


def test_bounty_challenges_are_validated(stack: Stack) -> None:
    wasm_id = stack.submit()
    bad = [
        {"wasm_hash": bytes.fromhex(wasm_id), "audit_type": "Has Spaces"},
        {"wasm_hash": bytes.fromhex(wasm_id), "audit_type": "x" * 65},
        {"wasm_hash": bytes.fromhex(wasm_id), "audit_type": AUDIT, "request_id": 999},
    ]
    for challenge in bad:
        arg = stack.bounty_arg(wasm_id)
        arg["challenge_parameters"] = to_icrc16(challenge)
        stack.approve(REWARD)
        result = stack.registry("icrc127_create_bounty", arg, sender=SPONSOR)
        assert "InvalidArgument" in result["err"] or "RequestNotFound" in result["err"], (challenge, result)


# ------------------------------------------------------------------ found by an outside review


@pytest.mark.inproc_only
def test_an_expired_reservation_does_not_hide_a_live_one(stack: Stack) -> None:
    wasm_id = stack.submit()
    short = stack.bounty(wasm_id, timeout_ns=2 * HOUR)
    long_a, long_b = stack.bounty(wasm_id), stack.bounty(wasm_id)
    staked(stack, V0)
    assert "ok" in stack.reserve(V0, short)  # capped at the bounty's 2 h
    stack.ic.advance_time(2 * HOUR + 1)  # expired, still on record as reserved
    assert "ok" in stack.reserve(V0, long_a)  # allowed: the expired one ends first
    for _ in range(2):
        stack.registry("settle_bounty", short, sender=STRANGER)  # anyone moves the old one on
        assert stack.reserve(V0, long_b) == {"err": {"AlreadyHolding": {"bounty_id": long_a}}}


def test_failed_bounty_creations_take_no_place(stack: Stack) -> None:
    wasm_id = stack.submit()
    request = stack.request_id(wasm_id)
    arg = stack.bounty_arg(wasm_id)
    for _ in range(105):  # no allowance: every pull is refused, for free
        assert "TransferFailed" in stack.registry("icrc127_create_bounty", arg, sender=STRANGER)["err"]
    assert stack.registry("get_bounties_for_request", request) == []
    assert stack.registry("icrc127_get_bounty", 0) == []  # nothing was kept of them
    assert "ok" in stack.fund(wasm_id)  # an honest sponsor is not blocked
    junk = stack.fund(wasm_id, audit="junk_v1")  # nor can its places be filled with audits nobody runs
    assert "InvalidArgument" in junk["err"]


def test_empty_metadata_nodes_are_not_free(stack: Stack) -> None:
    wasm_id = stack.upload(os.urandom(100))
    wide = {"Array": [{"Array": [{"Array": []} for _ in range(32)]} for _ in range(32)]}  # 1,057 empty nodes
    result = stack.registry("icrc126_verification_request", {
        "wasm_hash": bytes.fromhex(wasm_id), "repo": "https://example.com/a.git", "commit_hash": "a" * 40,
        "metadata": [("x", wide)], "namespace": []}, sender=DEV)
    assert "InvalidArgument" in result["err"]


@pytest.mark.inproc_only
@pytest.mark.embedded_only  # injected faults / instruction counters
def test_query_cost_does_not_grow_with_the_namespaces_holding_a_wasm(stack: Stack) -> None:
    from ic_replica.principal import Principal

    wasm = os.urandom(300)
    wasm_id = stack.upload(wasm)
    assert "ok" in stack.request(wasm_id)
    replica = stack.ic.replica

    def cost() -> dict[str, int]:
        out = {}
        for method, args in (("get_audit_records", (wasm_id,)), ("get_verification_request", (wasm_id, [])),
                             ("get_wasm_status", (wasm_id, [])), ("get_bounties_for_wasm", (wasm_id,))):
            before = replica.instructions_executed
            stack.registry(method, *args)
            out[method] = replica.instructions_executed - before
        return out

    def sybils(start: int, end: int) -> None:  # each holds the wasm in 10 namespaces, with rounds of its own
        for i in range(start, end):
            sybil = Principal(b"\x50" + i.to_bytes(4, "big"))
            for n in range(10):
                ns = f"org.sybil{i}x{n}.app"
                stack.upload(wasm, namespace=ns, sender=sybil)
                stack.request(wasm_id, sender=sybil, namespace=ns)

    sybils(0, 15)  # 151 namespaces: past the 100 any wasm-only call looks at
    small = cost()
    sybils(15, 45)  # 451
    large = cost()
    for name in small:  # bounded by a constant page, whatever the number of namespaces
        assert large[name] <= small[name] * 1.1 + 10_000, (name, small[name], large[name])
        assert large[name] < 50_000_000, (name, large[name])
    assert "Ambiguous" in stack.fund(wasm_id)["err"] and "ok" in stack.fund(wasm_id, namespace="com.example.app")


def test_a_correction_must_change_the_source(stack: Stack) -> None:
    wasm_id = stack.submit()
    bounty = stack.bounty(wasm_id)
    staked(stack, V0)
    stack.reserve(V0, bounty)
    assert "ok" in stack.diverge(V0, wasm_id, bounty)
    assert "InvalidArgument" in stack.request(wasm_id)["err"]  # the same source again: no re-roll of a verdict
    assert "ok" in stack.request(wasm_id, commit="d" * 40)


@pytest.mark.inproc_only
def test_a_ledger_fee_change_does_not_strand_a_payout(stack: Stack, product: dict[str, Any]) -> None:
    from testkit.protocol import MINTER, account

    wasm_id = stack.submit()
    bounty = stack.bounty(wasm_id)  # escrow: REWARD + the fee of the time (10,000)
    staked(stack, V0)
    stack.reserve(V0, bounty)
    new_init = {"name": "Test USD", "symbol": "TUSD", "decimals": 6, "fee": 5_000,
                "minting_account": account(MINTER), "initial_balances": []}
    stack.ic.upgrade_canister(stack.ledger.canister_id, product["ledger"].wasm.read_bytes(),
                              stack.ledger.interface.encode_init(new_init), sender=GOV)
    assert "ok" in stack.attest(V0, wasm_id, bounty)
    assert stack.bounty_state(bounty) == "Paid"
    assert stack.balance(V0) == REWARD + 5_000  # the same total leaves the escrow, under the new fee
    assert stack.balance(stack.registry.canister_id) == 0 and stack.escrow_totals()["outgoing"] == 0


@pytest.mark.inproc_only
def test_a_policy_change_decides_a_round_once(stack: Stack) -> None:
    other = "security_v1"
    stack.set_policy(required=(AUDIT, other))
    wasm_id = stack.submit()
    main, side = stack.bounty(wasm_id), stack.bounty(wasm_id, audit=other)
    staked(stack, V0)
    stack.stake(V1, audit=other)
    stack.set_policy(required=(AUDIT,))  # the other audit stops counting ...
    stack.reserve(V1, side, audit=other)
    assert "ok" in stack.diverge(V1, wasm_id, side, audit=other)  # ... and is rejected meanwhile
    assert stack.status(wasm_id)["outcome"] == []
    stack.set_policy(required=(other,))  # now it would decide the round: only an update stores that
    assert stack.status(wasm_id)["outcome"] == []
    assert "ok" in stack.registry("icrc127_refund_bounty", main, sender=SPONSOR)  # the round is over: stored
    stack.set_policy(required=(AUDIT,))
    assert stack.status(wasm_id)["outcome"] == [{"Rejected": None}]  # and it stays so
    assert stack.registry("icrc118_update_wasm", {"namespace": "com.example.app", "version": (2, 0, 0),
                                                  "wasm_hash": bytes.fromhex(wasm_id)}, sender=DEV) == {
        "err": {"WasmRejected": None}}


@pytest.mark.inproc_only
def test_an_upgrade_argument_does_not_rebind_governance(stack: Stack, product: dict[str, Any]) -> None:
    hijack = {"governance": STRANGER, "audit_hub": STRANGER, "ledgers": []}
    stack.ic.upgrade_canister(stack.registry.canister_id, product["mcp_registry"].wasm.read_bytes(),
                              stack.registry.interface.encode_init(hijack), sender=GOV)
    stack.ic.upgrade_canister(stack.hub.canister_id, product["audit_hub"].wasm.read_bytes(),
                              stack.hub.interface.encode_init({"governance": STRANGER, "registry": []}), sender=GOV)
    policy = {"quorum": 1, "mode": {"Auto": None}, "required_audit_types": [AUDIT], "min_bounty_reward": 100_000}
    assert stack.registry("set_policy", policy, sender=STRANGER) == {"err": {"NotAuthorized": None}}
    assert stack.hub("mint_tokens", V0, AUDIT, 1, sender=STRANGER) == {"err": {"NotAuthorized": None}}
    wasm_id = stack.submit()  # the ledger and hub wiring survived too
    bounty = stack.bounty(wasm_id)
    staked(stack, V0)
    assert "ok" in stack.reserve(V0, bounty) and "ok" in stack.attest(V0, wasm_id, bounty)
    # governance hands over explicitly, never to the anonymous principal
    assert "InvalidArgument" in stack.registry("set_governance", ANONYMOUS, sender=GOV)["err"]
    assert stack.registry("set_governance", DEV, sender=GOV) == {"ok": None}
    assert stack.registry("set_policy", policy, sender=GOV) == {"err": {"NotAuthorized": None}}
    assert stack.registry("set_policy", policy, sender=DEV) == {"ok": None}
