"""`prometheus build`: the manifest's canister, built with the verifiers' recipe, into a predictable path.

The same plan as the verifier (`prometheus_build.project`: canister, toolchain, packages from prometheus.yml
and mops.toml); git packages are fetched with the verifier's hardened fetch into a cache on this machine
(`$XDG_CACHE_HOME/prometheus/deps`, else `~/.cache/prometheus/deps`). `--sandbox` builds in the builder image
instead of with the toolchain on this machine (same bytes). Used by `submit --build` and `verify` too.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from prometheus_cli import manifest as manifests
from prometheus_cli.output import console, emit, fail, user_errors

BUILD_DIR = Path(".prometheus") / "build"
ManifestOption = typer.Option(Path(manifests.MANIFEST), "--manifest", "-m", help="Path of prometheus.yml.")
Say = Callable[[str], None]


def dependency_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "prometheus" / "deps"


class HostFetcher:
    """Git packages for builds on this machine: fetched once per (URL, commit) into the cache; remembers
    each tree's root so a sandboxed build can mount it."""

    def __init__(self, say: Say | None = None, cache: Path | None = None) -> None:
        self.say, self.cache = say or (lambda _line: None), cache or dependency_cache()
        self.roots: dict[str, Path] = {}

    def __call__(self, name: str, url: str, commit: str) -> Path:
        from prometheus_build import source

        self.say(f"fetching package {name} from {url} at {commit[:12]}")
        try:
            root = source.fetch_cached(url, commit, self.cache, allow_local=True)
        except source.SourceError as exc:
            raise RuntimeError(str(exc)) from None
        self.roots[name] = root
        return root


def plan_tree(root: Path, data: Mapping[str, Any], fetcher: HostFetcher, label: str = manifests.MANIFEST) -> Any:
    """`prometheus_build.project.plan`, its errors as one CLI line naming the file and the package."""
    from prometheus_build import project
    from prometheus_build.toolchain import ToolchainMissing

    try:
        return project.plan(root, data, fetcher, label)
    except project.ProjectError as exc:
        fail(str(exc), "see docs/build.md (packages, toolchains)")
    except ToolchainMissing as exc:
        fail(str(exc), exc.hint)


def manifest_data(m: manifests.Manifest) -> dict[str, Any]:
    from dataclasses import asdict

    return {k: v for k, v in asdict(m).items() if v not in ("", {}, None)}


def find_root(source: Path, main: str) -> tuple[Path, dict[str, Any]]:
    """The checkout holding `source` and its prometheus.yml (for callers that only know the source folder):
    the nearest folder above with a prometheus.yml whose source_dir is `source`; else `source` itself."""
    from prometheus_build import project

    source = source.resolve()
    for folder in (source, *source.parents):
        if (folder / manifests.MANIFEST).is_file():
            try:
                data = project.load_manifest(folder)
            except project.ProjectError as exc:
                fail(str(exc))
            if (folder / str(data.get("source_dir") or ".")).resolve() == source:
                return folder, {**data, "main": main}
            break
    return source, {"main": main}


def _copy_tree(src: Path, dest: Path) -> None:
    """What a verifier would see: regular files only (no symlinks), no .git."""
    def ignore(folder: str, names: list[str]) -> set[str]:
        return {n for n in names if n == ".git" or os.path.islink(os.path.join(folder, n))}

    shutil.copytree(src, dest, ignore=ignore)


def build_in_sandbox(plan: Any, fetcher: HostFetcher, tmp: Path, say: Say) -> tuple[str, str, str]:
    """(sha256, image tag, did text) of the plan built in its toolchain's builder image; the checkout and its
    git packages are copied under one read-only mount, as the verifier lays them out."""
    import docker

    from prometheus_build import sandbox
    from prometheus_build.image import ImageError, image_for
    from prometheus_build.recipe import plan_json

    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as exc:
        fail(f"cannot reach Docker: {exc}", "start Docker (or `prometheus-verifier dockerd start`), or use "
             "--no-sandbox to build with the toolchain on this machine")
    mount = tmp / "mount"
    _copy_tree(plan.root, mount / "repo")
    for name, root in fetcher.roots.items():
        _copy_tree(root, mount / "deps" / name)
    place = {}
    for p in plan.packages:
        if p.base is None:
            continue
        bases = [(plan.root, "repo"), *((r, f"deps/{n}") for n, r in fetcher.roots.items())]
        for top, inside in bases:
            try:
                place[p.name] = f"/src/{inside}/{p.base.resolve().relative_to(top.resolve()).as_posix()}"
                break
            except ValueError:
                continue
    try:
        image = image_for(client, plan.toolchain.moc_version, say)
        say(f"compiling {plan.main} with moc {plan.toolchain.moc_version} in {image.tag}")
        result = sandbox.build(client, image, mount, plan.main, tmp / "out", root=f"/src/repo/{plan.source_dir}",
                               plan=plan_json(plan.packages, place))
    except (ImageError, sandbox.SandboxUnavailable) as exc:
        fail(str(exc), "check Docker, or use --no-sandbox")
    if not result.ok or result.sha256 is None:
        fail(f"{result.reason}\n{result.log.strip()}")
    return str(result.sha256), image.tag, (tmp / "out" / sandbox.DID_NAME).read_text()


def build_on_host(plan: Any, out_dir: Path, name: str, say: Say, cache: Path | None = None) -> Any:
    """BuildResult of the plan with this machine's toolchain, cached by source digest (`cache`, default
    `~/.cache/prometheus/build`; `verify` passes an empty one so it really recompiles)."""
    from prometheus_build import project
    from prometheus_build.recipe import BuildError

    say(f"compiling {plan.main} with moc {plan.toolchain.moc_version}")
    try:
        return project.build(plan, out_dir, cache or dependency_cache().parent / "build", name)
    except BuildError as exc:
        fail(str(exc), exc.hint)


def output_path(m: manifests.Manifest, manifest_path: Path, canister: str) -> Path:
    """The manifest's wasm_path when it names a .wasm, else .prometheus/build/<canister>.wasm next to it."""
    if m.wasm_path.endswith(".wasm"):
        return (manifest_path.parent / m.wasm_path).resolve()
    return (manifest_path.parent / BUILD_DIR / f"{canister}.wasm").resolve()


@contextmanager
def progress(quiet: bool) -> Iterator[Say]:
    """A Rich spinner on stderr whose text follows the steps (nothing with --json or when not a terminal)."""
    if quiet:
        yield lambda _line: None
        return
    from rich.console import Console

    err = Console(stderr=True)
    with err.status("planning the build") as status:
        yield lambda line: status.update(line)


def build_manifest(m: manifests.Manifest, path: Path, out: Path | None = None, sandboxed: bool = False,
                   quiet: bool = True) -> dict[str, Any]:
    """Build the manifest's canister from its checkout; returns what `prometheus build --json` prints."""
    import tempfile

    root = path.parent.resolve()
    with progress(quiet) as say:
        fetcher = HostFetcher(say)
        plan = plan_tree(root, manifest_data(m), fetcher)
        target = (out.resolve() if out else output_path(m, path, plan.canister))
        did_path = target.with_suffix(".did")
        if sandboxed:
            with tempfile.TemporaryDirectory(prefix="prometheus-build-") as tmp:
                sha, where, did = build_in_sandbox(plan, fetcher, Path(tmp), say)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(Path(tmp) / "out" / "app.wasm", target)
                did_path.write_text(did)
            cached, seconds = False, 0.0
        else:
            with tempfile.TemporaryDirectory(prefix="prometheus-build-") as tmp:
                result = build_on_host(plan, Path(tmp), plan.canister, say)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(result.wasm, target)
                shutil.copyfile(result.did, did_path)
            sha, where, did, cached, seconds = result.sha256, "host toolchain", did_path.read_text(), \
                result.cached, result.seconds
    warnings = list(plan.warnings)
    if plan.candid:
        checked_in = root / plan.candid
        if not checked_in.is_file():
            warnings.append(f"{manifests.MANIFEST}: candid file {plan.candid} does not exist")
        elif checked_in.read_text().strip() != did.strip():
            warnings.append(f"{plan.candid} differs from the compiler's interface ({did_path}); the wasm embeds "
                            "the compiler's")
    return {"canister": plan.canister, "wasm": str(target), "did": str(did_path), "sha256": sha,
            "cached": cached, "seconds": round(seconds, 3), "built_in": where, **plan.describe(),
            "warnings": warnings}


def build(
    ctx: typer.Context,
    out: Path | None = typer.Option(None, "--out", "-o", help="Where to write the wasm (default: wasm_path, or "
                                                               ".prometheus/build/<canister>.wasm)."),
    sandboxed: bool = typer.Option(False, "--sandbox/--no-sandbox", help="Build in the verifiers' builder image "
                                                                         "(Docker) instead of this machine's "
                                                                         "toolchain; same bytes."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    path: Path = ManifestOption,
) -> None:
    """Build the manifest's canister with the verifiers' recipe and print its sha256.

    Reads prometheus.yml (canister, main, toolchain, packages) and mops.toml ([dependencies], [toolchain]
    moc); see docs/build.md. Example: prometheus build
    """
    as_json = as_json or bool(getattr(ctx.obj, "as_json", False))
    with user_errors(as_json):
        m = manifests.load(path)
        result = build_manifest(m, path, out, sandboxed, quiet=as_json)
        from prometheus_cli import gitsource

        # this builds the working tree; verifiers build the manifest's commit: say when they differ
        result["warnings"] = list(result["warnings"]) + gitsource.submit_warnings(
            path.parent.resolve(), m.commit, path.parent / m.source_dir, (path, Path(result["wasm"])))

    def render(r: dict[str, Any]) -> None:
        import sys

        for warning in r["warnings"]:
            print(f"warning: {warning}", file=sys.stderr)
        origin = "cached" if r["cached"] else r["built_in"]
        pkgs = ", ".join(f"{p['name']} ({p['kind']})" for p in r["packages"]) or "none"
        console().print(f"{r['sha256']}  {r['wasm']}  ({origin}; moc {r['toolchain']['moc']}; packages: {pkgs})",
                        soft_wrap=True)

    emit(result, as_json, render)
