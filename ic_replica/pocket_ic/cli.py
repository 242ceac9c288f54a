"""`prometheus-pocket-ic`: PocketIC's command line over the embedded replica.

    prometheus-pocket-ic [--ip-addr 127.0.0.1] [--port 0] [--port-file PATH] [--ttl 60]

The port is written to `--port-file` followed by a newline once the server listens (clients wait for the
newline). The file is created exclusively: if it already names a live server, this process exits at once and
that server is shared (the `pocket-ic` clients start the binary once per instance with the same port file);
a file left by a dead server is replaced. The server exits, removing its port file, after `--ttl` seconds
without requests (60 by default, as PocketIC), or on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path

VERSION = "pocket-ic-server 14.0.0 (prometheus-pocket-ic, embedded replica)"
STARTING_GRACE_S = 10.0  # an empty port file younger than this belongs to a server still starting


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prometheus-pocket-ic", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ip-addr", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="the port to listen on (default: any free port)")
    p.add_argument("--port-file", type=Path, default=None, help="write the port here, followed by a newline")
    p.add_argument("--ttl", type=int, default=60, help="exit after this many seconds without requests (default 60)")
    p.add_argument("--log-levels", default=None, help="accepted for compatibility; ignored")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    return p


def _alive(port_text: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{int(port_text)}/status", timeout=2) as resp:  # noqa: S310
            return bool(resp.status == 200)
    except (OSError, ValueError):
        return False


def claim_port_file(path: Path) -> int | None:
    """Create the port file exclusively; returns its fd, or None if another live server owns it."""
    for _ in range(3):
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                content = path.read_text()
                age = time.time() - path.stat().st_mtime
            except FileNotFoundError:
                continue
            if content.endswith("\n") and _alive(content.strip()):
                return None
            if not content and age < STARTING_GRACE_S:
                return None  # another server is starting and will write it
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # left by a dead server
    raise SystemExit(f"error: cannot create the port file {path}")


def release_port_file(path: Path, port: int) -> None:
    """Remove the port file only if it still names this server: once this server was taken for dead (its file
    replaced), the file belongs to the server that replaced it."""
    with contextlib.suppress(OSError):
        if path.read_text() == f"{port}\n":
            path.unlink()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.version:
        print(VERSION)
        return 0
    fd = None
    if args.port_file is not None:
        fd = claim_port_file(args.port_file)
        if fd is None:
            return 0
    from ic_replica.pocket_ic.server import PocketIcServer  # after the port file: a shared start stays cheap

    try:
        server = PocketIcServer(args.ip_addr, args.port)
    except OSError as exc:
        if fd is not None:
            os.close(fd)
            args.port_file.unlink(missing_ok=True)
        print(f"error: cannot listen on {args.ip_addr}:{args.port}: {exc}", file=sys.stderr)
        return 1
    if fd is not None:
        os.write(fd, f"{server.port}\n".encode())
        os.close(fd)
    print(f"prometheus-pocket-ic listening on http://{args.ip_addr}:{server.port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        while not stop.wait(0.5):
            if args.ttl and server.idle_for() > args.ttl:
                break
    finally:
        if args.port_file is not None:
            release_port_file(args.port_file, server.port)
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
