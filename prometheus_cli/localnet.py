"""`prometheus localnet start | stop | status | reset | deploy`: the embedded IC replica on this machine.

Files live in the data directory (default `$XDG_DATA_HOME/prometheus/localnet`): `state/` (canisters and
network keys), `localnet.json` (pid, port, url of a background replica) and `localnet.log`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import typer

from prometheus_cli.output import console, emit, fail, user_errors

app = typer.Typer(help="Run the embedded local IC replica (HTTP interface on loopback).", no_args_is_help=True)
DEFAULT_PORT = 4943
READY_TIMEOUT_S = 30.0

DataDir = typer.Option(None, "--data-dir", help="Where state, pid file and log live.",
                       envvar="PROMETHEUS_LOCALNET_DIR")
JsonOut = typer.Option(False, "--json", help="Machine-readable output.")


def data_dir(value: Path | None) -> Path:
    if value is not None:
        return value
    if os.environ.get("PROMETHEUS_LOCALNET_DIR"):
        return Path(os.environ["PROMETHEUS_LOCALNET_DIR"])
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "prometheus" / "localnet"


def _pid_file(d: Path) -> Path:
    return d / "localnet.json"


def _running(d: Path) -> dict[str, Any] | None:
    """The background replica recorded in the pid file, if its process is alive."""
    try:
        info: dict[str, Any] = json.loads(_pid_file(d).read_text())
        os.kill(int(info["pid"]), 0)
        return info
    except (OSError, ValueError, KeyError):
        return None


def _require_running(d: Path) -> dict[str, Any]:
    info = _running(d)
    if info is None:
        _pid_file(d).unlink(missing_ok=True)
        fail("no local replica is running", "start one with `prometheus localnet start --background`")
    return info


def _target_url(url: str | None, data: Path | None) -> str:
    """An explicit --url, or the running localnet's."""
    return url if url is not None else str(_require_running(data_dir(data))["url"])


def _ready(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/api/v2/status", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@app.command()
def start(
    port: int = typer.Option(DEFAULT_PORT, "--port", help="Loopback port for the HTTP interface."),
    background: bool = typer.Option(False, "--background", "-b", help="Detach; stop with `localnet stop`."),
    data: Path | None = DataDir,
    as_json: bool = JsonOut,
) -> None:
    """Start the local replica (foreground until Ctrl-C, or --background).

    Example: prometheus localnet start --background --port 4943
    """
    with user_errors(as_json):
        d = data_dir(data)
        d.mkdir(parents=True, exist_ok=True)
        existing = _running(d)
        if existing:
            fail(f"a local replica is already running at {existing['url']} (pid {existing['pid']})",
                 "stop it with `prometheus localnet stop`")
        url = f"http://127.0.0.1:{port}"
        if _ready(url):
            fail(f"port {port} is already serving an IC replica", "pick another port with --port")
        argv = [sys.executable, "-m", "ic_replica.http_server", "--port", str(port), "--state-dir", str(d / "state")]
        if not background:
            os.execv(sys.executable, argv)
        with open(d / "localnet.log", "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _ready(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                tail = (d / "localnet.log").read_text(errors="replace").strip().splitlines()[-3:]
                fail(f"the local replica did not start: {' / '.join(tail) or 'no output'}",
                     f"see {d / 'localnet.log'}")
            time.sleep(0.1)
        info = {"pid": proc.pid, "port": port, "url": url, "state_dir": str(d / "state")}
        _pid_file(d).write_text(json.dumps(info))
        emit(info, as_json, lambda i: console().print(f"local replica running at [bold]{i['url']}[/] (pid {i['pid']})"))


@app.command()
def stop(data: Path | None = DataDir, as_json: bool = JsonOut) -> None:
    """Stop a background replica (it checkpoints its state first)."""
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

    with user_errors(as_json):
        d = data_dir(data)
        info = _require_running(d)
        try:
            described = httpx.get(f"{info['url']}/_/replica", timeout=5).json()
        except (httpx.HTTPError, ValueError) as exc:
            fail(f"the replica at {info['url']} does not answer: {exc}")
        root_key = bytes.fromhex(described["root_key"])
        result = {**info, "root_key_sha256": hashlib.sha256(root_key).hexdigest(),
                  "subnet_id": described["subnet_id"], "canisters": described["canisters"]}

        def render(r: dict[str, Any]) -> None:
            c = console()
            c.print(f"[bold]{r['url']}[/] (pid {r['pid']}), state in {r['state_dir']}")
            c.print(f"root key sha256 {r['root_key_sha256'][:16]}…, subnet {r['subnet_id']}")
            c.print(f"{len(r['canisters'])} canister(s)" + "".join(f"\n  {cid}" for cid in r["canisters"]))

        emit(result, as_json, render)


@app.command()
def reset(data: Path | None = DataDir, yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
          as_json: bool = JsonOut) -> None:
    """Delete the local replica's state (canisters and keys). Refuses while it runs."""
    import shutil

    with user_errors(as_json):
        d = data_dir(data)
        if _running(d):
            fail("the local replica is running", "stop it first with `prometheus localnet stop`")
        if not yes and not typer.confirm(f"delete {d / 'state'}?"):
            fail("nothing deleted", code=1)
        shutil.rmtree(d / "state", ignore_errors=True)
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

    with user_errors(as_json):
        url = _target_url(url, data)
        args = {}
        for item in arg:
            name, _, hex_value = item.partition("=")
            try:
                args[name] = bytes.fromhex(hex_value)
            except ValueError:
                fail(f"--arg {item!r} is not NAME=HEX")
        results = deploy_all(url, src, names or None, args, ids_file, identity)

        def render(rows: list[dict[str, Any]]) -> None:
            from rich.table import Table

            table = Table("canister", "id", "action", "module sha256")
            for r in rows:
                table.add_row(r["name"], r["canister_id"], r["action"], r["sha256"][:16] + "…")
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
    """Build and deploy ledger, audit_hub and mcp_registry wired to each other; record their ids.

    Example: prometheus localnet deploy-protocol --json
    """
    from prometheus_cli.protocol import deploy_protocol
    from prometheus_sdk import Network, connect
    from prometheus_sdk import identity as identities

    with user_errors(as_json):
        url = _target_url(url, data)
        result = deploy_protocol(connect(Network("local", url), identities.load(identity)), ids_file)

        def render(r: dict[str, Any]) -> None:
            from rich.table import Table

            table = Table("canister", "id", "action", "module sha256")
            for name, row in r["canisters"].items():
                table.add_row(name, row["id"], row["action"], row["sha256"][:16] + "…")
            console().print(table)
            console().print(f"governance: {r['governance']}")

        emit(result, as_json, render)
