"""The ICRC-1/ICRC-2 ledger canister: transfers, fees, mint and burn, deduplication, approvals, allowance
expiry, concurrency, upgrades, and its checked-in interface."""

from __future__ import annotations

from typing import Any

import pytest

from ic_replica.principal import Principal
from testkit.typed import Typed
from tests.conftest import ALICE, BOB, ROOT

MINTER = Principal(b"\x0c" * 29)
CAROL = Principal(b"\x0d" * 29)
FEE = 10_000


def acct(owner: Principal, sub: bytes | None = None) -> dict[str, Any]:
    return {"owner": owner, "subaccount": [sub] if sub is not None else []}


def transfer(to: Principal, amount: int, **extra: Any) -> dict[str, Any]:
    return {"from_subaccount": [], "to": acct(to), "amount": amount, "fee": [], "memo": [], "created_at_time": [],
            **extra}


@pytest.fixture
def ledger(ic: Any, product: dict[str, Any]) -> Typed:
    cid = ic.create_canister(controllers=[ALICE], sender=ALICE)
    typed = Typed(ic, cid, "ledger")
    init = {"name": "Test Token", "symbol": "TST", "decimals": 6, "fee": FEE, "minting_account": acct(MINTER),
            "initial_balances": [(acct(ALICE), 1_000_000), (acct(BOB), 500_000)]}
    ic.install_code(cid, product["ledger"].wasm.read_bytes(), typed.interface.encode_init(init), sender=ALICE)
    return typed


def balance(ledger: Typed, who: Principal, sub: bytes | None = None) -> int:
    return ledger("icrc1_balance_of", acct(who, sub))  # type: ignore[no-any-return]


def test_metadata_and_initial_state(ledger: Typed) -> None:
    assert ledger("icrc1_symbol") == "TST" and ledger("icrc1_decimals") == 6 and ledger("icrc1_fee") == FEE
    assert ledger("icrc1_total_supply") == 1_500_000
    assert ledger("icrc1_minting_account") == [acct(MINTER)]
    names = {s["name"] for s in ledger("icrc1_supported_standards")}
    assert {"ICRC-1", "ICRC-2"} <= names
    assert dict(ledger("icrc1_metadata"))["icrc1:fee"] == {"Nat": FEE}


def test_transfer_moves_funds_and_burns_the_fee(ledger: Typed) -> None:
    assert ledger("icrc1_transfer", transfer(CAROL, 100_000)) == {"Ok": 0}
    assert balance(ledger, ALICE) == 1_000_000 - 100_000 - FEE
    assert balance(ledger, CAROL) == 100_000
    assert ledger("icrc1_total_supply") == 1_500_000 - FEE
    sub = bytes([1]) * 32
    assert ledger("icrc1_transfer", {**transfer(ALICE, 5), "to": acct(ALICE, sub)}) == {"Ok": 1}
    assert balance(ledger, ALICE, sub) == 5


def test_transfer_errors_change_nothing(ledger: Typed) -> None:
    cases = [
        (transfer(CAROL, 1, fee=[1]), {"BadFee": {"expected_fee": FEE}}),
        (transfer(CAROL, 1_000_000), {"InsufficientFunds": {"balance": 1_000_000}}),
        (transfer(CAROL, 1, memo=[b"x" * 33]), "GenericError"),
        ({**transfer(CAROL, 1), "to": acct(CAROL, b"short")}, "GenericError"),
    ]
    for arg, expected in cases:
        result = ledger("icrc1_transfer", arg)
        if isinstance(expected, str):
            assert expected in result["Err"]
        else:
            assert result == {"Err": expected}
    assert balance(ledger, ALICE) == 1_000_000 and ledger("icrc1_total_supply") == 1_500_000


def test_mint_and_burn(ledger: Typed) -> None:
    assert "Ok" in ledger("icrc1_transfer", transfer(CAROL, 70_000), sender=MINTER)
    assert balance(ledger, CAROL) == 70_000 and ledger("icrc1_total_supply") == 1_570_000
    assert ledger("icrc1_transfer", transfer(MINTER, 1), sender=CAROL) == {
        "Err": {"BadBurn": {"min_burn_amount": FEE}}}
    assert "Ok" in ledger("icrc1_transfer", transfer(MINTER, FEE), sender=CAROL)
    assert balance(ledger, CAROL) == 70_000 - FEE and ledger("icrc1_total_supply") == 1_570_000 - FEE


def test_deduplication_by_created_at_time(ic: Any, ledger: Typed) -> None:
    now = ic.get_time()
    arg = transfer(CAROL, 10, created_at_time=[now], memo=[b"once"])
    first = ledger("icrc1_transfer", arg)
    assert first == {"Ok": 0}
    assert ledger("icrc1_transfer", arg) == {"Err": {"Duplicate": {"duplicate_of": 0}}}
    assert "Ok" in ledger("icrc1_transfer", {**arg, "memo": [b"twice"]})  # another memo is another transaction
    assert ledger("icrc1_transfer", {**arg, "created_at_time": [now - 2 * 86_400 * 10**9]}) == {"Err": {"TooOld": None}}
    future = ledger("icrc1_transfer", {**arg, "created_at_time": [now + 3_600 * 10**9]})
    assert "CreatedInFuture" in future["Err"]
    assert balance(ledger, CAROL) == 20


@pytest.mark.inproc_only
@pytest.mark.embedded_only  # instruction counters
def test_a_transfer_costs_the_same_however_many_are_in_the_deduplication_window(ic: Any, ledger: Typed) -> None:
    """Forgetting expired deduplication entries reads only those (a time index), not every entry in the window."""
    replica = ic.replica
    now = ic.get_time()

    def cost(i: int) -> int:
        before = replica.instructions_executed
        arg = transfer(CAROL, 1, created_at_time=[now], memo=[i.to_bytes(4, "big")])
        assert "Ok" in ledger("icrc1_transfer", arg, sender=MINTER)  # mints: no fee to run out of
        return int(replica.instructions_executed - before)

    first = sorted(cost(i) for i in range(20))[10]
    for i in range(20, 800):
        cost(i)
    last = sorted(cost(i) for i in range(800, 820))[10]
    assert last < 1.5 * first, (first, last)
    replayed = transfer(CAROL, 1, created_at_time=[now], memo=[(5).to_bytes(4, "big")])
    assert ledger("icrc1_transfer", replayed, sender=MINTER) == {"Err": {"Duplicate": {"duplicate_of": 5}}}
    ic.advance_time(2 * 86_400 * 10**9)  # the window has passed: old entries are forgotten, new ones still count
    later = transfer(CAROL, 1, created_at_time=[ic.get_time()], memo=[b"later"])
    assert "Ok" in ledger("icrc1_transfer", later, sender=MINTER)
    assert "Duplicate" in ledger("icrc1_transfer", later, sender=MINTER)["Err"]
    assert ledger("icrc1_transfer", replayed, sender=MINTER) == {"Err": {"TooOld": None}}


def test_approve_and_transfer_from(ic: Any, ledger: Typed) -> None:
    approve = {"from_subaccount": [], "spender": acct(BOB), "amount": 50_000, "expected_allowance": [],
               "expires_at": [], "fee": [], "memo": [], "created_at_time": []}
    assert "Ok" in ledger("icrc2_approve", approve)
    assert ledger("icrc2_allowance", {"account": acct(ALICE), "spender": acct(BOB)})["allowance"] == 50_000
    tf = {"spender_subaccount": [], "from": acct(ALICE), "to": acct(CAROL), "amount": 45_000, "fee": [], "memo": [],
          "created_at_time": []}
    # the allowance must cover amount + fee
    assert ledger("icrc2_transfer_from", tf, sender=BOB) == {"Err": {"InsufficientAllowance": {"allowance": 50_000}}}
    tf["amount"] = 40_000
    assert "Ok" in ledger("icrc2_transfer_from", tf, sender=BOB)
    assert balance(ledger, CAROL) == 40_000
    assert ledger("icrc2_allowance", {"account": acct(ALICE), "spender": acct(BOB)})["allowance"] == 0
    assert ledger("icrc2_transfer_from", tf, sender=BOB) == {"Err": {"InsufficientAllowance": {"allowance": 0}}}
    assert ledger("icrc2_transfer_from", tf, sender=CAROL) == {"Err": {"InsufficientAllowance": {"allowance": 0}}}
    assert ledger("icrc2_approve", {**approve, "expected_allowance": [1]}) == {
        "Err": {"AllowanceChanged": {"current_allowance": 0}}}
    assert "GenericError" in ledger("icrc2_approve", {**approve, "spender": acct(ALICE)})["Err"]
    assert "Expired" in ledger("icrc2_approve", {**approve, "expires_at": [ic.get_time() - 1]})["Err"]


def test_allowances_expire(ic: Any, ledger: Typed) -> None:
    expiry = ic.get_time() + 60 * 10**9
    approve = {"from_subaccount": [], "spender": acct(BOB), "amount": 50_000, "expected_allowance": [],
               "expires_at": [expiry], "fee": [], "memo": [], "created_at_time": []}
    assert "Ok" in ledger("icrc2_approve", approve)
    ic.advance_time(61 * 10**9)
    assert ledger("icrc2_allowance", {"account": acct(ALICE), "spender": acct(BOB)})["allowance"] == 0
    tf = {"spender_subaccount": [], "from": acct(ALICE), "to": acct(CAROL), "amount": 1, "fee": [], "memo": [],
          "created_at_time": []}
    assert ledger("icrc2_transfer_from", tf, sender=BOB) == {"Err": {"InsufficientAllowance": {"allowance": 0}}}


@pytest.mark.embedded_only
def test_concurrent_transfer_from_in_one_round_pays_once(ic: Any, ledger: Typed) -> None:
    approve = {"from_subaccount": [], "spender": acct(BOB), "amount": 100_000 + FEE, "expected_allowance": [],
               "expires_at": [], "fee": [], "memo": [], "created_at_time": []}
    assert "Ok" in ledger("icrc2_approve", approve)
    tf = {"spender_subaccount": [], "from": acct(ALICE), "to": acct(CAROL), "amount": 100_000, "fee": [], "memo": [],
          "created_at_time": []}
    ids = [ledger.submit("icrc2_transfer_from", tf, sender=BOB) for _ in range(2)]
    ic.tick()
    results = [ledger.decode("icrc2_transfer_from", ic.await_call(i)) for i in ids]
    assert sorted("Ok" in r for r in results) == [False, True]
    assert balance(ledger, CAROL) == 100_000


def test_upgrade_keeps_balances_and_does_not_mint_again(ic: Any, ledger: Typed, product: dict[str, Any]) -> None:
    ledger("icrc1_transfer", transfer(CAROL, 1_234))
    supply = ledger("icrc1_total_supply")
    init = {"name": "Test Token", "symbol": "TST", "decimals": 6, "fee": FEE, "minting_account": acct(MINTER),
            "initial_balances": [(acct(ALICE), 1_000_000)]}
    ic.upgrade_canister(ledger.canister_id, product["ledger"].wasm.read_bytes(), ledger.interface.encode_init(init),
                        sender=ALICE)
    assert ledger("icrc1_total_supply") == supply
    assert balance(ledger, CAROL) == 1_234 and balance(ledger, ALICE) == 1_000_000 - 1_234 - FEE


def test_checked_in_interfaces_match_the_build(product: dict[str, Any]) -> None:
    for name, result in product.items():
        checked_in = ROOT / "candid" / f"{name}.did"
        assert checked_in.is_file(), f"candid/{name}.did is missing"
        assert checked_in.read_text() == result.did.read_text(), f"candid/{name}.did differs from the build"
