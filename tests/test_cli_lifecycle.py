"""The real `prometheus` CLI against canisters on a local replica: init -> submit (+ bounty) -> a verifier
files through the SDK -> status -> publish, and every bad input with its message and exit code."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ic_replica.principal import Principal
from prometheus_build.recipe import build_canister
from prometheus_sdk import Network, connect
from prometheus_sdk.canister import CanisterClient
from prometheus_sdk.icrc16 import to_map
from prometheus_sdk.provenance import envelopes, statements
from testkit.protocol import IDENTITIES
from tests.conftest import ROOT
from tests.test_localnet_cli import cli, free_port  # noqa: F401 - fixture

COMMIT = "1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c"
AUDIT = "build_reproducibility_v1"


@pytest.fixture
def project(cli: Any, tmp_path: Path) -> dict[str, Any]:  # noqa: F811
    port = free_port()
    url = json.loads(cli("localnet", "start", "--background", "--port", str(port), "--json").stdout)["url"]
    deployed = json.loads(cli("localnet", "deploy-protocol", "--json").stdout)
    app = build_canister("hello_mcp", ROOT / "examples", "hello_mcp/main.mo", tmp_path / "project" / "out",
                         ROOT / "build" / "cache")  # content-addressed: shared by every test
    governance = tmp_path / "config" / "prometheus" / "identity" / "default" / "identity.pem"
    return {"url": url, "ids": {n: r["id"] for n, r in deployed["canisters"].items()}, "wasm": app,
            "governance": governance}


def init_args(**overrides: str) -> list[str]:
    values = {"name": "Hello MCP", "namespace": "com.example.hello", "repo-url": "https://example.com/hello.git",
              "commit": COMMIT, "wasm-path": "out/hello_mcp.wasm", **overrides}
    return ["init", "--yes", *[x for k, v in values.items() for x in (f"--{k}", v)]]


def verifier_clients(project: dict[str, Any], role: str = "verifier0") -> tuple[Any, Any, Any]:
    """(connection, audit hub, registry) of a verifier given stake by governance (through the SDK)."""
    from prometheus_sdk.identity import from_pem_file

    gov = connect(Network("local", project["url"]), from_pem_file(project["governance"]))
    verifier = connect(Network("local", project["url"]), IDENTITIES[role])
    hub_gov = CanisterClient.from_did(gov, project["ids"]["audit_hub"], ROOT / "candid" / "audit_hub.did")
    assert "ok" in hub_gov.mint_tokens(Principal.from_text(verifier.principal), AUDIT, 500)
    hub = CanisterClient.from_did(verifier, project["ids"]["audit_hub"], ROOT / "candid" / "audit_hub.did")
    registry = CanisterClient.from_did(verifier, project["ids"]["mcp_registry"], ROOT / "candid" / "mcp_registry.did")
    return verifier, hub, registry


def signed_statement(wasm_id: str, role: str = "verifier0") -> list[dict[str, Any]]:
    """The verifier's verdict as the worker signs it: SLSA provenance in a DSSE envelope (docs/provenance.md)."""
    now = datetime.now(UTC)
    build = statements.Build("https://example.com/hello.git", COMMIT, "com.example.hello", "moc", {}, None)
    statement = statements.provenance(wasm_id, "hello_mcp.wasm", build, str(IDENTITIES[role].sender()), now, now,
                                      "bounty/0")
    signed = envelopes.sign(IDENTITIES[role], statement)
    return [{"payload_type": statements.PAYLOAD_TYPE, "payload": signed.envelope.payload,
             "signature": signed.signature, "public_key": signed.public_key}]


def test_developer_lifecycle(cli: Any, project: dict[str, Any]) -> None:  # noqa: F811
    cli(*init_args())
    submitted = json.loads(cli("--json", "submit", "--bounty", "2000000").stdout)
    wasm_id = project["wasm"].sha256
    assert submitted["wasm_id"] == wasm_id and submitted["bounty_id"] == 0 and submitted["new_round"]
    assert submitted["amends"] is None
    again = json.loads(cli("--json", "submit").stdout)  # idempotent: same request, nothing uploaded twice
    assert again["request_id"] == submitted["request_id"] and not again["new_round"]

    status = json.loads(cli("--json", "status", code=3).stdout)  # 3: pending
    assert status["outcome"] == "pending" and status["bounties"][0]["state"] == "Open"
    assert status["request"]["request_id"] == submitted["request_id"] and status["request"]["commit"] == COMMIT
    assert [(r["request_id"], r["outcome"], r["current"]) for r in status["rounds"]] == [
        (submitted["request_id"], "pending", True)]
    refused = cli("publish", "1.0.0", check=False)
    assert refused.returncode == 1 and "is not verified yet" in refused.stderr and "Traceback" not in refused.stderr

    # a verifier (through the SDK) reserves, rebuilds with the same recipe and attests
    verifier, hub, registry = verifier_clients(project)
    assert "ok" in hub.reserve_bounty(0, AUDIT)
    reserved = json.loads(cli("--json", "bounty", "show", "0").stdout)
    assert reserved["state"] == "Reserved" and reserved["claimant"] == verifier.principal
    assert reserved["reserved_until"] > 0 and reserved["request_id"] == submitted["request_id"]
    assert reserved["namespace"] == "com.example.hello"
    assert [(t["kind"], t["state"]) for t in reserved["transfers"]] == [("Escrow", "Done")]
    shown = cli("bounty", "show", "0").stdout
    assert "Reserved by" in shown and verifier.principal[:10] in shown
    assert json.loads(cli("--json", "status", code=3).stdout)["bounties"][0]["state"] == "Reserved"
    assert "ok" in registry.icrc126_file_attestation({"wasm_id": wasm_id, "metadata": to_map(
        {"bounty_id": 0, "126:audit_type": AUDIT, "126hash": wasm_id,
         "126:request_id": submitted["request_id"]}), "signed": signed_statement(wasm_id)})

    # the signed verdict travels: exported as a bundle, checked offline with the local root key only
    assert "holds no filing on wasm" in cli("attestation", "export", "ab" * 32, "-o", "none.json", code=1).stderr
    exported = json.loads(cli("--json", "attestation", "export", wasm_id, "-o", "bundle.json").stdout)
    assert exported["filings"] == 1
    root_key = json.loads(cli("--json", "localnet", "status").stdout)["root_key"]
    (Path(cli.project) / "local.key").write_text(root_key)
    offline = ["verify", "--offline", "bundle.json", "--root-key", "local.key", "--wasm", "out/hello_mcp.wasm"]
    checked = json.loads(cli("--json", *offline).stdout)
    assert checked["status"] == "verified" and checked["agreeing"] == [verifier.principal]
    assert "2 trusted verifier" not in cli(*offline).stdout and "verified" in cli(*offline).stdout
    assert json.loads(cli("--json", *offline, "--threshold", "2", code=3).stdout)["status"] == "insufficient"
    assert json.loads(cli("--json", "verify", "--offline", "bundle.json", code=7).stdout)["status"] == "tampered"
    # the project's .prometheus/canister_ids.json is not trusted to name the registry: only the localnet record,
    # the environment or --registry
    untrusted = cli(*offline, extra_env={"PROMETHEUS_LOCALNET_DIR": str(Path(cli.project) / "nowhere")}, code=1)
    assert "not taken on trust" in untrusted.stderr
    assert json.loads(cli("--json", *offline, "--registry", project["ids"]["audit_hub"], code=7).stdout)[
        "status"] == "tampered"
    if shutil.which("unshare") and subprocess.run(["unshare", "-rn", "true"], check=False).returncode == 0:
        isolated = subprocess.run(["unshare", "-rn", sys.executable, "-m", "prometheus_cli", "--json", *offline],
                                  cwd=cli.project, env=cli.env, capture_output=True, text=True, timeout=120)
        assert isolated.returncode == 0 and json.loads(isolated.stdout)["status"] == "verified", isolated.stderr

    verified = json.loads(cli("--json", "status", wasm_id).stdout)
    assert verified["filings"][0]["signature"] == "valid"
    assert verified["outcome"] == "Verified" and verified["namespace"] == "com.example.hello"
    assert verified["filings"][0]["verifier"] == verifier.principal and verified["bounties"][0]["state"] == "Paid"
    assert verified["bounties"][0]["claimant"] == verifier.principal
    paid = json.loads(cli("--json", "bounty", "show", "0").stdout)
    assert paid["stake"] == {"settlement": "Done", "verdict": "Reward"}
    assert [(t["kind"], t["state"]) for t in paid["transfers"]] == [("Escrow", "Done"), ("Payout", "Done")]
    settled = json.loads(cli("--json", "bounty", "settle", "0").stdout)  # nothing left to do: says where it is
    assert settled["state"] == "Paid" and settled["claimant"] == verifier.principal
    watched = cli("status", "--watch")  # final already: returns at once with the table
    assert "Verified" in watched.stdout
    deployed = json.loads(cli("localnet", "deploy", "--src", str(ROOT / "examples"), "hello_mcp", "--json").stdout)
    live = json.loads(cli("--json", "status", "--canister", deployed[0]["canister_id"]).stdout)["live"]
    assert live == {"canister": deployed[0]["canister_id"], "module_hash": wasm_id, "matches": True,
                    "runs": {"namespace": "com.example.hello", "outcome": "Verified", "versions": [],
                             "attestations": 1}}
    other = json.loads(cli("--json", "status", "--canister", project["ids"]["ledger"], code=5).stdout)["live"]
    assert other["matches"] is False and other["module_hash"] != wasm_id
    published = json.loads(cli("--json", "publish", "1.0.0").stdout)
    assert published["version"] == "1.0.0"
    dup = cli("publish", "1.0.0", check=False)
    assert dup.returncode == 1 and "already published" in dup.stderr
    assert json.loads(cli("--json", "status").stdout)["versions"] == ["1.0.0"]

    # mcp_orchestrator runs the verified version: deploy, list, refuse a downgrade, explain bad input
    instance = json.loads(cli("--json", "deploy", "com.example.hello@1.0.0").stdout)
    assert instance["version"] == "1.0.0" and instance["wasm_id"] == wasm_id and instance["state"] == "Running"
    assert json.loads(cli("--json", "status", "--canister", instance["canister_id"]).stdout)["live"]["matches"]
    listed = json.loads(cli("--json", "instances", "com.example.hello").stdout)
    assert [i["canister_id"] for i in listed] == [instance["canister_id"]]
    again = cli("upgrade", instance["canister_id"], "--version", "1.0.0", check=False)
    assert again.returncode == 1 and "Downgrade" in again.stderr and "--force-downgrade" in again.stderr
    nothing = cli("revert", instance["canister_id"], check=False)
    assert nothing.returncode == 1 and "no snapshot to revert to" in nothing.stderr
    # an upgrade path (ICRC-118 `previous`): 1.0.1 must be installed over 1.0.0's module
    nowhere = cli("publish", "1.0.1", "--previous", "0.9.0", check=False)
    assert nowhere.returncode == 1 and "0.9.0 is not published" in nowhere.stderr
    linked = json.loads(cli("--json", "publish", "1.0.1", "--previous", "1.0.0").stdout)
    assert linked["previous"] == wasm_id
    upgraded = json.loads(cli("--json", "upgrade", instance["canister_id"]).stdout)
    assert upgraded["version"] == "1.0.1" and upgraded["state"] == "Running"
    bad = cli("deploy", "com.example.hello@one", check=False)
    assert bad.returncode == 1 and "is not a version" in bad.stderr and "Traceback" not in bad.stderr
    missing = cli("deploy", "com.example.nothing", check=False)
    assert missing.returncode == 1 and "NamespaceNotFound" in missing.stderr
    elsewhere = Path(project["wasm"].wasm).parent  # no prometheus.yml here: status asks the canister what it runs
    runs = json.loads(cli("--json", "status", "--canister", instance["canister_id"], cwd=elsewhere).stdout)
    assert runs["wasm_id"] == wasm_id and runs["outcome"] == "Verified" and runs["live"]["matches"]
    assert runs["live"]["runs"] == {"namespace": "com.example.hello", "outcome": "Verified",
                                    "versions": ["1.0.0", "1.0.1"], "attestations": 1}
    unknown = cli("status", "--canister", project["ids"]["ledger"], cwd=elsewhere, check=False)
    assert unknown.returncode == 5 and "unverified" in unknown.stderr and "Traceback" not in unknown.stderr

    # A verified round is final: the same wasm from another commit is refused with a reason.
    manifest = Path(project["wasm"].wasm).parent.parent / "prometheus.yml"
    manifest.write_text(manifest.read_text().replace(COMMIT, "ab" * 20))
    final = cli("submit", check=False)
    assert final.returncode == 1 and "is already verified in com.example.hello" in final.stderr
    assert "prometheus publish" in final.stderr and "Traceback" not in final.stderr


def test_rejected_round_then_a_correction(cli: Any, project: dict[str, Any]) -> None:  # noqa: F811
    cli(*init_args())
    first = json.loads(cli("--json", "submit", "--bounty", "2000000").stdout)
    wasm_id = project["wasm"].sha256
    verifier, hub, registry = verifier_clients(project, "verifier1")
    assert "ok" in hub.reserve_bounty(first["bounty_id"], AUDIT)
    assert "ok" in registry.icrc126_file_divergence({
        "wasm_id": wasm_id, "divergence_report": "rebuilt wasm differs", "metadata": to_map(
            {"bounty_id": first["bounty_id"], "126:audit_type": AUDIT, "126:found_hash": "00" * 32})})
    assert json.loads(cli("--json", "status", code=4).stdout)["outcome"] == "Rejected"
    rejected = cli("publish", "1.0.0", check=False)
    assert rejected.returncode == 1 and "was rejected by its verifiers" in rejected.stderr
    late = cli("bounty", "create", "1000000", check=False)
    assert late.returncode == 1 and "already decided" in late.stderr and "Traceback" not in late.stderr

    # The developer fixes the commit: submitting again opens a new round for the same wasm.
    manifest = Path(project["wasm"].wasm).parent.parent / "prometheus.yml"
    manifest.write_text(manifest.read_text().replace(COMMIT, "ab" * 20))
    second = json.loads(cli("--json", "submit", "--bounty", "1000000").stdout)
    assert second["new_round"] and second["amends"] == first["request_id"] != second["request_id"]
    status = json.loads(cli("--json", "status", code=3).stdout)
    assert status["outcome"] == "pending" and status["request"]["commit"] == "ab" * 20
    assert status["request"]["amends"] == first["request_id"]
    assert [(r["request_id"], r["commit"], r["outcome"], r["current"]) for r in status["rounds"]] == [
        (first["request_id"], COMMIT, "Rejected", False), (second["request_id"], "ab" * 20, "pending", True)]
    assert status["rounds"][0]["audits"][0]["divergences"] == 1
    assert [b["bounty_id"] for b in status["bounties"]] == [second["bounty_id"]]  # the current round's
    table = cli("status", code=3).stdout
    assert "#0" in table and "(current)" in table and "Rejected" in table and "pending" in table
    assert COMMIT in table and "ab" * 20 in table  # full commits, never cut
    rows = json.loads(cli("--json", "bounty", "list").stdout)
    assert {(r["bounty_id"], r["request_id"]) for r in rows} == {(first["bounty_id"], first["request_id"]),
                                                                 (second["bounty_id"], second["request_id"])}

    # A round a verifier holds a reservation on cannot be replaced by yet another commit.
    assert "ok" in hub.reserve_bounty(second["bounty_id"], AUDIT)
    manifest.write_text(manifest.read_text().replace("ab" * 20, "cd" * 20))
    busy = cli("submit", check=False)
    assert busy.returncode == 1 and "cannot be replaced" in busy.stderr and "holds a reservation" in busy.stderr
    assert "Traceback" not in busy.stderr
    busy_json = json.loads(cli("--json", "submit", check=False).stdout)
    assert "cannot be replaced" in busy_json["error"] and "status --watch" in busy_json["hint"]

    # The verifier rebuilds the corrected commit and attests: the new round is verified, the old one stays
    # rejected on record, and status shows both (exit 0).
    manifest.write_text(manifest.read_text().replace("cd" * 20, "ab" * 20))
    assert "ok" in registry.icrc126_file_attestation({"wasm_id": wasm_id, "metadata": to_map(
        {"bounty_id": second["bounty_id"], "126:audit_type": AUDIT, "126hash": wasm_id,
         "126:request_id": second["request_id"]})})
    final = json.loads(cli("--json", "status").stdout)
    assert final["outcome"] == "Verified" and final["request"]["request_id"] == second["request_id"]
    assert [(r["request_id"], r["outcome"]) for r in final["rounds"]] == [
        (first["request_id"], "Rejected"), (second["request_id"], "Verified")]
    table = cli("status").stdout
    assert "Rejected" in table and "Verified" in table and verifier.principal in table
    assert json.loads(cli("--json", "publish", "1.0.0").stdout)["version"] == "1.0.0"


def test_a_lost_escrow_answer_says_what_to_run(capsys: pytest.CaptureFixture[str]) -> None:
    """`icrc127_create_bounty` answering LedgerOutcomeUnknown: the bounty exists, its funding is unconfirmed."""
    import typer

    from prometheus_cli.developer import _bounty_refused
    from prometheus_cli.output import user_errors

    for as_json in (False, True):
        with pytest.raises(typer.Exit) as exited, user_errors(as_json):
            _bounty_refused("LedgerOutcomeUnknown", {"bounty_id": 4}, "ab" * 32, "com.example.hello")
        assert exited.value.exit_code == 1
    out, err = capsys.readouterr()
    assert "bounty #4 is recorded" in err and "run `prometheus bounty settle 4`" in err
    reported = json.loads(out)
    assert reported["bounty_id"] == 4 and reported["state"] == "Funding"
    assert "prometheus bounty settle 4" in reported["hint"]


def test_bad_input_gets_a_message_and_a_non_zero_exit(cli: Any, project: dict[str, Any], tmp_path: Path) -> None:  # noqa: F811
    cases = [
        (["submit"], "no manifest at prometheus.yml"),
        (["status"], "no manifest at prometheus.yml"),
        (init_args(namespace="Not_A_Namespace"), "invalid namespace"),
        (init_args(commit="abc123"), "invalid commit"),
        (init_args(**{"repo-url": "ftp://x"}), "invalid repo_url"),
        (["init", "--yes", "--name", "x"], "is required with --yes"),
        (["status", "zz"], "invalid wasm hash"),
        (["status", "ab" * 32], "knows no wasm"),
        (["publish", "one.two"], "invalid version"),
    ]
    for args, message in cases:
        run = cli(*args, check=False)
        assert run.returncode != 0 and message in run.stderr and "Traceback" not in run.stderr, (args, run.stderr)

    cli(*init_args(**{"wasm-path": "missing.wasm"}))
    run = cli("submit", check=False)
    assert run.returncode == 1 and "does not exist" in run.stderr
    again = cli(*init_args(), check=False)
    assert again.returncode == 1 and "already exists" in again.stderr
    cli(*init_args(), "--force")

    manifest = tmp_path / "project" / "prometheus.yml"
    original = manifest.read_text()
    manifest.write_text("name: [unclosed")
    run = cli("submit", check=False)
    assert run.returncode == 1 and "not valid YAML" in run.stderr
    manifest.write_text(original + "surprise: field\n")
    run = cli("submit", check=False)
    assert run.returncode == 1 and "unknown field(s) surprise" in run.stderr
    manifest.write_text(original)

    unreachable = cli("--network", "http://127.0.0.1:9", "submit", check=False)
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr
    unknown_id = cli("--identity", "nobody", "submit", check=False)
    assert unknown_id.returncode == 1 and "no identity named 'nobody'" in unknown_id.stderr
    no_ids = cli("--network", project["url"], "submit", check=False)
    assert no_ids.returncode == 1 and "no mcp_registry canister id" in no_ids.stderr
    too_big = cli("submit", "--bounty", str(10**15), check=False)
    assert too_big.returncode == 1 and "too low for a bounty" in too_big.stderr


def test_identity_and_bounty_commands(cli: Any, project: dict[str, Any], tmp_path: Path) -> None:  # noqa: F811
    created = json.loads(cli("--json", "identity", "new", "alice", "--type", "secp256k1").stdout)
    listed = json.loads(cli("--json", "identity", "list").stdout)
    assert {"anonymous", "default", "alice"} <= {r["name"] for r in listed}
    assert next(r for r in listed if r["selected"])["name"] == "default"
    cli("identity", "use", "alice")
    assert json.loads(cli("--json", "identity", "whoami").stdout) == {"name": "alice",
                                                                      "principal": created["principal"]}
    assert json.loads(cli("--json", "--identity", "default", "identity", "whoami").stdout)["name"] == "default"
    bad_use = cli("identity", "use", "ghost", check=False)
    assert bad_use.returncode == 1 and "no identity named 'ghost'" in bad_use.stderr
    dup = cli("identity", "new", "alice", check=False)
    assert dup.returncode == 1 and "already exists" in dup.stderr
    pem = tmp_path / "k.pem"
    pem.write_text("garbage")
    bad_pem = cli("identity", "import", "k", str(pem), check=False)
    assert bad_pem.returncode == 1 and "not an Ed25519/secp256k1" in bad_pem.stderr
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    locked = tmp_path / "locked.pem"
    locked.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")))
    wrong = cli("identity", "import", "vault", str(locked), check=False,
                extra_env={"PROMETHEUS_IDENTITY_PASSWORD": "nope"})
    assert wrong.returncode == 1 and "wrong password" in wrong.stderr and "Traceback" not in wrong.stderr
    cli("identity", "import", "vault", str(locked), extra_env={"PROMETHEUS_IDENTITY_PASSWORD": "pw"})
    no_pw = cli("--identity", "vault", "identity", "whoami", check=False)
    assert no_pw.returncode == 1 and "PROMETHEUS_IDENTITY_PASSWORD" in no_pw.stderr
    cli("identity", "use", "default")

    cli(*init_args())
    cli("submit")
    created_bounty = json.loads(cli("--json", "bounty", "create", "1000000").stdout)
    rows = json.loads(cli("--json", "bounty", "list").stdout)
    assert [r["bounty_id"] for r in rows] == [created_bounty["bounty_id"]] and rows[0]["state"] == "Open"
    shown = json.loads(cli("--json", "bounty", "show", str(created_bounty["bounty_id"])).stdout)
    assert shown["reward"] == 1_000_000 and shown["audit_type"] == AUDIT
    missing = cli("bounty", "show", "99", check=False)
    assert missing.returncode == 1 and "no bounty #99" in missing.stderr
    unsettled = cli("bounty", "settle", "99", check=False)
    assert unsettled.returncode == 1 and "no bounty #99" in unsettled.stderr
    small = cli("bounty", "create", "5", check=False)
    assert small.returncode == 1 and "below the registry's minimum of 100000" in small.stderr
    long = cli("bounty", "create", "1000000", "--timeout-days", "400", check=False)
    assert long.returncode == 1 and "a bounty runs 1 to 365 days" in long.stderr
    broke = cli("--identity", "alice", "bounty", "create", "1000000", check=False)
    assert broke.returncode == 1 and "too low for a bounty" in broke.stderr
    elsewhere = cli("bounty", "create", "1000000", "--wasm", "cd" * 32, check=False)
    assert elsewhere.returncode == 1 and "no verification request for wasm cdcdcdcd" in elsewhere.stderr


def test_verify_rebuilds_in_the_builder_image_and_compares(cli: Any, tmp_path: Path, docker_host: str,  # noqa: F811
                                                           builder_image: Any) -> None:
    import shutil

    project_dir = tmp_path / "project"
    shutil.copytree(ROOT / "examples" / "hello_mcp", project_dir / "src" / "hello_mcp")
    app = build_canister("hello_mcp", project_dir / "src", "hello_mcp/main.mo", project_dir / "out",
                         ROOT / "build" / "cache")  # content-addressed: shared by every test
    cli(*init_args())
    manifest = project_dir / "prometheus.yml"
    manifest.write_text(manifest.read_text().replace("source_dir: .\nmain: src/main.mo\n", "")
                        + "source_dir: src\nmain: hello_mcp/main.mo\n")
    head = git_commit(project_dir, "src", "prometheus.yml")
    manifest.write_text(manifest.read_text().replace(COMMIT, head))
    docker_env = {"DOCKER_HOST": docker_host}
    result = json.loads(cli("--json", "verify", extra_env=docker_env).stdout)
    assert {k: result[k] for k in ("expected", "rebuilt", "matches", "built_in", "built_from")} == {
        "expected": app.sha256, "rebuilt": app.sha256, "matches": True, "built_in": builder_image.tag,
        "built_from": head}
    assert result["warnings"] == [f"commit {head} is on no remote branch: push it, or verifiers cannot fetch it"]
    host = json.loads(cli("--json", "verify", "--no-sandbox").stdout)
    assert host == {**result, "built_in": "host toolchain"}
    differs = cli("--json", "verify", "--hash", "00" * 32, check=False, extra_env=docker_env)
    assert differs.returncode == 5 and json.loads(differs.stdout)["matches"] is False
    (project_dir / "src" / "hello_mcp" / "main.mo").write_text("persistent actor { broken")
    manifest.write_text(manifest.read_text().replace(head, git_commit(project_dir, "src")))
    broken = cli("verify", check=False, extra_env=docker_env)
    assert broken.returncode == 1 and "hello_mcp/main.mo:" in broken.stderr and "Traceback" not in broken.stderr
    no_docker = cli("verify", check=False, extra_env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"})
    assert no_docker.returncode == 1 and "cannot reach Docker" in no_docker.stderr
    assert "--no-sandbox" in no_docker.stderr


def git_commit(folder: Path, *paths: str) -> str:
    """Commit `paths` in `folder` (a git repository made on first use); returns the commit's SHA."""
    import subprocess

    env = {"GIT_AUTHOR_NAME": "dev", "GIT_AUTHOR_EMAIL": "dev@example.com", "GIT_COMMITTER_NAME": "dev",
           "GIT_COMMITTER_EMAIL": "dev@example.com", "HOME": str(folder), "PATH": "/usr/bin:/bin"}

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=folder, env=env, check=True, capture_output=True,
                              text=True).stdout.strip()

    if not (folder / ".git").exists():
        git("init", "-q", "-b", "main")
    git("add", *paths)
    git("commit", "-q", "-m", "change")
    return git("rev-parse", "HEAD")
