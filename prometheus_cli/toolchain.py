"""`prometheus toolchain install | list | path`: the pinned Motoko toolchain the build recipe runs.

An installed Prometheus carries the toolchain's package.json and package-lock.json, not the toolchain itself:
`install` runs `npm ci` from that lockfile (every package checked against its integrity hash) into a per-user
cache (`$XDG_CACHE_HOME/prometheus/toolchain/<lockfile digest>`, or `$PROMETHEUS_TOOLCHAIN_DIR`), never into
site-packages. Commands that compile install it on first use when a person is at the terminal
(`enable_auto_install`); scripts and `--json` get an error naming `prometheus toolchain install` instead.
"""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import typer

from prometheus_cli.output import console, emit, fail, user_errors

app = typer.Typer(help="The pinned Motoko toolchain (moc.js and ic-wasm from npm) the build recipe runs.",
                  no_args_is_help=True)
JsonOut = typer.Option(False, "--json", help="Machine-readable output.")
AUTO_ENV = "PROMETHEUS_TOOLCHAIN_AUTO_INSTALL"  # 1: always install on first use, 0: never; unset: when interactive


def _json(as_json: bool) -> bool:
    from prometheus_cli import output

    return as_json or output.GLOBAL_JSON


def progress_line(line: str) -> None:
    """One progress line on stderr (stdout stays the command's output)."""
    print(f"toolchain: {line}", file=sys.stderr, flush=True)


def enable_auto_install(as_json: bool) -> None:
    """Install a missing toolchain on first use, with progress on stderr, when a person runs the command (stdin
    and stderr are terminals, no --json) or `$PROMETHEUS_TOOLCHAIN_AUTO_INSTALL=1`; otherwise a command that
    needs it fails with the hint `prometheus toolchain install` (no surprise downloads in scripts and CI)."""
    from prometheus_build import toolchain

    setting = os.environ.get(AUTO_ENV, "")
    if setting == "1":
        auto = True
    elif setting == "0" or as_json:
        auto = False
    else:
        auto = bool(sys.stdin and sys.stdin.isatty() and sys.stderr and sys.stderr.isatty())
    toolchain.set_auto_install(progress_line if auto else None)


def _failed(exc: Exception) -> NoReturn:
    from prometheus_build.toolchain import ToolchainMissing

    if isinstance(exc, ToolchainMissing):
        fail(str(exc), exc.hint)
    fail(str(exc))


@app.command()
def install(
    force: bool = typer.Option(False, "--force", help="Reinstall even if it is installed."),
    as_json: bool = JsonOut,
) -> None:
    """Download every pinned toolchain from the npm registry (npm ci, checked against the lockfile's integrity
    hashes) into the per-user cache, or $PROMETHEUS_TOOLCHAIN_DIR. Needs node and npm.

    Example: prometheus toolchain install
    """
    from prometheus_build import assets, toolchain

    as_json = _json(as_json)
    with user_errors(as_json):
        try:
            folder, origin = toolchain.locate()
            if origin == "checkout" and toolchain.installed(folder) and not force:
                if not as_json:
                    progress_line(f"this checkout's toolchain is installed (make setup): {folder}")
            elif origin == "checkout":  # commands use the checkout's node_modules: an install elsewhere would not help
                fail(f"this checkout's {folder}/node_modules lacks a pinned toolchain", "run `make setup`")
            else:
                folder = toolchain.install_toolchain(toolchain.install_dir(), None if as_json else progress_line,
                                                     force=force)
        except (toolchain.ToolchainMissing, assets.AssetsMissing, OSError) as exc:
            _failed(exc)
        result = {"installed": True, "path": str(folder), "lock_sha256": toolchain.lock_sha256(),
                  "packages": toolchain.packages_text()}
        emit(result, as_json, lambda r: console().print(f"Motoko toolchain ready in {r['path']}", soft_wrap=True))


def rows(verify: bool = False) -> list[dict[str, Any]]:
    """One row per supported moc version: npm package, default or not, installed or not, where; with `verify`,
    also `verified` (whether its moc.js and ic-wasm match the sha256 recorded at install; None: none recorded)
    and `problems` (what differs)."""
    from prometheus_build import toolchain

    folder, origin = toolchain.locate()
    out = []
    for moc, spec in toolchain.TOOLCHAINS.items():
        row = {"moc": moc, "npm": f"motoko@{spec.npm}", "bundles": spec.bundles,
               "default": moc == toolchain.DEFAULT_MOC, "installed": toolchain.installed(folder, spec),
               "path": str(folder / "node_modules" / spec.folder), "from": origin}
        if verify and row["installed"]:
            problems = toolchain.verify_files(folder, spec)
            row["verified"] = None if problems is None else not problems
            row["problems"] = problems or []
        out.append(row)
    return out


@app.command("list")
def list_command(
    verify: bool = typer.Option(False, "--verify", help="Also check each installed toolchain's moc.js and ic-wasm "
                                "against the sha256 recorded at install (exit 1 on a difference)."),
    as_json: bool = JsonOut,
) -> None:
    """The moc versions this Prometheus supports, their npm packages, and whether each is installed (and where).

    Example: prometheus toolchain list --verify
    """
    from prometheus_build import assets, toolchain

    as_json = _json(as_json)
    with user_errors(as_json):
        try:
            found = rows(verify)
        except (toolchain.ToolchainMissing, assets.AssetsMissing, OSError) as exc:
            _failed(exc)
        problems = [p for r in found for p in r.get("problems", [])]
        if problems:
            fail(f"the installed toolchain differs from what was installed: {'; '.join(dict.fromkeys(problems))}",
                 "run `prometheus toolchain install --force`", details={"toolchains": found})

        def render(items: list[dict[str, Any]]) -> None:
            from prometheus_cli.output import table

            t = table("moc", "npm package", "bundles", "installed", "path", full=("path",))
            for r in items:
                state = ("no" if not r["installed"] else "yes" if "verified" not in r
                         else "yes, files verified" if r["verified"]
                         else "yes (no hashes recorded)" if r["verified"] is None else "yes, FILES CHANGED")
                t.add_row(r["moc"] + (" (default)" if r["default"] else ""), r["npm"], r["bundles"], state, r["path"])
            console().print(t)
            folder, origin = toolchain.locate()
            console().print(f"toolchain folder: {folder} ({origin}); ic-wasm {toolchain.IC_WASM_VERSION}",
                            soft_wrap=True)
            if not all(r["installed"] for r in items):
                console().print("install with `prometheus toolchain install`")

        emit(found, as_json, render)


@app.command()
def path(
    moc: str | None = typer.Option(None, "--moc", help="A moc version (default: the recipe's default)."),
    as_json: bool = JsonOut,
) -> None:
    """Print the installed toolchain's folder for a moc version (the npm motoko package); fails if it is not
    installed.

    Example: prometheus toolchain path --moc 0.16.1
    """
    from prometheus_build import assets, toolchain

    as_json = _json(as_json)
    with user_errors(as_json):
        try:
            spec = toolchain.resolve_moc(moc)
        except (toolchain.UnknownToolchain, assets.AssetsMissing) as exc:
            fail(str(exc), "`prometheus toolchain list` shows the supported versions")
        try:
            folder, origin = toolchain.locate()
        except toolchain.ToolchainMissing as exc:
            _failed(exc)
        where = folder / "node_modules" / spec.folder
        if not toolchain.installed(folder, spec):
            problem = toolchain.check_folder(folder) if origin != "checkout" else None
            fail(problem or f"moc {spec.moc} (npm motoko@{spec.npm}) is not installed; it goes to {where} ({origin})",
                 "run `prometheus toolchain install`", details={"path": str(where), "installed": False})
        emit({"moc": spec.moc, "npm": f"motoko@{spec.npm}", "path": str(where), "toolchain_dir": str(folder),
              "from": origin}, as_json, lambda r: print(r["path"]))


def version_info() -> dict[str, Any]:
    """What `prometheus --version` prints: the package version, the build recipe, the toolchain lockfile and the
    sha256 of every canister interface this CLI speaks (compare them with a deployment's)."""
    from importlib import metadata

    from prometheus_build import assets, toolchain
    from prometheus_build.recipe import RECIPE_VERSION

    try:
        version = metadata.version(assets.DISTRIBUTION)
    except metadata.PackageNotFoundError:
        version = "unknown (not installed)"
    return {"version": version, "recipe": RECIPE_VERSION,
            "assets": "packaged" if assets.packaged() else f"checkout {assets.checkout_root()}",
            "toolchain": {"default_moc": toolchain.DEFAULT_MOC, "npm": toolchain.packages_text(),
                          "lock_sha256": toolchain.lock_sha256()},
            "interfaces": {name: digest[:12] for name, digest in assets.interfaces().items()}}


def print_version(as_json: bool) -> None:
    from prometheus_build.assets import AssetsMissing

    try:
        info = version_info()
    except (AssetsMissing, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None

    def render(i: dict[str, Any]) -> None:
        print(f"prometheus {i['version']} (recipe {i['recipe']}, default moc {i['toolchain']['default_moc']}, "
              f"toolchain lockfile sha256 {i['toolchain']['lock_sha256'][:12]})")
        print("canister interfaces (sha256 of the .did it expects):")
        width = max((len(n) for n in i["interfaces"]), default=0)
        for name, digest in i["interfaces"].items():
            print(f"  {name:<{width}}  {digest}")

    emit(info, as_json, render)
