"""Build and install canisters onto a network, recording their ids (used by `localnet deploy`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from prometheus_cli.output import fail


def deploy_all(url: str, src: Path, names: list[str] | None, args: dict[str, bytes], ids_file: Path,
               identity_name: str | None) -> list[dict[str, Any]]:
    from ic_replica import candid, management
    from ic_replica.principal import Principal
    from prometheus_build.recipe import BuildError, build_all
    from prometheus_sdk import Network, connect
    from prometheus_sdk import identity as identities
    from prometheus_sdk.errors import CallRejectedError

    if not src.is_dir():
        fail(f"source folder {src} does not exist", "pass --src with a folder of <name>/main.mo canisters")
    try:
        built = {r.name: r for r in build_all(src, Path("build") / "canisters", Path("build") / "cache")}
    except BuildError as exc:
        fail(str(exc))
    wanted = names or sorted(built)
    unknown = [n for n in wanted if n not in built]
    if unknown:
        fail(f"no canister named {', '.join(unknown)} under {src}", f"available: {', '.join(sorted(built))}")
    conn = connect(Network("local", url), identities.load(identity_name))
    me = Principal.from_text(conn.principal)
    recorded = json.loads(ids_file.read_text()) if ids_file.is_file() else {}
    local_ids: dict[str, str] = recorded.setdefault("local", {})
    results = []
    for name in wanted:
        wasm = built[name].wasm.read_bytes()
        install_arg = args.get(name, candid.encode([], []))
        cid_text = local_ids.get(name)
        action = "installed"
        status = None
        if cid_text:
            try:
                reply = conn.call("aaaaa-aa", "canister_status", candid.encode(
                    [management.CANISTER_ID_ARGS], [{"canister_id": Principal.from_text(cid_text)}]),
                    effective_canister_id=cid_text)
                status = candid.decode(reply, [management.CANISTER_STATUS_RESULT])[0]
            except CallRejectedError:
                cid_text = None  # gone (e.g. after `localnet reset`): create it again
        if cid_text is None:
            reply = conn.call("aaaaa-aa", "provisional_create_canister_with_cycles", candid.encode(
                [management.PROVISIONAL_CREATE_ARGS], [{"amount": [], "settings": [], "specified_id": []}]))
            cid_text = str(candid.decode(reply, [management.CREATE_RESULT])[0]["canister_id"])
            mode = management.install_mode("install")
        elif status and status["module_hash"] == [hashlib.sha256(wasm).digest()]:
            results.append({"name": name, "canister_id": cid_text, "action": "unchanged", "sha256": built[name].sha256})
            local_ids[name] = cid_text
            continue
        elif status and status["module_hash"]:
            mode, action = management.install_mode("upgrade", None, "keep"), "upgraded"
        else:
            mode = management.install_mode("install")
        conn.call("aaaaa-aa", "install_code", candid.encode([management.INSTALL_CODE_ARGS], [{
            "mode": mode, "canister_id": Principal.from_text(cid_text), "wasm_module": wasm, "arg": install_arg,
            "sender_canister_version": []}]), effective_canister_id=cid_text)
        local_ids[name] = cid_text
        results.append({"name": name, "canister_id": cid_text, "action": action, "sha256": built[name].sha256,
                        "controller": str(me)})
        ids_file.parent.mkdir(parents=True, exist_ok=True)
        ids_file.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")
    return results
