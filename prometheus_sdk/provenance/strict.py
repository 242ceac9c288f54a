"""Strict decoding shared by statements, envelopes and bundles: a changed byte is an error, never the same value.
Each caller passes the error type (and wording) it raises, so its callers keep catching what they catch."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any


def no_duplicates(error: Callable[[str], Exception], what: str) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    """A `json.loads` `object_pairs_hook` that refuses an object with a repeated key."""
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in pairs}) != len(pairs):
            raise error(what)
        return dict(pairs)
    return hook


def b64(text: Any, error: Callable[[str], Exception], what: str) -> bytes:
    """Standard base64 whose decoded bytes re-encode to exactly `text` (no other padding bits, no whitespace)."""
    if not isinstance(text, str):
        raise error(f"{what} is base64 text")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise error(f"{what} is not base64") from None
    if base64.b64encode(raw).decode() != text:
        raise error(f"{what} is not canonical base64")
    return raw
