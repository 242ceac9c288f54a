"""`prometheus allowance set | limit | show | revoke`: what an auth_server canister may charge you (docs/auth.md).

Two gates, both yours: the ledger allowance (ICRC-2 `approve` with the auth server as spender, an expiry, and
`expected_allowance` so two devices cannot overwrite each other's change unseen) bounds everything the server
can pull; a spending limit per service (resource URI and ledger: most per charge, most in total) bounds what
each service may charge through it. A charge needs both, and a grant with the `payments` scope.
"""

from __future__ import annotations

import time
from typing import Any

import typer

from prometheus_cli.auth import CanisterOption, IssuerOption, server_id
from prometheus_cli.context import Options, connection
from prometheus_cli.output import emit, fail, say, user_errors
from prometheus_cli.tokens import LedgerOption, ledger_client

app = typer.Typer(help="Your ledger allowance and spending limits for an auth_server canister's charges.",
                  no_args_is_help=True)


def _opts(ctx: typer.Context) -> Options:
    return ctx.obj if isinstance(ctx.obj, Options) else Options()


def _clients(ctx: typer.Context, issuer: str | None, canister: str | None, ledger: str | None
             ) -> tuple[Options, Any, Any, Any]:
    from prometheus_sdk.clients.auth_server import AuthServerClient

    opts = _opts(ctx)
    conn = connection(opts)
    auth = AuthServerClient(conn, server_id(issuer, canister, conn.network.name))
    return opts, conn, auth, ledger_client(conn, ledger)


def _account(owner: str) -> dict[str, Any]:
    from prometheus_sdk.principal import Principal

    return {"owner": Principal.from_text(owner), "subaccount": []}


def _approve(ledger: Any, conn: Any, spender: str, amount: int, expires_at: int | None) -> tuple[int, int]:
    """ICRC-2 approve with `expected_allowance` = what we just read: a concurrent change makes it fail, not vanish."""
    from prometheus_cli import errors
    from prometheus_sdk.clients.ledger import LedgerError

    current = int(ledger.icrc2_allowance({"account": _account(conn.principal), "spender": _account(spender)})
                  ["allowance"])
    try:
        block = ledger.icrc2_approve({"from_subaccount": [], "spender": _account(spender), "amount": amount,
                                      "expected_allowance": [current], "expires_at": [expires_at] if expires_at else [],
                                      "fee": [], "memo": [], "created_at_time": []})
    except LedgerError as exc:
        hint = ("the allowance changed meanwhile; run the command again" if exc.kind == "AllowanceChanged" else
                "on a local network, `prometheus localnet fund IDENTITY AMOUNT` gives tokens for the fee"
                if exc.kind == "InsufficientFunds" else None)
        fail(f"the ledger refused the approval: {errors.of(exc)}", hint)
    return int(block), current


@app.command("set")
def set_allowance(ctx: typer.Context, amount: int = typer.Argument(..., help="The most the server may pull in total "
                                                                             "(base units, fees included)."),
                  days: int = typer.Option(30, "--days", min=1, max=3650, help="The allowance expires after DAYS."),
                  issuer: str | None = IssuerOption, canister: str | None = CanisterOption,
                  ledger: str | None = LedgerOption) -> None:
    """Allow the auth server to pull up to AMOUNT from your account (ICRC-2), for DAYS days."""
    with user_errors(_opts(ctx).as_json):
        if amount <= 0:
            fail(f"invalid amount {amount}", "a positive number of the ledger's base units (`revoke` sets none)")
        opts, conn, auth, led = _clients(ctx, issuer, canister, ledger)
        expires_at = time.time_ns() + days * 86_400 * 1_000_000_000
        block, before = _approve(led, conn, auth.canister_id, amount, expires_at)
        emit({"spender": auth.canister_id, "ledger": led.canister_id, "amount": amount, "previous": before,
              "expires_at_ns": expires_at, "block": block}, opts.as_json,
             lambda r: say(f"the auth server {r['spender']} may pull up to {r['amount']} for {days} days "
                                       f"(was {r['previous']}; ledger block {r['block']})"))


@app.command("limit")
def set_limit(ctx: typer.Context, resource: str = typer.Argument(..., help="The service's resource URI."),
              per_charge: int = typer.Option(..., "--per-charge", min=0, help="Most one charge may take."),
              total: int = typer.Option(..., "--total", min=0, help="Most all its charges may take together."),
              issuer: str | None = IssuerOption, canister: str | None = CanisterOption,
              ledger: str | None = LedgerOption) -> None:
    """Set how much one service may charge you (0 stops it). Example: prometheus allowance limit
    https://tools.example.com/mcp --per-charge 1000 --total 50000 --issuer URL"""
    from prometheus_cli import errors
    from prometheus_sdk.clients.auth_server import AuthServerError
    from prometheus_sdk.principal import Principal

    with user_errors(_opts(ctx).as_json):
        opts, _, auth, led = _clients(ctx, issuer, canister, ledger)
        try:
            auth.set_spending_limit({"resource": resource, "ledger": Principal.from_text(led.canister_id),
                                     "max_per_charge": per_charge, "max_total": total})
        except AuthServerError as exc:
            fail(f"the auth server refused the limit: {errors.of(exc)}")
        emit({"resource": resource, "ledger": led.canister_id, "max_per_charge": per_charge, "max_total": total},
             opts.as_json, lambda r: say(
                 f"{r['resource']} may charge at most {r['max_per_charge']} at a time, {r['max_total']} in total"))


@app.command("show")
def show(ctx: typer.Context, issuer: str | None = IssuerOption, canister: str | None = CanisterOption,
         ledger: str | None = LedgerOption,
         charges: int = typer.Option(10, "--charges", min=0, max=100, help="How many recent charges to list.")) -> None:
    """Your allowance to the auth server, your limits per service and your latest charges."""
    with user_errors(_opts(ctx).as_json):
        opts, conn, auth, led = _clients(ctx, issuer, canister, ledger)
        allowance = led.icrc2_allowance({"account": _account(conn.principal), "spender": _account(auth.canister_id)})
        data = {
            "spender": auth.canister_id, "ledger": led.canister_id, "allowance": int(allowance["allowance"]),
            "expires_at_ns": allowance["expires_at"][0] if allowance["expires_at"] else None,
            "limits": [{**lim, "ledger": str(lim["ledger"])} for lim in auth.my_spending_limits()],
            "charges": [{"id": c["id"], "resource": c["resource"], "amount": c["amount"],
                         "request_id": c["request_id"], "state": next(iter(c["state"])), "at_ns": c["at_ns"]}
                        for c in (auth.my_charges([], charges) if charges else [])],
        }

        def show_text(d: dict[str, Any]) -> None:
            until = (time.strftime("%Y-%m-%d", time.gmtime(d["expires_at_ns"] / 1e9))
                     if d["expires_at_ns"] else "no expiry")
            say(f"allowance to {d['spender']}: {d['allowance']} (until {until})")
            for lim in d["limits"]:
                say(f"  {lim['resource']}: {lim['spent']} of {lim['max_total']} spent, "
                                f"at most {lim['max_per_charge']} a charge")
            for c in d["charges"]:
                say(f"  charge {c['id']}: {c['amount']} to {c['resource']} ({c['state']})")

        emit(data, opts.as_json, show_text)


@app.command("revoke")
def revoke(ctx: typer.Context, issuer: str | None = IssuerOption, canister: str | None = CanisterOption,
           ledger: str | None = LedgerOption) -> None:
    """Take the auth server's allowance away (ICRC-2 approve of 0): no service can charge you until `set`."""
    with user_errors(_opts(ctx).as_json):
        opts, conn, auth, led = _clients(ctx, issuer, canister, ledger)
        block, before = _approve(led, conn, auth.canister_id, 0, None)
        emit({"spender": auth.canister_id, "ledger": led.canister_id, "previous": before, "block": block},
             opts.as_json, lambda r: say(f"the auth server may pull nothing now (was {r['previous']})"))
