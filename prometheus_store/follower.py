"""Keeps an index in step with the chain while `serve` or `mcp` runs: an update every `interval` seconds; after
a failure (the registry unreachable, or an answer that does not verify) it keeps what was verified, says why,
and tries again with a growing delay (a lagging replica or a bad boundary node may answer right next time)."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from prometheus_store.index import DEFAULT_MAX_AGE_NS, Index

MAX_BACKOFF_S = 60.0


class Follower(threading.Thread):
    def __init__(self, index: Index, client: Any, root_key: bytes, interval: float,
                 max_age_ns: int = DEFAULT_MAX_AGE_NS) -> None:
        super().__init__(name="store-indexer", daemon=True)
        self.index, self.client, self.root_key = index, client, root_key
        self.interval, self.max_age_ns = interval, max_age_ns
        self.stop = threading.Event()
        self.failures = 0
        self.last_error: str | None = None
        self.last_success = time.time()

    def state(self) -> dict[str, Any]:
        """For /healthz: whether the index follows the chain, and the last problem if it does not."""
        return {"state": "following" if self.failures == 0 else "retrying", "failures": self.failures,
                "last_error": self.last_error, "last_success_s_ago": round(time.time() - self.last_success, 1)}

    def run(self) -> None:
        delay = self.interval
        while not self.stop.wait(delay):
            try:
                self.index.sync(self.client, self.root_key, self.max_age_ns)
            except Exception as exc:  # whatever it was, the index keeps only what verified: report, retry later
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {str(exc)[:300]}"
                print(f"prometheus store: index update failed ({self.last_error}); retrying", file=sys.stderr,
                      flush=True)
                delay = min(MAX_BACKOFF_S, max(self.interval, delay * 2))
                continue
            self.failures, self.last_error, self.last_success = 0, None, time.time()
            delay = self.interval
