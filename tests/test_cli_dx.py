"""The developer experience of the real `prometheus` CLI against one background localnet (shared by the
module): the URL policy, finding the localnet and its protocol from anywhere, funds and stake, refusals
before anything is created, partial success, exit codes, `init` prompts and `verify` at the manifest's commit.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from prometheus_build.recipe import build_canister
from prometheus_sdk.urls import RepoPolicy, RepoUrlRefused, check_repo_url
from testkit.ports import free_port
from tests.conftest import ROOT
from tests.test_cli_lifecycle import git_commit

COMMIT = "1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c"
AUDIT = "build_reproducibility_v1"


@dataclass
class Net:
    root: Path
    env: dict[str, str]
    url: str
    ids: dict[str, str]
    wasm: Path

    def cli(self, *args: str, cwd: Path | None = None, code: int | None = 0, input: str | None = None,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """The real CLI in a subprocess; asserts the exit code unless `code` is None."""
        proc = subprocess.run([sys.executable, "-m", "prometheus_cli", *args], cwd=cwd or self.root / "app",
                              env={**self.env, **(extra_env or {})}, capture_output=True, text=True, timeout=300,
                              input=input)
        if code is not None:
            assert proc.returncode == code, (args, proc.returncode, proc.stderr + proc.stdout)
        return proc

    def json(self, *args: str, **kwargs: Any) -> Any:
        return json.loads(self.cli("--json", *args, **kwargs).stdout)

    def project(self, name: str, **fields: str) -> Path:
        """A folder with prometheus.yml (written by `init --yes`) and the hello_mcp wasm."""
        folder = self.root / name
        (folder / "out").mkdir(parents=True)
        (folder / "out" / "app.wasm").write_bytes(self.wasm.read_bytes())
        values = {"name": "Hello", "namespace": f"com.example.{name}", "repo-url": "https://example.com/h.git",
                  "commit": COMMIT, "wasm-path": "out/app.wasm", **fields}
        self.cli("init", "--yes", *[x for k, v in values.items() for x in (f"--{k}", v)], cwd=folder)
        return folder


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    root = tmp_path_factory.mktemp("dx")
    (root / "app").mkdir()
    env = {**os.environ, "XDG_CONFIG_HOME": str(root / "config"), "PROMETHEUS_LOCALNET_DIR": str(root / "ln")}
    for key in [k for k in env if k.startswith("PROMETHEUS_") and k.endswith("_ID")] + ["PROMETHEUS_LOCAL_URL",
                                                                                          "PROMETHEUS_NETWORK"]:
        env.pop(key, None)
    wasm = build_canister("hello_mcp", ROOT / "examples", "hello_mcp/main.mo", root / "build", ROOT / "build" / "cache")
    n = Net(root, env, "", {}, wasm.wasm)
    n.url = json.loads(n.cli("localnet", "start", "--background", "--port", str(free_port()), "--json").stdout)["url"]
    try:
        deployed = json.loads(n.cli("localnet", "deploy-protocol", "--json").stdout)  # in app/: .prometheus/ there
        n.ids = {name: row["id"] for name, row in deployed["canisters"].items()}
        yield n
    finally:
        n.cli("localnet", "stop", code=None)


def test_url_policy_is_what_a_worker_fetches() -> None:
    public, local, fleet = RepoPolicy(), RepoPolicy(local_network=True), RepoPolicy(allow_private=True)
    assert check_repo_url("https://github.com/me/app.git", public) == "https://github.com/me/app.git"
    for url in ("http://127.0.0.1:8000/app.git", "https://localhost/app.git", "http://[::1]/a.git"):
        assert check_repo_url(url, local) == url  # loopback only when the network is local
        with pytest.raises(RepoUrlRefused, match="loopback"):
            check_repo_url(url, public)
    for url, why in (("http://example.com/a.git", "https:// only"), ("ftp://example.com/a", "https:// only"),
                     ("https://10.0.0.8/a.git", "non-public"), ("https://169.254.169.254/x", "non-public"),
                     ("https://u:p@example.com/a.git", "credentials"), ("-uhttps://x", "plain"),
                     ("https://example.com/" + "a" * 600, "512 bytes")):
        with pytest.raises(RepoUrlRefused, match=why):
            check_repo_url(url, local)
    assert check_repo_url("http://10.0.0.8/a.git", fleet)  # the operator's test-fleet setting


def test_the_localnet_and_its_protocol_are_found_from_anywhere(net: Net) -> None:
    # a subfolder walks up to app/.prometheus; an unrelated folder uses the localnet's own record
    (net.root / "app" / "deep" / "er").mkdir(parents=True)
    elsewhere = net.root / "elsewhere"
    elsewhere.mkdir()
    for cwd in (net.root / "app" / "deep" / "er", elsewhere):
        assert net.json("token", "balance", cwd=cwd)["ledger"] == net.ids["ledger"]
    recorded = json.loads((net.root / "ln" / "canister_ids.json").read_text())
    assert {k: recorded[k] for k in net.ids} == net.ids
    # env overrides win
    wrong = net.cli("token", "balance", cwd=elsewhere, code=1, extra_env={"PROMETHEUS_LEDGER_ID": "aaaaa-aa"})
    assert "Traceback" not in wrong.stderr
    # a URL network is not "local": the hint points at the running protocol, never at deploying another
    by_url = net.cli("--network", net.url, "token", "balance", cwd=elsewhere, code=1)
    assert "use --network local" in by_url.stderr and "deploy-protocol" not in by_url.stderr
    # a second deploy-protocol from another folder upgrades the same canisters instead of deploying more
    again = json.loads(net.cli("localnet", "deploy-protocol", "--json", cwd=elsewhere).stdout)
    assert {n: r["id"] for n, r in again["canisters"].items()} == net.ids
    # SDK and worker configuration resolve the same localnet (its port, not 4943) and the same ids
    probe = ("from prometheus_sdk import resolve; from verifier_bot import config; import json; "
             "c = config.load({'VERIFIER_PEM': 'x', **__import__('os').environ}); "
             "print(json.dumps([resolve('local').url, c.registry_id, c.audit_hub_id, c.repo_policy.local_network]))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, env={**net.env, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [net.url, net.ids["mcp_registry"], net.ids["audit_hub"], True]


def test_fund_stake_and_token_commands(net: Net) -> None:
    sponsor = net.json("identity", "new", "sponsor")["principal"]
    verifier = net.json("identity", "new", "verifier")["principal"]
    funded = net.json("localnet", "fund", "sponsor", "3000000")
    assert funded["to"] == sponsor and funded["amount"] == 3_000_000 and funded["balance"] == 3_000_000
    assert net.json("localnet", "fund", verifier, "50000")["balance"] == 50_000  # a principal works too
    staked = net.json("localnet", "stake", "verifier", "500")
    assert staked["verifier"] == verifier and staked["available"] == 500 and staked["stake_per_reservation"] > 0
    assert net.json("token", "balance", "sponsor")["balance"] == 3_000_000
    sent = net.json("--identity", "sponsor", "token", "transfer", "verifier", "1000")
    assert sent["from"] == sponsor and sent["to"] == verifier and sent["block"] >= 0
    fee = 10_000
    assert net.json("token", "balance", "sponsor")["balance"] == 3_000_000 - 1000 - fee
    assert net.json("token", "balance", verifier)["balance"] == 51_000
    approved = net.json("--identity", "sponsor", "token", "approve", net.ids["mcp_registry"], "5000")
    assert approved["spender"] == net.ids["mcp_registry"] and approved["amount"] == 5000
    table = net.cli("token", "balance", "sponsor").stdout
    assert sponsor in table and "PUSD" in table
    broke = net.cli("--identity", "verifier", "token", "transfer", "sponsor", str(10**12), code=1)
    assert "InsufficientFunds" in broke.stderr and "localnet fund" in broke.stderr
    for args in (["localnet", "fund", "sponsor", "5"], ["localnet", "stake", "verifier", "5"]):
        refused = net.cli("--network", "ic", *args, code=1)
        assert "works only on the local network" in refused.stderr and "Traceback" not in refused.stderr
    nobody = net.cli("localnet", "fund", "no-such-identity", "5", code=1)
    assert "neither a principal nor a usable identity" in nobody.stderr
    bad = net.cli("token", "transfer", "sponsor", "0", code=1)
    assert "invalid amount" in bad.stderr


def namespace_exists(net: Net, namespace: str) -> bool:
    from prometheus_sdk import Network, connect
    from prometheus_sdk.canister import CanisterClient

    registry = CanisterClient.from_did(connect(Network("local", net.url)), net.ids["mcp_registry"],
                                       ROOT / "candid" / "mcp_registry.did")
    return registry.icrc118_get_canister_type(namespace) != []


def test_submit_refuses_before_creating_anything(net: Net) -> None:
    folder = net.project("refusals")
    wasm = folder / "out" / "app.wasm"
    good = wasm.read_bytes()
    cases = [(b"service : { hello : () -> (text) }\n", "is not a wasm module"),
             (gzip.compress(b"not wasm at all"), "gzip, but not of a wasm module"),
             (b"", "is empty")]
    for content, message in cases:
        wasm.write_bytes(content)
        run = net.cli("submit", cwd=folder, code=1)
        assert message in run.stderr and "Traceback" not in run.stderr
    wasm.write_bytes(good)
    manifest = folder / "prometheus.yml"
    original = manifest.read_text()
    manifest.write_text(original.replace("https://example.com/h.git", "http://example.com/h.git"))
    run = net.cli("submit", cwd=folder, code=1)
    assert "invalid repo_url" in run.stderr and "https:// only" in run.stderr
    manifest.write_text(original)
    too_much = net.cli("submit", "--bounty", "10", cwd=folder, code=1)  # under the minimum: refused up front
    assert "below the registry's minimum" in too_much.stderr
    assert not namespace_exists(net, "com.example.refusals")  # nothing was created by any refusal
    wasm.write_bytes(gzip.compress(good))
    assert net.json("submit", cwd=folder)["namespace_created"] is True  # gzip of a wasm is a wasm


def test_init_refuses_what_a_worker_refuses_and_asks_for_every_field(net: Net) -> None:
    folder = net.root / "init"
    folder.mkdir()
    base = ["init", "--yes", "--name", "x", "--namespace", "com.example.x", "--commit", COMMIT,
            "--wasm-path", "a.wasm", "--repo-url"]
    http = net.cli(*base, "http://example.com/x.git", cwd=folder, code=1)
    assert "invalid repo_url" in http.stderr and "https:// only" in http.stderr and "Traceback" not in http.stderr
    loopback_on_ic = net.cli("--network", "ic", *base, "http://127.0.0.1:9/x.git", cwd=folder, code=1)
    assert "only when the network is local" in loopback_on_ic.stderr
    assert "--network local" in loopback_on_ic.stderr
    net.cli(*base, "http://127.0.0.1:9/x.git", cwd=folder)  # a loopback repository on the local network
    answers = "\n".join(["My App", "com.example.my-app", "https://example.com/my.git", COMMIT, "out/my.wasm",
                         "An app", "app", "src/app.mo"]) + "\n"
    asked = net.cli("--json", "init", "--force", cwd=folder, input=answers)
    for prompt in ("name", "namespace", "repo url", "commit", "wasm path", "description", "source dir", "main"):
        assert prompt in asked.stdout
    import yaml

    written = yaml.safe_load((folder / "prometheus.yml").read_text())
    assert written == {"name": "My App", "namespace": "com.example.my-app", "repo_url": "https://example.com/my.git",
                       "commit": COMMIT, "wasm_path": "out/my.wasm", "description": "An app", "source_dir": "app",
                       "main": "src/app.mo"}
    did = net.cli(*base[:-3], "--force", "--wasm-path", "app.did", "--repo-url", "https://example.com/x.git",
                  cwd=folder, code=1)
    assert "does not name a .wasm or .wasm.gz file" in did.stderr and "prometheus build" in did.stderr
    defaults = "\n".join(["My App", "com.example.my-app", "https://example.com/my.git", COMMIT, "", "", "", ""])
    net.cli("init", "--force", cwd=folder, input=defaults + "\n")
    assert yaml.safe_load((folder / "prometheus.yml").read_text())["wasm_path"] == ".prometheus/build/my-app.wasm"


def test_submit_bounty_partial_success_says_what_to_run(net: Net) -> None:
    from prometheus_sdk import Network, connect, identity
    from prometheus_sdk.canister import CanisterClient
    from prometheus_sdk.icrc16 import to_map

    folder = net.project("partial")
    submitted = net.json("submit", "--bounty", "200000", cwd=folder)
    assert net.cli("status", cwd=folder, code=3)  # 3: pending
    # a verifier (through the SDK) reserves and attests: verified
    net.cli("identity", "new", "partial-verifier")
    net.cli("localnet", "stake", "partial-verifier", "500")
    signer = connect(Network("local", net.url), identity.from_pem_file(
        net.root / "config" / "prometheus" / "identity" / "partial-verifier" / "identity.pem"))
    hub = CanisterClient.from_did(signer, net.ids["audit_hub"], ROOT / "candid" / "audit_hub.did")
    registry = CanisterClient.from_did(signer, net.ids["mcp_registry"], ROOT / "candid" / "mcp_registry.did")
    assert "ok" in hub.reserve_bounty(submitted["bounty_id"], AUDIT)
    assert "ok" in registry.icrc126_file_attestation({"wasm_id": submitted["wasm_id"], "metadata": to_map(
        {"bounty_id": submitted["bounty_id"], "126:audit_type": AUDIT, "126hash": submitted["wasm_id"],
         "126:request_id": submitted["request_id"]})})
    # submitting again with a bounty: the request stands (unchanged), the bounty cannot be created -> exit 6
    partial = net.cli("submit", "--bounty", "200000", cwd=folder, code=6)
    assert f"submitted wasm {submitted['wasm_id']}" in partial.stderr
    assert "but the bounty was not created" in partial.stderr
    assert "prometheus bounty create 200000 --namespace com.example.partial" in partial.stderr
    as_json = json.loads(net.cli("--json", "submit", "--bounty", "200000", cwd=folder, code=6).stdout)
    assert as_json["submitted"] is True and as_json["request_id"] == submitted["request_id"]
    assert as_json["next"] == "prometheus bounty create 200000 --namespace com.example.partial"
    verified = net.cli("status", cwd=folder).stdout  # exit 0: verified; the full principal, never cut
    assert str(signer.principal) in verified and submitted["wasm_id"] in verified
    other = net.cli("status", "--canister", net.ids["ledger"], cwd=folder, code=5)  # runs another wasm
    assert "does not run this wasm" in other.stdout
    typo = net.cli("status", submitted["wasm_id"], "--namespace", "com.exmaple.partial", cwd=net.root, code=1)
    assert "namespace com.exmaple.partial does not exist" in typo.stderr
    assert "--namespace com.example.partial" in typo.stderr


def test_verify_rebuilds_the_manifest_commit_not_the_working_tree(net: Net) -> None:
    import shutil

    folder = net.root / "verify"
    shutil.copytree(ROOT / "examples" / "hello_mcp", folder / "src" / "hello_mcp")
    (folder / "prometheus.yml").write_text("source_dir: src\nmain: hello_mcp/main.mo\n")
    first = git_commit(folder, "src", "prometheus.yml")
    main = folder / "src" / "hello_mcp" / "main.mo"
    main.write_text(main.read_text().replace('"Hello, "', '"Hi, "'))
    second = git_commit(folder, "src")
    app = build_canister("app", folder / "src", "hello_mcp/main.mo", folder / "out", net.root / "vcache")
    (folder / "prometheus.yml").write_text(
        f"name: v\nnamespace: com.example.v\nrepo_url: https://example.com/v.git\ncommit: {first}\n"
        "wasm_path: out/app.wasm\nsource_dir: src\nmain: hello_mcp/main.mo\n")
    # the stale commit in prometheus.yml: the working tree builds the wasm, the commit does not
    stale = net.json("verify", "--no-sandbox", cwd=folder, code=5)
    assert stale["built_from"] == first and stale["matches"] is False and stale["expected"] == app.sha256
    assert any("on no remote branch" in w for w in stale["warnings"])
    assert f"prometheus.yml names commit {first} but HEAD is {second}, and the source changed since " \
           "(src/hello_mcp/main.mo)" in " ".join(stale["warnings"])
    after = json.loads(net.cli("verify", "--no-sandbox", "--json", cwd=folder, code=5).stdout)  # --json after it
    assert after["built_from"] == first
    refused = net.cli("submit", cwd=folder, code=1)  # refused before anything is sent
    assert "not submitted: the wasm was built from other source than commit" in refused.stderr
    assert "--force" in refused.stderr and "Traceback" not in refused.stderr
    worktree = net.json("verify", "--no-sandbox", "--worktree", cwd=folder)
    assert worktree["matches"] is True and worktree["built_from"] == "working tree"
    (folder / "prometheus.yml").write_text((folder / "prometheus.yml").read_text().replace(first, second))
    fixed = net.cli("verify", "--no-sandbox", cwd=folder)
    assert "matches" in fixed.stdout and second in fixed.stdout and "on no remote branch" in fixed.stderr
    assert "differs from commit" not in fixed.stderr  # prometheus.yml and out/ are not the source
    main.write_text(main.read_text() + "\n// not committed\n")
    dirty = net.cli("verify", "--no-sandbox", cwd=folder)
    assert f"the working tree differs from commit {second} (src/hello_mcp/main.mo)" in dirty.stderr
    submitted = net.cli("submit", cwd=folder, code=1)  # warned and refused before anything is sent
    assert f"warning: the working tree differs from commit {second} (src/hello_mcp/main.mo)" in submitted.stderr
    assert "not submitted" in submitted.stderr
    (folder / "prometheus.yml").write_text((folder / "prometheus.yml").read_text().replace(second, "ab" * 20))
    absent = net.cli("verify", "--no-sandbox", cwd=folder, code=1)
    assert f"commit {'ab' * 20} (prometheus.yml) is not in the local repository" in absent.stderr
    assert "--worktree" in absent.stderr and "Traceback" not in absent.stderr


def test_a_full_upload_budget_creates_no_namespace(net: Net) -> None:
    """The registry's global upload budget (what all uploads may hold) is checked before a namespace is created."""
    from prometheus_sdk import Network, connect, identity
    from prometheus_sdk.canister import CanisterClient

    governance = connect(Network("local", net.url), identity.from_pem_file(  # the identity that deployed
        net.root / "config" / "prometheus" / "identity" / "default" / "identity.pem"))
    registry = CanisterClient.from_did(governance, net.ids["mcp_registry"], ROOT / "candid" / "mcp_registry.did")
    before = registry.upload_budget()
    tiny = {"max_incomplete_bytes": 10, "max_stored_bytes": before["max_stored_bytes"]}
    assert registry.set_upload_budget(tiny) == {"ok": None}
    try:
        folder = net.project("budget")
        refused = net.cli("submit", cwd=folder, code=1)
        assert "upload budget cannot take" in refused.stderr and "was not created" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert not namespace_exists(net, "com.example.budget")
    finally:
        assert registry.set_upload_budget({k: before[k] for k in tiny}) == {"ok": None}


def test_a_full_upload_quota_creates_no_namespace(net: Net) -> None:
    """The one refusal that used to come after a new namespace was created: checked before, nothing remains."""
    import hashlib

    from prometheus_sdk import Network, connect, identity
    from prometheus_sdk.canister import CanisterClient

    net.cli("identity", "new", "quota-dev")
    signer = connect(Network("local", net.url), identity.from_pem_file(
        net.root / "config" / "prometheus" / "identity" / "quota-dev" / "identity.pem"))
    registry = CanisterClient.from_did(signer, net.ids["mcp_registry"], ROOT / "candid" / "mcp_registry.did")
    assert "ok" in registry.icrc118_create_canister_type({"namespace": "com.example.quota-held", "description": ""})
    for i in range(2):  # two uploads left half done: the per-principal limit
        chunk = b"\0asm\x01\0\0\0" + bytes([i])
        assert "ok" in registry.icrc118_upload_wasm_chunk({
            "namespace": "com.example.quota-held", "wasm_hash": hashlib.sha256(chunk * 2).digest(),
            "chunk_index": 0, "total_chunks": 2, "chunk": chunk, "chunk_hash": hashlib.sha256(chunk).digest()})
    folder = net.project("quota")
    refused = net.cli("--identity", "quota-dev", "submit", cwd=folder, code=1)
    assert "2 incomplete uploads" in refused.stderr and "was not created" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not namespace_exists(net, "com.example.quota")


def test_a_registry_from_before_the_upload_budget_refuses_no_submission() -> None:
    """`submit` reads the registry's global upload budget before it creates a namespace; a registry released
    before the budget existed has no such query (method not found) and refuses nothing for want of room, so the
    check is skipped there. Any other rejection is an error."""
    from prometheus_cli.developer import _upload_budget
    from prometheus_sdk.errors import CallRejectedError

    class Registry:
        def __init__(self, error: CallRejectedError | None) -> None:
            self.error = error

        def upload_budget(self) -> dict[str, int]:
            if self.error is not None:
                raise self.error
            return {"max_incomplete_bytes": 1, "max_stored_bytes": 2, "incomplete_bytes": 0, "stored_bytes": 0}

    missing = CallRejectedError(3, "Canister aaaaa-aa has no query method 'upload_budget'", "IC0536")
    assert _upload_budget(Registry(missing)) is None
    assert _upload_budget(Registry(None)) == {"max_incomplete_bytes": 1, "max_stored_bytes": 2,
                                              "incomplete_bytes": 0, "stored_bytes": 0}
    with pytest.raises(CallRejectedError):
        _upload_budget(Registry(CallRejectedError(5, "Canister trapped", "IC0503")))
