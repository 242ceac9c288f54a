"""Fetch a repository at one exact commit without trusting it.

No clone and no checkout: an empty bare repository with a locked-down configuration (no hooks, no symlinks,
no submodules, fsck on, only http(s)), a shallow fetch of the full commit SHA, then files written straight
from the object database — so `.gitattributes` filters, hooks and checkout tricks never run. Symlinks and
submodules are skipped, `..`/`.git` paths refused, and blob sizes checked before a blob is read. Git runs
with argument lists only (never a shell) and without the user's or the system's git configuration.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

COMMIT = re.compile(r"^[0-9a-f]{40}$")
FETCH_TIMEOUT_S = 120


class SourceError(Exception):
    """The source cannot be fetched (deterministic: the request is wrong, or the repository is hostile)."""


class TransientSourceError(SourceError):
    """The repository could not be reached; trying again later may work."""


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 10 * 1024 * 1024
    max_total_bytes: int = 200 * 1024 * 1024
    max_files: int = 20_000


@dataclass
class SourceTree:
    root: Path
    commit: str
    files: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)  # symlinks and submodules, with the reason


def validate_url(url: str, allow_http: bool = False) -> str:
    """https URLs (http only when asked, e.g. loopback tests); no credentials, no options smuggled in."""
    parsed = urlparse(url)
    schemes = {"https", "http"} if allow_http else {"https"}
    if (parsed.scheme not in schemes or not parsed.hostname or parsed.username or parsed.password
            or url.startswith("-") or any(c in url for c in "\x00\n\r\t ") or len(url) > 2048):
        raise SourceError(f"refusing repository URL {url!r}: use a plain https:// URL")
    return url


def validate_commit(commit: str) -> str:
    if not COMMIT.match(commit):
        raise SourceError(f"refusing commit {commit!r}: a full 40-character lowercase hex SHA is required")
    return commit


def _git_env(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "GIT_ALLOW_PROTOCOL": "http:https",
        "LC_ALL": "C",
    }


_HARDENING = [
    ("core.hooksPath", os.devnull), ("core.symlinks", "false"), ("core.protectNTFS", "true"),
    ("core.protectHFS", "true"), ("transfer.fsckObjects", "true"), ("fetch.fsckObjects", "true"),
    ("fetch.recurseSubmodules", "false"), ("submodule.recurse", "false"), ("protocol.allow", "never"),
    ("protocol.https.allow", "always"), ("protocol.http.allow", "always"), ("http.followRedirects", "false"),
    ("gc.auto", "0"),
]


def _git(args: list[str], cwd: Path, env: dict[str, str], timeout: float = FETCH_TIMEOUT_S) -> str:
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                              check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise TransientSourceError(f"git {args[0]} timed out after {timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise SourceError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"git {args[0]} failed")
    return proc.stdout


def fetch(repo_url: str, commit: str, dest: Path, limits: Limits = Limits(), allow_http: bool = False) -> SourceTree:
    """Write the tree of `commit` from `repo_url` into `dest` (which must not exist yet)."""
    import git  # GitPython: reads the object database only, it never checks out

    validate_url(repo_url, allow_http)
    validate_commit(commit)
    if dest.exists():
        raise SourceError(f"{dest} already exists")
    work = Path(tempfile.mkdtemp(prefix="prometheus-source-"))
    try:
        env = _git_env(work)
        bare = work / "repo.git"
        _git(["init", "--bare", "--quiet", str(bare)], work, env)
        for key, value in _HARDENING:
            _git(["config", key, value], bare, env)
        try:
            _git(["fetch", "--quiet", "--depth=1", "--no-tags", "--no-recurse-submodules", "--", repo_url, commit],
                 bare, env)
        except SourceError as exc:
            text = str(exc)
            if any(s in text for s in ("Could not resolve", "Connection refused", "timed out", "Failed to connect",
                                       "unable to access")):
                raise TransientSourceError(f"cannot reach {repo_url}: {text}") from exc
            raise SourceError(f"cannot fetch commit {commit} from {repo_url}: {text}") from exc
        repo = git.Repo(bare, odbt=git.GitCmdObjectDB)
        try:
            commit_obj = repo.commit(commit)
        except (ValueError, git.BadName) as exc:
            raise SourceError(f"{commit} is not a commit of {repo_url}") from exc
        tree = SourceTree(dest, commit)
        dest.mkdir(parents=True)
        listing = repo.git.ls_tree("-r", "-z", "-l", "--full-tree", commit_obj.hexsha)
        _write_entries(repo, listing, tree, limits)
        return tree
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _write_entries(repo: object, listing: str, out: SourceTree, limits: Limits) -> None:
    """Write every blob of `git ls-tree -r -z -l` output; sizes come from the listing, before any read."""
    for record in filter(None, listing.split("\0")):
        meta, _, path_text = record.partition("\t")
        mode, kind, sha, size_text = meta.split()
        parts = path_text.split("/")
        if any(p in ("", ".", "..") or p.lower() in (".git", ".git.") or "\\" in p for p in parts):
            raise SourceError(f"refusing path {path_text!r}: hostile tree entry")
        if kind == "commit" or mode == "160000":
            out.skipped.append(f"{path_text} (submodule)")
            continue
        if mode == "120000":
            out.skipped.append(f"{path_text} (symlink)")
            continue
        if kind != "blob":
            raise SourceError(f"refusing {path_text!r}: unexpected {kind} entry")
        size = int(size_text)
        if size > limits.max_file_bytes:
            raise SourceError(f"{path_text} is {size} bytes, over the {limits.max_file_bytes}-byte limit per file")
        if out.bytes + size > limits.max_total_bytes or out.files + 1 > limits.max_files:
            raise SourceError("the source tree is larger than the limits allow")
        target = out.root.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        data = repo.odb.stream(bytes.fromhex(sha)).read()  # type: ignore[attr-defined]
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        fd = os.open(target, flags, 0o755 if mode == "100755" else 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        out.files += 1
        out.bytes += size
