"""Every security invariant of protocol.md as its own test: authorization, lock rules, immutable outcomes,
single payout under concurrency, escrow accounting, bad input, and upgrades that lose nothing."""

from __future__ import annotations

import hashlib
import os
import random
from typing import Any

import pytest

from ic_replica.principal import ANONYMOUS
from prometheus_sdk.icrc16 import to_icrc16, to_map
from testkit.protocol import AUDIT, DEV, GOV, REWARD, SPONSOR, STAKE, STRANGER, VERIFIERS, Stack, account


def not_authorized(result: Any) -> bool:
    return result == {"err": {"NotAuthorized": None}}


# ------------------------------------------------------------------ authorization


def test_authorization_matrix(stack: Stack) -> None:
    wasm_id = stack.submit()
    request = stack.request_id(wasm_id)
    verifier = VERIFIERS[0]
    callers = {"anonymous": ANONYMOUS, "stranger": STRANGER, "controller": DEV, "verifier": verifier,
               "governance": GOV}
    ns = "com.example.app"
    calls = {
        "icrc118_manage_controller": lambda: ("registry", "icrc118_manage_controller",
                                              {"namespace": ns, "principal": STRANGER, "add": False}),
        "icrc118_upload_wasm_chunk": lambda: ("registry", "icrc118_upload_wasm_chunk", {
            "namespace": ns, "wasm_hash": hashlib.sha256(b"x").digest(), "total_chunks": 1, "chunk_index": 0,
            "chunk": b"x", "chunk_hash": hashlib.sha256(b"x").digest()}),
        "icrc126_verification_request": lambda: ("registry", "icrc126_verification_request", {
            "wasm_hash": bytes.fromhex(wasm_id), "repo": "https://example.com/a.git", "commit_hash": "a" * 40,
            "metadata": []}),
        "icrc118_update_wasm": lambda: ("registry", "icrc118_update_wasm",
                                        {"namespace": ns, "version": (9, 9, 9), "wasm_hash": bytes.fromhex(wasm_id)}),
        "icrc118_deprecate": lambda: ("registry", "icrc118_deprecate",
                                      {"namespace": ns, "version": (9, 9, 9), "reason": "old"}),
        "set_policy (registry)": lambda: ("registry", "set_policy",
                                          {"quorum": 1, "mode": {"Auto": None}, "required_audit_types": [AUDIT],
                                           "min_bounty_reward": 100_000}),
        "resolve_transfer": lambda: ("registry", "resolve_transfer", 0, []),
        "set_governance (registry)": lambda: ("registry", "set_governance", GOV),  # to itself: a no-op
        "set_governance (hub)": lambda: ("hub", "set_governance", GOV),
        "grant_reservation": lambda: ("registry", "grant_reservation", 0, verifier, AUDIT, 10**30),
        "end_reservation": lambda: ("registry", "end_reservation", 0, verifier),
        "set_allowed_ledgers": lambda: ("registry", "set_allowed_ledgers", [stack.ledger.canister_id]),
        "finalize_verification": lambda: ("registry", "finalize_verification", request, AUDIT, {"Verified": None}),
        "mint_tokens": lambda: ("hub", "mint_tokens", verifier, AUDIT, 1),
        "set_policy (hub)": lambda: ("hub", "set_policy", {"lock_duration_ns": 10**12, "stake_per_reservation": STAKE}),
        "set_registry": lambda: ("hub", "set_registry", stack.registry.canister_id),
        "settle_lock": lambda: ("hub", "settle_lock", 0, verifier, {"Reward": None}, 0),
    }
    allowed = {
        "icrc118_manage_controller": {"controller"}, "icrc118_upload_wasm_chunk": {"controller"},
        "icrc126_verification_request": {"controller"}, "icrc118_update_wasm": {"controller"},
        "icrc118_deprecate": {"controller"}, "set_policy (registry)": {"governance"},
        "set_allowed_ledgers": {"governance"}, "finalize_verification": {"governance"},
        "mint_tokens": {"governance"}, "set_policy (hub)": {"governance"}, "set_registry": {"governance"},
        "settle_lock": set(), "grant_reservation": set(), "end_reservation": set(),  # canister-to-canister only
        "resolve_transfer": {"governance"}, "set_governance (registry)": {"governance"},
        "set_governance (hub)": {"governance"},
    }
    for name, make in calls.items():
        for who, principal in callers.items():
            target, method, *args = make()
            result = getattr(stack, target)(method, *args, sender=principal)
            if who in allowed[name]:
                assert not not_authorized(result), f"{name} refused {who}: {result}"
            else:
                assert not_authorized(result), f"{name} accepted {who}: {result}"
    assert not_authorized(stack.registry("icrc118_create_canister_type", {"namespace": "org.anon.app",
                                                                          "description": ""}, sender=ANONYMOUS))
    assert not_authorized(stack.hub("reserve_bounty", 0, AUDIT, sender=ANONYMOUS))


def test_anonymous_cannot_create_bounties(stack: Stack) -> None:
    wasm_id = stack.submit()
    result = stack.registry("icrc127_create_bounty", {
        "challenge_parameters": to_icrc16({"wasm_hash": bytes.fromhex(wasm_id), "audit_type": AUDIT}),
        "bounty_metadata": to_map({"icrc127:reward_canister": stack.ledger.canister_id, "icrc127:reward_amount": 1}),
        "timeout_date": stack.ic.get_time() + 10**12}, sender=ANONYMOUS)
    assert not_authorized(result)


# ------------------------------------------------------------------ lock rules


@pytest.mark.inproc_only
def test_filings_need_the_claimants_unexpired_lock_on_a_matching_bounty(stack: Stack) -> None:
    wasm_id, other_wasm = stack.submit(), stack.submit()
    bounty, other_bounty = stack.bounty(wasm_id), stack.bounty(other_wasm)
    owner, intruder = VERIFIERS[0], VERIFIERS[1]
    for v in (owner, intruder):
        stack.stake(v)
    assert "LockInvalid" in stack.attest(owner, wasm_id, bounty)["err"]  # no lock yet
    stack.reserve(owner, bounty)
    assert "LockInvalid" in stack.attest(intruder, wasm_id, bounty)["err"]  # someone else's lock
    assert "LockInvalid" in stack.attest(owner, other_wasm, bounty)["err"]  # bounty for another wasm
    stack.reserve(intruder, other_bounty)
    assert "LockInvalid" in stack.attest(intruder, wasm_id, other_bounty)["err"]
    assert "LockInvalid" in stack.attest(owner, wasm_id, bounty, audit="security_v1")["err"]
    stack.ic.advance_time(4 * 24 * 3600 * 10**9)  # past the 3-day lock
    assert "LockInvalid" in stack.attest(owner, wasm_id, bounty)["err"]
    assert stack.status(wasm_id)["filings"] == [] and stack.status(wasm_id)["outcome"] == []
    # the abandoned lock is cleaned up by anyone and slashed; it cannot be cleaned twice
    assert "ok" in stack.hub("cleanup_expired_lock", bounty, sender=STRANGER)
    assert stack.hub("cleanup_expired_lock", bounty, sender=STRANGER) == {"err": {"LockNotFound": None}}
    assert stack.profile(owner)["slashed"] == STAKE


def test_one_filing_per_verifier_and_audit(stack: Stack) -> None:
    wasm_id = stack.submit()
    b1, b2 = stack.bounty(wasm_id), stack.bounty(wasm_id)
    stack.set_policy(quorum=2)
    v = VERIFIERS[0]
    stack.stake(v)
    assert "ok" in stack.reserve(v, b1)
    # one live reservation per verifier, round and audit type: a second one could only be slashed
    assert stack.reserve(v, b2) == {"err": {"AlreadyHolding": {"bounty_id": b1}}}
    assert "ok" in stack.attest(v, wasm_id, b1)
    assert stack.reserve(v, b2) == {"err": {"AlreadyFiled": None}}
    assert stack.attest(v, wasm_id, b2) == {"err": {"AlreadyFiled": None}}
    assert stack.diverge(v, wasm_id, b2) == {"err": {"AlreadyFiled": None}}
    assert stack.status(wasm_id)["audits"][0]["attestations"] == 1
    assert dict(stack.profile(v)["staked"])[AUDIT] == STAKE  # the refused reservations handed their stake back


# ------------------------------------------------------------------ outcomes and payouts


def test_a_final_outcome_never_changes(stack: Stack) -> None:
    wasm_id = stack.submit()
    bounties = [stack.bounty(wasm_id) for _ in range(3)]
    for v, b in zip(VERIFIERS[:3], bounties):
        stack.stake(v)
        stack.reserve(v, b)
    assert "ok" in stack.attest(VERIFIERS[0], wasm_id, bounties[0])
    assert stack.status(wasm_id)["outcome"] == [{"Verified": None}]
    for v, b in zip(VERIFIERS[1:3], bounties[1:]):
        assert "ok" in stack.diverge(v, wasm_id, b)  # late dissent is recorded, settled, and changes nothing
    status = stack.status(wasm_id)
    assert status["outcome"] == [{"Verified": None}] and status["audits"][0]["divergences"] == 2
    assert stack.registry("finalize_verification", stack.request_id(wasm_id), AUDIT, {"Rejected": None},
                          sender=GOV) == {
        "err": {"AlreadyFinalized": None}}
    assert stack.block_types().count("126verified") == 1 and "126rejected" not in stack.block_types()
    assert "AlreadyFinalized" in stack.request(wasm_id)["err"]


@pytest.mark.inproc_only
def test_concurrent_filings_pay_once(stack: Stack) -> None:
    wasm_id = stack.submit()
    bounty = stack.bounty(wasm_id)
    v = VERIFIERS[0]
    stack.stake(v)
    stack.reserve(v, bounty)
    args = {"wasm_id": wasm_id, "metadata": stack.metadata(bounty)}
    ids = [stack.registry.submit("icrc126_file_attestation", args, sender=v) for _ in range(3)]
    stack.ic.tick()
    results = [stack.registry.decode("icrc126_file_attestation", stack.ic.await_call(i)) for i in ids]
    assert sum("ok" in r for r in results) == 1, results
    assert stack.balance(v) == REWARD
    assert stack.profile(v)["verifications"] == 1 and stack.block_types().count("127payout") == 1


@pytest.mark.inproc_only
def test_concurrent_reservations_lock_once(stack: Stack) -> None:
    wasm_id = stack.submit()
    bounty = stack.bounty(wasm_id)
    a, b = VERIFIERS[0], VERIFIERS[1]
    stack.stake(a)
    stack.stake(b)
    ids = [stack.hub.submit("reserve_bounty", bounty, AUDIT, sender=who) for who in (a, b, a)]
    stack.ic.tick()
    results = [stack.hub.decode("reserve_bounty", stack.ic.await_call(i)) for i in ids]
    assert sum("ok" in r for r in results) == 1, results
    staked = sum(dict(stack.profile(v)["staked"]).get(AUDIT, 0) for v in (a, b))
    assert staked == STAKE  # exactly one stake is locked; the others were handed back


@pytest.mark.inproc_only
def test_concurrent_refunds_and_cleanups_happen_once(stack: Stack) -> None:
    wasm_id = stack.submit()
    bounty = stack.bounty(wasm_id, timeout_ns=2 * 3600 * 10**9)
    stack.ic.advance_time(2 * 3600 * 10**9 + 1)
    before = stack.balance(SPONSOR)
    ids = [stack.registry.submit("icrc127_refund_bounty", bounty, sender=who) for who in (SPONSOR, STRANGER, DEV)]
    stack.ic.tick()
    results = [stack.registry.decode("icrc127_refund_bounty", stack.ic.await_call(i)) for i in ids]
    # one message sends the refund; the others see it in flight and move no money
    assert [r["ok"] for r in results] == [{"Refunded": {"block": 2}}, {"Refunding": None}, {"Refunding": None}]
    assert stack.balance(SPONSOR) == before + REWARD and stack.block_types().count("127refund") == 1

    other = stack.bounty(stack.submit())
    stack.stake(VERIFIERS[0])
    stack.reserve(VERIFIERS[0], other)
    stack.ic.advance_time(4 * 24 * 3600 * 10**9)
    ids = [stack.hub.submit("cleanup_expired_lock", other, sender=STRANGER) for _ in range(3)]
    stack.ic.tick()
    results = [stack.hub.decode("cleanup_expired_lock", stack.ic.await_call(i)) for i in ids]
    assert sum("ok" in r for r in results) == 1
    assert stack.profile(VERIFIERS[0])["slashed"] == STAKE


@pytest.mark.inproc_only
def test_escrow_is_always_accounted_in_a_random_scenario(stack: Stack) -> None:
    rng = random.Random(1234)
    wasms: list[str] = []
    bounties: list[tuple[str, int]] = []
    reserved: dict[int, Any] = {}
    for v in VERIFIERS:
        stack.stake(v, amount=100 * STAKE)

    def check() -> None:
        held = stack.balance(stack.registry.canister_id)
        assert stack.escrow() <= held
        assert stack.escrow() == held  # the registry holds exactly the open escrow

    for _ in range(70):
        action = rng.choice(["submit", "fund", "fund", "reserve", "reserve", "file", "file", "time", "refund",
                             "cleanup"])
        if action == "submit" or not wasms:
            wasms.append(stack.submit(os.urandom(rng.randint(100, 5000))))
        elif action == "fund":
            wasm_id = rng.choice(wasms)
            result = stack.fund(wasm_id, amount=rng.randint(10, 30) * 10_000,
                                timeout_ns=rng.randint(2, 48) * 3600 * 10**9)
            if "ok" in result:
                bounties.append((wasm_id, int(result["ok"])))
        elif action == "reserve" and bounties:
            wasm_id, b = rng.choice(bounties)
            v = rng.choice(VERIFIERS)
            if "ok" in stack.reserve(v, b):
                reserved[b] = (v, wasm_id)
        elif action == "file" and reserved:
            b, (v, wasm_id) = rng.choice(sorted(reserved.items()))
            getattr(stack, rng.choice(["attest", "diverge"]))(v, wasm_id, b)
            reserved.pop(b)
        elif action == "time":
            stack.ic.advance_time(rng.randint(1, 30) * 3600 * 10**9)
        elif action == "refund" and bounties:
            stack.registry("icrc127_refund_bounty", rng.choice(bounties)[1], sender=STRANGER)
        elif action == "cleanup" and reserved:
            b = rng.choice(sorted(reserved))
            if "ok" in stack.hub("cleanup_expired_lock", b, sender=STRANGER):
                reserved.pop(b)
        check()
    total = stack.ledger("icrc1_total_supply")
    holders = [SPONSOR, DEV, stack.registry.canister_id, *VERIFIERS]
    assert sum(stack.balance(h) for h in holders) == total


# ------------------------------------------------------------------ bad input


def test_bad_input_gets_typed_errors_and_changes_nothing(stack: Stack) -> None:
    wasm_id = stack.submit()
    blocks_before, escrow_before = len(stack.block_types()), stack.escrow()
    reg = stack.registry
    for ns in ("Com.Example", "nodot", "a..b", "-a.b", "a.b-", "x" * 300):
        assert "InvalidNamespace" in reg("icrc118_create_canister_type", {"namespace": ns, "description": ""},
                                         sender=DEV)["err"]
    good = b"chunk"
    digest = hashlib.sha256(good).digest()
    upload = {"namespace": "com.example.app", "wasm_hash": digest, "total_chunks": 1, "chunk_index": 0,
              "chunk": good, "chunk_hash": digest}
    for change, expected in [({"chunk_hash": bytes(31)}, "InvalidArgument"), ({"chunk_index": 1}, "InvalidArgument"),
                             ({"total_chunks": 9, "chunk_index": 5}, "InvalidArgument"),  # too far ahead
                             ({"total_chunks": 0}, "InvalidArgument"), ({"total_chunks": 65}, "InvalidArgument"),
                             ({"wasm_hash": bytes(31)}, "InvalidArgument"),
                             ({"chunk": b"x" * (1024 * 1024 + 1),
                               "chunk_hash": hashlib.sha256(b"x" * (1024 * 1024 + 1)).digest()}, "InvalidArgument")]:
        assert expected in reg("icrc118_upload_wasm_chunk", {**upload, **change}, sender=DEV)["err"], change
    mismatch = reg("icrc118_upload_wasm_chunk", {**upload, "wasm_hash": bytes(32)}, sender=DEV)
    assert "WasmHashMismatch" in mismatch["err"]
    assert reg("get_wasm_status", bytes(32).hex(), ["com.example.app"]) == []  # a wrong upload is dropped whole
    for commit in ("abc", "A" * 40, "g" * 40):
        assert "InvalidArgument" in stack.request(wasm_id, commit=commit)["err"]
    assert "InvalidArgument" in reg("icrc126_verification_request", {
        "wasm_hash": bytes.fromhex(wasm_id), "repo": "ssh://nope", "commit_hash": "a" * 40, "metadata": []},
        sender=DEV)["err"]
    assert reg("icrc126_verification_request", {
        "wasm_hash": bytes(32), "repo": "https://a.b/c", "commit_hash": "a" * 40, "metadata": []},
        sender=DEV) == {"err": {"WasmNotFound": None}}
    bad_bounties = [
        ({"challenge_parameters": {"Text": "x"}}, "InvalidArgument"),
        ({"bounty_metadata": to_map({"icrc127:reward_canister": stack.ledger.canister_id})}, "InvalidArgument"),
        ({"bounty_metadata": to_map({"icrc127:reward_canister": stack.registry.canister_id,
                                     "icrc127:reward_amount": REWARD})}, "LedgerNotAllowed"),
        ({"bounty_metadata": to_map({"icrc127:reward_canister": stack.ledger.canister_id,
                                     "icrc127:reward_amount": 0})}, "InvalidArgument"),
        ({"timeout_date": 1}, "InvalidArgument"),
        ({"challenge_parameters": to_icrc16({"wasm_hash": bytes(32), "audit_type": AUDIT})}, "RequestNotFound"),
    ]
    base = {"challenge_parameters": to_icrc16({"wasm_hash": bytes.fromhex(wasm_id), "audit_type": AUDIT}),
            "bounty_metadata": to_map({"icrc127:reward_canister": stack.ledger.canister_id,
                                       "icrc127:reward_amount": REWARD}),
            "timeout_date": stack.ic.get_time() + 10**13}
    for change, expected in bad_bounties:
        assert expected in reg("icrc127_create_bounty", {**base, **change}, sender=SPONSOR)["err"], change
    assert "TransferFailed" in reg("icrc127_create_bounty", base, sender=SPONSOR)["err"]  # no allowance given
    for metadata in ([], to_map({"bounty_id": 0}), to_map({"bounty_id": 999, "126:audit_type": AUDIT})):
        result = reg("icrc126_file_attestation", {"wasm_id": wasm_id, "metadata": metadata}, sender=VERIFIERS[0])
        assert "InvalidArgument" in result["err"] or "BountyNotFound" in result["err"]
    assert len(stack.block_types()) == blocks_before and stack.escrow() == escrow_before
    assert stack.hub("mint_tokens", VERIFIERS[0], "", 5, sender=GOV) == {
        "err": {"InvalidArgument": "audit types are 1..64 characters of [a-z0-9_.:-]"}}
    assert stack.hub("reserve_bounty", 12345, AUDIT, sender=VERIFIERS[0]) == {
        "err": {"InsufficientStake": {"available": 0, "required": STAKE}}}
    stack.stake(VERIFIERS[0])
    assert stack.hub("reserve_bounty", 12345, AUDIT, sender=VERIFIERS[0]) == {"err": {"BountyNotFound": None}}
    assert dict(stack.profile(VERIFIERS[0])["available"])[AUDIT] == 10 * STAKE


# ------------------------------------------------------------------ upgrades


def dump(stack: Stack, wasm_ids: list[str]) -> dict[str, Any]:
    return {
        "wasms": [stack.status(w) for w in wasm_ids],
        "blocks": stack.registry("icrc3_get_blocks", [{"start": 0, "length": 100_000}]),
        "escrow": stack.registry("escrow_summary"),
        "pending": stack.registry("list_pending_verifications", {"after": [], "limit": 100}),
        "versions": stack.registry("icrc118_get_wasms", "com.example.app"),
        "policy": stack.registry("get_policy"),
        "profiles": [stack.profile(v) for v in VERIFIERS],
        "locks": stack.hub("get_locks", [], 100),
        "balances": [stack.balance(p) for p in (SPONSOR, DEV, stack.registry.canister_id, *VERIFIERS)],
        "supply": stack.ledger("icrc1_total_supply"),
        "transactions": stack.ledger("transaction_count"),
    }


def test_uploads_hash_the_in_order_prefix_and_accept_chunks_a_window_ahead(stack: Stack) -> None:
    """The module digest runs over chunks as they come in order (each byte hashed once); a chunk may arrive at
    most 4 past the first missing one; a chunk not hashed yet can be replaced, a different one where one was
    hashed (or another total_chunks) starts the upload over; a wrong module is dropped whole."""
    reg = stack.registry
    stack.submit()  # creates com.example.app, controlled by DEV
    chunks = [bytes([i]) * (1000 + i) for i in range(7)]
    module = b"".join(chunks)

    def put(index: int, data: bytes | None = None, total: int = 7) -> Any:
        chunk = chunks[index] if data is None else data
        return reg("icrc118_upload_wasm_chunk", {
            "namespace": "com.example.app", "wasm_hash": hashlib.sha256(module).digest(), "total_chunks": total,
            "chunk_index": index, "chunk": chunk, "chunk_hash": hashlib.sha256(chunk).digest()}, sender=DEV)

    assert "too far ahead" in put(5)["err"]["InvalidArgument"]  # nothing hashed yet: chunks 0..4 only
    assert put(4) == {"ok": {"complete": False, "missing": [0, 1, 2, 3, 5, 6]}}
    assert put(2, b"planted") == {"ok": {"complete": False, "missing": [0, 1, 3, 5, 6]}}
    assert put(2) == {"ok": {"complete": False, "missing": [0, 1, 3, 5, 6]}}  # not hashed yet: replaced
    assert put(2) == {"ok": {"complete": False, "missing": [0, 1, 3, 5, 6]}}  # the same bytes again: no change
    assert put(0) == {"ok": {"complete": False, "missing": [1, 3, 5, 6]}}
    assert put(1) == {"ok": {"complete": False, "missing": [3, 5, 6]}}  # 0..2 hashed now
    # a different chunk 1, where one was hashed: the upload starts over from it
    assert put(1, b"other") == {"ok": {"complete": False, "missing": [0, 2, 3, 4, 5, 6]}}
    assert put(0, total=8) == {"ok": {"complete": False, "missing": [1, 2, 3, 4, 5, 6, 7]}}  # over again
    assert reg("upload_quota", DEV)["incomplete"] == 1  # one upload, however often it started over
    for index in range(7):
        reply = put(index)
    assert reply == {"ok": {"complete": True, "missing": []}}
    wasm_id = hashlib.sha256(module).hexdigest()
    assert reg("get_wasm_status", wasm_id, ["com.example.app"])[0]["size"] == len(module)
    assert "InvalidArgument" in put(0, total=8)["err"]  # a complete upload never starts over

    meant = [*chunks[:6], b"\x07" * 50]  # another module; sent with one wrong byte in chunk 3
    bad = [c if i != 3 else b"\xff" + c[1:] for i, c in enumerate(meant)]
    claimed = hashlib.sha256(b"".join(meant)).digest()
    for i in range(7):
        reply = reg("icrc118_upload_wasm_chunk", {
            "namespace": "com.example.app", "wasm_hash": claimed, "total_chunks": 7, "chunk_index": i,
            "chunk": bad[i], "chunk_hash": hashlib.sha256(bad[i]).digest()}, sender=DEV)
    assert reply["err"]["WasmHashMismatch"]["computed"] == hashlib.sha256(b"".join(bad)).hexdigest()
    assert reg("get_wasm_status", claimed.hex(), ["com.example.app"]) == []  # dropped whole
    assert reg("upload_quota", DEV)["incomplete"] == 0  # and it holds no quota


def test_upgrades_lose_nothing(stack: Stack, product: dict[str, Any]) -> None:
    wasm_ids = []
    for i in range(25):
        wasm_id = stack.submit()
        wasm_ids.append(wasm_id)
        b = stack.bounty(wasm_id)
        v = VERIFIERS[i % len(VERIFIERS)]
        if i % 3 == 0:
            stack.stake(v)
            stack.reserve(v, b)
            if i % 2 == 0:
                stack.attest(v, wasm_id, b)
    published = next(w for w in wasm_ids if stack.status(w)["outcome"])
    assert "ok" in stack.registry("icrc118_update_wasm", {"namespace": "com.example.app", "version": (1, 2, 3),
                                                          "wasm_hash": bytes.fromhex(published)}, sender=DEV)
    before = dump(stack, wasm_ids)
    assert len(before["blocks"]["blocks"]) > 50 and before["locks"]
    for name, typed in (("ledger", stack.ledger), ("audit_hub", stack.hub), ("mcp_registry", stack.registry)):
        ic = stack.ic
        arg = typed.interface.encode_init(*_init_args(stack, name))
        ic.upgrade_canister(typed.canister_id, product[name].wasm.read_bytes(), arg, sender=GOV)
    assert dump(stack, wasm_ids) == before
    # and the system keeps working after the upgrade
    b = stack.bounty(wasm_ids[1])
    stack.stake(VERIFIERS[5])
    assert "ok" in stack.reserve(VERIFIERS[5], b)


@pytest.mark.inproc_only
def test_the_previous_release_upgrades_in_place(product: dict[str, Any], tmp_path: Any) -> None:
    """The registry's stable shapes changed (upload records, log blocks): a registry of the previous release
    upgrades in place, keeping every complete upload, round, bounty and ICRC-3 block (hashes and tip unchanged);
    only incomplete uploads are dropped (their uploaders send them again), and their quota is freed."""
    from testkit.backends import EmbeddedBackend
    from testkit.releases import REGISTRY_RELEASE, released_product

    stack = Stack.deploy(EmbeddedBackend(), released_product(REGISTRY_RELEASE, tmp_path))
    wasm_ids, modules = [], []
    for i in range(6):
        modules.append(b"\x00asm" + os.urandom(200 * 1024 + i))
        wasm_id = stack.submit(wasm=modules[-1])  # several chunks each
        wasm_ids.append(wasm_id)
        b = stack.bounty(wasm_id)
        if i % 2 == 0:
            stack.stake(VERIFIERS[i])
            stack.reserve(VERIFIERS[i], b)
            stack.attest(VERIFIERS[i], wasm_id, b)
    half = b"\x00asm" + bytes(100)
    assert "ok" in stack.registry("icrc118_upload_wasm_chunk", {
        "namespace": "com.example.app", "wasm_hash": hashlib.sha256(half + b"rest").digest(), "total_chunks": 2,
        "chunk_index": 0, "chunk": half, "chunk_hash": hashlib.sha256(half).digest()}, sender=DEV)
    assert stack.registry("upload_quota", DEV)["incomplete"] == 1
    deduplicated = {"from_subaccount": [], "to": account(STRANGER), "amount": 1, "fee": [], "memo": [b"once"],
                    "created_at_time": [stack.ic.get_time()]}
    assert "Ok" in stack.ledger("icrc1_transfer", deduplicated, sender=SPONSOR)
    before = dump(stack, wasm_ids)
    tip = stack.registry("icrc3_get_tip_certificate")[0]["hash_tree"]
    for name, typed in (("ledger", stack.ledger), ("audit_hub", stack.hub), ("mcp_registry", stack.registry)):
        arg = typed.interface.encode_init(*_init_args(stack, name))
        stack.ic.upgrade_canister(typed.canister_id, product[name].wasm.read_bytes(), arg, sender=GOV)
    assert dump(stack, wasm_ids) == before
    # the ledger's deduplication window survives (and is indexed by time on the way)
    assert "Duplicate" in stack.ledger("icrc1_transfer", deduplicated, sender=SPONSOR)["Err"]
    after = stack.registry("icrc3_get_tip_certificate")[0]["hash_tree"]
    assert tip_of(after) == tip_of(tip)  # the same last block (the witness now prunes the provenance tree beside it)
    for wasm_id in wasm_ids[::2]:  # earlier filings entered the certified provenance tree, unsigned
        (found,) = stack.registry("get_provenance", bytes.fromhex(wasm_id), [])
        assert [(f["attested"], f["statement"]) for f in found["filings"]] == [(True, [])]
    assert stack.registry("upload_quota", DEV)["incomplete"] == 0  # the incomplete upload was dropped
    budget = stack.registry("upload_budget")  # and the upload budget counts what the upgrade kept
    assert (budget["incomplete_bytes"], budget["stored_bytes"]) == (0, sum(map(len, modules)))
    for module in modules:  # the release kept chunks in the heap; the upgrade moved them to stable memory
        assert fetch_module(stack, module) == module
    stable = stack.registry("memory_stats", sender=GOV)["ok"]["stable_memory_bytes"]
    assert sum(map(len, modules)) <= stable <= sum(map(len, modules)) + 16 * 2**20  # regions grow by 8 MiB
    # and it keeps working: a new upload and round append a block that chains to the last one
    wasm_id = stack.submit(wasm=b"\x00asm" + os.urandom(100 * 1024))
    blocks = stack.registry("icrc3_get_blocks", [{"start": 0, "length": 100_000}])["blocks"]
    assert len(blocks) > len(before["blocks"]["blocks"]) and stack.status(wasm_id)["request"]
    arg = stack.registry.interface.encode_init(*_init_args(stack, "mcp_registry"))
    stack.ic.upgrade_canister(stack.registry.canister_id, product["mcp_registry"].wasm.read_bytes(), arg,
                              sender=GOV)  # and again: the move happens once
    assert stack.registry("icrc3_get_blocks", [{"start": 0, "length": 100_000}])["blocks"] == blocks


@pytest.mark.inproc_only
def test_complete_uploads_of_the_last_release_upgrade_in_place(product: dict[str, Any], tmp_path: Any) -> None:
    """The release before complete uploads' emptied chunk maps kept one slot (lib/MapSlots.mo): its complete
    uploads (whose emptied maps still hold 31 slots, which the upgrade lets go) are served after the upgrade and
    after a second one and take no chunk again; an upload begun before the upgrade (its map not emptied) is
    finished after it; a new upload and round work; the log keeps every block."""
    from testkit.backends import EmbeddedBackend
    from testkit.releases import REGISTRY_SLOTS_RELEASE, released_product

    old = released_product(REGISTRY_SLOTS_RELEASE, tmp_path, names=["mcp_registry"])
    stack = Stack.deploy(EmbeddedBackend(), product | old)
    modules = [b"\x00asm" + os.urandom(150 * 1024 + i) for i in range(3)]
    wasm_ids = [stack.submit(wasm=m) for m in modules]  # several chunks each
    b = stack.bounty(wasm_ids[0])
    stack.stake(VERIFIERS[0])
    assert "ok" in stack.reserve(VERIFIERS[0], b) and "ok" in stack.attest(VERIFIERS[0], wasm_ids[0], b)
    pending = b"\x00asm" + os.urandom(200 * 1024)
    halves = [pending[:100 * 1024], pending[100 * 1024:]]

    def send_half(i: int) -> Any:
        return stack.registry("icrc118_upload_wasm_chunk", {
            "namespace": "com.example.app", "wasm_hash": hashlib.sha256(pending).digest(), "total_chunks": 2,
            "chunk_index": i, "chunk": halves[i], "chunk_hash": hashlib.sha256(halves[i]).digest()}, sender=DEV)

    assert send_half(0) == {"ok": {"complete": False, "missing": [1]}}
    before = dump(stack, wasm_ids)
    arg = stack.registry.interface.encode_init(*_init_args(stack, "mcp_registry"))
    for _ in range(2):  # the first upgrade lets the slots go; the second finds none
        stack.ic.upgrade_canister(stack.registry.canister_id, product["mcp_registry"].wasm.read_bytes(), arg,
                                  sender=GOV)
        assert dump(stack, wasm_ids) == before
        for module in modules:
            assert fetch_module(stack, module) == module
    assert send_half(1) == {"ok": {"complete": True, "missing": []}}  # begun before the upgrade, finished after
    assert fetch_module(stack, pending) == pending
    other = b"\x00asm other bytes"
    for module, total in ((modules[1], -(-len(modules[1]) // (64 * 1024))), (pending, 2)):
        again = stack.registry("icrc118_upload_wasm_chunk", {  # a complete upload takes no chunk again
            "namespace": "com.example.app", "wasm_hash": hashlib.sha256(module).digest(), "total_chunks": total,
            "chunk_index": 0,
            "chunk": other, "chunk_hash": hashlib.sha256(other).digest()}, sender=DEV)
        assert again == {"ok": {"complete": True, "missing": []}} and fetch_module(stack, module) == module
    fresh = b"\x00asm" + os.urandom(100 * 1024)
    wasm_id = stack.submit(wasm=fresh)  # and a new upload and round work
    assert stack.status(wasm_id)["request"] and fetch_module(stack, fresh) == fresh


def fetch_module(stack: Stack, module: bytes, namespace: str = "com.example.app") -> bytes:
    """A complete upload read back chunk by chunk, as an installer does (`icrc118_get_wasm_chunk`)."""
    digest, parts, total = hashlib.sha256(module).digest(), [], 1
    while len(parts) < total:
        got = stack.registry("icrc118_get_wasm_chunk", {"namespace": namespace, "wasm_hash": digest,
                                                        "chunk_id": len(parts)})
        assert "ok" in got, got
        parts.append(got["ok"]["chunk"])
        total = got["ok"]["total_chunks"]
    return b"".join(parts)


def test_complete_uploads_live_in_stable_memory(stack: Stack, product: dict[str, Any]) -> None:
    """A complete upload's chunks move from the heap to stable memory (`lib/BlobStore.mo`) and are served from
    there, in order, whatever order they arrived in; a chunk id past the end is not found; an incomplete upload
    serves nothing."""
    reg = stack.registry
    stable = reg("memory_stats", sender=GOV)["ok"]["stable_memory_bytes"]
    module = b"\x00asm" + os.urandom(3 * 1024 * 1024 + 17)
    stack.upload(b"\x00asm", chunk_size=1024)  # creates the namespace
    cuts = [0, 700 * 1024, 1724 * 1024, 2024 * 1024, 3048 * 1024, len(module)]  # 5 chunks of different sizes
    chunks = [module[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
    digest = hashlib.sha256(module).digest()
    for index in (1, 0, 3, 2, 4):
        assert "ok" in reg("icrc118_upload_wasm_chunk", {
            "namespace": "com.example.app", "wasm_hash": digest, "total_chunks": len(chunks), "chunk_index": index,
            "chunk": chunks[index], "chunk_hash": hashlib.sha256(chunks[index]).digest()}, sender=DEV)
        if index != 4:
            assert reg("icrc118_get_wasm_chunk", {"namespace": "com.example.app", "wasm_hash": digest,
                                                  "chunk_id": 0}) == {"err": {"WasmNotFound": None}}
    assert fetch_module(stack, module) == module
    assert reg("icrc118_get_wasm_chunk", {"namespace": "com.example.app", "wasm_hash": digest,
                                          "chunk_id": len(chunks)}) == {"err": {"WasmNotFound": None}}
    grown = reg("memory_stats", sender=GOV)["ok"]["stable_memory_bytes"] - stable
    assert len(module) <= grown <= len(module) + 16 * 2**20  # regions grow by 8 MiB
    arg = reg.interface.encode_init({"governance": GOV, "audit_hub": stack.hub.canister_id,
                                     "ledgers": [stack.ledger.canister_id]})
    stack.ic.upgrade_canister(reg.canister_id, product["mcp_registry"].wasm.read_bytes(), arg, sender=GOV)
    assert fetch_module(stack, module) == module  # and after an upgrade


def tip_of(hash_tree: bytes) -> tuple[bytes | None, bytes | None]:
    """(last_block_hash, last_block_index) a tip certificate's witness reveals."""
    import cbor2

    from prometheus_sdk.certificates import untag
    from prometheus_sdk.provenance import hashtree

    tree = untag(cbor2.loads(hash_tree))
    return hashtree.lookup(tree, [b"last_block_hash"]), hashtree.lookup(tree, [b"last_block_index"])


def _init_args(stack: Stack, name: str) -> list[Any]:
    from testkit.protocol import MINTER

    if name == "ledger":
        return [{"name": "Test USD", "symbol": "TUSD", "decimals": 6, "fee": 10_000, "minting_account": account(MINTER),
                 "initial_balances": [(account(STRANGER), 999)]}]
    if name == "audit_hub":
        return [{"governance": GOV, "registry": [stack.registry.canister_id]}]
    return [{"governance": GOV, "audit_hub": stack.hub.canister_id, "ledgers": [stack.ledger.canister_id]}]


@pytest.mark.inproc_only
def test_upgrades_keep_ten_thousand_records(stack: Stack, product: dict[str, Any]) -> None:
    """2,500 wasm uploads + 2,500 requests (+ their log blocks and indexes), 1,000 ledger accounts and
    1,000 verifier stakes: well over 10,000 records, compared in full before and after upgrading."""
    for n in range(3):  # a namespace holds at most 1,000 wasm modules
        stack.registry("icrc118_create_canister_type", {"namespace": f"org.bulk.app{n}", "description": ""},
                       sender=DEV)
    wasm_ids = []
    for i in range(2500):
        chunk = i.to_bytes(4, "big") * 8
        digest = hashlib.sha256(chunk).digest()
        assert "ok" in stack.registry("icrc118_upload_wasm_chunk", {
            "namespace": f"org.bulk.app{i // 1000}", "wasm_hash": digest, "total_chunks": 1, "chunk_index": 0,
            "chunk": chunk, "chunk_hash": digest}, sender=DEV)
        assert "ok" in stack.request(digest.hex())
        wasm_ids.append(digest.hex())
    for i in range(1000):
        who = Principal_of(i)
        assert "Ok" in stack.ledger("icrc1_transfer", {"from_subaccount": [], "to": account(who), "amount": 1,
                                                       "fee": [], "memo": [], "created_at_time": []}, sender=SPONSOR)
        assert "ok" in stack.hub("mint_tokens", who, AUDIT, i + 1, sender=GOV)

    def full_dump() -> dict[str, Any]:
        return {
            "requests": [stack.registry("get_verification_request", w, []) for w in wasm_ids[::10]],
            "blocks": [stack.registry("icrc3_get_blocks", [{"start": start, "length": 1000}])
                       for start in range(0, 3000, 1000)],
            "balances": [stack.balance(Principal_of(i)) for i in range(1000)],
            "profiles": [stack.profile(Principal_of(i)) for i in range(0, 1000, 7)],
            "supply": stack.ledger("icrc1_total_supply"),
        }

    before = full_dump()
    assert sum(len(page["blocks"]) for page in before["blocks"]) == 2500
    for name, typed in (("ledger", stack.ledger), ("audit_hub", stack.hub), ("mcp_registry", stack.registry)):
        stack.ic.upgrade_canister(typed.canister_id, product[name].wasm.read_bytes(),
                                  typed.interface.encode_init(*_init_args(stack, name)), sender=GOV)
    assert full_dump() == before


def Principal_of(i: int) -> Any:  # noqa: N802 - reads like a constructor
    from ic_replica.principal import Principal

    return Principal(b"\x40" + i.to_bytes(4, "big"))
