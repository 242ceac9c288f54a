"""`prometheus localnet fund | stake`: tokens and verifier stake on a local network, signed by the identity
that deployed the protocol there (its governance holds the ledger's initial supply and may mint stake).

Refused on any other network: on mainnet a sponsor buys the ledger's token and a verifier gets stake from
the audit hub's governance (docs/cli.md, "Funds and stake").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from prometheus_cli.accounts import account, principal_of
from prometheus_cli.context import Options, canister_id
from prometheus_cli.output import console, emit, fail

AUDIT = "build_reproducibility_v1"


def _local_only(opts: Options, what: str) -> Any:
    from prometheus_sdk import resolve

    network = resolve(opts.network)
    if network.name != "local" or not network.is_local:
        fail(f"`localnet {what}` works only on the local network, not {network.name!r}",
             "on mainnet a sponsor buys the ledger's token and a verifier gets stake from the audit hub's "
             "governance; see docs/cli.md (Funds and stake)")
    return network


def governance_connection(opts: Options, data: Path | None, what: str) -> Any:
    """A connection to the running localnet signed by the identity that deployed its protocol."""
    from prometheus_sdk import connect, identity, localnet

    network = _local_only(opts, what)
    if localnet.running(data) is None:
        fail("no local replica is running", "start one with `prometheus localnet start --background`")
    record = localnet.governance(data)
    if record is None:
        fail("the running localnet has no protocol deployed by `prometheus localnet deploy-protocol`",
             "run `prometheus localnet deploy-protocol` (the deploying identity becomes governance)")
    signer = identity.from_pem_file(Path(record["pem"])) if "pem" in record else identity.load(record["identity"])
    conn = connect(network, signer)
    if conn.principal != record["principal"]:
        fail(f"the governance identity now has principal {conn.principal}, not {record['principal']}",
             "its key changed since deploy-protocol; redeploy with `prometheus localnet reset` and deploy-protocol")
    return conn


def fund(ctx: typer.Context, target: str, amount: int, data: Path | None) -> None:
    from prometheus_cli import errors
    from prometheus_sdk.clients.ledger import LedgerClient, LedgerError

    opts = ctx.obj if isinstance(ctx.obj, Options) else Options()
    if amount <= 0:
        fail(f"invalid amount {amount}", "a positive number of the ledger's base units")
    conn = governance_connection(opts, data, "fund")
    who = principal_of(target)
    ledger = LedgerClient(conn, canister_id("ledger", "local"))
    try:
        block = ledger.icrc1_transfer({"from_subaccount": [], "to": account(who), "amount": amount, "fee": [],
                                       "memo": [], "created_at_time": []})
    except LedgerError as exc:
        fail(f"the ledger refused the transfer: {errors.of(exc)}")
    balance = int(ledger.icrc1_balance_of(account(who)))
    emit({"to": str(who), "amount": amount, "block": block, "balance": balance,
          "ledger": ledger.canister_id}, opts.as_json,
         lambda r: console().print(f"funded {r['to']} with {r['amount']} (balance {r['balance']}, block {r['block']})"))


def stake(ctx: typer.Context, target: str, amount: int, audit_type: str, data: Path | None) -> None:
    from prometheus_cli import errors
    from prometheus_sdk.clients.audit_hub import AuditHubClient, AuditHubError

    opts = ctx.obj if isinstance(ctx.obj, Options) else Options()
    if amount <= 0:
        fail(f"invalid amount {amount}", "a positive amount of stake")
    conn = governance_connection(opts, data, "stake")
    who = principal_of(target)
    hub = AuditHubClient(conn, canister_id("audit_hub", "local"))
    try:
        hub.mint_tokens(who, audit_type, amount)
    except AuditHubError as exc:
        fail(f"the audit hub refused the stake: {errors.of(exc)}")
    profile = hub.get_auditor_profile(who)
    available = dict(profile["available"]).get(audit_type, 0)
    emit({"verifier": str(who), "audit_type": audit_type, "amount": amount, "available": int(available),
          "audit_hub": hub.canister_id, "stake_per_reservation": int(hub.get_policy()["stake_per_reservation"])},
         opts.as_json, lambda r: console().print(
             f"staked {r['amount']} for {r['verifier']} ({r['audit_type']}): {r['available']} available, "
             f"{r['stake_per_reservation']} locked per reservation"))
