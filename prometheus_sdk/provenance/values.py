"""ICRC-3's representation-independent hash of a value (Nat, Int, Text, Blob, Array, Map), as the registry
computes the leaves of its provenance tree."""

from __future__ import annotations

import hashlib
from typing import Any

from prometheus_sdk.icrc3 import leb128


def hash_value(value: Any) -> bytes:
    """`value`: int (a Nat), str, bytes, list (Array) or dict str -> value (Map)."""
    if isinstance(value, bool):
        raise TypeError("ICRC-3 values have no booleans")
    if isinstance(value, int):
        if value < 0:
            raise TypeError("only Nat here")
        return hashlib.sha256(leb128(value)).digest()
    if isinstance(value, str):
        return hashlib.sha256(value.encode()).digest()
    if isinstance(value, bytes):
        return hashlib.sha256(value).digest()
    if isinstance(value, list):
        return hashlib.sha256(b"".join(hash_value(v) for v in value)).digest()
    if isinstance(value, dict):
        pairs = sorted(hash_value(k) + hash_value(v) for k, v in value.items())
        return hashlib.sha256(b"".join(pairs)).digest()
    raise TypeError(f"not an ICRC-3 value: {type(value).__name__}")
