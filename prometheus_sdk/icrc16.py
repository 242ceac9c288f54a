"""ICRC-16 generic values (`CandyShared`) <-> plain Python, and their Candid type.

Python -> ICRC-16: bool -> Bool, int -> Nat (Int if negative), float -> Float, str -> Text, bytes -> Blob,
Principal (the SDK's, or another library's principal object) -> Principal, None -> Option(null),
list/tuple -> Array, set -> Set, dict with str keys -> Map, other dicts -> ValueMap.
ICRC-16 -> Python maps every variant back (sized ints to int, Class to a dict of
its properties, Bytes to bytes, Option to its value or None).
"""

from __future__ import annotations

from typing import Any

from prometheus_sdk.candid import (
    BLOB,
    BOOL,
    FLOAT64,
    INT,
    INT8,
    INT16,
    INT32,
    INT64,
    NAT,
    NAT8,
    NAT16,
    NAT32,
    NAT64,
    PRINCIPAL,
    TEXT,
    Opt,
    Rec,
    Record,
    Tuple,
    Variant,
    Vec,
)
from prometheus_sdk.errors import SdkError
from prometheus_sdk.principal import InvalidPrincipal, Principal

ICRC16 = Rec()
PROPERTY = Record.of(name=TEXT, value=ICRC16, immutable=BOOL)
ICRC16.define(Variant.of(
    Int=INT, Int8=INT8, Int16=INT16, Int32=INT32, Int64=INT64, Ints=Vec(INT),
    Nat=NAT, Nat8=NAT8, Nat16=NAT16, Nat32=NAT32, Nat64=NAT64, Nats=Vec(NAT),
    Float=FLOAT64, Floats=Vec(FLOAT64), Text=TEXT, Bool=BOOL, Blob=BLOB, Bytes=Vec(NAT8),
    Class=Vec(PROPERTY), Principal=PRINCIPAL, Option=Opt(ICRC16), Array=Vec(ICRC16),
    ValueMap=Vec(Tuple(ICRC16, ICRC16)), Map=Vec(Tuple(TEXT, ICRC16)), Set=Vec(ICRC16),
))
ICRC16_MAP = Vec(Tuple(TEXT, ICRC16))


class Icrc16Error(SdkError, ValueError):
    """A value that has no ICRC-16 form, or a malformed ICRC-16 value."""


def to_icrc16(value: Any) -> Any:
    if isinstance(value, bool):
        return {"Bool": value}
    if isinstance(value, int):
        return {"Nat": value} if value >= 0 else {"Int": value}
    if isinstance(value, float):
        return {"Float": value}
    if isinstance(value, str):
        return {"Text": value}
    if isinstance(value, (bytes, bytearray)):
        return {"Blob": bytes(value)}
    principal = _as_principal(value)
    if principal is not None:
        return {"Principal": principal}
    if value is None:
        return {"Option": []}
    if isinstance(value, (list, tuple)):
        return {"Array": [to_icrc16(v) for v in value]}
    if isinstance(value, (set, frozenset)):
        return {"Set": [to_icrc16(v) for v in sorted(value, key=repr)]}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {"Map": to_map(value)}
        return {"ValueMap": [(to_icrc16(k), to_icrc16(v)) for k, v in value.items()]}
    raise Icrc16Error(f"{type(value).__name__} has no ICRC-16 form")


def _as_principal(value: Any) -> Principal | None:
    """The SDK Principal for a principal object of any library (callers still hold the replica's)."""
    if isinstance(value, Principal):
        return value
    if type(value).__name__.endswith("Principal"):
        try:
            return Principal.of(value)
        except InvalidPrincipal:
            return None
    return None


def to_map(values: dict[str, Any]) -> list[tuple[str, Any]]:
    """A `[(Text, ICRC16)]` map, the shape ICRC-126/127 metadata use."""
    return [(key, to_icrc16(v)) for key, v in values.items()]


def from_icrc16(value: dict[str, Any]) -> Any:
    if not isinstance(value, dict) or len(value) != 1:
        raise Icrc16Error(f"not an ICRC-16 value: {value!r}")
    (tag, inner), = value.items()
    if tag in ("Int", "Int8", "Int16", "Int32", "Int64", "Nat", "Nat8", "Nat16", "Nat32", "Nat64", "Float", "Text",
               "Bool", "Blob", "Principal"):
        return inner
    if tag in ("Ints", "Nats", "Floats"):
        return list(inner)
    if tag == "Bytes":
        return bytes(inner)
    if tag == "Option":
        return from_icrc16(inner[0]) if inner else None
    if tag == "Array":
        return [from_icrc16(v) for v in inner]
    if tag == "Set":
        return [from_icrc16(v) for v in inner]
    if tag == "Map":
        return from_map(inner)
    if tag == "ValueMap":
        return {_hashable(from_icrc16(k)): from_icrc16(v) for k, v in map(_pair, inner)}
    if tag == "Class":
        return {p["name"]: from_icrc16(p["value"]) for p in inner}
    raise Icrc16Error(f"unknown ICRC-16 variant {tag!r}")


def from_map(entries: list[Any]) -> dict[str, Any]:
    return {key: from_icrc16(v) for key, v in map(_pair, entries)}


def _pair(entry: Any) -> tuple[Any, Any]:
    """A `record { A; B }` entry as decoded (a dict keyed 0 and 1) or as written (a 2-tuple)."""
    if isinstance(entry, dict):
        return entry[0], entry[1]
    key, value = entry
    return key, value


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value
