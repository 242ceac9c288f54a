"""What every command needs from the global options: network, identity, canister ids, typed clients."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_cli.output import fail

CANISTERS = ("mcp_registry", "audit_hub", "ledger", "mcp_orchestrator")


@dataclass
class Options:
    network: str | None = None
    identity: str | None = None
    as_json: bool = False


def canister_id(name: str, network: str) -> str:
    """`$PROMETHEUS_<NAME>_ID`, else the nearest `.prometheus/canister_ids.json` (walking up), else the running
    localnet's record (see `prometheus_sdk.canister_ids`)."""
    from prometheus_sdk import canister_ids

    found = canister_ids.find(name, network)
    if found is None:
        fail(f"no {name} canister id for network {network!r}", canister_ids.missing_hint(name, network))
    return found.canister_id


def network_of(opts: Options) -> Any:
    """The network the options name; `local` is the running `prometheus localnet` wherever it listens."""
    from prometheus_sdk import resolve

    return resolve(opts.network)


def connection(opts: Options) -> Any:
    from prometheus_sdk import connect, identity

    return connect(network_of(opts), identity.load(opts.identity))


def client(conn: Any, name: str) -> Any:
    """The typed client (`prometheus_sdk.clients`) of protocol canister `name` on the connection's network."""
    from prometheus_sdk.clients.audit_hub import AuditHubClient
    from prometheus_sdk.clients.ledger import LedgerClient
    from prometheus_sdk.clients.mcp_orchestrator import OrchestratorClient
    from prometheus_sdk.clients.mcp_registry import RegistryClient

    kinds = {"mcp_registry": RegistryClient, "audit_hub": AuditHubClient, "ledger": LedgerClient,
             "mcp_orchestrator": OrchestratorClient}
    return kinds[name](conn, canister_id(name, conn.network.name))
