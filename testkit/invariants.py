"""The protocol's money and stake invariants, checked from the outside (ledger balances, the registry's
escrow totals, the hub's profiles and locks) against what a test did, and a driver that brings every bounty
to a terminal state so the books can be checked exactly.

`Books` records what the test did that the canisters cannot tell it: stake minted per verifier, approvals
paid for, reservations granted. `check_bounds` may run at any moment (calls in flight, faults pending);
`check_exact` only after `quiesce`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ic_replica.principal import Principal
from testkit.protocol import AUDIT, FEE, GOV, SPONSOR, STRANGER, Stack

TERMINAL = {"Paid", "Refunded", "Cancelled"}


def variant(value: dict[str, Any]) -> str:
    return next(iter(value))


@dataclass
class Books:
    """What the test itself did since `open`: stake minted, approvals paid, bounties created, reservations
    granted; with the balances and stake it started from, so several scenarios can share one deployment."""

    sponsor_start: int
    log_start: int  # the registry's ICRC-3 log length at the start
    verifier_start: dict[Principal, tuple[int, int, int]]  # balance, slashed, total stake at the start
    minted: Counter[Principal] = field(default_factory=Counter)
    approvals: int = 0
    bounties: set[int] = field(default_factory=set)
    reservations: Counter[tuple[int, Principal]] = field(default_factory=Counter)

    @classmethod
    def open(cls, stack: Stack, verifiers: list[Principal]) -> Books:
        start = {}
        for v in verifiers:
            profile = stack.profile(v)
            total = (dict(profile["available"]).get(AUDIT, 0) + dict(profile["staked"]).get(AUDIT, 0)
                     + profile["slashed"])
            start[v] = (stack.balance(v), profile["slashed"], total)
        log_length = stack.registry("icrc3_get_blocks", [])["log_length"]
        return cls(sponsor_start=stack.balance(SPONSOR), log_start=log_length, verifier_start=start)

    def mint(self, stack: Stack, verifier: Principal, amount: int) -> None:
        assert "ok" in stack.hub("mint_tokens", verifier, AUDIT, amount, sender=GOV)
        self.minted[verifier] += amount

    def approve(self, stack: Stack, amount: int) -> None:
        stack.approve(amount)
        self.approvals += 1

    def note_reply(self, method: str, reply: Any, *args: Any, sender: Principal | None = None) -> None:
        """Learn from a call's answer: a created bounty, a granted reservation."""
        if method == "icrc127_create_bounty":
            if "ok" in reply:
                self.bounties.add(int(reply["ok"]))
            elif "LedgerOutcomeUnknown" in reply.get("err", {}):
                self.bounties.add(int(reply["err"]["LedgerOutcomeUnknown"]["bounty_id"]))
        elif method == "reserve_bounty" and "ok" in reply and sender is not None:
            self.reservations[(int(args[0]), sender)] += 1


def bounties(stack: Stack, ids: set[int]) -> dict[int, dict[str, Any]]:
    out = {}
    for bounty_id in sorted(ids):
        (bounty,) = stack.registry("icrc127_get_bounty", bounty_id)
        out[bounty_id] = bounty
    return out


def check_bounds(stack: Stack, books: Books) -> None:
    """Invariants that hold at every moment, whatever is in flight."""
    totals = stack.escrow_totals()
    balance = stack.balance(stack.registry.canister_id)
    # the registry never owes more than it holds, and holds nothing it cannot account for
    assert totals["held"] <= balance, (totals, balance)
    assert balance <= totals["held"] + totals["incoming"] + totals["outgoing"], (totals, balance)
    # stake is conserved: free + locked + slashed = minted, and what is locked is in live locks
    locks = live_locks(stack)
    for v in books.verifier_start:
        profile = stack.profile(v)
        available, staked = dict(profile["available"]).get(AUDIT, 0), dict(profile["staked"]).get(AUDIT, 0)
        minted = books.verifier_start[v][2] + books.minted[v]
        assert available + staked + profile["slashed"] == minted, (v, profile, minted)
        assert staked == sum(lock["stake"] for lock in locks if lock["claimant"] == v), (v, profile, locks)
    # every bounty pays at most once, to the claimant recorded on it, or refunds at most once
    seen = bounties(stack, books.bounties)
    paid_out = block_fields(stack, {"127payout": "bounty_id", "127refund": "bounty_id"}, books.log_start)
    payouts, refunds = Counter(paid_out["127payout"]), Counter(paid_out["127refund"])
    for bounty_id, bounty in seen.items():
        assert payouts[bounty_id] + refunds[bounty_id] <= 1, (bounty_id, bounty)
        state = variant(bounty["state"])
        assert (state == "Paid") == (payouts[bounty_id] == 1), (bounty_id, bounty)
        assert (state == "Refunded") == (refunds[bounty_id] == 1), (bounty_id, bounty)


def live_locks(stack: Stack) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after: list[int] = []
    while True:
        page = stack.hub("get_locks", after, 100)
        out += page
        if len(page) < 100:
            return out
        after = [page[-1]["lock_id"]]


def block_fields(stack: Stack, wanted: dict[str, str], start: int = 0) -> dict[str, list[Any]]:
    """For each block type in `wanted`, the named field of every block of that type from `start` on (one pass
    over the log)."""
    values: dict[str, list[Any]] = {btype: [] for btype in wanted}
    while True:
        got = stack.registry("icrc3_get_blocks", [{"start": start, "length": 1000}])
        for entry in got["blocks"]:
            fields = dict(entry["block"]["Map"])
            btype = fields["btype"]["Text"]
            if btype in wanted:
                tx = dict(fields["tx"]["Map"])
                values[btype].append(next(iter(tx[wanted[btype]].values())))
        if not got["blocks"]:
            return values
        start = got["blocks"][-1]["id"] + 1
        if start >= got["log_length"]:
            return values


def quiesce(stack: Stack, books: Books, rounds: int = 4) -> dict[int, dict[str, Any]]:
    """Clear injected faults, let every timeout pass, then settle, refund and clean up until every bounty is
    terminal and no lock is left; returns the final bounties."""
    if stack.ic.name == "embedded":
        stack.ic.replica.faults.clear()  # faults are injected only into the embedded replica
    seen = bounties(stack, books.bounties)
    latest = max([b["timeout_date"] for b in seen.values()] + [stack.ic.get_time()])
    if latest >= stack.ic.get_time():
        stack.ic.advance_time(latest - stack.ic.get_time() + 1)
    for _ in range(rounds):
        for bounty_id in sorted(books.bounties):
            stack.hub("cleanup_expired_lock", bounty_id, sender=STRANGER)
            stack.registry("settle_bounty", bounty_id, sender=STRANGER)
        seen = bounties(stack, books.bounties)
        if all(variant(b["state"]) in TERMINAL for b in seen.values()) and not live_locks(stack):
            return seen
    raise AssertionError(f"not quiescent: {[(i, b['state'], b['stake']) for i, b in seen.items()]}, "
                         f"locks {live_locks(stack)}")


def check_exact(stack: Stack, books: Books, final: dict[int, dict[str, Any]]) -> None:
    """After `quiesce`: every unit of money and stake is where the protocol says it must be."""
    check_bounds(stack, books)
    totals = stack.escrow_totals()
    assert totals == {"held": 0, "incoming": 0, "outgoing": 0}, totals
    assert stack.balance(stack.registry.canister_id) == 0
    funded = [b for b in final.values() if variant(b["state"]) != "Cancelled"]
    refunded = sum(b["reward_amount"] for b in final.values() if variant(b["state"]) == "Refunded")
    expected_sponsor = (books.sponsor_start - FEE * books.approvals
                        - sum(b["reward_amount"] + 2 * FEE for b in funded) + refunded)
    assert stack.balance(SPONSOR) == expected_sponsor
    paid: Counter[Principal] = Counter()
    for b in final.values():
        state, stake = variant(b["state"]), b["stake"]
        if state == "Paid":
            claimant = b["state"]["Paid"]["claimant"]
            paid[claimant] += b["reward_amount"]
            assert b["filer"] == [claimant] and stake == {"Done": {"Reward": None}}, b  # paid for an agreeing filing
        elif b["filer"]:
            assert stake in ({"Done": {"Slash": None}}, {"Done": {"Release": None}}), b
        else:
            assert stake == {"None": None}, b
    # stake: a reservation never filed on is slashed; a filing is rewarded if it agrees with its audit's final
    # outcome, slashed if it disagrees, released if the audit never became final
    expected_slashes: Counter[Principal] = Counter()
    for (bounty_id, v), times in books.reservations.items():
        bounty = final[bounty_id]
        kept = bounty["filer"] == [v] and variant(bounty["stake"]["Done"]) != "Slash"
        expected_slashes[v] += times - (1 if kept else 0)
    stake_per = stack.hub("get_policy")["stake_per_reservation"]
    for v, (balance, slashed, _) in books.verifier_start.items():
        assert stack.balance(v) - balance == paid[v], (v, stack.balance(v) - balance, paid[v])
        profile = stack.profile(v)
        assert dict(profile["staked"]).get(AUDIT, 0) == 0
        assert profile["slashed"] - slashed == expected_slashes[v] * stake_per, (v, profile, expected_slashes[v])
