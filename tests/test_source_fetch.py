"""Fetching developer source safely, from real git repositories served over HTTP on loopback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prometheus_build.source import Limits, SourceError, TransientSourceError, fetch
from testkit.git_server import add_submodule, git, make_repo, serve

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
        tree = fetch(f"{url}/app.git", sha, tmp_path / "out", allow_local=True)
    assert (tmp_path / "out" / "src" / "main.mo").read_text() == MAIN
    assert not (tmp_path / "out" / "later.txt").exists() and not (tmp_path / "out" / ".git").exists()
    assert tree.files == 3 and tree.skipped == []


def test_hostile_entries_are_skipped_or_refused(tmp_path: Path) -> None:
    def hostile(work: Path) -> None:
        os.symlink("/etc/passwd", work / "passwd-link")
        (work / ".gitattributes").write_text("*.mo filter=evil\n")
        git("config", "filter.evil.smudge", "touch /tmp/prometheus-pwned", cwd=work)
        add_submodule(work, "vendor/sub")

    sha = make_repo(tmp_path / "srv", "hostile", {"src/main.mo": MAIN}, hostile)
    with serve(tmp_path / "srv") as url:
        tree = fetch(f"{url}/hostile.git", sha, tmp_path / "out", allow_local=True)
    out = tmp_path / "out"
    assert not (out / "passwd-link").exists() and not (out / "vendor" / "sub" / "x").exists()
    assert sorted(tree.skipped) == ["passwd-link (symlink)", "vendor/sub (submodule)"]
    assert (out / "src" / "main.mo").read_text() == MAIN  # written raw: the smudge filter never ran
    assert not Path("/tmp/prometheus-pwned").exists()


def test_files_are_readable_by_the_sandbox_whatever_the_umask(tmp_path: Path) -> None:
    sha = make_repo(tmp_path / "srv", "app", {"src/main.mo": MAIN, "bin/tool": "#!/x"})
    old = os.umask(0o077)
    try:
        with serve(tmp_path / "srv") as url:
            fetch(f"{url}/app.git", sha, tmp_path / "out", allow_local=True)
    finally:
        os.umask(old)
    assert (tmp_path / "out" / "src").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "out" / "src" / "main.mo").stat().st_mode & 0o777 == 0o644
    assert not any(p.name.startswith("prometheus-source-") for p in tmp_path.iterdir())  # git scratch removed


def test_size_limits_are_checked_before_reading(tmp_path: Path) -> None:
    sha = make_repo(tmp_path / "srv", "big", {"blob.bin": os.urandom(300_000), "src/main.mo": MAIN})
    with serve(tmp_path / "srv") as url:
        with pytest.raises(SourceError, match="over the 100000-byte limit"):
            fetch(f"{url}/big.git", sha, tmp_path / "out", Limits(max_file_bytes=100_000), allow_local=True)
        with pytest.raises(SourceError, match="larger than the limits"):
            fetch(f"{url}/big.git", sha, tmp_path / "out2", Limits(max_files=1), allow_local=True)


def test_bad_requests_are_refused(tmp_path: Path) -> None:
    sha = make_repo(tmp_path / "srv", "app", {"src/main.mo": MAIN})
    for url in ("file:///etc", "ssh://host/repo", "https://user:pw@example.com/r.git", "-uhttps://x",
                "https://example.com/r.git --upload-pack=evil", "ext::sh -c evil"):
        with pytest.raises(SourceError, match="refusing repository URL"):
            fetch(url, sha, tmp_path / "o1")
    with pytest.raises(SourceError, match="refusing repository URL"):
        fetch("http://127.0.0.1/app.git", sha, tmp_path / "o1")  # plain http only when explicitly allowed
    for host in ("127.0.0.1", "10.1.2.3", "169.254.169.254", "[::1]", "localhost"):
        with pytest.raises(SourceError, match="non-public address"):  # no probing the verifier's own network
            fetch(f"https://{host}/app.git", sha, tmp_path / "o1")
    for commit in ("main", sha[:12], sha.upper(), "--upload-pack=x" + "0" * 26):
        with pytest.raises(SourceError, match="refusing commit"):
            fetch("https://example.com/r.git", commit, tmp_path / "o2")
    with serve(tmp_path / "srv") as url:
        with pytest.raises(SourceError, match="cannot fetch commit") as missing:
            fetch(f"{url}/app.git", "0" * 40, tmp_path / "o3", allow_local=True)
        assert "push the commit to a branch, or allow fetching by SHA" in str(missing.value)
        with pytest.raises(SourceError):
            fetch(f"{url}/missing.git", sha, tmp_path / "o4", allow_local=True)
    with pytest.raises(TransientSourceError, match="cannot reach"):
        fetch("http://127.0.0.1:9/app.git", sha, tmp_path / "o5", allow_local=True)
