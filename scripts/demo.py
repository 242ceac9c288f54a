"""The Prometheus lifecycle on the embedded local IC, end to end over the IC HTTP interface.

An embedded replica serves the IC HTTP interface on loopback; every step below is a signed request from
the SDK whose certificate is verified. A developer commits the sample app in `examples/hello_mcp` to a git
repository (served on loopback), builds it and submits wasm + repo + commit; a sponsor funds a bounty; the
verifier worker (`verifier_bot`) finds the job, reserves it with stake, fetches the exact commit, rebuilds it
in the locked-down builder image on Docker (a private dockerd unless $DOCKER_HOST is set), compares sha256
and attests; the registry finalizes, pays the verifier and the developer publishes version 1.0.0.
Run with `make demo`.
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
from testkit.git_server import make_repo, serve  # noqa: E402 - the loopback git server the tests use
from verifier_bot.config import Config  # noqa: E402
from verifier_bot.dockerd import PrivateDockerd  # noqa: E402
from verifier_bot.image import ensure_image  # noqa: E402
from verifier_bot.journal import Journal  # noqa: E402
from verifier_bot.logs import JsonLog  # noqa: E402
from verifier_bot.worker import Worker  # noqa: E402

AUDIT = "build_reproducibility_v1"
REWARD = 5_000_000  # 5 PUSD (6 decimals)
NAMESPACE = "io.prometheus.hello-mcp"


def step(n: int, text: str) -> None:
    print(f"{n}. {text}")


def say(text: str) -> None:
    print(f"   {text}")


def ok(result: Any, what: str) -> Any:
    if isinstance(result, dict) and ("err" in result or "Err" in result):
        raise SystemExit(f"demo failed at {what}: {result}")
    return result


def main() -> int:
    import contextlib
    import os

    import docker

    work = Path(tempfile.mkdtemp(prefix="prometheus-demo-"))
    daemon = None
    try:
        host = os.environ.get("DOCKER_HOST")
        if not host:
            daemon = PrivateDockerd(work / "dockerd").start()
            host = daemon.host
        with serve(work / "git") as git_url, contextlib.closing(docker.DockerClient(base_url=host)) as client:
            return run(work, git_url, client)
    finally:
        if daemon is not None:
            daemon.stop()
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path, git_url: str, docker_client: Any) -> int:
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

        step(3, "Developer commits the sample app, builds it with the reproducible recipe and submits it")
        source = (ROOT / "examples" / "hello_mcp" / "main.mo").read_text()
        commit = make_repo(work / "git", "hello-mcp", {"src/main.mo": source})
        repo = f"{git_url}/hello-mcp.git"
        app = build_canister("hello_mcp", work / "git" / "hello-mcp-work", "src/main.mo", work / "dev-build",
                             work / "cache")
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
            "wasm_hash": bytes.fromhex(app.sha256), "repo": repo, "commit_hash": commit,
            "metadata": to_map({"canister_name": "hello_mcp"}), "namespace": [NAMESPACE]}), "verification request")
        say(f"{repo} @ {commit[:12]}…")
        say(f"wasm {app.sha256} ({len(wasm)} bytes, {len(chunks)} chunks), request #{request['ok']}")

        step(4, "Sponsor funds a bounty (ICRC-2 approve, then the registry escrows reward + fee)")
        ledger_gov = client(gov, "ledger")
        registry_account = {"owner": Principal.from_text(ids["mcp_registry"]), "subaccount": []}
        ok(ledger_gov.icrc2_approve({"from_subaccount": [], "spender": registry_account,
                                     "amount": REWARD + 2 * LEDGER_FEE, "expected_allowance": [], "expires_at": [],
                                     "fee": [], "memo": [], "created_at_time": []}), "approve")
        registry_gov = client(gov, "mcp_registry")
        bounty = ok(registry_gov.icrc127_create_bounty({
            "challenge_parameters": to_icrc16({"wasm_hash": bytes.fromhex(app.sha256), "audit_type": AUDIT,
                                               "namespace": NAMESPACE}),
            "bounty_metadata": to_map({"icrc127:reward_canister": Principal.from_text(ids["ledger"]),
                                       "icrc127:reward_amount": REWARD}),
            "timeout_date": replica.get_time() + 7 * 24 * 3600 * 10**9}), "create bounty")["ok"]
        say(f"bounty #{bounty}: {REWARD / 1e6:.2f} PUSD for {AUDIT}")

        step(5, "Verifier operator gets reputation stake and builds the sandbox image")
        verifier_principal = Principal.from_text(ver.principal)
        ok(client(gov, "audit_hub").mint_tokens(verifier_principal, AUDIT, 1_000), "mint stake")
        image = ensure_image(docker_client)
        say(f"builder image {image.tag}: rootfs sha256:{image.rootfs_digest[:16]}…, "
            f"toolchain {image.toolchain_digest[:16]}…")

        step(6, "The verifier worker polls, reserves, rebuilds the commit in the sandbox, compares and files")
        config = Config(pem="(demo identity)", network=server.url, registry_id=ids["mcp_registry"],
                        audit_hub_id=ids["audit_hub"], state_dir=work / "verifier", poll_interval_s=1,
                        metrics_addr="", allow_local_repos=True)  # the demo serves git on loopback
        worker = Worker(config, lambda: connect(network, verifier), lambda: docker_client, image,
                        Journal(config.journal_path), JsonLog(open(work / "verifier.log", "w")))  # noqa: SIM115
        (job,) = worker.run_once()
        worker.close()
        say(f"bounty #{job.bounty_id}: {job.state}, verdict {job.verdict}, rebuilt {job.found_hash}")
        say(f"sandboxed build {job.metadata['126:build_ms'] / 1000:.1f} s (no network, read-only root, "
            "unprivileged, capped memory/CPU/pids)")
        if job.verdict != "attest":
            raise SystemExit(f"demo failed: the verifier diverged: {job.report}")

        step(7, "The registry finalizes and settles")
        (status,) = registry_dev.get_wasm_status(app.sha256, [NAMESPACE])
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
