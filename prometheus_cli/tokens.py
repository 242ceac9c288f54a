"""`prometheus token balance | transfer | approve`: any ICRC-1/ICRC-2 ledger (`--ledger ID`, default the
protocol's), amounts in the ledger's base units, signed by the current identity."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer

from prometheus_cli import errors
from prometheus_cli.accounts import account, principal_of
from prometheus_cli.context import Options, canister_id, connection
from prometheus_cli.output import console, emit, fail, user_errors

if TYPE_CHECKING:
    from prometheus_sdk.clients.ledger import LedgerClient

app = typer.Typer(help="Balances, transfers and approvals on an ICRC-1/2 ledger.", no_args_is_help=True)
LedgerOption = typer.Option(None, "--ledger", help="Ledger canister id (default: the protocol's ledger).")


def _opts(ctx: typer.Context) -> Options:
    return ctx.obj if isinstance(ctx.obj, Options) else Options()


def ledger_client(conn: Any, ledger: str | None) -> LedgerClient:
    """A client for `ledger` (validated as a principal), else the protocol's ledger on this network."""
    from prometheus_sdk.clients.ledger import LedgerClient
    from prometheus_sdk.principal import InvalidPrincipal, Principal

    if ledger is not None:
        try:
            Principal.from_text(ledger)
        except InvalidPrincipal:
            fail(f"invalid ledger id {ledger!r}", "a canister id, e.g. ryjl3-tyaaa-aaaaa-aaaba-cai")
    return LedgerClient(conn, ledger or canister_id("ledger", conn.network.name))


@contextmanager
def _refused(what: str) -> Iterator[None]:
    """A ledger's `Err` as one line (and how to get tokens on a localnet when that is what is missing)."""
    from prometheus_sdk.clients.ledger import LedgerError

    try:
        yield
    except LedgerError as exc:
        fail(f"the ledger refused the {what}: {errors.of(exc)}",
             "on a local network, `prometheus localnet fund IDENTITY AMOUNT` gives tokens"
             if exc.kind == "InsufficientFunds" else None)


def _positive(amount: int) -> int:
    if amount <= 0:
        fail(f"invalid amount {amount}", "a positive number of the ledger's base units")
    return amount


@app.command()
def balance(ctx: typer.Context,
            owner: str | None = typer.Argument(None, help="Principal or identity name (default: yours)."),
            ledger: str | None = LedgerOption) -> None:
    """Show an account's balance. Example: prometheus token balance alice"""
    opts = _opts(ctx)
    with user_errors(opts.as_json):
        conn = connection(opts)
        who = principal_of(owner) if owner else principal_of_conn(conn)
        client = ledger_client(conn, ledger)
        amount = int(client.icrc1_balance_of(account(who)))
        data = {"owner": str(who), "ledger": client.canister_id, "balance": amount, "symbol": client.icrc1_symbol(),
                "decimals": int(client.icrc1_decimals())}
        emit(data, opts.as_json, lambda d: console().print(
            f"{d['owner']}: {d['balance']} ({_whole(d['balance'], d['decimals'])} {d['symbol']})"))


@app.command()
def transfer(ctx: typer.Context,
             to: str = typer.Argument(..., help="Principal or identity name."),
             amount: int = typer.Argument(..., help="Base units (the fee is paid on top)."),
             ledger: str | None = LedgerOption) -> None:
    """Send tokens from your account (ICRC-1). Example: prometheus token transfer verifier 5000000"""
    opts = _opts(ctx)
    with user_errors(opts.as_json):
        conn = connection(opts)
        client = ledger_client(conn, ledger)
        target = principal_of(to)
        with _refused("transfer"):
            block = client.icrc1_transfer({"from_subaccount": [], "to": account(target), "amount": _positive(amount),
                                           "fee": [], "memo": [], "created_at_time": []})
        data = {"from": conn.principal, "to": str(target), "amount": amount, "ledger": client.canister_id,
                "block": block}
        emit(data, opts.as_json, lambda d: console().print(
            f"sent {d['amount']} to {d['to']} (ledger block {d['block']})"))


@app.command()
def approve(ctx: typer.Context,
            spender: str = typer.Argument(..., help="Principal or identity name allowed to spend."),
            amount: int = typer.Argument(..., help="Allowance in base units (replaces the current one)."),
            ledger: str | None = LedgerOption) -> None:
    """Allow a spender to take up to AMOUNT from your account (ICRC-2). Example: prometheus token approve
    <registry id> 2000000"""
    opts = _opts(ctx)
    with user_errors(opts.as_json):
        conn = connection(opts)
        client = ledger_client(conn, ledger)
        target = principal_of(spender)
        with _refused("approval"):
            block = client.icrc2_approve({"from_subaccount": [], "spender": account(target),
                                          "amount": _positive(amount), "expected_allowance": [], "expires_at": [],
                                          "fee": [], "memo": [], "created_at_time": []})
        data = {"owner": conn.principal, "spender": str(target), "amount": amount, "ledger": client.canister_id,
                "block": block}
        emit(data, opts.as_json, lambda d: console().print(
            f"{d['spender']} may spend {d['amount']} (ledger block {d['block']})"))


def principal_of_conn(conn: Any) -> Any:
    from prometheus_sdk.principal import Principal

    return Principal.from_text(conn.principal)


def _whole(units: int, decimals: int) -> str:
    return f"{units / 10**decimals:,.{decimals}f}" if decimals else str(units)
