"""The canisters' `#err` variants as one readable line (the payload's fields spelled out, times as UTC)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def when(ns: int) -> str:
    """An IC timestamp (ns since the epoch) as UTC, to the second."""
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _field(key: str, value: Any) -> str:
    if key in ("until", "timeout_date", "expires_at") and isinstance(value, int):
        return f"{key} {when(value)}"
    if isinstance(value, list):
        return f"{key} {', '.join(map(str, value)) or 'none'}"
    return f"{key} {value}"


def describe(name: str, payload: Any) -> str:
    """`Name`, `Name: text` or `Name (field value, ...)`."""
    if payload is None:
        return name
    if isinstance(payload, str):
        return f"{name}: {payload}"
    if isinstance(payload, dict):
        return f"{name} ({', '.join(_field(k, v) for k, v in payload.items())})"
    return f"{name}: {payload}"


def of(exc: Any) -> str:
    """A typed client's `CanisterError` as one line, the same way as `describe`."""
    return describe(exc.kind, exc.detail) if exc.kind is not None else str(exc.detail)
