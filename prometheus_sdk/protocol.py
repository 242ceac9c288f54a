"""The protocol's three canisters as typed clients, found by name the way every Prometheus tool finds them
(`$PROMETHEUS_<NAME>_ID`, the nearest `.prometheus/canister_ids.json`, the running localnet's record)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_sdk import canister_ids
from prometheus_sdk.client import Caller
from prometheus_sdk.clients.audit_hub import AuditHubClient
from prometheus_sdk.clients.ledger import LedgerClient
from prometheus_sdk.clients.mcp_registry import RegistryClient
from prometheus_sdk.errors import ConfigError


def canister_id(name: str, network: str) -> str:
    """The id of the protocol canister `name` on `network`, or a ConfigError saying where to record it."""
    found = canister_ids.find(name, network)
    if found is None:
        raise ConfigError(f"no {name} canister id for network {network!r}: {canister_ids.missing_hint(name, network)}")
    return found.canister_id


@dataclass(frozen=True)
class Protocol:
    """Typed clients of the ledger, the audit hub and the registry, sharing one caller."""

    ledger: LedgerClient
    audit_hub: AuditHubClient
    registry: RegistryClient

    @classmethod
    def find(cls, caller: Caller, network: str = "local") -> Protocol:
        return cls(LedgerClient(caller, canister_id("ledger", network)),
                   AuditHubClient(caller, canister_id("audit_hub", network)),
                   RegistryClient(caller, canister_id("mcp_registry", network)))
