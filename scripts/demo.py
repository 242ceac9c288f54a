"""The Prometheus lifecycle on the embedded local IC, end to end over the IC HTTP interface.

An embedded replica serves the IC HTTP interface on loopback; every step below is a signed request from
the SDK whose certificate is verified. A developer submits the sample app in `examples/hello_mcp`, a
sponsor funds a bounty, a verifier reserves it with stake, rebuilds the source with the reproducible
recipe, compares hashes and attests; the registry finalizes, pays the verifier and the developer publishes
version 1.0.0. Run with `make demo`. (The CLI and the sandboxed verifier worker will replace the direct SDK
calls here as they land.)
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from icp_identity.identity import Identity  # type: ignore[import-not-found]  # noqa: E402

from ic_replica.http_server import IcHttpServer  # noqa: E402
from ic_replica.principal import Principal  # noqa: E402
from ic_replica.replica import Replica  # noqa: E402
from prometheus_build.recipe import build_canister  # noqa: E402
from prometheus_cli.protocol import LEDGER_FEE, deploy_protocol  # noqa: E402
from prometheus_sdk import Network, connect  # noqa: E402
from prometheus_sdk.canister import CanisterClient  # noqa: E402
from prometheus_sdk.icrc16 import to_icrc16, to_map  # noqa: E402

AUDIT = "build_reproducibility_v1"
REWARD = 5_000_000  # 5 PUSD (6 decimals)
NAMESPACE = "io.prometheus.hello-mcp"
COMMIT = "1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c"


def step(n: int, text: str) -> None:
    print(f"{n}. {text}")


def say(text: str) -> None:
    print(f"   {text}")


def ok(result: Any, what: str) -> Any:
    if isinstance(result, dict) and ("err" in result or "Err" in result):
        raise SystemExit(f"demo failed at {what}: {result}")
    return result


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="prometheus-demo-"))
    try:
        return run(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path) -> int:
    started = time.perf_counter()
    step(1, "Start the embedded local IC (IC HTTP interface on loopback)")
    replica = Replica(work / "state")
    server = IcHttpServer(replica).start()
    try:
        say(f"{server.url}, root key sha256 {hashlib.sha256(replica.root_key_der).hexdigest()[:16]}…")
        governance, developer, verifier = Identity(), Identity(), Identity(type="secp256k1")
        network = Network("local", server.url)
        gov, dev, ver = (connect(network, i) for i in (governance, developer, verifier))

        step(2, "Deploy ledger, audit_hub and mcp_registry, wired to each other")
        deployed = deploy_protocol(gov, work / "canister_ids.json")
        ids = {name: row["id"] for name, row in deployed["canisters"].items()}
        for name, row in deployed["canisters"].items():
            say(f"{name:13} {row['id']}  sha256 {row['sha256'][:16]}…")

        def client(conn: Any, name: str) -> CanisterClient:
            return CanisterClient.from_did(conn, ids[name], ROOT / "candid" / f"{name}.did")

        step(3, "Developer builds the sample app with the reproducible recipe and submits it")
        app = build_canister("hello_mcp", ROOT / "examples", "hello_mcp/main.mo", work / "dev-build", work / "cache")
        wasm = app.wasm.read_bytes()
        registry_dev = client(dev, "mcp_registry")
        ok(registry_dev.icrc118_create_canister_type({"namespace": NAMESPACE, "description": "Hello MCP"}),
           "create namespace")
        chunks = [wasm[i : i + 100_000] for i in range(0, len(wasm), 100_000)]
        for index, chunk in enumerate(chunks):
            ok(registry_dev.icrc118_upload_wasm_chunk({
                "namespace": NAMESPACE, "wasm_hash": bytes.fromhex(app.sha256), "total_chunks": len(chunks),
                "chunk_index": index, "chunk": chunk, "chunk_hash": hashlib.sha256(chunk).digest()}), "upload")
        request = ok(registry_dev.icrc126_verification_request({
            "wasm_hash": bytes.fromhex(app.sha256), "repo": "https://example.com/hello-mcp.git",
            "commit_hash": COMMIT, "metadata": to_map({"canister_name": "hello_mcp"})}), "verification request")
        say(f"wasm {app.sha256} ({len(wasm)} bytes, {len(chunks)} chunks), request #{request['ok']}")

        step(4, "Sponsor funds a bounty (ICRC-2 approve, then the registry escrows reward + fee)")
        ledger_gov = client(gov, "ledger")
        registry_account = {"owner": Principal.from_text(ids["mcp_registry"]), "subaccount": []}
        ok(ledger_gov.icrc2_approve({"from_subaccount": [], "spender": registry_account,
                                     "amount": REWARD + 2 * LEDGER_FEE, "expected_allowance": [], "expires_at": [],
                                     "fee": [], "memo": [], "created_at_time": []}), "approve")
        registry_gov = client(gov, "mcp_registry")
        bounty = ok(registry_gov.icrc127_create_bounty({
            "challenge_parameters": to_icrc16({"wasm_hash": bytes.fromhex(app.sha256), "audit_type": AUDIT}),
            "bounty_metadata": to_map({"icrc127:reward_canister": Principal.from_text(ids["ledger"]),
                                       "icrc127:reward_amount": REWARD}),
            "timeout_date": replica.get_time() + 7 * 24 * 3600 * 10**9}), "create bounty")["ok"]
        say(f"bounty #{bounty}: {REWARD / 1e6:.2f} PUSD for {AUDIT}")

        step(5, "Verifier gets reputation stake, finds the job, reserves the bounty")
        verifier_principal = Principal.from_text(ver.principal)
        ok(client(gov, "audit_hub").mint_tokens(verifier_principal, AUDIT, 1_000), "mint stake")
        pending = client(ver, "mcp_registry").list_pending_verifications({"after": [], "limit": 10})
        say(f"pending verifications: {[p['wasm_id'][:16] + '…' for p in pending]}")
        lock = ok(client(ver, "audit_hub").reserve_bounty(bounty, AUDIT), "reserve")["ok"]
        hours = (lock["expires_at"] - lock["reserved_at"]) / 3.6e12
        say(f"lock on bounty #{bounty} for {lock['stake']} stake for {hours:.0f} h")

        step(6, "Verifier rebuilds the source with the same recipe and compares sha256")
        rebuilt = build_canister("hello_mcp", ROOT / "examples", "hello_mcp/main.mo", work / "verifier-build",
                                 work / "verifier-cache")
        say(f"rebuilt {rebuilt.sha256} — {'matches' if rebuilt.sha256 == app.sha256 else 'DIFFERS'}")
        registry_ver = client(ver, "mcp_registry")
        metadata = to_map({"bounty_id": bounty, "126:audit_type": AUDIT, "126hash": rebuilt.sha256,
                           "toolchain": "motoko@4.10.0 ic-wasm@0.11.1"})
        if rebuilt.sha256 == app.sha256:
            ok(registry_ver.icrc126_file_attestation({"wasm_id": app.sha256, "metadata": metadata}), "attest")
        else:
            ok(registry_ver.icrc126_file_divergence({"wasm_id": app.sha256, "divergence_report": "hash mismatch",
                                                     "metadata": metadata}), "divergence")

        step(7, "The registry finalizes and settles")
        (status,) = registry_dev.get_wasm_status(app.sha256)
        say(f"outcome {list(status['outcome'][0])[0] if status['outcome'] else 'pending'}, "
            f"bounty state {list(status['bounties'][0]['state'])[0]}")
        balance = client(ver, "ledger").icrc1_balance_of({"owner": verifier_principal, "subaccount": []})
        profile = client(ver, "audit_hub").get_auditor_profile(verifier_principal)
        say(f"verifier paid {balance / 1e6:.2f} PUSD, reputation {profile['reputation']}, stake back "
            f"{dict(profile['available'])[AUDIT]}")

        step(8, "Developer publishes the verified wasm as version 1.0.0")
        ok(registry_dev.icrc118_update_wasm({"namespace": NAMESPACE, "version": (1, 0, 0),
                                             "wasm_hash": bytes.fromhex(app.sha256)}), "publish")
        versions = registry_dev.icrc118_get_wasms(NAMESPACE)
        say(f"{NAMESPACE} versions: {['.'.join(map(str, v['version'])) for v in versions]}")
        blocks = registry_dev.icrc3_get_blocks([{"start": 0, "length": 100}])
        say("ICRC-3 log: " + ", ".join(dict(b["block"]["Map"])["btype"]["Text"] for b in blocks["blocks"]))
    finally:
        server.stop()
        replica.close()
    print(f"Done in {time.perf_counter() - started:.1f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
