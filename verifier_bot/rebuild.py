"""One verification, start to verdict: fetch the commit, find the entry point, build in the sandbox, compare.

Deterministic problems (a malformed URL, a missing commit, a hostile tree, a compile error, a timeout, a
different hash) are verdicts — a divergence with a one-line reason. Only transient problems (the repository
or Docker unreachable) raise `Transient`, so the caller retries instead of filing something wrong.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from verifier_bot import sandbox, source
from verifier_bot.image import BuilderImage

MANIFEST = "prometheus.yml"
DEFAULT_MAIN = "src/main.mo"
MAX_MANIFEST_BYTES = 64 * 1024


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


def _relative(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{MANIFEST}: {key} must be a non-empty relative path")
    path = PurePosixPath(value)
    if path.is_absolute() or any(part in ("..", ".git") for part in path.parts) or "\\" in value:
        raise ValueError(f"{MANIFEST}: {key} {value!r} must stay inside the repository")
    return path.as_posix()


def entry_point(tree: Path) -> tuple[str, str]:
    """(source_dir, main) from the repository's prometheus.yml; defaults to ('.', 'src/main.mo')."""
    import yaml

    manifest = tree / MANIFEST
    source_dir, main = ".", DEFAULT_MAIN
    if manifest.is_file() and not manifest.is_symlink():
        if manifest.stat().st_size > MAX_MANIFEST_BYTES:
            raise ValueError(f"{MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes")
        try:
            data = yaml.safe_load(manifest.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ValueError(f"{MANIFEST} is not valid YAML: {str(exc).splitlines()[0]}") from None
        except RecursionError:
            raise ValueError(f"{MANIFEST} nests too deeply") from None
        if not isinstance(data, dict):
            raise ValueError(f"{MANIFEST} must be a mapping")
        source_dir = _relative(data.get("source_dir", "."), "source_dir")
        main = _relative(data.get("main", DEFAULT_MAIN), "main")
    if not (tree / source_dir / main).is_file():
        raise ValueError(f"the entry point {PurePosixPath(source_dir, main)} is not in the repository")
    return source_dir, main


def verify(client: Any, image: BuilderImage, repo: str, commit: str, expected: str, work: Path,
           limits: sandbox.Limits, source_limits: source.Limits, allow_local: bool = False, owner: str = "") -> Verdict:
    """Rebuild `repo`@`commit` in the sandbox and compare with `expected`; `work` is scratch, removed after.
    `work` is private (0700): nobody else on the host may swap the output between the build and the hash."""
    if work.exists():
        shutil.rmtree(work)  # a previous attempt's leftovers (the worker was killed mid-build)
    work.parent.mkdir(parents=True, exist_ok=True)
    work.mkdir(mode=0o700)
    work.chmod(0o700)
    try:
        try:
            tree = source.fetch(repo, commit, work / "src", source_limits, allow_local=allow_local)
        except source.TransientSourceError as exc:
            raise SourceUnreachable(str(exc)) from exc
        except source.SourceError as exc:
            return Verdict(False, None, clean(f"source: {exc}"), 0.0)
        skipped = [clean(s, 200) for s in tree.skipped]
        try:
            source_dir, main = entry_point(tree.root)
        except ValueError as exc:
            return Verdict(False, None, clean(f"source: {exc}"), 0.0, skipped=skipped)
        try:
            result = sandbox.build(client, image, tree.root / source_dir, main, work / "out", limits, owner)
        except sandbox.SandboxUnavailable as exc:
            raise Transient(str(exc)) from exc
        log = clean(result.log, sandbox.Limits().log_excerpt_bytes)
        if not result.ok:
            return Verdict(False, None, clean(result.reason), result.seconds, log, skipped)
        if result.sha256 != expected:
            return Verdict(False, result.sha256, f"rebuilt wasm has sha256 {result.sha256}, the request says "
                           f"{expected}", result.seconds, log, skipped)
        return Verdict(True, result.sha256, "", result.seconds, log, skipped)
    finally:
        shutil.rmtree(work, ignore_errors=True)
