"""`prometheus-verifier`: run the worker forever, run one pass, check the setup, build the image, list jobs,
run a private Docker daemon.

Configuration comes from the environment and/or `--config FILE` (see `verifier_bot.config`); Docker from
`DOCKER_HOST` as usual. Logs are JSON lines on stderr; command results go to stdout (`--json` for machines).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import typer

from verifier_bot import config as configuration

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
ConfigOption = typer.Option(None, "--config", "-c", help="TOML file with the same keys as the environment.")
JsonOption = typer.Option(False, "--json", help="Machine-readable output.")


class SetupError(RuntimeError):
    """A part of the setup is missing or broken; the message says which and how to fix it."""


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def load_config(path: Path | None) -> configuration.Config:
    try:
        return configuration.load(file=path)
    except configuration.ConfigError as exc:
        _fail(str(exc))
        raise  # unreachable


def load_identity(pem: str) -> Any:
    """VERIFIER_PEM is a PEM file path or the PEM text itself."""
    from icp_identity.identity import Identity  # type: ignore[import-not-found]

    from prometheus_sdk import IdentityError
    from prometheus_sdk.identity import from_pem_file

    if "-----BEGIN" in pem:
        if "ENCRYPTED" in pem:
            raise SetupError("VERIFIER_PEM holds an encrypted key inline; point it at the file instead")
        try:
            return Identity.from_pem(pem)
        except Exception as exc:
            raise SetupError(f"VERIFIER_PEM is not a usable private key: {exc}") from exc
    try:
        return from_pem_file(Path(pem))
    except IdentityError as exc:
        raise SetupError(str(exc)) from exc


def docker_client(config: Path | None = None) -> Any:
    import docker

    try:
        client = docker.from_env(timeout=60)
        client.ping()
        return client
    except Exception as exc:
        where = os.environ.get("DOCKER_HOST", "the default socket")
        raise SetupError(f"cannot reach Docker at {where}: {exc}; {dockerd_hint(config)}") from exc


def dockerd_hint(config: Path | None) -> str:
    """What to do when Docker is unreachable: point at our private daemon if it runs, else say how to start it."""
    from verifier_bot.dockerd import PrivateDockerd

    state = PrivateDockerd(dockerd_dir(None, config)).status()
    if state.running:
        return f"a private dockerd runs in {state.dir}: export DOCKER_HOST={state.docker_host}"
    return ("no Docker daemon? `eval \"$(prometheus-verifier dockerd start)\"` starts a private one "
            "(root and `apt-get install docker.io` needed; see docs/verifier.md)")


def make_worker(cfg: configuration.Config) -> Any:
    from prometheus_build.image import ImageError, ensure_image
    from prometheus_build.toolchain import ToolchainMissing
    from prometheus_sdk import SdkError, connect, resolve
    from verifier_bot.journal import Journal
    from verifier_bot.worker import StateDirBusy, Worker

    identity = load_identity(cfg.pem)
    try:
        network = resolve(cfg.network)
        connect(network, identity)  # fail fast on an unreachable network
    except SdkError as exc:
        raise SetupError(f"cannot reach network {cfg.network!r}: {exc}") from exc
    try:
        image = ensure_image(docker_client(), progress=lambda line: typer.echo(line, err=True))
    except ImageError as exc:
        raise SetupError(str(exc)) from exc
    except ToolchainMissing as exc:
        raise SetupError(f"{exc}; {exc.hint}") from exc
    try:
        return Worker(cfg, lambda: connect(network, identity), docker_client, image, Journal(cfg.journal_path))
    except StateDirBusy as exc:
        raise SetupError(f"{exc}; stop it first, or give this one its own VERIFIER_STATE_DIR") from exc


def _guarded(fn: Any) -> Any:
    try:
        return fn()
    except SetupError as exc:
        _fail(str(exc))


@app.command()
def run(config: Path | None = ConfigOption) -> None:
    """Poll and verify until SIGTERM/SIGINT; in-flight jobs finish first (a second signal exits at once —
    unfinished jobs stay in the journal and the next start resumes them)."""
    from verifier_bot.metrics import serve

    cfg = load_config(config)
    worker = _guarded(lambda: make_worker(cfg))
    server = serve(cfg.metrics_addr, worker.metrics, worker.health) if cfg.metrics_addr else None
    if server is not None:
        host, port = server.server_address[:2]
        worker.log.info("metrics_listening", addr=f"{host!s}:{port}")
    signals = {"count": 0}

    def on_signal(signum: int, _frame: Any) -> None:
        signals["count"] += 1
        worker.stopping.set()
        if signals["count"] > 1:
            worker.log.warning("exit_now", signal=signum, unfinished=worker.in_flight())
            os._exit(130)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    loop = threading.Thread(target=worker.run, name="poll")
    loop.start()
    while loop.is_alive():
        loop.join(0.5)
    worker.close()
    if server is not None:
        server.shutdown()
    worker.log.info("stopped")


@app.command()
def once(config: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """One pass: resume unfinished jobs, reserve what fits, verify and file; print the journal."""
    cfg = load_config(config)
    worker = _guarded(lambda: make_worker(cfg))
    jobs = worker.run_once()
    worker.close()
    _print_jobs(jobs, as_json)


@app.command()
def jobs(config: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """List the journal: every bounty this worker reserved and where it stands."""
    from verifier_bot.journal import Journal

    cfg = load_config(config)
    _print_jobs(Journal(cfg.journal_path).jobs(), as_json)


def _print_jobs(jobs: list[Any], as_json: bool) -> None:
    rows = [{"bounty_id": j.bounty_id, "wasm_id": j.wasm_id, "state": j.state, "verdict": j.verdict,
             "found_hash": j.found_hash, "report": j.report, "filing_index": j.filing_index,
             "attempts": j.attempts, "last_error": j.last_error} for j in jobs]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no jobs yet")
    for r in rows:
        typer.echo(f"bounty {r['bounty_id']:>5}  {r['state']:9} {r['verdict'] or '-':8} {r['wasm_id'][:16]}…  "
                   f"{r['report'] or r['last_error'] or ''}")


@app.command()
def image(as_json: bool = JsonOption) -> None:
    """Build (or check) the builder image from the pinned toolchain; prints its digests."""
    from prometheus_build.image import ImageError, ensure_image
    from prometheus_build.toolchain import ToolchainMissing

    try:
        built = ensure_image(_guarded(docker_client), progress=lambda line: typer.echo(line, err=True))
    except ImageError as exc:
        _fail(str(exc))
    except ToolchainMissing as exc:
        _fail(f"{exc}; {exc.hint}")
    info = built.as_dict()
    typer.echo(json.dumps(info, indent=2) if as_json else "\n".join(f"{k}: {v}" for k, v in info.items()))


@app.command()
def doctor(config: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """Check identity, network, canisters, stake, Docker and the builder image; exit 1 if any check fails."""
    from verifier_bot.doctor import run_checks

    checks = run_checks(config)
    ok = all(c["ok"] for c in checks)
    if as_json:
        typer.echo(json.dumps({"ok": ok, "checks": checks}, indent=2))
    else:
        for c in checks:
            typer.echo(f"{'ok  ' if c['ok'] else 'FAIL'} {c['check']:10} {c['detail']}")
    if not ok:
        raise typer.Exit(1)


dockerd_app = typer.Typer(add_completion=False, no_args_is_help=True,
                          help="A private Docker daemon for the sandbox when the host has none (root, docker.io).")
app.add_typer(dockerd_app, name="dockerd")
DirOption = typer.Option(None, "--dir", help="State directory of the daemon (default: <VERIFIER_STATE_DIR>/dockerd).")


def dockerd_dir(directory: Path | None, config: Path | None) -> Path:
    """`--dir`, else `dockerd/` in the verifier's state directory (env, then config file, then XDG default),
    so `start`, `stop` and `status` find the same daemon without repeating flags."""
    if directory is not None:
        return directory
    values: dict[str, str] = {}
    if config is not None:
        try:
            values = configuration.read_file(config)
        except configuration.ConfigError as exc:
            _fail(str(exc))
    state = os.environ.get("VERIFIER_STATE_DIR") or values.get("VERIFIER_STATE_DIR")
    if not state:
        base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        state = str(Path(base) / "prometheus-verifier")
    return Path(state) / "dockerd"


@dockerd_app.command("start")
def dockerd_start(directory: Path | None = DirOption, config: Path | None = ConfigOption,
                  timeout: float = typer.Option(30.0, help="Seconds to wait for the daemon to answer."),
                  as_json: bool = JsonOption) -> None:
    """Start the daemon in the background (or find it running) and print `export DOCKER_HOST=...`:
    `eval "$(prometheus-verifier dockerd start)"`."""
    from verifier_bot.dockerd import DockerdError, PrivateDockerd

    daemon = PrivateDockerd(dockerd_dir(directory, config))
    was_running = daemon.status().running
    try:
        daemon.start(timeout=timeout)
    except DockerdError as exc:
        _fail(str(exc))
    info = {**daemon.status().as_dict(), "started": not was_running}
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"dockerd {info['version']} {'started' if info['started'] else 'already running'} "
               f"(pid {info['pid']}, state {info['dir']}, log {info['log']})", err=True)
    typer.echo(f"export DOCKER_HOST={info['docker_host']}")


@dockerd_app.command("stop")
def dockerd_stop(directory: Path | None = DirOption, config: Path | None = ConfigOption,
                 purge: bool = typer.Option(False, "--purge", help="Also delete its images and data."),
                 as_json: bool = JsonOption) -> None:
    """Stop the daemon and remove its socket and pid file (images stay unless --purge); fine if not running."""
    from verifier_bot.dockerd import DockerdError, PrivateDockerd

    daemon = PrivateDockerd(dockerd_dir(directory, config))
    if not daemon.root.exists():
        stopped = False
    else:
        try:
            stopped = daemon.stop()
            if purge:
                daemon.purge()
        except DockerdError as exc:
            _fail(str(exc))
    if as_json:
        typer.echo(json.dumps({"stopped": stopped, "purged": purge, "dir": str(daemon.root)}, indent=2))
        return
    typer.echo(f"{'stopped dockerd in' if stopped else 'no dockerd was running in'} {daemon.root}"
               f"{'; deleted its images and data' if purge else ''}")


@dockerd_app.command("status")
def dockerd_status(directory: Path | None = DirOption, config: Path | None = ConfigOption,
                   as_json: bool = JsonOption) -> None:
    """Say whether the daemon runs (exit 0) or not (exit 3), with its DOCKER_HOST."""
    from verifier_bot.dockerd import PrivateDockerd

    state = PrivateDockerd(dockerd_dir(directory, config)).status()
    if as_json:
        typer.echo(json.dumps(state.as_dict(), indent=2))
    elif state.running:
        typer.echo(f"running: dockerd {state.version}, pid {state.pid}, state {state.dir}\n"
                   f"export DOCKER_HOST={state.docker_host}")
    elif state.pid is not None:
        typer.echo(f"not answering: dockerd pid {state.pid} in {state.dir}; see {state.log}")
    else:
        typer.echo(f"not running ({state.dir}); start it with `prometheus-verifier dockerd start`")
    if not state.running:
        raise typer.Exit(3)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)

