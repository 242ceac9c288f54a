"""Internet Computer principals for the SDK: raw bytes (at most 29) and their checksummed text form.

Written for the SDK on purpose instead of importing `ic_replica.principal`: the replica is the server our
clients test, and a client that shares the server's parsing would hide the server's bugs. The text form is
`base32(crc32(raw) ‖ raw)`, lower case, without padding, in groups of five characters separated by `-`.

An SDK `Principal` compares equal (and hashes equal) to any other library's principal object with the same
raw bytes (the replica's, icp-py-core's), so values decoded by the SDK can be checked against principals
made elsewhere.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import hashlib
import zlib
from dataclasses import dataclass
from functools import total_ordering
from typing import Any

from prometheus_sdk.errors import SdkError

MAX_LENGTH = 29
_SELF_AUTHENTICATING = 0x02
_ANONYMOUS = b"\x04"


class InvalidPrincipal(SdkError, ValueError):
    """Text or bytes that are not a principal (bad characters, checksum, grouping or length)."""


@total_ordering
@dataclass(frozen=True, eq=False, repr=False)
class Principal:
    """A principal: `raw` is its byte form; ordered by those bytes like the IC orders them."""

    raw: builtins.bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, builtins.bytes):
            raise InvalidPrincipal(f"a principal is made of bytes, not {type(self.raw).__name__}")
        if len(self.raw) > MAX_LENGTH:
            raise InvalidPrincipal(f"a principal has at most {MAX_LENGTH} bytes, got {len(self.raw)}")

    @classmethod
    def from_text(cls, text: str) -> Principal:
        """Parse the text form; case does not matter, but the checksum and the dash grouping must be right."""
        if not isinstance(text, str):
            raise InvalidPrincipal(f"a principal's text form is a str, not {type(text).__name__}")
        canonical = text.lower()
        compact = canonical.replace("-", "")
        if not compact or len(compact) > 2 * (MAX_LENGTH + 4):
            raise InvalidPrincipal(f"{text!r} is not a principal: wrong length")
        try:
            decoded = base64.b32decode(compact.upper() + "=" * (-len(compact) % 8))
        except (binascii.Error, ValueError):
            raise InvalidPrincipal(f"{text!r} is not a principal: not base32 (letters a-z, digits 2-7)") from None
        if len(decoded) < 4:
            raise InvalidPrincipal(f"{text!r} is not a principal: too short for its checksum")
        checksum, raw = decoded[:4], decoded[4:]
        if len(raw) > MAX_LENGTH:
            raise InvalidPrincipal(f"{text!r} is not a principal: {len(raw)} bytes, at most {MAX_LENGTH}")
        if zlib.crc32(raw).to_bytes(4, "big") != checksum:
            raise InvalidPrincipal(f"{text!r} is not a principal: wrong checksum")
        principal = cls(raw)
        if principal.to_text() != canonical:
            raise InvalidPrincipal(f"{text!r} is not a principal: expected the canonical form {principal.to_text()}")
        return principal

    def to_text(self) -> str:
        encoded = base64.b32encode(zlib.crc32(self.raw).to_bytes(4, "big") + self.raw).decode().lower().rstrip("=")
        return "-".join(encoded[i:i + 5] for i in range(0, len(encoded), 5))

    @classmethod
    def anonymous(cls) -> Principal:
        return cls(_ANONYMOUS)

    @classmethod
    def management(cls) -> Principal:
        """The management canister, `aaaaa-aa` (empty bytes)."""
        return cls(b"")

    @classmethod
    def self_authenticating(cls, der_public_key: builtins.bytes) -> Principal:
        """The principal of a key: SHA-224 of its DER encoding, then the self-authenticating tag 0x02."""
        return cls(hashlib.sha224(der_public_key).digest() + bytes([_SELF_AUTHENTICATING]))

    @classmethod
    def of(cls, value: Any) -> Principal:
        """An SDK principal from a Principal, its text, its bytes, or another library's principal object
        (anything with `raw` or `bytes` bytes, e.g. the replica's or icp-py-core's)."""
        if isinstance(value, Principal):
            return value
        if isinstance(value, str):
            return cls.from_text(value)
        if isinstance(value, (builtins.bytes, bytearray, memoryview)):
            return cls(builtins.bytes(value))
        raw = _foreign_raw(value)
        if raw is None:
            raise InvalidPrincipal(f"{type(value).__name__} is not a principal")
        return cls(raw)

    @property
    def is_anonymous(self) -> bool:
        return self.raw == _ANONYMOUS

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Principal):
            return self.raw == other.raw
        raw = _foreign_raw(other)
        return NotImplemented if raw is None else self.raw == raw

    def __hash__(self) -> int:
        return hash((self.raw,))  # what a frozen dataclass with the single field `raw` hashes to

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Principal):
            return NotImplemented
        return self.raw < other.raw

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return f"Principal({self.to_text()})"

    @property
    def bytes(self) -> builtins.bytes:
        """The raw bytes, under the name icp-py-core's Principal uses."""
        return self.raw


def _foreign_raw(value: Any) -> builtins.bytes | None:
    """The raw bytes of another library's principal object (a class named like `*Principal` with a bytes
    `raw` or `bytes` attribute), else None."""
    if not type(value).__name__.endswith("Principal"):
        return None
    for attribute in ("raw", "bytes"):
        raw = getattr(value, attribute, None)
        if isinstance(raw, (builtins.bytes, bytearray)):
            return builtins.bytes(raw)
    return None
