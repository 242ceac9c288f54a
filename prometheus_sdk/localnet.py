"""The running `prometheus localnet`'s own record, read the same way by the SDK, the CLI and the worker.

The localnet keeps its files in one data directory (`$PROMETHEUS_LOCALNET_DIR`, else
`$XDG_DATA_HOME/prometheus/localnet`): `localnet.json` (pid, port, url of a background replica) and
`canister_ids.json` (what `localnet deploy-protocol` / `deploy` installed on it). Reading them here lets
`--network local` mean "the running localnet, wherever it listens" for every client, without importing
the CLI or the replica.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

STATE_FILE = "localnet.json"
IDS_FILE = "canister_ids.json"


def data_dir(value: Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """An explicit directory, else `$PROMETHEUS_LOCALNET_DIR`, else `$XDG_DATA_HOME/prometheus/localnet`."""
    env = os.environ if env is None else env
    if value is not None:
        return value
    if env.get("PROMETHEUS_LOCALNET_DIR"):
        return Path(env["PROMETHEUS_LOCALNET_DIR"])
    base = Path(env.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "prometheus" / "localnet"


def running(d: Path | None = None, env: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The background replica recorded in the data directory, if its process is alive (pid, port, url)."""
    try:
        info: dict[str, Any] = json.loads((data_dir(d, env) / STATE_FILE).read_text())
        pid = int(info["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None if _exited(pid) else info


def _exited(pid: int) -> bool:
    """Whether `pid` has exited but was not reaped yet (a zombie still answers `kill(pid, 0)`; the background
    replica's parent is init, which may reap it seconds later). Linux only; elsewhere False."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()  # the process name in it is raw bytes, maybe not UTF-8
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:].startswith(b"Z")


def deployed_ids(d: Path | None = None, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Canister ids the localnet recorded for what was deployed on it (`{name: id}`), empty if none."""
    try:
        data = json.loads((data_dir(d, env) / IDS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def record_deployed(ids: Mapping[str, str], d: Path | None = None) -> None:
    """Add `{name: id}` to the localnet's record (kept until `localnet reset` deletes the state)."""
    folder = data_dir(d)
    folder.mkdir(parents=True, exist_ok=True)
    merged = {**deployed_ids(folder), **ids}
    (folder / IDS_FILE).write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")


def forget_deployed(d: Path | None = None) -> None:
    """After `localnet reset`: the canisters are gone, so are their ids and governance."""
    (data_dir(d) / IDS_FILE).unlink(missing_ok=True)
    (data_dir(d) / GOVERNANCE_FILE).unlink(missing_ok=True)


GOVERNANCE_FILE = "governance.json"


def record_governance(principal: str, identity_name: str | None = None, pem: str | None = None,
                      d: Path | None = None) -> None:
    """Who deployed the protocol on this localnet (its governance, holder of the ledger's initial supply), as
    an identity name or a PEM path: `localnet fund` and `localnet stake` sign as it."""
    folder = data_dir(d)
    folder.mkdir(parents=True, exist_ok=True)
    record = {"principal": principal, **({"identity": identity_name} if identity_name else {}),
              **({"pem": pem} if pem else {})}
    (folder / GOVERNANCE_FILE).write_text(json.dumps(record) + "\n")


def governance(d: Path | None = None) -> dict[str, str] | None:
    try:
        data = json.loads((data_dir(d) / GOVERNANCE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else None
