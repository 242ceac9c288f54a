"""Principals in the IC's textual format (CRC-32 + base32, dash-grouped) and canister id allocation."""

from __future__ import annotations

import base64
import hashlib
import zlib
from dataclasses import dataclass

MAX_PRINCIPAL_BYTES = 29


class InvalidPrincipal(ValueError):
    """Text or bytes that are not a valid principal."""


@dataclass(frozen=True, order=True)
class Principal:
    """An IC principal: up to 29 opaque bytes."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) > MAX_PRINCIPAL_BYTES:
            raise InvalidPrincipal(f"principal is {len(self.raw)} bytes, at most {MAX_PRINCIPAL_BYTES}")

    @classmethod
    def from_text(cls, text: str) -> Principal:
        """Parse and checksum-verify the textual form, e.g. `rrkah-fqaaa-aaaaa-aaaaq-cai`."""
        compact = text.replace("-", "").upper()
        if not compact or compact != compact.strip() or not compact.isalnum():
            raise InvalidPrincipal(f"not a principal: {text!r}")
        padded = compact + "=" * (-len(compact) % 8)
        try:
            data = base64.b32decode(padded)
        except ValueError as exc:
            raise InvalidPrincipal(f"not a principal: {text!r}") from exc
        if len(data) < 4:
            raise InvalidPrincipal(f"not a principal: {text!r}")
        principal = cls(data[4:])
        if principal.to_text() != text.lower():
            raise InvalidPrincipal(f"principal {text!r} has a wrong checksum or grouping")
        return principal

    def to_text(self) -> str:
        checksum = zlib.crc32(self.raw).to_bytes(4, "big")
        encoded = base64.b32encode(checksum + self.raw).decode().lower().rstrip("=")
        return "-".join(encoded[i : i + 5] for i in range(0, len(encoded), 5))

    @classmethod
    def self_authenticating(cls, public_key_der: bytes) -> Principal:
        return cls(hashlib.sha224(public_key_der).digest() + b"\x02")

    @classmethod
    def anonymous(cls) -> Principal:
        return cls(b"\x04")

    @classmethod
    def management(cls) -> Principal:
        return cls(b"")

    @property
    def is_anonymous(self) -> bool:
        return self.raw == b"\x04"

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return f"Principal({self.to_text()!r})"


ANONYMOUS = Principal.anonymous()
MANAGEMENT = Principal.management()


def canister_id_from_index(index: int) -> Principal:
    """The IC's canister id for a canister index: 8 big-endian bytes followed by 0x01 0x01."""
    return Principal(index.to_bytes(8, "big") + b"\x01\x01")


def canister_index(principal: Principal) -> int | None:
    """The index of a canister id, or None if the principal is not a canister id."""
    raw = principal.raw
    if len(raw) == 10 and raw.endswith(b"\x01\x01"):
        return int.from_bytes(raw[:8], "big")
    return None
