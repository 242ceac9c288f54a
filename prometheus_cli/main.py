"""`prometheus`: the app and its command groups (imports stay lazy so `--help` starts fast)."""

from __future__ import annotations

import typer

from prometheus_cli import localnet

app = typer.Typer(
    name="prometheus",
    help="Verifiable software supply chain for the Internet Computer.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(localnet.app, name="localnet")


def run() -> None:
    app()
