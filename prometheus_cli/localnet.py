"""`prometheus localnet start | stop | status | reset | deploy | deploy-protocol | fund | stake`: the embedded
IC replica on this machine.

Files live in the data directory (default `$XDG_DATA_HOME/prometheus/localnet`): `state/` (canisters and
network keys), `localnet.json` (pid, port, url of a background replica), `canister_ids.json` (what was
deployed on it: every client on this machine finds the protocol there) and `localnet.log`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from prometheus_cli.output import console, emit, fail, user_errors
from prometheus_cli.output import table as output_table

app = typer.Typer(help="Run the embedded local IC replica (HTTP interface on loopback).", no_args_is_help=True)
DEFAULT_PORT = 4943
READY_TIMEOUT_S = 30.0

DataDir = typer.Option(None, "--data-dir", help="Where state, pid file and log live.",
                       envvar="PROMETHEUS_LOCALNET_DIR")
JsonOut = typer.Option(False, "--json", help="Machine-readable output.")


def data_dir(value: Path | None) -> Path:
    from prometheus_sdk.localnet import data_dir as sdk_data_dir

    return sdk_data_dir(value)


def _pid_file(d: Path) -> Path:
    from prometheus_sdk.localnet import STATE_FILE

    return d / STATE_FILE


def _running(d: Path) -> dict[str, Any] | None:
    """The background replica recorded in the pid file, if its process is alive (read by the SDK)."""
    from prometheus_sdk.localnet import running

    return running(d)


def _require_running(d: Path) -> dict[str, Any]:
    info = _running(d)
    if info is None:
        _pid_file(d).unlink(missing_ok=True)
        fail("no local replica is running", "start one with `prometheus localnet start --background`")
    return info


def _target_url(url: str | None, data: Path | None) -> str:
    """An explicit --url, or the running localnet's."""
    return url if url is not None else str(_require_running(data_dir(data))["url"])


def _is_this_localnet(url: str, data: Path | None) -> bool:
    """Whether `url` is the running localnet of the data directory (then its record is kept up to date)."""
    running = _running(data_dir(data))
    return running is not None and str(running["url"]).rstrip("/") == url.rstrip("/")


def _ready(url: str) -> bool:
    import httpx

    from prometheus_sdk.transport import http

    try:
        return http(url).get(f"{url}/api/v2/status", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@app.command()
def start(
    port: int = typer.Option(DEFAULT_PORT, "--port", min=0, max=65535,
                             help="Loopback port for the HTTP interface (0: any free port, reported when ready)."),
    background: bool = typer.Option(False, "--background", "-b", help="Detach; stop with `localnet stop`."),
    data: Path | None = DataDir,
    as_json: bool = JsonOut,
) -> None:
    """Start the local replica (foreground until Ctrl-C, or --background).

    Example: prometheus localnet start --background --port 4943
    """
    as_json = _json(as_json)
    with user_errors(as_json):
        d = data_dir(data)
        d.mkdir(parents=True, exist_ok=True)
        existing = _running(d)
        if existing:
            fail(f"a local replica is already running at {existing['url']} (pid {existing['pid']})",
                 "stop it with `prometheus localnet stop`")
        if port and _ready(f"http://127.0.0.1:{port}"):
            fail(f"port {port} is already serving an IC replica", "pick another port with --port")
        argv = [sys.executable, "-m", "ic_replica.http_server", "--port", str(port), "--state-dir", str(d / "state")]
        if not background:
            os.execv(sys.executable, argv)
        log_path = d / "localnet.log"
        with open(log_path, "ab") as log:
            offset = log.tell()  # the log is appended to: read only what this replica writes
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        url = _wait_ready(proc, log_path, offset)
        info = {"pid": proc.pid, "port": int(url.rsplit(":", 1)[1]), "url": url, "state_dir": str(d / "state")}
        _pid_file(d).write_text(json.dumps(info))
        emit(info, as_json, lambda i: console().print(f"local replica running at [bold]{i['url']}[/] (pid {i['pid']})"))


def _announced_url(log_path: Path, offset: int) -> str | None:
    """The URL the replica printed once listening (`IC HTTP interface at http://127.0.0.1:PORT`): with --port 0
    only the replica knows which port the system gave it."""
    import re

    try:
        with open(log_path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    found = re.search(r"IC HTTP interface at (http://[^\s]+:\d+)", text)
    return found.group(1) if found else None


def _wait_ready(proc: subprocess.Popen[bytes], log_path: Path, offset: int) -> str:
    """The URL of the background replica once it answers /api/v2/status; kills it and fails if it exits or
    takes longer than READY_TIMEOUT_S."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        url = _announced_url(log_path, offset)
        if url is not None and _ready(url):
            return url
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            with open(log_path, "rb") as f:
                f.seek(offset)
                tail = f.read().decode(errors="replace").strip().splitlines()[-3:]
            fail(f"the local replica did not start: {' / '.join(tail) or 'no output'}", f"see {log_path}")
        time.sleep(0.1)


@app.command()
def stop(data: Path | None = DataDir, as_json: bool = JsonOut) -> None:
    """Stop a background replica (it checkpoints its state first)."""
    as_json = _json(as_json)
    with user_errors(as_json):
        d = data_dir(data)
        info = _require_running(d)
        os.kill(int(info["pid"]), signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _running(d) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _running(d):
            fail(f"the replica (pid {info['pid']}) did not stop within 30 s")
        _pid_file(d).unlink(missing_ok=True)
        emit({"stopped": info["url"]}, as_json, lambda _: console().print("local replica stopped"))


@app.command()
def status(data: Path | None = DataDir, as_json: bool = JsonOut) -> None:
    """Show URL, root key fingerprint and canisters of the running replica."""
    import hashlib

    import httpx

    from prometheus_sdk.transport import http

    as_json = _json(as_json)
    with user_errors(as_json):
        d = data_dir(data)
        info = _require_running(d)
        try:
            described = http(info["url"]).get(f"{info['url']}/_/replica", timeout=5).json()
        except (httpx.HTTPError, ValueError) as exc:
            fail(f"the replica at {info['url']} does not answer: {exc}")
        root_key = bytes.fromhex(described["root_key"])
        result = {**info, "root_key": root_key.hex(), "root_key_sha256": hashlib.sha256(root_key).hexdigest(),
                  "subnet_id": described["subnet_id"], "canisters": described["canisters"]}

        def render(r: dict[str, Any]) -> None:
            c = console()
            c.print(f"[bold]{r['url']}[/] (pid {r['pid']}), state in {r['state_dir']}")
            c.print(f"root key sha256 {r['root_key_sha256']}, subnet {r['subnet_id']}")
            c.print(f"{len(r['canisters'])} canister(s)" + "".join(f"\n  {cid}" for cid in r["canisters"]))

        emit(result, as_json, render)


@app.command("root-key")
def root_key(data: Path | None = DataDir, as_json: bool = JsonOut) -> None:
    """Print the running replica's root key (hex DER): what `prometheus verify --offline --root-key` takes.
    Example: prometheus localnet root-key > local.key"""
    import httpx

    from prometheus_sdk.transport import http

    as_json = _json(as_json)
    with user_errors(as_json):
        info = _require_running(data_dir(data))
        try:
            key = http(info["url"]).get(f"{info['url']}/_/replica", timeout=5).json()["root_key"]
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            fail(f"the replica at {info['url']} does not answer: {exc}")
        emit({"root_key": key}, as_json, lambda r: print(r["root_key"]))


@app.command()
def reset(data: Path | None = DataDir, yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
          as_json: bool = JsonOut) -> None:
    """Delete the local replica's state (canisters and keys). Refuses while it runs."""
    import shutil

    as_json = _json(as_json)
    with user_errors(as_json):
        d = data_dir(data)
        if _running(d):
            fail("the local replica is running", "stop it first with `prometheus localnet stop`")
        if not yes and not typer.confirm(f"delete {d / 'state'}?"):
            fail("nothing deleted", code=1)
        shutil.rmtree(d / "state", ignore_errors=True)
        from prometheus_sdk.localnet import forget_deployed

        forget_deployed(d)
        emit({"reset": str(d / "state")}, as_json, lambda _: console().print("local state deleted"))


@app.command()
def deploy(
    src: Path = typer.Option(Path("canister_src"), "--src", help="Folder of <name>/main.mo canisters."),
    names: list[str] = typer.Argument(None, help="Canisters to deploy (default: all under --src)."),
    arg: list[str] = typer.Option([], "--arg", help="NAME=HEX: Candid install argument for a canister."),
    ids_file: Path = typer.Option(Path(".prometheus/canister_ids.json"), "--ids-file",
                                  help="Where canister ids are recorded (per network)."),
    identity: str | None = typer.Option(None, "--identity", help="Identity name (default: `default`)."),
    url: str | None = typer.Option(None, "--url", help="Replica URL (default: the running localnet)."),
    data: Path | None = DataDir,
    as_json: bool = JsonOut,
) -> None:
    """Build canisters with the reproducible recipe and install (or upgrade) them on the local replica.

    Example: prometheus localnet deploy --src canister_src mcp_registry
    """
    from prometheus_cli.deploy import deploy_all

    as_json = _json(as_json)
    with user_errors(as_json):
        url = _target_url(url, data)
        args = {}
        for item in arg:
            name, _, hex_value = item.partition("=")
            try:
                args[name] = bytes.fromhex(hex_value)
            except ValueError:
                fail(f"--arg {item!r} is not NAME=HEX")
        with _toolchain_errors():
            results = deploy_all(url, src, names or None, args, ids_file, identity)
        if _is_this_localnet(url, data):
            from prometheus_sdk.localnet import record_deployed

            record_deployed({r["name"]: r["canister_id"] for r in results}, data_dir(data))

        def render(rows: list[dict[str, Any]]) -> None:

            table = output_table("canister", "id", "action", "module sha256", full=("id", "module sha256"))
            for r in rows:
                table.add_row(r["name"], r["canister_id"], r["action"], r["sha256"])
            console().print(table)

        emit(results, as_json, render)


@app.command("deploy-protocol")
def deploy_protocol_command(
    ids_file: Path = typer.Option(Path(".prometheus/canister_ids.json"), "--ids-file",
                                  help="Where canister ids are recorded (per network)."),
    identity: str | None = typer.Option(None, "--identity", help="Identity name; it becomes governance."),
    url: str | None = typer.Option(None, "--url", help="Replica URL (default: the running localnet)."),
    data: Path | None = DataDir,
    as_json: bool = JsonOut,
) -> None:
    """Build and deploy ledger, audit_hub, mcp_registry and mcp_orchestrator wired to each other; record their ids.

    Example: prometheus localnet deploy-protocol --json
    """
    from prometheus_cli.protocol import deploy_protocol
    from prometheus_sdk import Network, connect
    from prometheus_sdk import identity as identities

    as_json = _json(as_json)
    with user_errors(as_json):
        url = _target_url(url, data)
        ours = _is_this_localnet(url, data)
        conn = connect(Network("local", url), identities.load(identity))
        with _toolchain_errors():
            result = deploy_protocol(conn, ids_file, localnet_dir=data_dir(data) if ours else None)
        if ours:
            from prometheus_sdk.localnet import record_governance

            pem = None if identity else os.environ.get("PROMETHEUS_IDENTITY_PEM")
            record_governance(conn.principal, None if pem else identity or identities.selected(), pem, data_dir(data))

        def render(r: dict[str, Any]) -> None:

            table = output_table("canister", "id", "action", "module sha256", full=("id", "module sha256"))
            for name, row in r["canisters"].items():
                table.add_row(name, row["id"], row["action"], row["sha256"])
            console().print(table)
            console().print(f"governance: {r['governance']}")

        emit(result, as_json, render)


@app.command()
def fund(
    ctx: typer.Context,
    target: str = typer.Argument(..., help="Identity name or principal to receive tokens."),
    amount: int = typer.Argument(..., help="Ledger base units (the protocol's ledger has 6 decimals)."),
    data: Path | None = DataDir,
    as_json: bool = JsonOut,
) -> None:
    """Give tokens on the local network's ledger (from the governance that deployed the protocol). Local only.

    Example: prometheus localnet fund sponsor 50000000
    """
    from prometheus_cli import funding

    with user_errors(as_json or _global_json(ctx)):
        _with_json(ctx, as_json)
        funding.fund(ctx, target, amount, data)


@app.command()
def stake(
    ctx: typer.Context,
    target: str = typer.Argument(..., help="Identity name or principal of the verifier."),
    amount: int = typer.Argument(..., help="Stake units (each reservation locks the hub's stake_per_reservation)."),
    audit_type: str = typer.Option("build_reproducibility_v1", "--audit-type", help="Audit type the stake is for."),
    data: Path | None = DataDir,
    as_json: bool = JsonOut,
) -> None:
    """Give a verifier stake on the local network's audit hub (minted by its governance). Local only.

    Example: prometheus localnet stake verifier 1000
    """
    from prometheus_cli import funding

    with user_errors(as_json or _global_json(ctx)):
        _with_json(ctx, as_json)
        funding.stake(ctx, target, amount, audit_type, data)


@contextmanager
def _toolchain_errors() -> Iterator[None]:
    """A missing toolchain (or a broken install) as one error line with the command to run, never a traceback."""
    from prometheus_build.assets import AssetsMissing
    from prometheus_build.toolchain import ToolchainMissing

    try:
        yield
    except ToolchainMissing as exc:
        fail(str(exc), exc.hint)
    except AssetsMissing as exc:
        fail(str(exc))


def _json(as_json: bool) -> bool:
    """`--json` after the command, or the global `prometheus --json localnet ...`."""
    from prometheus_cli import output

    return as_json or output.GLOBAL_JSON


def _global_json(ctx: typer.Context) -> bool:
    return bool(getattr(ctx.obj, "as_json", False))


def _with_json(ctx: typer.Context, as_json: bool) -> None:
    """`localnet` commands take --json after the command too; the global options hold it for the helpers."""
    from prometheus_cli.context import Options

    if not isinstance(ctx.obj, Options):
        ctx.obj = Options()
    ctx.obj.as_json = ctx.obj.as_json or as_json
