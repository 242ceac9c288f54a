"""`prometheus bounty create | list | show`: ICRC-127 bounties on the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from prometheus_cli import manifest as manifests
from prometheus_cli.context import Options, client, connection
from prometheus_cli.developer import AUDIT, create_bounty, wasm_id_arg
from prometheus_cli.output import console, emit, fail, user_errors

app = typer.Typer(help="Fund and inspect verification bounties (ICRC-127).", no_args_is_help=True)


def _opts(ctx: typer.Context) -> Options:
    return ctx.obj if isinstance(ctx.obj, Options) else Options()


def _row(b: dict[str, Any]) -> dict[str, Any]:
    return {"bounty_id": b["bounty_id"], "wasm_id": b["wasm_id"], "audit_type": b["audit_type"],
            "reward": b["reward_amount"], "ledger": str(b["reward_canister"]), "creator": str(b["creator"]),
            "timeout_date": b["timeout_date"], "state": next(iter(b["state"]))}


def _table(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table("bounty", "wasm", "audit type", "reward", "state")
    for r in rows:
        table.add_row(str(r["bounty_id"]), r["wasm_id"][:16] + "…", r["audit_type"], str(r["reward"]), r["state"])
    console().print(table)


@app.command()
def create(
    ctx: typer.Context,
    amount: int = typer.Argument(..., help="Reward in the ledger's smallest units."),
    wasm_hash: str | None = typer.Option(None, "--wasm", help="sha256 of the wasm (default: the manifest's)."),
    audit_type: str = typer.Option(AUDIT, "--audit-type"),
    timeout_days: int = typer.Option(7, "--timeout-days", help="When an unclaimed bounty is refunded."),
    path: Path = typer.Option(Path(manifests.MANIFEST), "--manifest", "-m"),
) -> None:
    """Approve and create a bounty in one go. Example: prometheus bounty create 5000000"""
    opts = _opts(ctx)
    with user_errors(opts.as_json):
        wasm_id = wasm_id_arg(wasm_hash, path)
        bounty_id = create_bounty(connection(opts), wasm_id, amount, audit_type, timeout_days)
        emit({"bounty_id": bounty_id, "wasm_id": wasm_id, "amount": amount}, opts.as_json,
             lambda r: console().print(f"bounty #{r['bounty_id']} for {r['wasm_id'][:16]}…: {r['amount']}"))


@app.command("list")
def list_(
    ctx: typer.Context,
    wasm_hash: str | None = typer.Argument(None, help="sha256 of the wasm (default: the manifest's)."),
    path: Path = typer.Option(Path(manifests.MANIFEST), "--manifest", "-m"),
) -> None:
    """The bounties of a wasm."""
    opts = _opts(ctx)
    with user_errors(opts.as_json):
        registry = client(connection(opts), "mcp_registry")
        rows = [_row(b) for b in registry.get_bounties_for_wasm(wasm_id_arg(wasm_hash, path))]
        emit(rows, opts.as_json, _table)


@app.command()
def show(ctx: typer.Context, bounty_id: int = typer.Argument(...)) -> None:
    """One bounty with its state (Open, Claimed, Paying, Paid, Refunding, Refunded)."""
    opts = _opts(ctx)
    with user_errors(opts.as_json):
        found = client(connection(opts), "mcp_registry").icrc127_get_bounty(bounty_id)
        if not found:
            fail(f"no bounty #{bounty_id}", "see `prometheus bounty list`")
        emit(_row(found[0]), opts.as_json, lambda r: _table([r]))
