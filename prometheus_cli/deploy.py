"""Install canisters onto a network and record their ids: the steps `localnet deploy` and
`localnet deploy-protocol` share (status, create, install or upgrade, record)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from prometheus_cli.output import fail


def canister_status(conn: Any, canister_id: str) -> Any:
    """The management canister's status of a canister we control, or None if it is gone."""
    from prometheus_sdk.clients.management import ManagementCanister
    from prometheus_sdk.errors import CallRejectedError
    from prometheus_sdk.principal import Principal

    try:
        return ManagementCanister(conn).canister_status({"canister_id": Principal.from_text(canister_id)})
    except CallRejectedError:
        return None


def create_canister(conn: Any) -> str:
    from prometheus_sdk.clients.management import ManagementCanister

    created = ManagementCanister(conn).provisional_create_canister_with_cycles(
        {"amount": [], "settings": [], "specified_id": [], "sender_canister_version": []})
    return str(created["canister_id"])


def ensure_canister(conn: Any, recorded_id: str | None) -> tuple[str, bytes | None]:
    """The recorded canister if it still exists (with its module hash), else a new one."""
    status = canister_status(conn, recorded_id) if recorded_id else None
    if status is None or recorded_id is None:
        return create_canister(conn), None
    return recorded_id, status["module_hash"][0] if status["module_hash"] else None


def install(conn: Any, canister_id: str, wasm: bytes, arg: bytes, installed_hash: bytes | None,
            name: str | None = None) -> str:
    """Install, upgrade (keeping the heap) or leave alone; returns what it did."""
    from prometheus_sdk.clients.management import CanisterInstallMode, ManagementCanister
    from prometheus_sdk.principal import Principal

    if installed_hash == hashlib.sha256(wasm).digest():
        return "unchanged"
    from prometheus_sdk.errors import CallRejectedError

    mode: CanisterInstallMode = {"install": None}
    if installed_hash:
        mode = {"upgrade": [{"skip_pre_upgrade": [], "wasm_memory_persistence": [{"keep": None}]}]}
    try:
        ManagementCanister(conn).install_code({"mode": mode, "canister_id": Principal.from_text(canister_id),
                                               "wasm_module": wasm, "arg": arg, "sender_canister_version": []})
    except CallRejectedError as exc:
        if installed_hash and "Memory-incompatible program upgrade" in str(exc):
            fail(f"{name or 'canister'} ({canister_id}) cannot be upgraded in place: the new code keeps its state in "
                 "a shape the running code's state cannot be read as (that canister is unchanged)",
                 "on a localnet, `prometheus localnet reset` starts over (its canisters' state is lost); "
                 "or deploy to another localnet (`--data-dir`)")
        raise
    return "upgraded" if installed_hash else "installed"


def record_ids(ids_file: Path, network: str, ids: dict[str, str]) -> None:
    recorded = json.loads(ids_file.read_text()) if ids_file.is_file() else {}
    recorded.setdefault(network, {}).update(ids)
    ids_file.parent.mkdir(parents=True, exist_ok=True)
    ids_file.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")


def recorded_ids(ids_file: Path, network: str) -> dict[str, str]:
    try:
        return dict(json.loads(ids_file.read_text()).get(network, {}))
    except (OSError, ValueError):
        return {}


def deploy_all(url: str, src: Path, names: list[str] | None, args: dict[str, bytes], ids_file: Path,
               identity_name: str | None) -> list[dict[str, Any]]:
    from prometheus_build import assets
    from prometheus_build.recipe import BuildError, build_all, discover_canisters
    from prometheus_sdk import Network, candid, connect
    from prometheus_sdk import identity as identities

    if not src.is_dir():
        fail(f"source folder {src} does not exist", "pass --src with a folder of <name>/main.mo canisters")
    available = discover_canisters(src)
    unknown = [n for n in names or [] if n not in available]
    if unknown:
        fail(f"no canister named {', '.join(unknown)} under {src}", f"available: {', '.join(sorted(available))}")
    wanted = names or sorted(available)
    try:  # only what is deployed is built; the cache is per user, by source digest, as `deploy-protocol`'s
        built = {r.name: r for r in build_all(src, Path("build") / "canisters", assets.build_cache_dir(),
                                              names=wanted)}
    except BuildError as exc:
        fail(str(exc))
    conn = connect(Network("local", url), identities.load(identity_name))
    known = recorded_ids(ids_file, "local")
    results = []
    for name in wanted:
        canister_id, installed = ensure_canister(conn, known.get(name))
        action = install(conn, canister_id, built[name].wasm.read_bytes(), args.get(name, candid.encode([], [])),
                         installed, name)
        record_ids(ids_file, "local", {name: canister_id})
        results.append({"name": name, "canister_id": canister_id, "action": action, "sha256": built[name].sha256,
                        "controller": conn.principal})
    return results
