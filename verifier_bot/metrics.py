"""Prometheus metrics and a health endpoint, served on one loopback port by a background thread.

`/metrics` is the Prometheus text format (jobs by outcome, build-seconds histogram, stake, earnings, jobs in
flight); `/healthz` answers 200 with a JSON body while the worker polls successfully and 503 otherwise.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

OUTCOMES = ("attested", "diverged", "expired", "lost", "refused", "failed")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs = Counter("prometheus_verifier_jobs", "Jobs finished, by outcome", ["outcome"],
                            registry=self.registry)
        for outcome in OUTCOMES:
            self.jobs.labels(outcome)
        self.retries = Counter("prometheus_verifier_retries", "Transient failures that will be retried",
                               registry=self.registry)
        self.build_seconds = Histogram("prometheus_verifier_build_seconds", "Sandboxed build duration",
                                       buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
                                       registry=self.registry)
        self.in_flight = Gauge("prometheus_verifier_jobs_in_flight", "Jobs being worked on", registry=self.registry)
        self.stake_available = Gauge("prometheus_verifier_stake_available", "Stake free to reserve bounties",
                                     registry=self.registry)
        self.stake_locked = Gauge("prometheus_verifier_stake_locked", "Stake locked in reservations",
                                  registry=self.registry)
        self.earnings = Gauge("prometheus_verifier_earnings", "Bounty rewards earned (token units)",
                              registry=self.registry)
        self.last_poll = Gauge("prometheus_verifier_last_poll_timestamp_seconds", "Last successful poll",
                               registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def serve(addr: str, metrics: Metrics, health: Callable[[], tuple[bool, dict[str, Any]]]) -> ThreadingHTTPServer:
    """Serve /metrics and /healthz on `host:port` from a daemon thread; returns the server (call shutdown())."""
    host, _, port = addr.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, metrics.render())
            elif self.path == "/healthz":
                ok, body = health()
                self._send(200 if ok else 503, "application/json", json.dumps(body).encode())
            else:
                self._send(404, "text/plain", b"not found\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: the worker logs JSON
            pass

    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="metrics", daemon=True).start()
    return server
