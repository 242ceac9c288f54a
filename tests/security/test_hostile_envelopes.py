"""Attacks 3, 4, 7 and 8: hostile envelopes. Every malformed envelope, delegation, key, signature, target,
sender, nonce or path is a 4xx with a reason, quickly; CBOR that could amplify (deep nesting, huge declared
lengths, indefinite lengths, tags, big integers, shared references) is refused before it is built; request-id
hashing is linear; and none of it waits for the replica lock."""

from __future__ import annotations

import threading
import time
from typing import Any

import cbor2
import httpx
import pytest

from ic_replica import candid, management
from ic_replica.principal import MANAGEMENT, Principal
from ic_replica.request_auth import DELEGATION_SEPARATOR, hash_of_map, hash_value
from testkit.http_helpers import Ed25519Signer, content, envelope
from tests.conftest import no_args
from tests.security.support import BUDGET_S, timed_post

LATER = time.time_ns() + 600 * 10**9


def signed_delegation(issuer: Any, delegation: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"delegation": delegation, "signature": issuer.sign(DELEGATION_SEPARATOR + hash_of_map(delegation)),
            **extra}


def delegated_call(cid: Principal, chain: list[Any]) -> bytes:
    root, session = Ed25519Signer(), Ed25519Signer()
    chain = [signed_delegation(root, d) if isinstance(d, dict) and "pubkey!" not in d else d for d in chain]
    c = content("call", cid, "inc", no_args(), root.principal)
    return envelope(c, session, chain, key_signer=root)


def raw_envelope(env: dict[str, Any]) -> bytes:
    return cbor2.dumps(cbor2.CBORTag(55799, env))


def bad_delegations(cid: Principal) -> dict[str, bytes]:
    session = Ed25519Signer()
    root = Ed25519Signer()
    return {
        "integer pubkey (the 429-byte freeze)": delegated_call(cid, [{"pubkey": 100_000_000, "expiration": LATER}]),
        "text pubkey": delegated_call(cid, [{"pubkey": "abc", "expiration": LATER}]),
        "no pubkey": delegated_call(cid, [{"expiration": LATER}]),
        "huge pubkey": delegated_call(cid, [{"pubkey": b"\x30" * 100_000, "expiration": LATER}]),
        "expiration beyond nat64": delegated_call(cid, [{"pubkey": session.der, "expiration": 1 << 100}]),
        "text expiration": delegated_call(cid, [{"pubkey": session.der, "expiration": "later"}]),
        "text target": delegated_call(cid, [{"pubkey": session.der, "expiration": LATER, "targets": ["x"]}]),
        "integer target": delegated_call(cid, [{"pubkey": session.der, "expiration": LATER,
                                                "targets": [100_000_000]}]),
        "map targets": delegated_call(cid, [{"pubkey": session.der, "expiration": LATER, "targets": {"a": b"b"}}]),
        "no signature": delegated_call(cid, [{"delegation": {"pubkey": session.der, "expiration": LATER},
                                              "pubkey!": 1}]),
        "delegation is a list": delegated_call(cid, [[1, 2]]),
        "chain is a map": raw_envelope({"content": content("call", cid, "inc", no_args(), root.principal),
                                        "sender_pubkey": root.der, "sender_sig": bytes(64),
                                        "sender_delegation": {"a": 1}}),
    }


def bad_envelopes(cid: Principal) -> dict[str, bytes]:
    anon_query = content("query", cid, "get", no_args())
    call = content("call", cid, "inc", no_args())
    return {
        "text sender": raw_envelope({"content": anon_query | {"sender": "abc"}}),
        "integer sender": raw_envelope({"content": anon_query | {"sender": 100_000_000}}),
        "long sender": raw_envelope({"content": call | {"sender": b"\x04" * 30}}),
        "integer canister_id": raw_envelope({"content": call | {"canister_id": 5}}),
        "long canister_id": raw_envelope({"content": call | {"canister_id": b"\x00" * 40}}),
        "integer arg": raw_envelope({"content": call | {"arg": 100_000_000}}),
        "integer nonce": raw_envelope({"content": anon_query | {"nonce": 7}}),
        "long nonce": raw_envelope({"content": anon_query | {"nonce": b"n" * 33}}),
        "ingress_expiry beyond nat64": raw_envelope({"content": anon_query | {"ingress_expiry": 1 << 64}}),
        "negative ingress_expiry": raw_envelope({"content": anon_query | {"ingress_expiry": -1}}),
        "text key": raw_envelope({"content": call | {"nonce": b"1"}, "sender_pubkey": b"k", "sender_sig": b"s"}),
        "non-text map key": cbor2.dumps({"content": {1: 2, "request_type": "call"}}),
        "float in content": raw_envelope({"content": call | {"x": 1.5}}),
        "bool sender_sig": raw_envelope({"content": call, "sender_sig": True}),
        "integer sender_pubkey": raw_envelope({"content": call | {"sender": Ed25519Signer().principal.raw},
                                               "sender_pubkey": 100_000_000, "sender_sig": b"s"}),
        "paths not a list": raw_envelope({"content": content("read_state", cid, paths={"a": b"b"})}),
        "path of integers": raw_envelope({"content": content("read_state", cid, paths=[[1, 2]])}),
    }


HUGE = 1 << (8 * 400_000)  # a 400 KB integer


def hostile_cbor(cid: Principal) -> dict[str, bytes]:
    call = content("call", cid, "inc", no_args())
    return {
        "1000 nested arrays": b"\x81" * 1000 + b"\x00",
        "array declaring 2^62 items": b"\x9b" + (1 << 62).to_bytes(8, "big"),
        "bytes declaring 2^62 bytes": b"\x5b" + (1 << 62).to_bytes(8, "big"),
        "indefinite-length array": b"\x9f" + b"\x00" * 1000 + b"\xff",
        "indefinite-length map": b"\xbf\x67content\xa0\xff",
        "unknown tag": b"\xda\x00\x01\x00\x00\xa0",
        "shared reference cycle": b"\xd8\x1c\x81\xd8\x1d\x00",
        "five million empty arrays": b"\x9a" + (5_000_000).to_bytes(4, "big") + b"\x80" * 5_000_000,
        "400 KB bignum in content": raw_envelope({"content": call | {"x": HUGE}}),
        "400 KB bignum expiry": raw_envelope({"content": call | {"ingress_expiry": HUGE}}),
        "half-precision float": b"\xf9\x3c\x00",
        "trailing bytes": raw_envelope({"content": call}) + b"\x00",
    }


@pytest.mark.parametrize("family", ["delegations", "envelopes", "cbor"])
def test_hostile_envelopes_get_a_4xx_with_a_reason_quickly(served, family: str) -> None:  # type: ignore[no-untyped-def]
    cases = {"delegations": bad_delegations, "envelopes": bad_envelopes, "cbor": hostile_cbor}[family](served.cid)
    with httpx.Client(timeout=60) as client:
        for endpoint in ("call", "query"):
            url = f"{served.url}/api/v3/canister/{served.cid}/{endpoint}"
            for name, body in cases.items():
                answer = timed_post(client, url, body)
                assert 400 <= answer.status < 500, f"{name} ({endpoint}): {answer}"
                assert answer.text.strip(), name
                assert answer.seconds < BUDGET_S, f"{name} ({endpoint}) took {answer.seconds:.2f} s"


def test_an_integer_delegation_key_is_named_as_such(served) -> None:  # type: ignore[no-untyped-def]
    body = bad_delegations(served.cid)["integer pubkey (the 429-byte freeze)"]
    answer = timed_post(httpx.Client(), f"{served.url}/api/v3/canister/{served.cid}/call", body)
    assert answer.status == 400 and "pubkey must be a blob" in answer.text, answer
    assert answer.seconds < 0.5


def test_request_id_hashing_is_linear() -> None:
    start = time.monotonic()
    hash_value(HUGE)
    hash_value(-HUGE)
    assert time.monotonic() - start < 0.5


def test_nothing_waits_for_the_replica_lock(served) -> None:  # type: ignore[no-untyped-def]
    """With the lock held elsewhere (a long round), malformed requests are still refused at once: decoding,
    validation, authentication and the management argument check run outside the lock."""
    other = served.server.replica.canister_ids()[0]
    install_elsewhere = candid.encode([management.INSTALL_CODE_ARGS], [{
        "mode": {"install": None}, "canister_id": Principal(b"\x00" * 10), "wasm_module": b"", "arg": b"",
        "sender_canister_version": []}])
    cases = {
        **{k: v for k, v in bad_delegations(served.cid).items() if "pubkey" in k},
        "management argument names another canister": envelope(content(
            "call", MANAGEMENT, "install_code", install_elsewhere)),
        **hostile_cbor(served.cid),
    }
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with served.server.replica.lock:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    held.wait(5)
    try:
        with httpx.Client(timeout=BUDGET_S * 2) as client:
            for name, body in cases.items():
                try:
                    answer = timed_post(client, f"{served.url}/api/v3/canister/{other}/call", body)
                except httpx.TimeoutException:
                    pytest.fail(f"{name}: no answer while the replica lock was held")
                assert 400 <= answer.status < 500, f"{name}: {answer}"
                assert answer.seconds < BUDGET_S, f"{name} took {answer.seconds:.2f} s"
    finally:
        release.set()
        holder.join(5)
