"""A small HTTP server for an issuer's JWK Set (`prometheus attest jwks --serve`, the demo, the attack suite).

Routes are replaceable while it runs (key rotation), and a route may answer with a redirect or an error, so the
attack suite and the tests can play a compromised or failing endpoint. It is the standard library's threading
HTTP server: fine for an issuer's key set on loopback; put a real web server in front for anything else.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

JWKS_PATH = "/.well-known/jwks.json"


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drip: float = 0.0  # seconds between body bytes (a slow or hostile endpoint)

    @classmethod
    def jwks(cls, document: dict[str, Any], max_age: int = 300) -> Route:
        return cls(200, json.dumps(document).encode(), {"Content-Type": "application/json",
                                                        "Cache-Control": f"public, max-age={max_age}"})

    @classmethod
    def redirect(cls, location: str) -> Route:
        return cls(302, b"", {"Location": location})


class JWKSServer:
    """`with JWKSServer({path: Route}) as server:` serves on 127.0.0.1 (`server.url(path)`)."""

    def __init__(self, routes: dict[str, Route] | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.routes: dict[str, Route] = dict(routes or {})
        self.hits: dict[str, int] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the standard library's name
                path = self.path.split("?", 1)[0]
                outer.hits[path] = outer.hits.get(path, 0) + 1
                route = outer.routes.get(path, Route(404, b"not found"))
                etag = route.headers.get("ETag")
                if etag is not None and self.headers.get("If-None-Match") == etag:
                    outer.hits[path + " 304"] = outer.hits.get(path + " 304", 0) + 1
                    route = Route(304, b"", {k: v for k, v in route.headers.items() if k != "Content-Type"})
                self.send_response(route.status)
                for k, v in route.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                if not route.drip:
                    self.wfile.write(route.body)
                    return
                for i in range(len(route.body)):
                    self.wfile.write(route.body[i:i + 1])
                    self.wfile.flush()
                    time.sleep(route.drip)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.host, self.port = host, self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)  # shutdown() waits for the next poll

    def url(self, path: str = JWKS_PATH) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def start(self) -> JWKSServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> JWKSServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
