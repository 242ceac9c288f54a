"""`prometheus bounty create | list | show | settle`: ICRC-127 bounties on the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from prometheus_cli import errors
from prometheus_cli import manifest as manifests
from prometheus_cli.context import Options, client, connection
from prometheus_cli.developer import AUDIT, bounty_state, create_bounty, state_text, target
from prometheus_cli.output import console, emit, fail, user_errors
from prometheus_cli.output import table as output_table

app = typer.Typer(help="Fund and inspect verification bounties (ICRC-127).", no_args_is_help=True)
NamespaceOption = typer.Option(None, "--namespace", help="The namespace holding the wasm (default: the "
                                                         "manifest's, when it describes this wasm).")


def _opts(ctx: typer.Context) -> Options:
    return ctx.obj if isinstance(ctx.obj, Options) else Options()


def _stake(value: dict[str, Any]) -> dict[str, Any] | None:
    """What the registry still owes the claimant's stake: None, or {"settlement": Pending|Done, "verdict": ...}."""
    ((name, verdict),) = value.items()
    return None if name == "None" else {"settlement": name, "verdict": next(iter(verdict))}


def _row(b: dict[str, Any]) -> dict[str, Any]:
    return {"bounty_id": b["bounty_id"], "wasm_id": b["wasm_id"], "namespace": b["namespace"],
            "request_id": b["request_id"], "audit_type": b["audit_type"], "reward": b["reward_amount"],
            "ledger": str(b["reward_canister"]), "creator": str(b["creator"]), "timeout_date": b["timeout_date"],
            **bounty_state(b["state"]), "stake": _stake(b["stake"])}


def _table(rows: list[dict[str, Any]]) -> None:

    table = output_table("bounty", "wasm", "namespace", "round", "audit type", "reward", "state",
                         full=("wasm", "namespace", "state"))
    for r in rows:
        table.add_row(str(r["bounty_id"]), r["wasm_id"], r["namespace"], f"#{r['request_id']}",
                      r["audit_type"], str(r["reward"]), state_text(r))
    console().print(table)


@app.command()
def create(
    ctx: typer.Context,
    amount: int = typer.Argument(..., help="Reward in the ledger's smallest units."),
    wasm_hash: str | None = typer.Option(None, "--wasm", help="sha256 of the wasm (default: the manifest's)."),
    namespace: str | None = NamespaceOption,
    audit_type: str = typer.Option(AUDIT, "--audit-type"),
    timeout_days: int = typer.Option(7, "--timeout-days", help="When an unclaimed bounty is refunded (1-365)."),
    path: Path = typer.Option(Path(manifests.MANIFEST), "--manifest", "-m"),
) -> None:
    """Approve and create a bounty on the wasm's current verification round in one go.

    Example: prometheus bounty create 5000000
    """
    opts = _opts(ctx)
    with user_errors(opts.as_json):
        wasm_id, ns = target(wasm_hash, namespace, path)
        bounty_id = create_bounty(connection(opts), wasm_id, amount, audit_type, timeout_days, ns)
        emit({"bounty_id": bounty_id, "wasm_id": wasm_id, "namespace": ns, "amount": amount}, opts.as_json,
             lambda r: console().print(f"bounty #{r['bounty_id']} for {r['wasm_id']}: {r['amount']}"))


@app.command("list")
def list_(
    ctx: typer.Context,
    wasm_hash: str | None = typer.Argument(None, help="sha256 of the wasm (default: the manifest's)."),
    namespace: str | None = typer.Option(None, "--namespace", help="Only the bounties in this namespace."),
    path: Path = typer.Option(Path(manifests.MANIFEST), "--manifest", "-m"),
) -> None:
    """The newest bounties of a wasm, in every namespace and round (or one namespace with --namespace)."""
    opts = _opts(ctx)
    with user_errors(opts.as_json):
        wasm_id, _ = target(wasm_hash, namespace, path)
        registry = client(connection(opts), "mcp_registry")
        rows = [_row(b) for b in registry.get_bounties_for_wasm(wasm_id)
                if namespace is None or b["namespace"] == namespace]
        emit(rows, opts.as_json, _table)


@app.command()
def show(ctx: typer.Context, bounty_id: int = typer.Argument(...)) -> None:
    """One bounty: its state (Funding, Open, Reserved, Claimed, Paying, Paid, Refunding, Refunded, Cancelled),
    its round, the stake settlement and its ledger transfers."""
    opts = _opts(ctx)
    with user_errors(opts.as_json):
        registry = client(connection(opts), "mcp_registry")
        found = registry.icrc127_get_bounty(bounty_id)
        if not found:
            fail(f"no bounty #{bounty_id}", "see `prometheus bounty list`")
        row = _row(found[0])
        row["transfers"] = [{"transfer_id": t["id"], "kind": next(iter(t["kind"])), "amount": t["amount"],
                             "to": str(t["to"]["owner"]), "state": next(iter(t["state"])),
                             "attempts": t["attempts"]} for t in registry.get_bounty_transfers(bounty_id)]
        emit(row, opts.as_json, _show)


def _show(row: dict[str, Any]) -> None:
    c = console()
    c.print(f"bounty #{row['bounty_id']}: {row['reward']} on ledger {row['ledger']} for {row['audit_type']}",
            soft_wrap=True)
    c.print(f"wasm {row['wasm_id']} in {row['namespace']}, round #{row['request_id']}", soft_wrap=True)
    c.print(f"state: {state_text(row)}", soft_wrap=True)
    c.print(f"created by {row['creator']}, times out {errors.when(row['timeout_date'])}", soft_wrap=True)
    for t in row["transfers"]:
        c.print(f"{t['kind'].lower()} transfer #{t['transfer_id']}: {t['amount']} to {t['to']}, {t['state']}",
                soft_wrap=True)
    if row["stake"]:
        c.print(f"claimant's stake: {row['stake']['verdict']} ({row['stake']['settlement'].lower()})")


@app.command()
def settle(ctx: typer.Context, bounty_id: int = typer.Argument(...)) -> None:
    """Drive a bounty towards its final state (anyone may): retry an escrow, payout or refund transfer whose
    answer was lost or refused (never executed twice), refund it once due, deliver its stake settlement.

    Example: prometheus bounty settle 3
    """
    opts = _opts(ctx)
    with user_errors(opts.as_json):
        from prometheus_sdk.clients.mcp_registry import RegistryError

        try:
            state = client(connection(opts), "mcp_registry").settle_bounty(bounty_id)
        except RegistryError as exc:
            if exc.kind == "BountyNotFound":
                fail(f"no bounty #{bounty_id}", "see `prometheus bounty list`")
            fail(f"bounty #{bounty_id} could not be settled: {errors.of(exc)}")
        emit({"bounty_id": bounty_id, **bounty_state(state)}, opts.as_json,
             lambda r: console().print(f"bounty #{r['bounty_id']}: {state_text(r)}"))
