"""A probe canister for the canisters' SHA-256 (`canister_src/lib/Sha256.mo`) and ICRC-3 value hashing
(`canister_src/lib/Icrc3.mo`), built with the product's recipe (`testkit/lib_probe.py`)."""

from __future__ import annotations

from pathlib import Path

from ic_replica.candid import leb
from prometheus_sdk import did
from prometheus_sdk.did import Interface
from testkit.lib_probe import build_probe as build_lib_probe

LIBRARIES = ["Sha256.mo", "Icrc3.mo"]


def blob_arg(data: bytes) -> bytes:
    """The Candid argument `(blob)` the probe's `hash` takes."""
    return b"DIDL\x01\x6d\x7b\x01\x00" + leb(len(data)) + data


def blobs_arg(parts: list[bytes]) -> bytes:
    """The Candid argument `(vec blob)` the probe's `hashParts` takes."""
    return b"DIDL\x02\x6d\x7b\x6d\x00\x01\x01" + leb(len(parts)) + b"".join(leb(len(p)) + p for p in parts)


def build_probe() -> bytes:
    """The probe's wasm (compiled once per source change; the recipe's cache keys on the sources)."""
    return _build()[0]


def probe_interface() -> Interface:
    """The probe's Candid interface, as the compiler wrote it."""
    return did.parse(_build()[1])


def _build() -> tuple[bytes, str]:
    return build_lib_probe("sha256_probe", Path(__file__).with_name("main.mo"), LIBRARIES)
