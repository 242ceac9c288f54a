"""A private Docker daemon that leaves host networking alone, for tests, the demo and the benchmark.

Operators point the worker at their own daemon with `DOCKER_HOST`; on machines where no daemon runs (CI,
a fresh VM) `PrivateDockerd` starts one with its own data/exec roots and socket, no bridge, no iptables
and no IP forwarding, and stops it again. It needs root and the `dockerd` binary (Debian: `docker.io`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path


class DockerdError(RuntimeError):
    """The private daemon could not be started."""


class PrivateDockerd:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = root / "docker.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 30.0) -> PrivateDockerd:
        binary = shutil.which("dockerd")
        if binary is None:
            raise DockerdError("dockerd is not installed; install it with `apt-get install docker.io`")
        if os.geteuid() != 0:
            raise DockerdError("a private dockerd needs root; set DOCKER_HOST to a running daemon instead")
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root / "dockerd.log", "ab")  # noqa: SIM115 - kept open for the daemon's lifetime
        argv = [binary, "--iptables=false", "--ip-forward=false", "--ip-masq=false", "--bridge=none",
                f"--data-root={self.root / 'data'}", f"--exec-root={self.root / 'exec'}",
                f"--pidfile={self.root / 'dockerd.pid'}", f"--host={self.host}"]
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DockerdError(f"dockerd exited with {self.proc.returncode}; see {self.root / 'dockerd.log'}")
            if self.socket.exists() and self._ping():
                return self
            time.sleep(0.1)
        self.stop()
        raise DockerdError(f"dockerd did not answer within {timeout:.0f} s; see {self.root / 'dockerd.log'}")

    def _ping(self) -> bool:
        import docker

        try:
            client = docker.DockerClient(base_url=self.host, timeout=5)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:
            return False

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
