"""Metrics (`prometheus_client`) and structured events (one JSON object per line on the `prometheus_attest`
logger) for verifications and key fetches.

Labels are bounded: results are error codes from errors.py, issuers come from configuration only (a token's
claimed issuer is logged as an event field, never used as a label).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

LOG = logging.getLogger("prometheus_attest")


class Observer:
    """Counts and times verifications and key fetches; `registry` defaults to a private one per observer
    (pass `prometheus_client.REGISTRY` to export with the process's other metrics)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.verifications = Counter("prometheus_attest_verifications", "Attestation verifications by result",
                                     ["result"], registry=self.registry)
        self.latency = Histogram("prometheus_attest_verify_seconds", "Time to verify one attestation",
                                 registry=self.registry,
                                 buckets=(.0001, .00025, .0005, .001, .0025, .005, .01, .05, .25, 1, 5))
        self.fetches = Counter("prometheus_attest_jwks_fetches", "JWKS fetches by issuer and outcome",
                               ["issuer", "outcome"], registry=self.registry)
        self._ok = self.verifications.labels("ok")

    def verified(self, started: float, issuer: str, subject: str, jti: str) -> None:
        self._ok.inc()
        self.latency.observe(time.perf_counter() - started)
        if LOG.isEnabledFor(logging.DEBUG):
            event("attestation.verified", issuer=issuer, subject=subject, jti=jti, level=logging.DEBUG)

    def refused(self, started: float, code: str, message: str, claimed_issuer: object = None) -> None:
        self.verifications.labels(code).inc()
        self.latency.observe(time.perf_counter() - started)
        event("attestation.refused", code=code, message=message, claimed_issuer=str(claimed_issuer)[:200],
              level=logging.WARNING)

    def jwks_fetch(self, issuer: str, outcome: str, problem: str = "") -> None:
        self.fetches.labels(issuer, outcome).inc()
        event("jwks.fetch", issuer=issuer, outcome=outcome, problem=problem,
              level=logging.INFO if outcome == "ok" else logging.WARNING)

    def count(self, result: str) -> float:
        value = self.registry.get_sample_value("prometheus_attest_verifications_total", {"result": result})
        return value or 0.0


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    if LOG.isEnabledFor(level):
        LOG.log(level, json.dumps({"event": name, "ts": round(time.time(), 3), **fields}, default=str))
