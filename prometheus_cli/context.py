"""What every command needs from the global options: network, identity, canister ids, typed clients."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_cli.output import fail

IDS_FILE = Path(".prometheus/canister_ids.json")
CANISTERS = ("mcp_registry", "audit_hub", "ledger")
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Options:
    network: str | None = None
    identity: str | None = None
    as_json: bool = False


def canister_id(name: str, network: str) -> str:
    """From $PROMETHEUS_<NAME>_ID, else `.prometheus/canister_ids.json` under the network."""
    env = os.environ.get(f"PROMETHEUS_{name.upper()}_ID")
    if env:
        return env
    try:
        ids = json.loads(IDS_FILE.read_text()).get(network, {})
    except (OSError, ValueError):
        ids = {}
    if name not in ids:
        fail(f"no {name} canister id for network {network!r}",
             f"run `prometheus localnet deploy-protocol` or set PROMETHEUS_{name.upper()}_ID")
    return str(ids[name])


def connection(opts: Options) -> Any:
    """`local` means the running `prometheus localnet` (wherever its port is), unless PROMETHEUS_LOCAL_URL says."""
    from prometheus_sdk import Network, connect, identity, resolve

    network = resolve(opts.network)
    if network.name == "local" and not os.environ.get("PROMETHEUS_LOCAL_URL"):
        from prometheus_cli.localnet import _running, data_dir

        running = _running(data_dir(None))
        if running is not None:
            network = Network("local", str(running["url"]))
    return connect(network, identity.load(opts.identity))


def client(conn: Any, name: str) -> Any:
    from prometheus_sdk.canister import CanisterClient

    return CanisterClient.from_did(conn, canister_id(name, conn.network.name), ROOT / "candid" / f"{name}.did")
