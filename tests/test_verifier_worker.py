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

from prometheus_sdk.provenance import envelopes, statements
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
HEAVY_APP = 'import Text "mo:core/Text";\n' + OTHER_APP  # mo:core's Text: a compile over 256 MiB


def signed_statement(net: Net, wasm_id: str) -> statements.Parsed:
    """The worker's signed statement for its one filing on `wasm_id`, verified from the registry's record."""
    (found,) = net.stack.registry("get_provenance", bytes.fromhex(wasm_id), [])
    (filed,) = found["filings"]
    (st,) = filed["statement"]
    signed = envelopes.from_parts(st["payload"], st["payload_type"], st["signature"], st["public_key"])
    assert str(signed.signer) == str(filed["verifier"]) == str(principal())
    return envelopes.verify(signed)


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
            parsed = signed_statement(net, wasm_id)  # SLSA provenance, signed with the worker's identity
            assert parsed.passed and parsed.wasm_id == wasm_id and parsed.predicate_type == statements.PROVENANCE_V1
            build = parsed.statement["predicate"]["buildDefinition"]
            assert build["externalParameters"]["commit"] == (commit_a if wasm_id == wasm_a_id else commit_b)
            assert {"name": "builder-image", "digest": {"sha256": builder_image.rootfs_digest}} in build[
                "resolvedDependencies"]
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
    diverged = signed_statement(net, submitted["mismatch"])  # a FAILED verification summary with the reason
    assert not diverged.passed and diverged.predicate_type == statements.VSA_V1
    assert diverged.statement["predicate"]["divergence"]["rebuilt"] == {"sha256": sha(wasm)}
    assert cases["mismatch"][3] in (diverged.reason or "")
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

    repo2, commit2, wasm2 = net.app_repo(HEAVY_APP)
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
        before = time.time()
        worker.run_once()
        (job,) = worker.journal.jobs()  # the job in backoff holds the only slot: the second is not reserved
        assert job.state == "reserved" and job.attempts == 1 and "cannot reach" in (job.last_error or "")
        # backed off: the retry is at least one poll interval after the failure (not "now", however slow this is)
        assert job.next_attempt >= before + worker.config.poll_interval_s
        assert all(net.filings(w) == [] for w in unreachable)
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


def test_never_files_after_the_lock_expires(net: Net, docker_host: str, builder_image: Any, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A one-minute lock (the hub's shortest) and a 55 s filing margin: the build starts with the lock
    usable, takes longer than 5 s, and the filing is then not attempted."""
    from verifier_bot import rebuild

    assert "ok" in net.stack.hub("set_policy", {"lock_duration_ns": 60 * 10**9, "stake_per_reservation": STAKE},
                                 sender=GOV)
    real_verify = rebuild.verify

    def slow_verify(*args: Any, **kwargs: Any) -> Any:
        net.advance(8)  # the build takes 8 s of chain time
        return real_verify(*args, **kwargs)

    monkeypatch.setattr(rebuild, "verify", slow_verify)
    repo, commit, wasm = net.app_repo()
    wasm_id, bounty_id = net.submit(wasm, repo, commit)
    worker, log = make_worker(net, builder_image, docker_host, tmp_path / "state", file_margin_s=55)
    try:
        worker.run_once()
    finally:
        worker.close()
    job = worker.journal.get(bounty_id)
    assert job is not None and job.state == "expired" and job.verdict == "attest", job
    assert net.filings(wasm_id) == []
    assert any(e["event"] == "lock_expired" for e in events(log))
    assert net.stack.bounty_state(bounty_id) == "Reserved"  # still ours until the lock runs out


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
        "wasm_hash": bytes.fromhex(wasm_id), "repo": repo, "commit_hash": commit, "metadata": [],
        "namespace": ["com.example.short"]}, sender=DEV)
    # The registry's shortest bounty (an hour and a bit) closes before a 3,700 s build and a filing could fit.
    net.stack.bounty(wasm_id, timeout_ns=3700 * 10**9, namespace="com.example.short")
    worker, _ = make_worker(net, builder_image, docker_host, tmp_path / "state", build_timeout_s=3700)
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


def test_rounds_per_namespace_and_a_correction(net: Net, docker_host: str, builder_image: Any,
                                               tmp_path: Path) -> None:
    """One wasm in two namespaces is two rounds, each verified on its own; a round rejected for a wrong commit
    is corrected by a new request in the same namespace, which the worker then verifies."""
    stack = net.stack
    repo, commit, wasm = net.app_repo(OTHER_APP.replace("Howdy", "Hi"))
    wasm_id = stack.upload(wasm, namespace="com.example.first")
    stack.upload(wasm, namespace="com.example.second")
    assert "ok" in stack.request(wasm_id, commit="f" * 40, namespace="com.example.first", repo=repo)
    assert "ok" in stack.request(wasm_id, commit=commit, namespace="com.example.second", repo=repo)
    first, second = stack.request_id(wasm_id, "com.example.first"), stack.request_id(wasm_id, "com.example.second")
    stack.bounty(wasm_id, namespace="com.example.first")
    stack.bounty(wasm_id, namespace="com.example.second")
    worker, _ = make_worker(net, builder_image, docker_host, tmp_path / "state")
    try:
        run_until_idle(worker)
        assert {j.request_id: j.verdict for j in worker.journal.jobs()} == {first: "diverge", second: "attest"}
        assert outcome_in(net, wasm_id, "com.example.first") == "Rejected"
        assert outcome_in(net, wasm_id, "com.example.second") == "Verified"
        filings = {f["request_id"]: f for f in net.filings(wasm_id)}
        meta = {r: {k: next(iter(v.values())) for k, v in f["metadata"]} for r, f in filings.items()}
        assert "cannot fetch commit" in filings[first]["report"][0] and "126:found_hash" not in meta[first]
        assert meta[first]["126:request_id"] == first and meta[first]["126:commit_hash"] == "f" * 40
        assert meta[second]["126:request_id"] == second and meta[second]["126:found_hash"] == wasm_id

        assert "ok" in stack.request(wasm_id, commit=commit, namespace="com.example.first", repo=repo)
        corrected = stack.request_id(wasm_id, "com.example.first")
        assert corrected != first
        stack.bounty(wasm_id, namespace="com.example.first")
        run_until_idle(worker)
    finally:
        worker.close()
    last = worker.journal.get(max(j.bounty_id for j in worker.journal.jobs()))
    assert last is not None and last.request_id == corrected
    assert outcome_in(net, wasm_id, "com.example.first") == "Verified"
    rounds = stack.status(wasm_id, "com.example.first")["rounds"]
    assert [(r["request"]["id"], next(iter(r["outcome"][0]))) for r in rounds] == [(first, "Rejected"),
                                                                                   (corrected, "Verified")]
    assert [j.state for j in worker.journal.jobs()] == ["filed"] * 3


def test_an_expired_unused_reservation_is_taken_over(net: Net, docker_host: str, builder_image: Any,
                                                     tmp_path: Path) -> None:
    """Another verifier reserved the bounty and let its reservation (the hub's shortest, a minute) run out
    unused: the round stays listed, the worker reserves the bounty (the hub slashes the idle verifier's stake
    as it cleans that lock up), rebuilds and attests. The minute passes by moving the replica's clock (and the
    worker's, which reads it), not by sleeping."""
    stack = net.stack
    assert "ok" in stack.hub("set_policy", {"lock_duration_ns": 60 * 10**9, "stake_per_reservation": STAKE},
                             sender=GOV)
    idle = principal("verifier4")
    stack.stake(idle)
    repo, commit, wasm = net.app_repo(HELLO.replace("Hello", "Hallo"))
    wasm_id, bounty_id = net.submit(wasm, repo, commit)
    assert bounty_id is not None and "ok" in stack.reserve(idle, bounty_id)
    until = stack.registry("icrc127_get_bounty", bounty_id)[0]["state"]["Reserved"]["until"]
    worker, _ = make_worker(net, builder_image, docker_host, tmp_path / "state")
    try:
        worker.run_once()  # held by the idle verifier: nothing to take yet
        assert worker.journal.jobs() == []
        net.advance(max(0.0, (until - net.clock()) / 1e9) + 1)
        run_until_idle(worker)
    finally:
        worker.close()
    (job,) = worker.journal.jobs()
    assert job.bounty_id == bounty_id and job.state == "filed"
    assert only_filing(net, wasm_id)["attested"] and outcome(net, wasm_id) == "Verified"
    assert stack.profile(idle)["slashed"] == STAKE and stack.bounty_state(bounty_id) == "Paid"


def outcome_in(net: Net, wasm_id: str, namespace: str) -> str | None:
    status = net.stack.status(wasm_id, namespace)
    return next(iter(status["outcome"][0])) if status["outcome"] else None


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
