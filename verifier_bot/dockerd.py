"""A private Docker daemon that leaves host networking alone: `prometheus-verifier dockerd start|stop|status`.

The worker builds in a Docker sandbox and takes any daemon from `DOCKER_HOST`. On a machine without one (a
fresh VM, CI, a host where the system daemon must not be touched) `PrivateDockerd` runs `dockerd` with its
own state directory — data root, exec root, pid file, log and socket all inside it — and no bridge, no
iptables rules and no IP forwarding (build containers have no network anyway). It runs in the background,
outlives the command that started it, and is found again through its pid file, so `start` is idempotent and
`stop`/`status` work from any later process. It needs root and the `dockerd` binary (Debian: `docker.io`).
Tests, the demo and the benchmark use the same class.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

INSTALL_HINT = "install it with `apt-get install docker.io` (Debian/Ubuntu, as root)"
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes including the terminating NUL


class DockerdError(RuntimeError):
    """The private daemon could not be started or stopped; the message says why and what to do."""


@dataclass(frozen=True)
class DockerdStatus:
    """What `status` reports: whether our daemon runs, where, and how to point clients at it."""

    running: bool
    dir: str
    docker_host: str
    pid: int | None
    version: str | None
    log: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class PrivateDockerd:
    """One private daemon per state directory `root` (created 0700)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        self.socket = self.root / "docker.sock"
        self.pidfile = self.root / "dockerd.pid"
        self.logfile = self.root / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialize start/stop on one directory, so two concurrent `start`s cannot launch two daemons."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.root / "dockerd.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def pid(self) -> int | None:
        """The pid of the daemon this directory's pid file names, if that process is still our dockerd."""
        if self.proc is not None and self.proc.poll() is None:
            return self.proc.pid
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        # The pid may have been reused by another process: only ours names this pid file.
        if f"--pidfile={self.pidfile}".encode() not in cmdline:
            return None
        return pid

    def status(self) -> DockerdStatus:
        pid = self.pid()
        version = self._version() if pid is not None else None
        return DockerdStatus(running=version is not None, dir=str(self.root), docker_host=self.host, pid=pid,
                             version=version, log=str(self.logfile))

    def start(self, timeout: float = 30.0) -> PrivateDockerd:
        """Start the daemon, or do nothing when it already runs; returns once it answers a ping."""
        binary = shutil.which("dockerd")
        if binary is None:
            raise DockerdError(f"dockerd is not installed; {INSTALL_HINT}, or set DOCKER_HOST to a running daemon")
        if os.geteuid() != 0:
            raise DockerdError("a private dockerd needs root (run this as root, e.g. with sudo), or set DOCKER_HOST "
                               "to a daemon you may use")
        if len(str(self.socket)) > MAX_SOCKET_PATH:
            raise DockerdError(f"{self.socket} is longer than a unix socket path may be ({MAX_SOCKET_PATH} bytes); "
                               "choose a shorter --dir")
        with self._locked():
            pid = self.pid()
            if pid is not None:
                if self._wait_ready(pid, timeout):
                    return self
                raise DockerdError(f"dockerd (pid {pid}) runs in {self.root} but does not answer; "
                                   f"see {self.logfile}, or `prometheus-verifier dockerd stop` it")
            self._cleanup()  # a stale socket or pid file from a daemon that died
            with open(self.logfile, "ab") as log:
                argv = [binary, "--iptables=false", "--ip-forward=false", "--ip-masq=false", "--bridge=none",
                        f"--data-root={self.root / 'data'}", f"--exec-root={self.root / 'exec'}",
                        f"--pidfile={self.pidfile}", f"--host={self.host}"]
                # A new session: the daemon survives this process and a Ctrl-C in its terminal.
                self.proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                             start_new_session=True, close_fds=True)
            if not self._wait_ready(self.proc.pid, timeout):
                code = self.proc.poll()
                self._stop_pid(self.proc.pid)
                self._cleanup()
                why = f"exited with status {code}" if code is not None else f"did not answer within {timeout:.0f} s"
                raise DockerdError(f"dockerd {why}; see {self.logfile}:\n{self._log_tail()}")
        return self

    def stop(self, timeout: float = 20.0) -> bool:
        """Stop the daemon (SIGTERM, then SIGKILL after `timeout`) and remove its socket, pid file and exec
        root; images and the data root stay for the next start. Returns whether a daemon was running."""
        with self._locked():
            pid = self.pid()
            if pid is not None:
                self._stop_pid(pid, timeout)
            self._cleanup()
            return pid is not None

    def purge(self) -> None:
        """Delete the whole state directory (images included); the daemon must be stopped."""
        if self.pid() is not None:
            raise DockerdError(f"dockerd still runs in {self.root}; stop it first")
        shutil.rmtree(self.root, ignore_errors=True)
        if self.root.exists():
            raise DockerdError(f"could not remove all of {self.root} (a mount left behind?); remove it by hand")

    def _stop_pid(self, pid: int, timeout: float = 20.0) -> None:
        # The daemon leads its own process group (new session), which holds its containerd too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self._alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if self._alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            while self._alive(pid):
                time.sleep(0.05)

    def _alive(self, pid: int) -> bool:
        if self.proc is not None and self.proc.pid == pid:
            return self.proc.poll() is None  # reaps our own child
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state != "Z"

    def _wait_ready(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._alive(pid):
                return False
            if self.socket.exists() and self._version() is not None:
                return True
            time.sleep(0.1)
        return False

    def _cleanup(self) -> None:
        for path in (self.socket, self.pidfile):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        shutil.rmtree(self.root / "exec", ignore_errors=True)

    def _version(self) -> str | None:
        import docker

        try:
            client = docker.DockerClient(base_url=self.host, timeout=5)
            try:
                return str(client.version().get("Version", "?"))
            finally:
                client.close()
        except Exception:
            return None

    def _log_tail(self, lines: int = 5) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
