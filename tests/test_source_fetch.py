"""Fetching developer source safely, from real git repositories served over HTTP on loopback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.git_server import git, make_repo, serve
from verifier_bot.source import Limits, SourceError, TransientSourceError, fetch

MAIN = "persistent actor { public query func hi() : async Text { \"hi\" } };\n"


def test_fetches_exactly_the_commit(tmp_path: Path) -> None:
    sha = make_repo(tmp_path / "srv", "app", {"src/main.mo": MAIN, "README.md": "hello", "build.sh": "echo"})
    # a later commit on the branch must not leak into the fetched tree
    work = tmp_path / "srv" / "app-work"
    (work / "later.txt").write_text("later")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "later", cwd=work)
    git("push", "-q", str(tmp_path / "srv" / "app.git"), "main", cwd=work)
    with serve(tmp_path / "srv") as url:
        tree = fetch(f"{url}/app.git", sha, tmp_path / "out", allow_http=True)
    assert (tmp_path / "out" / "src" / "main.mo").read_text() == MAIN
    assert not (tmp_path / "out" / "later.txt").exists() and not (tmp_path / "out" / ".git").exists()
    assert tree.files == 3 and tree.skipped == []


def test_hostile_entries_are_skipped_or_refused(tmp_path: Path) -> None:
    def hostile(work: Path) -> None:
        os.symlink("/etc/passwd", work / "passwd-link")
        (work / ".gitattributes").write_text("*.mo filter=evil\n")
        git("config", "filter.evil.smudge", "touch /tmp/prometheus-pwned", cwd=work)
        sub = work.parent / "sub-work"
        sub.mkdir()
        git("init", "-q", cwd=sub)
        (sub / "x").write_text("x")
        git("add", "x", cwd=sub)
        git("commit", "-q", "-m", "x", cwd=sub)
        git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "vendor/sub", cwd=work)

    sha = make_repo(tmp_path / "srv", "hostile", {"src/main.mo": MAIN}, hostile)
    with serve(tmp_path / "srv") as url:
        tree = fetch(f"{url}/hostile.git", sha, tmp_path / "out", allow_http=True)
    out = tmp_path / "out"
    assert not (out / "passwd-link").exists() and not (out / "vendor" / "sub" / "x").exists()
    assert sorted(tree.skipped) == ["passwd-link (symlink)", "vendor/sub (submodule)"]
    assert (out / "src" / "main.mo").read_text() == MAIN  # written raw: the smudge filter never ran
    assert not Path("/tmp/prometheus-pwned").exists()


def test_size_limits_are_checked_before_reading(tmp_path: Path) -> None:
    sha = make_repo(tmp_path / "srv", "big", {"blob.bin": os.urandom(300_000), "src/main.mo": MAIN})
    with serve(tmp_path / "srv") as url:
        with pytest.raises(SourceError, match="over the 100000-byte limit"):
            fetch(f"{url}/big.git", sha, tmp_path / "out", Limits(max_file_bytes=100_000), allow_http=True)
        with pytest.raises(SourceError, match="larger than the limits"):
            fetch(f"{url}/big.git", sha, tmp_path / "out2", Limits(max_files=1), allow_http=True)


def test_bad_requests_are_refused(tmp_path: Path) -> None:
    sha = make_repo(tmp_path / "srv", "app", {"src/main.mo": MAIN})
    for url in ("file:///etc", "ssh://host/repo", "https://user:pw@example.com/r.git", "-uhttps://x",
                "https://example.com/r.git --upload-pack=evil", "ext::sh -c evil"):
        with pytest.raises(SourceError, match="refusing repository URL"):
            fetch(url, sha, tmp_path / "o1")
    with pytest.raises(SourceError, match="refusing repository URL"):
        fetch("http://127.0.0.1/app.git", sha, tmp_path / "o1")  # plain http only when explicitly allowed
    for commit in ("main", sha[:12], sha.upper(), "--upload-pack=x" + "0" * 26):
        with pytest.raises(SourceError, match="refusing commit"):
            fetch("https://example.com/r.git", commit, tmp_path / "o2")
    with serve(tmp_path / "srv") as url:
        with pytest.raises(SourceError, match="cannot fetch commit"):
            fetch(f"{url}/app.git", "0" * 40, tmp_path / "o3", allow_http=True)
        with pytest.raises(SourceError):
            fetch(f"{url}/missing.git", sha, tmp_path / "o4", allow_http=True)
    with pytest.raises(TransientSourceError, match="cannot reach"):
        fetch("http://127.0.0.1:9/app.git", sha, tmp_path / "o5", allow_http=True)
