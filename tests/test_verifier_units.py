"""The worker's journal, configuration and entry-point rules on their own (no canisters, no Docker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from prometheus_build.project import entry_point
from verifier_bot import config as configuration
from verifier_bot.journal import Journal


def test_journal_survives_reopen_and_only_lost_bounties_are_retried(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    journal = Journal(path)
    job_args = (7, "aa" * 32, "https://example.com/r.git", "b" * 40, "build_reproducibility_v1", 3)
    assert journal.begin(*job_args)
    assert not journal.begin(*job_args)
    journal.update(7, state="built", verdict="diverge", report="mismatch", metadata={"bounty_id": 7})
    journal.close()

    reopened = Journal(path)
    (job,) = reopened.jobs()
    assert (job.state, job.verdict, job.report, job.metadata) == ("built", "diverge", "mismatch", {"bounty_id": 7})
    assert job.request_id == 3
    # One job per verification round: the same wasm in another round (namespace, correction) is new work.
    assert reopened.known_round(3, "aa" * 32, "build_reproducibility_v1")
    assert not reopened.known_round(4, "aa" * 32, "build_reproducibility_v1")
    assert not reopened.known_round(3, "aa" * 32, "another_audit")
    assert not reopened.begin(*job_args)
    reopened.update(7, state="lost", last_error="AlreadyReserved")
    assert not reopened.known_round(3, "aa" * 32, "build_reproducibility_v1")
    assert reopened.begin(*job_args)
    assert reopened.get(7).state == "reserving" and reopened.get(7).last_error is None  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="unknown journal fields"):
        reopened.update(7, repo="https://evil.example.com")


def test_a_journal_from_before_rounds_gains_the_round_column(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "journal.sqlite3"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE jobs (bounty_id INTEGER PRIMARY KEY, wasm_id TEXT NOT NULL, repo TEXT NOT NULL,
            commit_hash TEXT NOT NULL, audit_type TEXT NOT NULL, state TEXT NOT NULL, expires_at INTEGER,
            verdict TEXT, found_hash TEXT, report TEXT, metadata TEXT, filing_index INTEGER,
            attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL DEFAULT 0, last_error TEXT,
            created REAL NOT NULL, updated REAL NOT NULL);
        INSERT INTO jobs (bounty_id, wasm_id, repo, commit_hash, audit_type, state, created, updated)
            VALUES (1, 'cc', 'https://example.com/r.git', 'dd', 'build_reproducibility_v1', 'reserved', 0, 0);
    """)
    old.close()
    journal = Journal(path)
    (job,) = journal.jobs()
    assert job.state == "reserved" and job.request_id is None
    assert journal.known_round(9, "cc", "build_reproducibility_v1")  # an old row counts for its wasm
    assert not journal.known_round(9, "ee", "build_reproducibility_v1")
    assert journal.begin(2, "ee", "https://example.com/r.git", "dd", "build_reproducibility_v1", 9)
    assert journal.get(2).request_id == 9  # type: ignore[union-attr]
    journal.close()
    assert Journal(path).get(1).request_id is None  # type: ignore[union-attr]  # reopening adds nothing twice


def test_config_file_with_environment_overrides(tmp_path: Path) -> None:
    file = tmp_path / "verifier.toml"
    file.write_text('verifier_pem = "/keys/v.pem"\nverifier_registry_id = "r"\nverifier_audit_hub_id = "h"\n'
                    'POLL_INTERVAL_MS = 5000\nmax_concurrent_jobs = 2\nallow_local_repos = true\n')
    cfg = configuration.load(env={"MAX_CONCURRENT_JOBS": "3", "IC_NETWORK": "ic"}, file=file)
    assert (cfg.pem, cfg.registry_id, cfg.audit_hub_id, cfg.network) == ("/keys/v.pem", "r", "h", "ic")
    assert (cfg.poll_interval_s, cfg.max_concurrent_jobs, cfg.allow_local_repos) == (5.0, 3, True)
    assert cfg.build_timeout_s == 600 and cfg.audit_type == "build_reproducibility_v1"
    (tmp_path / "bad.toml").write_text("poll = [")
    with pytest.raises(configuration.ConfigError, match="not valid TOML"):
        configuration.load(env={}, file=tmp_path / "bad.toml")
    with pytest.raises(configuration.ConfigError, match="ALLOW_LOCAL_REPOS must be true or false"):
        configuration.load(env={"ALLOW_LOCAL_REPOS": "maybe"}, file=file)


@pytest.mark.parametrize(("manifest", "files", "expected"), [
    (None, {"src/main.mo": ""}, (".", "src/main.mo")),
    ("source_dir: app\nmain: Main.mo\n", {"app/Main.mo": ""}, ("app", "Main.mo")),
    ("source_dir: ../../etc\n", {}, "must stay inside the repository"),
    ("main: /etc/passwd\n", {}, "must stay inside the repository"),
    ("main: .git/config\n", {}, "must stay inside the repository"),
    ("- a list\n", {}, "must be a mapping"),
    ("main: [unclosed\n", {}, "not valid YAML"),
    ("[" * 20000, {}, "nests too deeply"),
    (None, {"README.md": ""}, "entry point src/main.mo is not in the repository"),
])
def test_entry_point_comes_from_the_repository_manifest(tmp_path: Path, manifest: str | None,
                                                        files: dict[str, str], expected: object) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    if manifest is not None:
        (tmp_path / "prometheus.yml").write_text(manifest)
    if isinstance(expected, tuple):
        assert entry_point(tmp_path) == expected
    else:
        with pytest.raises(ValueError, match=str(expected)):
            entry_point(tmp_path)


def test_the_worker_applies_the_clis_url_policy() -> None:
    """On a local network loopback repositories are fine, private hosts are not (only ALLOW_LOCAL_REPOS opens
    them); on mainnet neither."""
    from prometheus_build.source import SourceError, validate_url

    env = {"VERIFIER_PEM": "/k.pem", "VERIFIER_REGISTRY_ID": "r", "VERIFIER_AUDIT_HUB_ID": "h"}
    local = configuration.load(env={**env, "VERIFIER_NETWORK": "http://127.0.0.1:4943"})
    assert validate_url("http://127.0.0.1:9/app.git", local.repo_policy)
    with pytest.raises(SourceError, match="https:// only"):
        validate_url("http://10.1.2.3/app.git", local.repo_policy)
    with pytest.raises(SourceError, match="non-public address"):
        validate_url("https://10.1.2.3/app.git", local.repo_policy)
    fleet = configuration.load(env={**env, "VERIFIER_NETWORK": "ic", "ALLOW_LOCAL_REPOS": "true"})
    assert validate_url("http://10.1.2.3/app.git", fleet.repo_policy)
    mainnet = configuration.load(env={**env, "VERIFIER_NETWORK": "ic"})
    with pytest.raises(SourceError, match="only when the network is local"):
        validate_url("https://127.0.0.1/app.git", mainnet.repo_policy)
