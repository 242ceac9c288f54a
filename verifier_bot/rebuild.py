"""One verification, start to verdict: fetch the commit, find the entry point, build in the sandbox, compare.

Deterministic problems (a malformed URL, a missing commit, a hostile tree, a compile error, a timeout, a
different hash) are verdicts — a divergence with a one-line reason. Only transient problems (the repository
or Docker unreachable) raise `Transient`, so the caller retries instead of filing something wrong.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from prometheus_build import sandbox, source
from prometheus_build.image import BuilderImage, ImageError, image_for
from prometheus_sdk.urls import RepoPolicy


class Transient(RuntimeError):
    """Could not verify right now (network, Docker); nothing may be filed, try again later."""


class SourceUnreachable(Transient):
    """The repository could not be reached. Unlike Docker or the replica, this is the requester's side:
    after enough attempts the worker reports it instead of retrying until its stake is slashed."""


def clean(text: str, limit: int = 1024) -> str:
    """Text we file on chain: valid UTF-8 (hostile paths may not be), one bounded string."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")[:limit]


@dataclass
class Verdict:
    attested: bool
    found_hash: str | None
    report: str  # why it diverged ("" when attested)
    build_seconds: float
    log: str = ""
    skipped: list[str] = field(default_factory=list)
    canister: str = ""
    toolchain: str = ""  # the moc version built with
    packages: list[dict[str, str]] = field(default_factory=list)  # the package set, each with its sha256
    image: BuilderImage | None = None  # the builder image used (one per toolchain)


def attestation_metadata(verdict: Verdict) -> dict[str, Any]:
    """The build's identity for the filing (ICRC-126 metadata): canister, toolchain, the builder image
    actually used (overrides the worker's default image), and the package set with a digest over it."""
    meta: dict[str, Any] = {}
    if verdict.canister:
        meta["126:canister"] = verdict.canister
    if verdict.image is not None:
        meta["126:toolchain"] = f"moc {verdict.image.moc} (motoko@{verdict.image.motoko})"
        meta["126:toolchain_digest"] = verdict.image.toolchain_digest
        meta["126:image_digest"] = f"sha256:{verdict.image.rootfs_digest}"
    if verdict.packages:
        keep = ("name", "kind", "version", "sha256", "repo", "commit", "path")
        listing = [{k: p[k] for k in keep if p.get(k)} for p in verdict.packages]
        text = json.dumps(listing, sort_keys=True, separators=(",", ":"))
        meta["126:packages_digest"] = hashlib.sha256(text.encode()).hexdigest()
        meta["126:packages"] = text if len(text) <= 2000 else "; ".join(f"{p['name']}@{p['sha256'][:16]}"
                                                                         for p in listing)[:2000]
    return meta


def verify(client: Any, image: BuilderImage, repo: str, commit: str, expected: str, work: Path,
           limits: sandbox.Limits, source_limits: source.Limits, allow_local: bool | RepoPolicy = False,
           owner: str = "") -> Verdict:
    """Rebuild `repo`@`commit` in the sandbox and compare with `expected`; `work` is scratch, removed after.
    `work` is private (0700): nobody else on the host may swap the output between the build and the hash.
    The repository's prometheus.yml names the canister, toolchain and packages; git packages are fetched
    here, with the same hardened fetch and the remaining size budget, before the sandbox starts. `image` is
    the default toolchain's; another pinned toolchain gets its own image (`image.image_for`)."""
    from prometheus_build import project
    from prometheus_build.recipe import plan_json
    from prometheus_build.toolchain import ToolchainMissing

    if work.exists():
        shutil.rmtree(work)  # a previous attempt's leftovers (the worker was killed mid-build)
    work.parent.mkdir(parents=True, exist_ok=True)
    work.mkdir(mode=0o700)
    work.chmod(0o700)
    mount = work / "mount"  # /src in the sandbox: repo/ (the commit) and deps/ (fetched packages)
    mount.mkdir(mode=0o755)
    mount.chmod(0o755)
    try:
        try:
            tree = source.fetch(repo, commit, mount / "repo", source_limits, allow_local=allow_local)
        except source.TransientSourceError as exc:
            raise SourceUnreachable(str(exc)) from exc
        except source.SourceError as exc:
            return Verdict(False, None, clean(f"source: {exc}"), 0.0)
        skipped = [clean(s, 200) for s in tree.skipped]
        budget = [source_limits.max_total_bytes - tree.bytes]
        unreachable: list[Exception] = []

        def fetch_git(name: str, url: str, pinned: str) -> Path:
            limits_left = source.Limits(source_limits.max_file_bytes, max(budget[0], 0), source_limits.max_files)
            try:
                dep = source.fetch(url, pinned, mount / "deps" / f"{len(unreachable)}-{name}-{pinned[:12]}",
                                   limits_left, allow_local=allow_local)
            except source.TransientSourceError as exc:
                unreachable.append(exc)
                raise
            budget[0] -= dep.bytes
            skipped.extend(clean(f"{name}: {s}", 200) for s in dep.skipped)
            return dep.root

        try:
            plan = project.plan(tree.root, project.load_manifest(tree.root), fetch_git)
        except ToolchainMissing as exc:
            raise Transient(f"this verifier lacks a pinned toolchain: {exc}") from exc
        except project.ProjectError as exc:
            if unreachable:
                raise SourceUnreachable(str(exc)) from exc
            return Verdict(False, None, clean(f"source: {exc}"), 0.0, skipped=skipped)
        try:
            if image.motoko and image.motoko == plan.toolchain.motoko_version:
                chosen = image
            else:
                chosen = image_for(client, plan.toolchain.moc_version)
        except ImageError as exc:
            raise Transient(str(exc)) from exc
        inside = {p.name: f"/src/{p.base.relative_to(mount).as_posix()}" for p in plan.packages if p.base}

        def verdict(attested: bool, found: str | None, report: str, seconds: float, log: str) -> Verdict:
            return Verdict(attested, found, report, seconds, log, skipped, canister=plan.canister,
                           toolchain=plan.toolchain.moc_version, packages=[p.as_dict() for p in plan.packages],
                           image=chosen)

        try:
            result = sandbox.build(client, chosen, mount, plan.main, work / "out", limits, owner,
                                   root=f"/src/{PurePosixPath('repo', plan.source_dir).as_posix()}",
                                   plan=plan_json(plan.packages, inside))
        except sandbox.SandboxUnavailable as exc:
            raise Transient(str(exc)) from exc
        log = clean(result.log, sandbox.Limits().log_excerpt_bytes)
        if not result.ok:
            return verdict(False, None, clean(result.reason), result.seconds, log)
        if result.sha256 != expected:
            return verdict(False, result.sha256, f"rebuilt wasm has sha256 {result.sha256}, the request says "
                           f"{expected}", result.seconds, log)
        return verdict(True, result.sha256, "", result.seconds, log)
    finally:
        shutil.rmtree(work, ignore_errors=True)
