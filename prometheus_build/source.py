"""Fetch a repository at one exact commit without trusting it.

No clone and no checkout: an empty bare repository with a locked-down configuration (no hooks, no symlinks,
no submodules, fsck on, only http(s)), a shallow fetch of the full commit SHA, then files written straight
from the object database — so `.gitattributes` filters, hooks and checkout tricks never run. Symlinks and
submodules are skipped, `..`/`.git` paths refused, and blob sizes checked before a blob is read. Git runs
with argument lists only (never a shell) and without the user's or the system's git configuration.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_sdk.urls import HostUnresolved, RepoPolicy, RepoUrlRefused, check_repo_url

COMMIT = re.compile(r"^[0-9a-f]{40}$")
FETCH_TIMEOUT_S = 120
# Signs, anywhere in git's stderr, that the network (not the request) failed: try again later.
_TRANSIENT = ("could not resolve host", "failed to connect", "couldn't connect", "connection refused",
              "timed out", "early eof", "remote end hung up", "rpc failed", "connection reset",
              "returned error: 5", "ssl", "gnutls", "temporary failure")


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


def validate_url(url: str, allow_local: bool | RepoPolicy = False) -> str:
    """The shared policy (`prometheus_sdk.urls`, the same the CLI applies at `init`/`submit`): https on public
    hosts; a `RepoPolicy` (the worker's: loopback on a local network, ALLOW_LOCAL_REPOS for http and
    private hosts anywhere), or `True` for both (tests and tools on loopback)."""
    policy = allow_local if isinstance(allow_local, RepoPolicy) else RepoPolicy(allow_local, allow_local)
    try:
        return check_repo_url(url, policy, resolve_host=True)
    except HostUnresolved as exc:
        raise TransientSourceError(str(exc)) from exc
    except RepoUrlRefused as exc:
        raise SourceError(f"refusing repository URL {url!r}: {exc}") from exc


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


def _git(args: list[str], cwd: Path, env: dict[str, str], timeout: float = FETCH_TIMEOUT_S,
         max_file_bytes: int | None = None) -> str:
    """Run git (never a shell); `max_file_bytes` caps every file git and its helpers write (RLIMIT_FSIZE)."""
    argv = ["git", *args]
    prlimit = shutil.which("prlimit")
    if max_file_bytes is not None and prlimit:
        argv = [prlimit, f"--fsize={max_file_bytes}", "--core=0", "--", *argv]
    try:
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                              check=False, stdin=subprocess.DEVNULL, errors="backslashreplace")
    except subprocess.TimeoutExpired as exc:
        raise TransientSourceError(f"git {args[0]} timed out after {timeout:.0f} s") from exc
    if proc.returncode != 0:
        stderr = proc.stderr.strip()
        last = stderr.splitlines()[-1] if stderr else f"git {args[0]} failed"
        if any(sign in stderr.lower() for sign in _TRANSIENT):
            raise TransientSourceError(last)
        if "index-pack failed" in stderr or "file size limit" in stderr.lower():
            raise SourceError(f"the download is larger than the limits allow or not a valid pack ({last})")
        raise SourceError(last)
    return proc.stdout


def fetch(repo_url: str, commit: str, dest: Path, limits: Limits = Limits(),
          allow_local: bool | RepoPolicy = False) -> SourceTree:
    """Write the tree of `commit` from `repo_url` into `dest` (which must not exist yet). The git database
    lives next to `dest` while fetching, and every file written is capped by the limits."""
    import git  # GitPython: reads the object database only, it never checks out

    validate_commit(commit)
    validate_url(repo_url, allow_local)
    if dest.exists():
        raise SourceError(f"{dest} already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="prometheus-source-", dir=dest.parent))
    repo = None
    try:
        env = _git_env(work)
        bare = work / "repo.git"
        _git(["init", "--bare", "--quiet", str(bare)], work, env)
        for key, value in _HARDENING:
            _git(["config", key, value], bare, env)
        try:
            _git(["fetch", "--quiet", "--depth=1", "--no-tags", "--no-recurse-submodules",
                  f"--filter=blob:limit={limits.max_file_bytes + 1}", "--", repo_url, commit], bare, env,
                 max_file_bytes=limits.max_total_bytes + 64 * 1024 * 1024)
        except TransientSourceError as exc:
            raise TransientSourceError(f"cannot reach {repo_url}: {exc}") from exc
        except SourceError as exc:
            why = ""
            if "unadvertised object" in str(exc) or "not our ref" in str(exc):
                why = (" (the server has no such commit, or serves only branch tips: push the commit to a "
                       "branch, or allow fetching by SHA, e.g. uploadpack.allowReachableSHA1InWant)")
            raise SourceError(f"cannot fetch commit {commit} from {repo_url}: {exc}{why}") from exc
        repo = git.Repo(bare, odbt=git.GitCmdObjectDB)
        try:
            commit_obj = repo.commit(commit)
        except (ValueError, git.BadName) as exc:
            raise SourceError(f"{commit} is not a commit of {repo_url}") from exc
        tree = SourceTree(dest, commit)
        dest.mkdir(mode=0o755)
        dest.chmod(0o755)
        listing = repo.git.ls_tree("-r", "-z", "-l", "--full-tree", commit_obj.hexsha)
        try:
            write_entries(repo, listing, tree, limits)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EMFILE, errno.ENFILE):
                raise TransientSourceError(f"cannot write the source on this machine: {exc}") from exc
            raise SourceError(f"cannot write the source tree: {exc.strerror} ({exc.filename!r})") from exc
        return tree
    finally:
        if repo is not None:
            repo.close()  # stops GitPython's persistent `git cat-file` helpers
        shutil.rmtree(work, ignore_errors=True)


def _make_dirs(root: Path, parts: list[str]) -> None:
    current = root
    for part in parts:
        current = current / part
        if not current.is_dir():
            current.mkdir(mode=0o755)
            current.chmod(0o755)


def write_entries(repo: object, listing: str, out: SourceTree, limits: Limits) -> None:
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
        _make_dirs(out.root, parts[:-1])
        data = repo.odb.stream(bytes.fromhex(sha)).read()  # type: ignore[attr-defined]
        if len(data) != size:
            raise SourceError(f"{path_text}: blob size differs from the tree listing")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        fd = os.open(target, flags, 0o600)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o755 if mode == "100755" else 0o644)  # readable by the sandbox whatever the umask
            f.write(data)
        out.files += 1
        out.bytes += size


def fetch_cached(repo_url: str, commit: str, cache_dir: Path, limits: Limits = Limits(),
                 allow_local: bool | RepoPolicy = False) -> Path:
    """A dependency's tree at `commit`, fetched once into `cache_dir` with the same hardened `fetch` (and the
    same caps) the verifier uses; the developer's host reuses it. A commit's tree never changes, so the cache
    key is the URL and the commit; a finished fetch is renamed into place, so a crash leaves no partial tree."""
    import hashlib

    validate_commit(commit)
    key = hashlib.sha256(repo_url.encode()).hexdigest()[:16]
    final = cache_dir / f"{key}-{commit}"
    if final.is_dir():
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache_dir))
    try:
        fetch(repo_url, commit, staging / "tree", limits, allow_local)
        try:
            os.rename(staging / "tree", final)
        except OSError:
            if not final.is_dir():  # another process won the race otherwise
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
