"""`prometheus`: the app, its global options and its command groups (imports stay lazy for a fast `--help`)."""

from __future__ import annotations

import typer

from prometheus_cli import (
    allowance,
    attest,
    attestations,
    auth,
    bounties,
    build,
    developer,
    identities,
    instances,
    localnet,
    store,
    tokens,
    toolchain,
)
from prometheus_cli.context import Options

app = typer.Typer(
    name="prometheus",
    help="Verifiable software supply chain for the Internet Computer.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(ctx: typer.Context, value: bool) -> None:
    """`prometheus --version` (eager: runs without a command); `--json` is eager too and comes first."""
    if value:
        toolchain.print_version(bool(ctx.params.get("as_json")))
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    network: str = typer.Option(None, "--network", envvar="PROMETHEUS_NETWORK",
                                help="local (default), ic, or an http(s) URL."),
    identity: str = typer.Option(None, "--identity", envvar="PROMETHEUS_IDENTITY",
                                 help="Identity name (see `prometheus identity list`)."),
    as_json: bool = typer.Option(False, "--json", is_eager=True, help="Machine-readable output for every command."),
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_version, expose_value=False,
                                 help="Show the version, the build recipe and the canister interfaces it expects."),
) -> None:
    from prometheus_cli import output

    output.GLOBAL_JSON = as_json
    ctx.obj = Options(network=network, identity=identity, as_json=as_json)
    toolchain.enable_auto_install(as_json)


app.command()(developer.init)
app.command()(developer.submit)
app.command()(developer.status)
app.command()(developer.publish)
app.command()(developer.verify)
app.command()(build.build)
app.command()(instances.deploy)
app.command()(instances.upgrade)
app.command()(instances.revert)
app.command()(instances.instances)
app.add_typer(bounties.app, name="bounty")
app.add_typer(attestations.app, name="attestation")
app.add_typer(identities.app, name="identity")
app.add_typer(tokens.app, name="token")
app.add_typer(localnet.app, name="localnet")
app.add_typer(toolchain.app, name="toolchain")
app.add_typer(store.app, name="store")
app.add_typer(attest.app, name="attest")
app.add_typer(auth.app, name="auth")
app.add_typer(allowance.app, name="allowance")


def global_json_anywhere(args: list[str]) -> list[str]:
    """`--json` is a global option; accept it after the command too (`prometheus status --json`), as users
    type it, by moving it in front (every command reads the global flag)."""
    end = args.index("--") if "--" in args else len(args)
    if "--json" not in args[:end]:
        return args
    return ["--json"] + [a for a in args[:end] if a != "--json"] + args[end:]


def run() -> None:
    import sys

    from prometheus_build.assets import AssetsMissing
    from prometheus_build.toolchain import ToolchainMissing

    args = global_json_anywhere(sys.argv[1:])
    try:
        app(args=args, prog_name="prometheus")
    except (ToolchainMissing, AssetsMissing) as exc:  # the last net: a missing toolchain is never a traceback
        from prometheus_cli.output import _print_error

        _print_error(str(exc), getattr(exc, "hint", None), "--json" in args)
        raise SystemExit(1) from None
