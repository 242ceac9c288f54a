"""`prometheus store`: index the registry's log, search it, serve the web view / REST API / MCP endpoint, or
run the MCP discovery server on stdio for an agent (docs/store.md)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer

from prometheus_cli import exits
from prometheus_cli.context import Options, client, connection
from prometheus_cli.output import console, emit, fail, table, user_errors

app = typer.Typer(help="The app store: find verified MCP servers (web view, REST, MCP discovery).",
                  no_args_is_help=True)

IndexPath = typer.Option(None, "--index", help="The index file (default: one per registry under "
                                               "$XDG_DATA_HOME/prometheus/store).")
MaxAge = typer.Option(600.0, "--max-age", min=1.0, help="Refuse a tip certificate older than this many seconds "
                                                        "(a replayed answer would freeze the index).")
Attestation = typer.Option(None, "--attestation", help="Require attested agents on the MCP server as this JSON "
                                                       "file says (docs/attest.md).")


def _attestation(path: Path | None) -> Any:
    """The AttestationExtension a configuration file describes (None: no attestation)."""
    if path is None:
        return None
    from prometheus_attest import config
    from prometheus_attest.errors import AttestationError

    try:
        return config.load(path)
    except AttestationError as exc:
        fail(exc.message, "see docs/attest.md for the configuration's members")


def _opts(ctx: typer.Context) -> Options:
    return ctx.obj if isinstance(ctx.obj, Options) else Options()


def _default_index(registry: str) -> Path:
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "prometheus" / "store" / f"{registry}.sqlite"


def _open(opts: Options, index_path: Path | None) -> tuple[Any, Any, Any]:
    """(index, registry client, root key) for the options' network."""
    import sqlite3

    from prometheus_store.index import Index, StoreError

    conn = connection(opts)
    registry = client(conn, "mcp_registry")
    path = index_path or _default_index(str(registry.canister_id))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return Index(path, str(registry.canister_id)), registry, conn.root_key
    except StoreError as exc:
        fail(str(exc), "pass another --index file, or delete this one: it is rebuilt from the chain")
    except (sqlite3.Error, OSError) as exc:
        fail(f"cannot open the index {path}: {exc}", "pass another --index file (a path this user can write)")


def _sync(index: Any, registry: Any, root_key: bytes, max_age: float) -> Any:
    """One update; a log that does not verify exits 7, a registry that cannot be read (or whose answer does not
    decode) exits 1; either way nothing past the last verified block was indexed."""
    from prometheus_sdk.errors import SdkError
    from prometheus_sdk.icrc3 import ChainError

    try:
        return index.sync(registry, root_key, int(max_age * 1e9))
    except ChainError as exc:
        fail(f"the registry's log does not verify: {exc}", "nothing past the last verified block was indexed; "
             "check that you talk to the network you mean (`--network`)", code=exits.TAMPERED)
    except SdkError as exc:
        fail(f"cannot read the registry's log: {exc}", "nothing past the last verified block was indexed; "
             "try again later")


def _first_update(index: Any, registry: Any, root_key: bytes, max_age: float) -> None:
    """Before serving: one update. If it fails, the store serves what it verified before and the follower keeps
    trying (said on stderr and in /healthz)."""
    try:
        index.sync(registry, root_key, int(max_age * 1e9))
    except Exception as exc:
        print(f"prometheus store: the index could not be updated now ({type(exc).__name__}: {str(exc)[:300]}); "
              f"serving the {index.status()['listings']} app(s) verified before, and retrying", file=sys.stderr,
              flush=True)


@app.command("index")
def index_command(ctx: typer.Context, index_path: Path | None = IndexPath, max_age: float = MaxAge) -> None:
    """Bring the index up to the registry's certified tip (resumes from the last block indexed)."""
    opts = _opts(ctx)
    with user_errors(opts.as_json):
        index, registry, root_key = _open(opts, index_path)
        report = _sync(index, registry, root_key, max_age)
        result = {"index": str(index.path), "applied": report.applied, "next_block": report.next_index,
                  "listings_changed": report.namespaces, "listings": index.status()["listings"]}
        emit(result, opts.as_json, lambda r: console().print(
            f"indexed {r['applied']} block(s); {r['listings']} app(s), next block {r['next_block']} ({r['index']})"))


@app.command()
def search(
    ctx: typer.Context,
    query: str = typer.Argument("", help="Words to look for (names, descriptions, tools, tags)."),
    all_tiers: bool = typer.Option(False, "--all", help="Include unverified and rejected apps."),
    min_tier: str | None = typer.Option(None, "--min-tier", help="unverified, verified or audited."),
    category: str | None = typer.Option(None, "--category"),
    no_credentials: bool = typer.Option(False, "--no-credentials", help="Only apps that need no credentials."),
    limit: int = typer.Option(10, "--limit", min=1, max=100),
    index_path: Path | None = IndexPath,
    max_age: float = MaxAge,
) -> None:
    """Search the index (brought up to date first). Example: prometheus store search weather --no-credentials"""
    from prometheus_store.tiers import Tier

    opts = _opts(ctx)
    with user_errors(opts.as_json):
        try:
            tier = Tier.parse(min_tier) if min_tier else None
        except ValueError as exc:
            fail(str(exc))
        index, registry, root_key = _open(opts, index_path)
        _sync(index, registry, root_key, max_age)
        found = index.search(query, verified_only=not all_tiers, min_tier=tier, category=category,
                             no_credentials=no_credentials, limit=limit)

        def render(rows: list[dict[str, Any]]) -> None:
            from rich.text import Text

            t = table("app", "tier", "version", "namespace", "description")
            for r in rows:  # listing fields are the submitters' text: never Rich markup
                t.add_row(*(Text(str(v)) for v in (r["name"], r["tier"], r["version"] or "—", r["namespace"],
                                                   r["description"][:60])))
            console().print(t if rows else "no app matches" + ("" if all_tiers else " (add --all for unverified)"))

        emit(found, opts.as_json, render)


@app.command()
def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8090, "--port", min=1, max=65535),
    interval: float = typer.Option(5.0, "--interval", min=0.2, help="Seconds between index updates."),
    base_url: str | None = typer.Option(None, "--base-url", help="The URL clients reach this server at "
                                                                 "(default: http://HOST:PORT)."),
    index_path: Path | None = IndexPath,
    max_age: float = MaxAge,
    attestation: Path | None = Attestation,
) -> None:
    """Serve the web view at /, the MCP registry API at /v0/servers and the MCP discovery server at /mcp."""
    import uvicorn

    from prometheus_store.follower import Follower
    from prometheus_store.web import create_app

    opts = _opts(ctx)
    with user_errors(opts.as_json):
        if host not in ("127.0.0.1", "localhost", "::1") and not base_url:
            fail(f"serving on {host} needs --base-url", "the URL browsers and MCP clients reach this server at, "
                 "e.g. --base-url https://store.example.org: its links use it, and /mcp accepts only that host")
        extension = _attestation(attestation)
        index, registry, root_key = _open(opts, index_path)
        _first_update(index, registry, root_key, max_age)
        follower = Follower(index, registry, root_key, interval, int(max_age * 1e9))
        follower.start()
        url = base_url or (f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}")
        print(f"prometheus store: serving registry {index.registry} at {url} (MCP: {url}/mcp)", file=sys.stderr,
              flush=True)
        uvicorn.run(create_app(index, url, host, follower.state, extension), host=host, port=port,
                    log_level="warning")
        follower.stop.set()


@app.command()
def mcp(ctx: typer.Context, interval: float = typer.Option(5.0, "--interval", min=0.2),
        index_path: Path | None = IndexPath, max_age: float = MaxAge, attestation: Path | None = Attestation) -> None:
    """The MCP discovery server on stdio, for an agent's MCP client configuration:
    {"command": "prometheus", "args": ["store", "mcp"]}"""
    from prometheus_store import discovery
    from prometheus_store.follower import Follower

    opts = _opts(ctx)
    with user_errors(opts.as_json):
        extension = _attestation(attestation)
        index, registry, root_key = _open(opts, index_path)
        _first_update(index, registry, root_key, max_age)
        follower = Follower(index, registry, root_key, interval, int(max_age * 1e9))
        follower.start()
        discovery.build(index, attestation=extension).run("stdio")
        follower.stop.set()
