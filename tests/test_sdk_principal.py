"""The SDK's own Principal: text form, checksum and grouping, constructors, interop with other principals."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prometheus_sdk.principal import InvalidPrincipal, Principal

KNOWN = {  # text forms from the IC's documentation and mainnet
    "aaaaa-aa": b"",
    "2vxsx-fae": b"\x04",
    "rwlgt-iiaaa-aaaaa-aaaaa-cai": bytes.fromhex("00000000000000000101"),
    "ryjl3-tyaaa-aaaaa-aaaba-cai": bytes.fromhex("00000000000000020101"),
}


@pytest.mark.parametrize("text,raw", KNOWN.items())
def test_known_principals(text: str, raw: bytes) -> None:
    p = Principal.from_text(text)
    assert p.raw == raw and p.bytes == raw and p.to_text() == text and str(p) == text
    assert repr(p) == f"Principal({text})"
    assert Principal.from_text(text.upper()) == p  # case does not matter


def test_constructors() -> None:
    assert Principal.anonymous().to_text() == "2vxsx-fae" and Principal.anonymous().is_anonymous
    assert Principal.management().to_text() == "aaaaa-aa" and not Principal.management().is_anonymous
    der = bytes.fromhex("302a300506032b6570032100") + bytes(range(32))
    p = Principal.self_authenticating(der)
    assert p.raw == hashlib.sha224(der).digest() + b"\x02" and len(p.raw) == 29


@pytest.mark.parametrize("text,reason", [
    ("", "length"),
    ("2vxsx-fae-", "canonical"),  # a dash too many
    ("2vxsxfae", "canonical"),  # grouping missing
    ("2vxs-xfae", "canonical"),  # grouping wrong
    ("2vxsx-faf", "checksum|base32"),
    ("2vxsx-fa1", "base32"),  # 1 is not a base32 digit
    ("2vxsx-faé", "base32|canonical"),
    (" 2vxsx-fae", "base32|canonical"),
    ("aaaa", "checksum|short|base32"),
    ("a" * 200, "length"),
])
def test_bad_text_is_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidPrincipal, match=reason):
        Principal.from_text(text)


def test_length_is_at_most_29_bytes() -> None:
    Principal(bytes(29))
    with pytest.raises(InvalidPrincipal, match="at most 29"):
        Principal(bytes(30))
    long_text = Principal(bytes(29)).to_text()
    assert Principal.from_text(long_text).raw == bytes(29)
    with pytest.raises(InvalidPrincipal):
        Principal("not bytes")  # type: ignore[arg-type]


def test_of_accepts_every_principal_form() -> None:
    p = Principal.from_text("ryjl3-tyaaa-aaaaa-aaaba-cai")
    assert Principal.of(p) is p
    assert Principal.of("ryjl3-tyaaa-aaaaa-aaaba-cai") == p
    assert Principal.of(p.raw) == p and Principal.of(bytearray(p.raw)) == p and Principal.of(memoryview(p.raw)) == p

    class OtherLibraryPrincipal:  # icp-py-core's shape
        def __init__(self, raw: bytes) -> None:
            self.bytes = raw

    assert Principal.of(OtherLibraryPrincipal(p.raw)) == p
    with pytest.raises(InvalidPrincipal):
        Principal.of(42)


def test_equal_to_other_libraries_principals_with_the_same_bytes() -> None:
    from ic_replica.principal import Principal as ReplicaPrincipal

    ours, theirs = Principal(b"\x01\x02"), ReplicaPrincipal(b"\x01\x02")
    assert ours == theirs and theirs == ours
    assert (ours != theirs) is False  # __ne__ follows __eq__
    assert ours != ReplicaPrincipal(b"\x01") and ours != b"\x01\x02" and ours != "aaaaa-aa"
    assert Principal.of(theirs) == ours
    if hash(theirs) == hash(ours):  # both hash their bytes alike: dictionaries can mix them
        mixed: dict[object, int] = {theirs: 1}
        assert mixed[ours] == 1


def test_hashable_and_ordered_by_bytes() -> None:
    a, b, c = Principal(b"\x00"), Principal(b"\x00\x01"), Principal(b"\x01")
    assert sorted([c, b, a]) == [a, b, c] and a < b < c and c > a and a <= a
    assert len({a, Principal(b"\x00"), b}) == 2
    with pytest.raises(AttributeError):
        a.raw = b"\x02"  # type: ignore[misc]


@given(st.binary(max_size=29))
def test_text_round_trip_and_agreement_with_the_replica(raw: bytes) -> None:
    from ic_replica.principal import Principal as ReplicaPrincipal

    p = Principal(raw)
    assert Principal.from_text(p.to_text()) == p
    assert p.to_text() == ReplicaPrincipal(raw).to_text()
    assert ReplicaPrincipal.from_text(p.to_text()).raw == raw


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz234567-", max_size=70))
def test_random_text_parses_or_raises_invalid_principal(text: str) -> None:
    try:
        p = Principal.from_text(text)
    except InvalidPrincipal:
        return
    assert p.to_text() == text
