"""`prometheus-verifier dockerd start|stop|status` with the real dockerd: the operator's way to get a daemon.

Each command is its own process, as an operator runs them: the daemon must outlive `start`, be found again
by `status` and `stop`, and `start` must be idempotent. Errors for a missing binary and a non-root user
are checked with a PATH lacking dockerd and with an unprivileged uid.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

VERIFIER = [sys.executable, "-m", "verifier_bot"]


def cli(*args: str, env: dict[str, str] | None = None, user: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VERIFIER, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, user=user)


@pytest.fixture()
def state_dir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="pv-", dir="/tmp"))  # short: unix socket paths are limited
    try:
        yield root
    finally:
        cli("dockerd", "stop", "--dir", str(root / "dockerd"))
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("dockerd") is None, reason="needs root and docker.io")
def test_start_status_stop_across_processes(state_dir: Path) -> None:
    env = {"VERIFIER_STATE_DIR": str(state_dir)}  # the default directory: <state>/dockerd
    assert cli("dockerd", "status", env=env).returncode == 3

    started = cli("dockerd", "start", env=env)
    assert started.returncode == 0, started.stderr
    socket = state_dir / "dockerd" / "docker.sock"
    assert started.stdout == f"export DOCKER_HOST=unix://{socket}\n"
    assert "started" in started.stderr and "Traceback" not in started.stderr

    # The daemon outlived `start`; a client using the printed DOCKER_HOST reaches it.
    import docker

    client = docker.DockerClient(base_url=f"unix://{socket}", timeout=10)
    assert client.ping()
    client.close()
    made = cli("image", env={**env, "DOCKER_HOST": f"unix://{socket}"})  # a fresh daemon: the image is imported
    assert made.returncode == 0, made.stderr
    assert "writing the root filesystem" in made.stderr and "MiB into Docker as" in made.stderr  # progress
    assert "ready" in made.stderr and "tag:" in made.stdout

    again = cli("dockerd", "start", "--json", env=env)  # idempotent: the same daemon, not a second one
    info = json.loads(again.stdout)
    assert again.returncode == 0 and info["started"] is False and info["running"] is True
    status = cli("dockerd", "status", "--json", env=env)
    assert status.returncode == 0 and json.loads(status.stdout)["pid"] == info["pid"]
    assert info["docker_host"] == f"unix://{socket}"

    stopped = cli("dockerd", "stop", env=env)
    assert stopped.returncode == 0 and "stopped dockerd" in stopped.stdout
    assert not Path(f"/proc/{info['pid']}").exists() or b"dockerd" not in Path(
        f"/proc/{info['pid']}/cmdline").read_bytes()
    assert not socket.exists() and not (state_dir / "dockerd" / "dockerd.pid").exists()
    assert (state_dir / "dockerd" / "data").is_dir()  # images survive a stop
    after = cli("dockerd", "status", env=env)
    assert after.returncode == 3 and "not running" in after.stdout
    assert "no dockerd was running" in cli("dockerd", "stop", env=env).stdout  # stop is idempotent too

    purged = cli("dockerd", "stop", "--purge", "--json", env=env)
    assert json.loads(purged.stdout) == {"stopped": False, "purged": True, "dir": str(state_dir / "dockerd")}
    assert not (state_dir / "dockerd").exists()


def test_stale_pid_file_is_not_a_running_daemon(state_dir: Path) -> None:
    """A pid file left by a crash (its pid now another process) must not count as our daemon or be killed."""
    root = state_dir / "dockerd"
    root.mkdir()
    (root / "dockerd.pid").write_text(str(os.getpid()))
    status = cli("dockerd", "status", "--dir", str(root), "--json")
    assert status.returncode == 3 and json.loads(status.stdout)["pid"] is None


def test_missing_dockerd_names_the_package(state_dir: Path) -> None:
    bare = state_dir / "bin"
    bare.mkdir()
    (bare / "python").symlink_to(sys.executable)
    run = cli("dockerd", "start", "--dir", str(state_dir / "d"), env={"PATH": str(bare)})
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "dockerd is not installed" in run.stderr and "apt-get install docker.io" in run.stderr


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("dockerd") is None, reason="needs root to drop to a user")
def test_not_root_is_a_clear_error(state_dir: Path) -> None:
    """A real unprivileged process (forked, then setuid nobody: the venv is not readable by other users)."""
    from verifier_bot.dockerd import DockerdError, PrivateDockerd

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root, try, report the message through the pipe
        message = "started"
        try:
            os.setgid(65534)
            os.setuid(65534)
            PrivateDockerd(state_dir / "d").start()
        except DockerdError as exc:
            message = str(exc)
        except BaseException as exc:  # noqa: BLE001 - anything else is a test failure, reported as such
            message = f"unexpected {exc!r}"
        os.write(write, message.encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        message = pipe.read()
    assert "needs root" in message and "DOCKER_HOST" in message, message
    assert not (state_dir / "d").exists()


def test_doctor_hints_at_the_private_daemon(state_dir: Path) -> None:
    env = {"VERIFIER_STATE_DIR": str(state_dir), "DOCKER_HOST": f"unix://{state_dir}/nothing.sock",
           "VERIFIER_PEM": str(state_dir / "missing.pem"), "VERIFIER_REGISTRY_ID": "aaaaa-aa",
           "VERIFIER_AUDIT_HUB_ID": "aaaaa-aa"}
    run = cli("doctor", "--json", env=env)
    assert run.returncode == 1
    docker_check = next(c for c in json.loads(run.stdout)["checks"] if c["check"] == "docker")
    assert not docker_check["ok"] and "prometheus-verifier dockerd start" in docker_check["detail"]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("dockerd") is None, reason="needs root and docker.io")
def test_too_long_a_directory_is_refused_before_starting(state_dir: Path) -> None:
    deep = state_dir / ("d" * 100)
    run = cli("dockerd", "start", "--dir", str(deep))
    assert run.returncode == 1 and "choose a shorter --dir" in run.stderr and "Traceback" not in run.stderr
    assert not deep.exists()
