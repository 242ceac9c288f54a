"""`prometheus deploy | upgrade | revert | instances`: canisters run only from verified versions, through
mcp_orchestrator.

The orchestrator checks everything itself (the version is published, verified in its namespace, not deprecated;
the chunks hash to it; the caller may act); these commands only name what to do and explain its refusals.
"""

from __future__ import annotations

import re
from typing import Any

import typer

from prometheus_cli import errors
from prometheus_cli.context import Options, client, connection
from prometheus_cli.output import console, emit, fail, user_errors
from prometheus_cli.output import table as output_table

_VERSION = re.compile(r"^(\d{1,9})\.(\d{1,9})\.(\d{1,9})$")
_HINTS = {
    "NotAuthorized": "namespace controllers (and governance) deploy; an instance's owner or a namespace controller "
                     "upgrades",
    "VersionNotFound": "a version exists once verified and published: `prometheus status`, `prometheus publish`",
    "NotVerified": "see `prometheus status --wasm <id>`",
    "Deprecated": "a namespace controller may still upgrade to it with --allow-deprecated",
    "Downgrade": "add --force-downgrade to go back",
    "InstanceNotFound": "see `prometheus instances`",
    "Busy": "another deploy or upgrade of this canister is running; try again when it ends",
    "HashMismatch": "nothing was installed: the registry's chunks do not hash to the version",
    "NoUpgradePath": "the target's `previous` links (ICRC-118) do not lead from the running version: upgrade to "
                     "the version they start from first",
    "RegistryUnavailable": "the registry did not answer and nothing was changed; try again",
    "StoppedByGovernance": "governance stopped this canister; it must start it first",
}


def _opts(ctx: typer.Context) -> Options:
    return ctx.obj if isinstance(ctx.obj, Options) else Options()


def parse_version(text: str) -> tuple[int, int, int]:
    match = _VERSION.match(text)
    if match is None:
        fail(f"{text!r} is not a version", "write MAJOR.MINOR.PATCH, e.g. 1.2.0")
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def _arg(hex_arg: str | None) -> bytes:
    if hex_arg is None:
        return b"DIDL\x00\x00"  # no arguments
    try:
        return bytes.fromhex(hex_arg)
    except ValueError:
        fail(f"--arg {hex_arg[:20]!r} is not hex", "pass the Candid-encoded argument as hex, e.g. 4449444c0000")


def _row(i: dict[str, Any]) -> dict[str, Any]:
    return {"canister_id": str(i["canister_id"]), "namespace": i["namespace"],
            "version": ".".join(map(str, i["version"])), "wasm_id": i["wasm_id"], "owner": str(i["owner"]),
            "state": errors.describe(*next(iter(i["state"].items()))), "created_at": i["created_at"]}


def _refused(what: str, exc: Any) -> None:
    fail(f"{what} refused: {errors.of(exc)}", _HINTS.get(exc.kind))


def _show(r: dict[str, Any]) -> None:
    console().print(f"{r['canister_id']} runs {r['namespace']} {r['version']} (wasm {r['wasm_id']}), "
                    f"owner {r['owner']}, {r['state']}", soft_wrap=True)


def deploy(
    ctx: typer.Context,
    target: str = typer.Argument(..., help="NAMESPACE or NAMESPACE@VERSION (default: the newest verified one)."),
    owner: str | None = typer.Option(None, "--owner", help="Who may upgrade it (default: you)."),
    arg: str | None = typer.Option(None, "--arg", help="Candid-encoded init argument, hex."),
    cycles: int | None = typer.Option(None, "--cycles", help="Cycles for the new canister (default 2 T)."),
) -> None:
    """Create a canister running a verified version of a namespace, installed by mcp_orchestrator.

    Example: prometheus deploy io.example.greeter@1.0.0
    """
    opts = _opts(ctx)
    with user_errors(opts.as_json):
        from prometheus_sdk.clients.mcp_orchestrator import OrchestratorError
        from prometheus_sdk.principal import Principal

        namespace, _, version = target.partition("@")
        request = {"namespace": namespace, "version": [parse_version(version)] if version else [],
                   "owner": [Principal.from_text(owner)] if owner else [], "arg": _arg(arg),
                   "cycles": [cycles] if cycles is not None else []}
        try:
            instance = client(connection(opts), "mcp_orchestrator").deploy(request)
        except OrchestratorError as exc:
            _refused(f"deploying {target}", exc)
        emit(_row(instance), opts.as_json, _show)


def upgrade(
    ctx: typer.Context,
    canister_id: str = typer.Argument(..., help="A canister mcp_orchestrator deployed."),
    version: str | None = typer.Option(None, "--version", help="X.Y.Z (default: the newest verified one)."),
    arg: str | None = typer.Option(None, "--arg", help="Candid-encoded upgrade argument, hex."),
    no_snapshot: bool = typer.Option(False, "--no-snapshot", help="Do not snapshot first (a failed install "
                                                                     "then cannot be undone)."),
    force_downgrade: bool = typer.Option(False, "--force-downgrade", help="Allow an older or equal version."),
    allow_deprecated: bool = typer.Option(False, "--allow-deprecated", help="Namespace controllers: install a "
                                                                            "deprecated version (recorded)."),
) -> None:
    """Upgrade a canister to a verified version: stopped, snapshotted, upgraded, restarted; the snapshot is
    loaded back if the install fails.

    Example: prometheus upgrade bkyz2-fmaaa-aaaaa-qaaaq-cai --version 1.1.0
    """
    opts = _opts(ctx)
    with user_errors(opts.as_json):
        from prometheus_sdk.clients.mcp_orchestrator import OrchestratorError
        from prometheus_sdk.principal import Principal

        request = {"canister_id": Principal.from_text(canister_id),
                   "version": [parse_version(version)] if version else [], "arg": _arg(arg),
                   "snapshot": [False] if no_snapshot else [], "force_downgrade": [True] if force_downgrade else [],
                   "allow_deprecated": [True] if allow_deprecated else []}
        try:
            instance = client(connection(opts), "mcp_orchestrator").upgrade(request)
        except OrchestratorError as exc:
            _refused(f"upgrading {canister_id}", exc)
        emit(_row(instance), opts.as_json, _show)


def revert(ctx: typer.Context,
           canister_id: str = typer.Argument(..., help="A canister mcp_orchestrator runs.")) -> None:
    """Load back the snapshot taken before the canister's last upgrade: the module and state it had then.

    Example: prometheus revert bkyz2-fmaaa-aaaaa-qaaaq-cai
    """
    opts = _opts(ctx)
    with user_errors(opts.as_json):
        from prometheus_sdk.clients.mcp_orchestrator import OrchestratorError
        from prometheus_sdk.principal import Principal

        try:
            instance = client(connection(opts), "mcp_orchestrator").revert(Principal.from_text(canister_id))
        except OrchestratorError as exc:
            _refused(f"reverting {canister_id}", exc)
        emit(_row(instance), opts.as_json, _show)


def instances(
    ctx: typer.Context,
    namespace: str | None = typer.Argument(None, help="Only this namespace's instances."),
    after: str | None = typer.Option(None, "--after", help="Continue after this canister id (pages of --limit)."),
    limit: int = typer.Option(100, "--limit", min=1, max=100),
) -> None:
    """The canisters mcp_orchestrator runs, with the version each one runs."""
    opts = _opts(ctx)
    with user_errors(opts.as_json):
        from prometheus_sdk.principal import Principal

        rows = [_row(i) for i in client(connection(opts), "mcp_orchestrator").list_instances(
            {"namespace": [namespace] if namespace else [], "after": [Principal.from_text(after)] if after else [],
             "limit": limit})]

        def render(rs: list[dict[str, Any]]) -> None:
            table = output_table("canister", "namespace", "version", "owner", "state", full=("canister",))
            for r in rs:
                table.add_row(r["canister_id"], r["namespace"], r["version"], r["owner"], r["state"])
            console().print(table)

        emit(rows, opts.as_json, render)
