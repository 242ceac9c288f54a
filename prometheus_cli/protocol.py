"""Deploy the protocol canisters (ledger, audit_hub, mcp_registry, mcp_orchestrator) wired to each other, and
record their ids.

On a local network the canisters are created with provisional cycles; the deploying identity becomes
governance and holds the ledger's initial supply (the ledger itself is the minting account, so no one can
mint more). Ids are recorded in `.prometheus/canister_ids.json` under the network name, so the CLI and the
worker find them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_cli.deploy import ensure_canister, install, record_ids, recorded_ids
from prometheus_cli.output import UserError

PROTOCOL = ("ledger", "audit_hub", "mcp_registry", "mcp_orchestrator")
INITIAL_SUPPLY = 1_000_000_000_000
LEDGER_FEE = 10_000


def deploy_protocol(conn: Any, ids_file: Path, network: str = "local", src: Path | None = None,
                    localnet_dir: Path | None = None) -> dict[str, Any]:
    """Deploy (or upgrade in place) the four canisters. With `localnet_dir`, the localnet's own record is
    both where existing canisters are looked up (so a second run from another folder upgrades the running
    protocol instead of deploying another) and where the ids are recorded."""
    from prometheus_build import assets
    from prometheus_build.recipe import build_all
    from prometheus_sdk.clients import audit_hub, ledger, mcp_orchestrator, mcp_registry
    from prometheus_sdk.principal import Principal

    src = src or assets.canister_src_dir()  # the packaged sources: a wheel's, or the checkout's canister_src/
    cache = assets.build_cache_dir()  # per user, by source digest: never site-packages or the current folder
    built = {r.name: r for r in build_all(src, cache / "protocol", cache)}
    me = Principal.from_text(conn.principal)
    known = recorded_ids(ids_file, network)
    if localnet_dir is not None:
        from prometheus_sdk.localnet import deployed_ids

        known = {**known, **{k: v for k, v in deployed_ids(localnet_dir).items() if k in PROTOCOL}}
    ids: dict[str, str] = {}
    installed: dict[str, bytes | None] = {}
    for name in PROTOCOL:  # every id first: each canister's init names the others
        ids[name], installed[name] = ensure_canister(conn, known.get(name))
    account: ledger.Account = {"owner": me, "subaccount": []}
    init = {
        "ledger": ledger.encode_init({
            "name": "Prometheus Test USD", "symbol": "PUSD", "decimals": 6, "fee": LEDGER_FEE,
            "minting_account": {"owner": Principal.from_text(ids["ledger"]), "subaccount": []},
            "initial_balances": [(account, INITIAL_SUPPLY)]}),
        "audit_hub": audit_hub.encode_init({"governance": me, "registry": [Principal.from_text(ids["mcp_registry"])]}),
        "mcp_registry": mcp_registry.encode_init({"governance": me, "audit_hub": Principal.from_text(ids["audit_hub"]),
                                                  "ledgers": [Principal.from_text(ids["ledger"])]}),
        "mcp_orchestrator": mcp_orchestrator.encode_init({"governance": me,
                                                          "registry": Principal.from_text(ids["mcp_registry"])}),
    }
    actions: dict[str, str] = {}
    for name in PROTOCOL:
        try:
            actions[name] = install(conn, ids[name], built[name].wasm.read_bytes(), init[name], installed[name], name)
        except UserError as exc:
            done = [f"{n} {a}" for n, a in actions.items() if a != "unchanged"]
            if done:  # say what already changed: the protocol now runs partly new code
                exc.hint = f"already done: {', '.join(done)}; " + (exc.hint or "")
            raise
    record_ids(ids_file, network, ids)
    if localnet_dir is not None:
        from prometheus_sdk.localnet import record_deployed

        record_deployed(ids, localnet_dir)
    return {"network": network, "governance": str(me),
            "canisters": {n: {"id": ids[n], "action": actions[n], "sha256": built[n].sha256} for n in PROTOCOL}}
