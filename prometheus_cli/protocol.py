"""Deploy the protocol canisters (ledger, audit_hub, mcp_registry) wired to each other, and record their ids.

On a local network the canisters are created with provisional cycles; the deploying identity becomes
governance and holds the ledger's initial supply (the ledger itself is the minting account, so no one can
mint more). Ids are recorded in
`.prometheus/canister_ids.json` under the network name, so the CLI and the worker find them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

PROTOCOL = ("ledger", "audit_hub", "mcp_registry")
ROOT = Path(__file__).resolve().parent.parent
INITIAL_SUPPLY = 1_000_000_000_000
LEDGER_FEE = 10_000


def deploy_protocol(conn: Any, ids_file: Path, network: str = "local", src: Path | None = None) -> dict[str, Any]:
    from ic_replica import candid, management
    from ic_replica.principal import Principal
    from prometheus_build.recipe import build_all
    from prometheus_sdk import did

    src = src or ROOT / "canister_src"
    built = {r.name: r for r in build_all(src, ROOT / "build" / "canisters", ROOT / "build" / "cache")}
    me = Principal.from_text(conn.principal)
    recorded = json.loads(ids_file.read_text()) if ids_file.is_file() else {}
    ids: dict[str, str] = recorded.setdefault(network, {})
    hashes: dict[str, bytes | None] = {}
    for name in PROTOCOL:
        recorded_id = ids.get(name)
        status = _status(conn, recorded_id) if recorded_id else None
        if status is None:
            reply = conn.call("aaaaa-aa", "provisional_create_canister_with_cycles", candid.encode(
                [management.PROVISIONAL_CREATE_ARGS], [{"amount": [], "settings": [], "specified_id": []}]))
            ids[name] = str(candid.decode(reply, [management.CREATE_RESULT])[0]["canister_id"])
            hashes[name] = None
        else:
            hashes[name] = status["module_hash"][0] if status["module_hash"] else None
    account = {"owner": me, "subaccount": []}
    init = {
        "ledger": {"name": "Prometheus Test USD", "symbol": "PUSD", "decimals": 6, "fee": LEDGER_FEE,
                   "minting_account": {"owner": Principal.from_text(ids["ledger"]), "subaccount": []},
                   "initial_balances": [(account, INITIAL_SUPPLY)]},
        "audit_hub": {"governance": me, "registry": [Principal.from_text(ids["mcp_registry"])]},
        "mcp_registry": {"governance": me, "audit_hub": Principal.from_text(ids["audit_hub"]),
                         "ledgers": [Principal.from_text(ids["ledger"])]},
    }
    actions = {}
    for name in PROTOCOL:
        wasm = built[name].wasm.read_bytes()
        if hashes[name] == hashlib.sha256(wasm).digest():
            actions[name] = "unchanged"
            continue
        arg = did.load(built[name].did).encode_init(init[name])
        mode = management.install_mode("upgrade", None, "keep") if hashes[name] else management.install_mode("install")
        conn.call("aaaaa-aa", "install_code", candid.encode([management.INSTALL_CODE_ARGS], [{
            "mode": mode, "canister_id": Principal.from_text(ids[name]), "wasm_module": wasm, "arg": arg,
            "sender_canister_version": []}]), effective_canister_id=ids[name])
        actions[name] = "upgraded" if hashes[name] else "installed"
    ids_file.parent.mkdir(parents=True, exist_ok=True)
    ids_file.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")
    return {"network": network, "governance": str(me),
            "canisters": {n: {"id": ids[n], "action": actions[n], "sha256": built[n].sha256} for n in PROTOCOL}}


def _status(conn: Any, canister_id: str) -> dict[str, Any] | None:
    from ic_replica import candid, management
    from ic_replica.principal import Principal
    from prometheus_sdk.errors import CallRejectedError

    try:
        reply = conn.call("aaaaa-aa", "canister_status", candid.encode(
            [management.CANISTER_ID_ARGS], [{"canister_id": Principal.from_text(canister_id)}]),
            effective_canister_id=canister_id)
    except CallRejectedError:
        return None
    return candid.decode(reply, [management.CANISTER_STATUS_RESULT])[0]  # type: ignore[no-any-return]
