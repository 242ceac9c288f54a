"""Where a client finds the protocol's canister ids — one rule for the CLI and the worker.

In order: `$PROMETHEUS_<NAME>_ID` (wins), the nearest `.prometheus/canister_ids.json` walking up from the
current directory (per network), then — on the `local` network — the running localnet's own record of
what it deployed. So a developer's app folder anywhere on the machine finds the protocol the localnet runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from prometheus_sdk import localnet

IDS_FILE = Path(".prometheus") / "canister_ids.json"


@dataclass(frozen=True)
class Found:
    canister_id: str
    source: str  # where it came from: the env variable, the file's path, or "localnet"


def env_name(name: str) -> str:
    return f"PROMETHEUS_{name.upper()}_ID"


def nearest_file(start: Path | None = None) -> Path | None:
    """The nearest `.prometheus/canister_ids.json` in `start` (default: cwd) or one of its parents."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / IDS_FILE
        if candidate.is_file():
            return candidate
    return None


def _from_file(path: Path, network: str) -> dict[str, str]:
    try:
        ids = json.loads(path.read_text()).get(network, {})
    except (OSError, ValueError, AttributeError):
        return {}
    return {str(k): str(v) for k, v in ids.items()} if isinstance(ids, dict) else {}


def find(name: str, network: str, start: Path | None = None, env: Mapping[str, str] | None = None) -> Found | None:
    """The id of canister `name` (e.g. `mcp_registry`) on `network` (`local`, `ic` or a URL), or None."""
    env = os.environ if env is None else env
    if env.get(env_name(name)):
        return Found(env[env_name(name)], env_name(name))
    path = nearest_file(start)
    if path is not None:
        ids = _from_file(path, network)
        if name in ids:
            return Found(ids[name], str(path))
    if network == "local":
        recorded = localnet.deployed_ids(env=env)
        if name in recorded and localnet.running(env=env) is not None:
            return Found(recorded[name], "localnet")
    return None


def missing_hint(name: str, network: str, env: Mapping[str, str] | None = None) -> str:
    """What to do when `find` found nothing — never "deploy" when a protocol already runs on the localnet."""
    env = os.environ if env is None else env
    if network != "local":
        if localnet.running(env=env) is not None and localnet.deployed_ids(env=env):
            return (f"a local protocol is running: use --network local, or set {env_name(name)} / add the id to "
                    f".prometheus/canister_ids.json under {network!r}")
        return f"set {env_name(name)}, or add it to .prometheus/canister_ids.json under {network!r}"
    if localnet.running(env=env) is None:
        return ("no localnet is running: start one with `prometheus localnet start --background`, then "
                "`prometheus localnet deploy-protocol`")
    if localnet.deployed_ids(env=env):
        return f"the running localnet has no {name}: set {env_name(name)}"
    return f"run `prometheus localnet deploy-protocol` or set {env_name(name)}"
