"""`prometheus identity new | import | list | use | whoami` (dfx's identities are found by name too)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from prometheus_cli.output import console, emit, user_errors
from prometheus_cli.output import table as output_table

app = typer.Typer(help="Manage signing identities (our store; dfx's store is read as it is).", no_args_is_help=True)


def _json(ctx: typer.Context) -> bool:
    return bool(getattr(ctx.obj, "as_json", False))


@app.command()
def new(ctx: typer.Context, name: str = typer.Argument(..., help="Identity name."),
        key_type: str = typer.Option("ed25519", "--type", help="ed25519 or secp256k1.")) -> None:
    """Create an identity (a new key, stored 0600). Example: prometheus identity new verifier --type secp256k1"""
    from prometheus_sdk import identity

    with user_errors(_json(ctx)):
        created = identity.create(name, key_type)
        emit({"name": name, "principal": str(created.sender())}, _json(ctx),
             lambda r: console().print(f"created {r['name']}: {r['principal']}"))


@app.command("import")
def import_(ctx: typer.Context, name: str = typer.Argument(...),
            pem: Path = typer.Argument(..., help="PEM file.")) -> None:
    """Import an unencrypted PEM (Ed25519 or secp256k1). Example: prometheus identity import ci ci.pem"""
    from prometheus_sdk import identity

    with user_errors(_json(ctx)):
        imported = identity.import_pem(name, pem)
        emit({"name": name, "principal": str(imported.sender())}, _json(ctx),
             lambda r: console().print(f"imported {r['name']}: {r['principal']}"))


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """List identities with their principals; the selected one is marked *."""
    from prometheus_sdk import identity

    with user_errors(_json(ctx)):
        current = identity.selected()
        rows = [{"name": i.name, "source": i.source, "principal": i.principal, "selected": i.name == current}
                for i in identity.list_identities()]

        def render(items: list[dict[str, Any]]) -> None:

            table = output_table("", "name", "source", "principal", full=("principal",))
            for r in items:
                table.add_row("*" if r["selected"] else "", r["name"], r["source"], r["principal"])
            console().print(table)

        emit(rows, _json(ctx), render)


@app.command()
def use(ctx: typer.Context, name: str = typer.Argument(...)) -> None:
    """Select the identity used when --identity is not given."""
    from prometheus_sdk import identity

    with user_errors(_json(ctx)):
        identity.use(name)
        emit({"selected": name}, _json(ctx), lambda r: console().print(f"using {r['selected']}"))


@app.command()
def whoami(ctx: typer.Context) -> None:
    """Print the selected identity and its principal."""
    from prometheus_sdk import identity

    with user_errors(_json(ctx)):
        name = getattr(ctx.obj, "identity", None) or identity.selected()
        principal = str(identity.load(name).sender())
        emit({"name": name, "principal": principal}, _json(ctx),
             lambda r: console().print(f"{r['name']}: {r['principal']}"))
