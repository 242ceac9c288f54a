"""What the verifier-worker tests stand on: the protocol on the embedded replica behind its HTTP interface,
real git repositories on loopback, a real Docker daemon, and a worker wired to all three."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ic_replica.principal import Principal
from prometheus_build.image import BuilderImage
from prometheus_build.recipe import build_canister
from prometheus_sdk import Network, connect
from prometheus_sdk.icrc16 import to_map
from testkit import ROOT, git_server
from testkit.protocol import DEV, IDENTITIES, PRINCIPALS, Stack
from verifier_bot.config import Config
from verifier_bot.journal import ACTIVE, Journal
from verifier_bot.logs import JsonLog
from verifier_bot.worker import Worker

HELLO = (ROOT / "examples" / "hello_mcp" / "main.mo").read_text()
VERIFIER = "verifier1"
_names = itertools.count(1)  # repositories share one loopback server per module


@dataclass
class Net:
    stack: Stack
    url: str
    git_url: str
    repos: Path
    cache: Path

    def clock(self) -> int:
        """The replica's time (ns): what a worker under test compares the chain's times with."""
        return int(self.stack.ic.replica.observed_time())

    def advance(self, seconds: float) -> None:
        """Move the replica's clock (and so the workers') forward, instead of sleeping until time passes."""
        self.stack.ic.replica.advance_time(int(seconds * 1e9))

    def repo(self, files: dict[str, bytes | str], extra: Any = None) -> tuple[str, str, Path]:
        """Publish a repository; returns (clone URL, commit, working tree)."""
        name = f"repo{next(_names)}"
        sha = git_server.make_repo(self.repos, name, files, extra)
        return f"{self.git_url}/{name}.git", sha, self.repos / f"{name}-work"

    def app_repo(self, source: str = HELLO, extra: Any = None, files: dict[str, bytes | str] | None = None,
                 main: str = "src/main.mo") -> tuple[str, str, bytes]:
        """A repository holding a Motoko app, and the wasm the recipe builds from it on the host."""
        url, sha, work = self.repo({main: source, **(files or {})}, extra)
        built = build_canister("app", work, main, self.cache / f"out-{sha}", self.cache)
        return url, sha, built.wasm.read_bytes()

    def submit(self, wasm: bytes, repo: str, commit: str, bounty: bool = True) -> tuple[str, int | None]:
        """Upload `wasm` to a namespace of its own, request verification of repo@commit there and (by default)
        fund a bounty on that round."""
        namespace = f"com.example.app{next(_names)}"
        wasm_id = self.stack.upload(wasm, namespace=namespace)
        result = self.stack.registry("icrc126_verification_request", {
            "wasm_hash": bytes.fromhex(wasm_id), "repo": repo, "commit_hash": commit,
            "metadata": to_map({"canister_name": "app"}), "namespace": [namespace]}, sender=DEV)
        assert "ok" in result, result
        return wasm_id, self.stack.bounty(wasm_id, namespace=namespace) if bounty else None

    def filings(self, wasm_id: str) -> list[dict[str, Any]]:
        return list(self.stack.registry("get_audit_records", wasm_id))

    def config(self, state_dir: Path, **overrides: Any) -> Config:
        base = Config(pem="(in process)", network=self.url, registry_id=str(self.stack.registry.canister_id),
                      audit_hub_id=str(self.stack.hub.canister_id), state_dir=state_dir, poll_interval_s=0.2,
                      max_concurrent_jobs=2, build_timeout_s=300, metrics_addr="", file_margin_s=0,
                      allow_local_repos=True)
        return replace(base, **overrides)

    def env(self, state_dir: Path, pem_file: Path, **overrides: str) -> dict[str, str]:
        """The same configuration as environment variables, for the worker as a separate process."""
        return {"VERIFIER_PEM": str(pem_file), "VERIFIER_NETWORK": self.url,
                "VERIFIER_REGISTRY_ID": str(self.stack.registry.canister_id),
                "VERIFIER_AUDIT_HUB_ID": str(self.stack.hub.canister_id), "VERIFIER_STATE_DIR": str(state_dir),
                "POLL_INTERVAL_MS": "200", "MAX_CONCURRENT_JOBS": "2", "FILE_MARGIN_MS": "0",
                "ALLOW_LOCAL_REPOS": "1", "METRICS_ADDR": "", **overrides}


def make_worker(net: Net, image: BuilderImage, docker_host: str, state_dir: Path, role: str = VERIFIER,
                docker_factory: Any = None, **overrides: Any) -> tuple[Worker, io.StringIO]:
    import docker

    config = net.config(state_dir, **overrides)
    network = Network("local", net.url)
    log = io.StringIO()
    factory = docker_factory or (lambda: docker.DockerClient(base_url=docker_host, timeout=300))
    worker = Worker(config, lambda: connect(network, IDENTITIES[role]), factory, image,
                    Journal(config.journal_path), JsonLog(log), clock=net.clock)
    return worker, log


def events(log: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.getvalue().splitlines()]


def run_until_idle(worker: Worker, passes: int = 20) -> None:
    """Passes until no job is active and nothing new was reserved (each pass reserves up to the free slots)."""
    for _ in range(passes):
        before = len(worker.journal.jobs())
        worker.run_once()
        active = worker.journal.jobs(ACTIVE)
        if not active and len(worker.journal.jobs()) == before:
            return
    raise AssertionError(f"worker still busy after {passes} passes: {worker.journal.jobs()}")


def principal(role: str = VERIFIER) -> Principal:
    return PRINCIPALS[role]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
