"""Real git repositories served over smart HTTP on loopback (`git http-backend` behind a tiny CGI bridge)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from testkit.http_helpers import serve_on_loopback

GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_AUTHOR_NAME": "dev",
           "GIT_AUTHOR_EMAIL": "dev@example.com", "GIT_COMMITTER_NAME": "dev",
           "GIT_COMMITTER_EMAIL": "dev@example.com", "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
           "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(root: Path, name: str, files: dict[str, bytes | str], extra: Any = None) -> str:
    """A bare repository `root/<name>.git` with one commit of `files`; returns the commit SHA.
    `extra(work_dir)` may add hostile entries (symlinks, submodules) before the commit."""
    work = root / f"{name}-work"
    work.mkdir(parents=True)
    git("init", "--quiet", "-b", "main", cwd=work)
    for path, content in files.items():
        target = work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content)
    if extra is not None:
        extra(work)
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "source", cwd=work)
    sha = git("rev-parse", "HEAD", cwd=work)
    bare = root / f"{name}.git"
    git("clone", "--quiet", "--bare", str(work), str(bare), cwd=root)
    git("config", "uploadpack.allowAnySHA1InWant", "true", cwd=bare)
    git("config", "http.receivepack", "false", cwd=bare)
    return sha


def add_submodule(work: Path, path: str) -> None:
    """Add a submodule at `path` of the working tree `work` (for the hostile-repository tests)."""
    sub = work.parent / f"{work.name}-sub"
    sub.mkdir()
    git("init", "-q", cwd=sub)
    (sub / "x.mo").write_text("x")
    git("add", "x.mo", cwd=sub)
    git("commit", "-q", "-m", "x", cwd=sub)
    git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), path, cwd=work)


@contextmanager
def serve(root: Path) -> Iterator[str]:
    """Serve every bare repository under `root` at http://127.0.0.1:<port>/<name>.git."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _cgi(self) -> None:
            path, _, query = self.path.partition("?")
            body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
            env = {**os.environ, **GIT_ENV, "GIT_PROJECT_ROOT": str(root), "GIT_HTTP_EXPORT_ALL": "1",
                   "PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": self.command,
                   "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
                   "REMOTE_ADDR": "127.0.0.1", "GIT_PROTOCOL": self.headers.get("Git-Protocol", "")}
            proc = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False)
            head, _, payload = proc.stdout.partition(b"\r\n\r\n")
            status = 200
            headers = []
            for line in head.decode(errors="replace").split("\r\n"):
                key, _, value = line.partition(":")
                if key.lower() == "status":
                    status = int(value.strip().split()[0])
                elif key:
                    headers.append((key, value.strip()))
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _cgi  # noqa: N815

    with serve_on_loopback(Handler) as url:
        yield url
