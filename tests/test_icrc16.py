"""ICRC-16 values: Python <-> Candid round trips, agreement with an independent decoder, clear errors."""

from __future__ import annotations

import pytest
from icp_candid import decode as reference_decode  # type: ignore[import-not-found]

from ic_replica.principal import Principal
from prometheus_sdk import candid
from prometheus_sdk.candid import idl_hash
from prometheus_sdk.icrc16 import ICRC16, ICRC16_MAP, Icrc16Error, from_icrc16, from_map, to_icrc16, to_map

METADATA = {
    "126:audit_type": "build_reproducibility_v1",
    "bounty_id": 7,
    "delta": -3,
    "ratio": 0.5,
    "ok": True,
    "126hash": bytes.fromhex("ab" * 32),
    "verifier": Principal.anonymous(),
    "tags": ["a", "b"],
    "nested": {"depth": {"deeper": [1, None]}},
    "nothing": None,
}


def test_map_round_trips_through_candid() -> None:
    encoded = candid.encode([ICRC16_MAP], [to_map(METADATA)])
    assert from_map(candid.decode(encoded, [ICRC16_MAP])[0]) == METADATA


def test_wire_format_matches_an_independent_decoder() -> None:
    encoded = candid.encode([ICRC16], [to_icrc16({"k": "v", "n": 5})])
    (value,) = reference_decode(encoded)
    outer = value["value"]
    entries = outer[str(idl_hash("Map"))]
    assert [e[0] for e in entries] == ["k", "n"]
    assert entries[0][1] == {str(idl_hash("Text")): "v"}
    assert entries[1][1] == {str(idl_hash("Nat")): 5}


def test_every_variant_decodes_to_python() -> None:
    samples = {
        "Int8": ({"Int8": -1}, -1), "Nat64": ({"Nat64": 2**63}, 2**63), "Bytes": ({"Bytes": b"\x01"}, b"\x01"),
        "Class": ({"Class": [{"name": "x", "value": {"Nat": 1}, "immutable": True}]}, {"x": 1}),
        "ValueMap": ({"ValueMap": [({"Nat": 1}, {"Text": "one"})]}, {1: "one"}),
        "Set": ({"Set": [{"Text": "s"}]}, ["s"]), "Option": ({"Option": [{"Bool": False}]}, False),
        "Floats": ({"Floats": [1.5]}, [1.5]),
    }
    for name, (icrc, python) in samples.items():
        decoded = candid.decode(candid.encode([ICRC16], [icrc]), [ICRC16])[0]
        assert from_icrc16(decoded) == python, name


def test_values_without_an_icrc16_form_are_refused() -> None:
    with pytest.raises(Icrc16Error):
        to_icrc16(object())
    with pytest.raises(Icrc16Error):
        from_icrc16({"Nope": 1})
    with pytest.raises(Icrc16Error):
        from_icrc16("not a variant")
