"""`prometheus`: the app, its global options and its command groups (imports stay lazy for a fast `--help`)."""

from __future__ import annotations

import typer

from prometheus_cli import bounties, build, developer, identities, localnet, tokens
from prometheus_cli.context import Options

app = typer.Typer(
    name="prometheus",
    help="Verifiable software supply chain for the Internet Computer.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    network: str = typer.Option(None, "--network", envvar="PROMETHEUS_NETWORK",
                                help="local (default), ic, or an http(s) URL."),
    identity: str = typer.Option(None, "--identity", envvar="PROMETHEUS_IDENTITY",
                                 help="Identity name (see `prometheus identity list`)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output for every command."),
) -> None:
    from prometheus_cli import output

    output.GLOBAL_JSON = as_json
    ctx.obj = Options(network=network, identity=identity, as_json=as_json)


app.command()(developer.init)
app.command()(developer.submit)
app.command()(developer.status)
app.command()(developer.publish)
app.command()(developer.verify)
app.command()(build.build)
app.add_typer(bounties.app, name="bounty")
app.add_typer(identities.app, name="identity")
app.add_typer(tokens.app, name="token")
app.add_typer(localnet.app, name="localnet")


def run() -> None:
    app()
