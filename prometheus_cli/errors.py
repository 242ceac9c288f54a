"""The canisters' `#err` variants as one readable line (the payload's fields spelled out, times as UTC)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def error_of(result: Any) -> tuple[str, Any] | None:
    """(variant name, payload) of a canister `#err`, or None on success."""
    if isinstance(result, dict) and "err" in result:
        ((name, payload),) = result["err"].items()
        return name, payload
    return None


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


def message(result: Any) -> str | None:
    """The error of a canister result as one line, or None on success."""
    err = error_of(result)
    return describe(*err) if err else None
