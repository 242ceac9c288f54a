"""The manifest's commit as a verifier will see it, taken from the local git object database.

`prometheus verify` must rebuild what verifiers rebuild — the commit in `prometheus.yml`, not the working
tree — or it says "matches" for a stale commit and the submission is rejected for good. Files are written
from the object database with the worker's own writer (`prometheus_build.source`): no checkout, no
`.gitattributes` filters, symlinks and submodules skipped, exactly as a verifier does.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_cli.output import fail

WORKTREE_HINT = "or pass --worktree to rebuild the working tree as it is"


@dataclass
class Checkout:
    root: Path  # where the commit's files were written
    toplevel: Path  # the local repository
    warnings: list[str] = field(default_factory=list)


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        fail(f"cannot run git: {exc}", "install git, " + WORKTREE_HINT)


def toplevel(folder: Path) -> Path:
    run = _git(["rev-parse", "--show-toplevel"], folder)
    if run.returncode != 0:
        fail(f"{folder} is not inside a git repository: verifiers rebuild the manifest's commit",
             "commit the app to git, " + WORKTREE_HINT)
    return Path(run.stdout.strip())


def export(folder: Path, commit: str, dest: Path, scope: Path | None = None,
           ignore: tuple[Path, ...] = ()) -> Checkout:
    """Write `commit` of the repository holding `folder` into `dest`; refuse if the commit is not there.
    Warnings compare the working tree under `scope` (default: the whole repository) with the commit, leaving
    out `ignore` (the manifest, which names the commit, and the built wasm) and `.prometheus*` caches."""
    import git

    from prometheus_build.source import Limits, SourceError, SourceTree, write_entries

    top = toplevel(folder)
    if _git(["cat-file", "-e", f"{commit}^{{commit}}"], top).returncode != 0:
        fail(f"commit {commit} (prometheus.yml) is not in the local repository {top}",
             "fix `commit` in prometheus.yml (git rev-parse HEAD) or `git fetch` it, " + WORKTREE_HINT)
    listing = _git(["ls-tree", "-r", "-z", "-l", commit], top)
    if listing.returncode != 0:
        fail(f"cannot list commit {commit}: {listing.stderr.strip()}")
    dest.mkdir(parents=True, exist_ok=True)
    try:
        write_entries(git.Repo(top), listing.stdout, SourceTree(root=dest, commit=commit), Limits())
    except SourceError as exc:
        fail(f"a verifier would refuse commit {commit}: {exc}")
    return Checkout(dest, top, warnings(top, commit, scope or top, ignore))


# Warnings that mean the local source is not the manifest's commit: the wasm built here will likely differ.
SOURCE_DIFFERS = ("prometheus.yml names commit", "the working tree differs")


def _names(out: str, skip: set[str]) -> list[str]:
    return [n for n in out.split("\0")
            if n and n not in skip and not any(part.startswith(".prometheus") for part in n.split("/"))]


def _shown(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def warnings(top: Path, commit: str, scope: Path, ignore: tuple[Path, ...] = ()) -> list[str]:
    """Why what verifiers fetch may not be what the developer is looking at: prometheus.yml naming an older
    commit than HEAD, uncommitted changes, or a commit no remote has."""
    out: list[str] = []
    where = str(scope.resolve())
    skip = {str(p.resolve().relative_to(top.resolve())) for p in ignore if p.resolve().is_relative_to(top.resolve())}
    head = _git(["rev-parse", "HEAD"], top).stdout.strip()
    since = _names(_git(["diff", "--name-only", "-z", commit, head, "--", where], top).stdout, skip) \
        if head and head != commit else []
    if since:
        out.append(f"prometheus.yml names commit {commit} but HEAD is {head}, and the source changed since "
                   f"({_shown(since)}): verifiers build {commit}; set `commit: {head}` in prometheus.yml "
                   "(once pushed)")
    base = head if since else commit
    changed = _git(["diff", "--name-only", "-z", base, "--", where], top).stdout
    untracked = _git(["ls-files", "--others", "--exclude-standard", "-z", "--", where], top).stdout
    names = _names(changed + "\0" + untracked, skip)
    if names:
        out.append(f"the working tree differs from commit {base} ({_shown(names)}): verifiers build commits; "
                   "commit your changes and update `commit` in prometheus.yml")
    remote = _git(["branch", "-r", "--contains", commit], top)
    if remote.returncode != 0 or not remote.stdout.strip():
        out.append(f"commit {commit} is on no remote branch: push it, or verifiers cannot fetch it")
    return out


def submit_warnings(folder: Path, commit: str, scope: Path, ignore: tuple[Path, ...] = ()) -> list[str]:
    """What `verify` would warn about, said at `submit` too: a stale commit gets a wasm rejected. Silent when
    the app is not in a local git repository (the commit may live only on the remote)."""
    run = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=folder, capture_output=True, text=True,
                         timeout=60, check=False) if shutil.which("git") else None
    if run is None or run.returncode != 0:
        return []
    top = Path(run.stdout.strip())
    if _git(["cat-file", "-e", f"{commit}^{{commit}}"], top).returncode != 0:
        return [f"commit {commit} (prometheus.yml) is not in the local repository {top}: verifiers will build "
                "that commit; check it with `prometheus verify`"]
    return warnings(top, commit, scope, ignore)
