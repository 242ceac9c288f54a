"""JSON-lines logging: one object per event on stderr, so operators can ship it to any log pipeline."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, TextIO


class JsonLog:
    def __init__(self, stream: TextIO | None = None, component: str = "verifier") -> None:
        self._stream = stream or sys.stderr
        self._component = component
        self._lock = threading.Lock()

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        record = {"ts": round(time.time(), 3), "level": level, "component": self._component, "event": event,
                  **fields}
        line = json.dumps(record, default=str, sort_keys=False)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields)
