"""The IC HTTP interface of the embedded replica, driven by clients we did not write (icp-py-core through
the SDK, and the DFINITY JS agent) and by hand-built envelopes for every kind of bad request."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import httpx
import pytest

from ic_replica import candid, hash_tree
from ic_replica.certification import STATE_ROOT_SEPARATOR, bls_verify
from ic_replica.http_server import IcHttpServer
from ic_replica.principal import Principal, canister_id_from_index
from ic_replica.replica import CANISTER_RANGE, Replica
from ic_replica.request_auth import REQUEST_SEPARATOR, request_id
from prometheus_sdk import CallRejectedError, CertificateError, Network, connect
from testkit.http_helpers import (
    Ed25519Signer,
    Secp256k1Signer,
    content,
    decode,
    delegation,
    envelope,
    running_server,
    tampering_proxy,
)
from tests.conftest import ALICE, nat_arg, no_args

JS_DIR = Path(__file__).parent / "js"


@pytest.fixture
def served(wasms: dict[str, bytes]) -> Iterator[tuple[IcHttpServer, Principal]]:
    replica = Replica()
    cid = replica.create_canister(controllers=[ALICE], sender=ALICE)
    replica.install_code(cid, wasms["counter"], nat_arg(5), sender=ALICE)
    with running_server(replica) as server:
        yield server, cid


def post(server: IcHttpServer, path: str, body: bytes) -> httpx.Response:
    return httpx.post(server.url + path, content=body, headers={"Content-Type": "application/cbor"})


def verify_certificate(server: IcHttpServer, cert_bytes: bytes) -> hash_tree.Tree:
    cert = decode(cert_bytes)
    tree = hash_tree.from_cbor(cert["tree"])
    assert bls_verify(server.replica.keys.root_public_key, cert["signature"],
                      STATE_ROOT_SEPARATOR + hash_tree.reconstruct(tree))
    return tree


def test_status_announces_the_root_key(served: Any) -> None:
    server, _ = served
    status = decode(httpx.get(server.url + "/api/v2/status").content)
    assert status["root_key"] == server.replica.root_key_der and len(status["root_key"]) == 133


def test_sdk_update_query_and_rejects_with_verified_certificates(served: Any) -> None:
    from icp_identity.identity import Identity  # type: ignore[import-not-found]

    server, cid = served
    for identity in (Identity(), Identity(type="secp256k1"), Identity(anonymous=True)):
        conn = connect(Network("local", server.url), identity)
        before = candid.decode(conn.query(str(cid), "get", no_args()))[0]
        assert candid.decode(conn.call(str(cid), "inc", no_args()))[0] == before + 1
        assert str(candid.decode(conn.call(str(cid), "whoami", no_args()))[0]) == conn.principal
        with pytest.raises(CallRejectedError) as err:
            conn.call(str(cid), "incThenTrap", no_args())
        assert err.value.code == 5 and err.value.error_code == "IC0503"


def test_sync_call_certificate_is_signed_by_the_root_key(served: Any) -> None:
    server, cid = served
    signer = Ed25519Signer()
    c = content("call", cid, "inc", no_args(), signer.principal)
    response = post(server, f"/api/v4/canister/{cid}/call", envelope(c, signer))
    assert response.status_code == 200
    body = decode(response.content)
    assert body["status"] == "replied"
    tree = verify_certificate(server, body["certificate"])
    rid = request_id(c)
    assert hash_tree.lookup(tree, [b"request_status", rid, b"status"]) == ("found", b"replied")
    assert candid.decode(hash_tree.lookup(tree, [b"request_status", rid, b"reply"])[1]) == [6]
    assert hash_tree.lookup(tree, [b"time"])[0] == "found"


def test_async_call_then_read_state(served: Any) -> None:
    server, cid = served
    signer = Secp256k1Signer()
    c = content("call", cid, "inc", no_args(), signer.principal)
    assert post(server, f"/api/v2/canister/{cid}/call", envelope(c, signer)).status_code == 202
    rid = request_id(c)
    deadline = time.monotonic() + 10
    while True:
        rs = content("read_state", cid, sender=signer.principal, paths=[[b"request_status", rid]])
        response = post(server, f"/api/v3/canister/{cid}/read_state", envelope(rs, signer))
        assert response.status_code == 200
        tree = verify_certificate(server, decode(response.content)["certificate"])
        if hash_tree.lookup(tree, [b"request_status", rid, b"status"]) == ("found", b"replied"):
            break
        assert time.monotonic() < deadline, "the async call never completed"
        time.sleep(0.05)
    # another sender may not read that request's status
    other = Ed25519Signer()
    rs = content("read_state", cid, sender=other.principal, paths=[[b"request_status", rid]])
    assert post(server, f"/api/v3/canister/{cid}/read_state", envelope(rs, other)).status_code == 403


def test_read_state_canister_paths(served: Any, wasms: dict[str, bytes]) -> None:
    server, cid = served
    rs = content("read_state", cid, paths=[[b"canister", cid.raw, b"module_hash"], [b"canister", cid.raw,
                                                                                     b"controllers"],
                                           [b"canister", cid.raw, b"metadata", b"candid:service"]])
    response = post(server, f"/api/v3/canister/{cid}/read_state", envelope(rs))
    assert response.status_code == 200, response.text
    tree = verify_certificate(server, decode(response.content)["certificate"])
    assert hash_tree.lookup(tree, [b"canister", cid.raw, b"module_hash"])[1] == hashlib.sha256(
        wasms["counter"]).digest()
    assert decode(hash_tree.lookup(tree, [b"canister", cid.raw, b"controllers"])[1]) == [ALICE.raw]
    assert b"service" in hash_tree.lookup(tree, [b"canister", cid.raw, b"metadata", b"candid:service"])[1]
    private = content("read_state", cid, paths=[[b"canister", cid.raw, b"metadata", b"motoko:stable-types"]])
    assert post(server, f"/api/v3/canister/{cid}/read_state", envelope(private)).status_code == 403
    other = content("read_state", cid, paths=[[b"canister", Principal.management().raw, b"module_hash"]])
    assert post(server, f"/api/v3/canister/{cid}/read_state", envelope(other)).status_code == 403


def test_delegations(served: Any) -> None:
    server, cid = served
    root, session = Ed25519Signer(), Secp256k1Signer()
    later = time.time_ns() + 60 * 10**9
    c = content("call", cid, "whoami", no_args(), root.principal)
    ok = post(server, f"/api/v4/canister/{cid}/call", envelope(c, session, [delegation(root, session, later, [cid])],
                                                               key_signer=root))
    assert ok.status_code == 200, ok.text
    tree = hash_tree.from_cbor(decode(decode(ok.content)["certificate"])["tree"])
    reply = hash_tree.lookup(tree, [b"request_status", request_id(c), b"reply"])[1]
    assert candid.decode(reply)[0] == root.principal  # the call runs as the delegating principal
    for bad in (delegation(root, session, time.time_ns() - 10**9),  # expired
                delegation(root, session, later, [Principal.management()]),  # other target
                delegation(Ed25519Signer(), session, later)):  # signed by a stranger
        c = content("call", cid, "inc", no_args(), root.principal, nonce=bytes(8))
        response = post(server, f"/api/v4/canister/{cid}/call", envelope(c, session, [bad], key_signer=root))
        assert response.status_code == 400


def test_malformed_requests_get_errors_and_the_server_keeps_serving(served: Any) -> None:
    server, cid = served
    signer = Ed25519Signer()
    path = f"/api/v4/canister/{cid}/call"
    good = content("call", cid, "inc", no_args(), signer.principal)
    wrong_sig = decode(envelope(good, signer)) | {"sender_sig": bytes(64)}
    k1 = Secp256k1Signer()
    k1_call = content("call", cid, "inc", no_args(), k1.principal)
    cases = {
        "garbage CBOR": (b"\xff\x00garbage", 400),
        "not a map": (cbor2.dumps([1, 2, 3]), 400),
        "bad signature": (cbor2.dumps(wrong_sig), 400),
        "missing signature": (cbor2.dumps({"content": good, "sender_pubkey": signer.der}), 400),
        "high-S secp256k1 signature": (cbor2.dumps({"content": k1_call, "sender_pubkey": k1.der,
                                                    "sender_sig": k1.sign(REQUEST_SEPARATOR + request_id(k1_call),
                                                                          low_s=False)}), 400),
        "sender not derived from key": (envelope(content("call", cid, "inc", no_args(), Ed25519Signer().principal),
                                                 signer), 400),
        "expired ingress": (envelope(content("call", cid, "inc", no_args(), signer.principal, expiry_s=-60),
                                     signer), 400),
        "expiry too far ahead": (envelope(content("call", cid, "inc", no_args(), signer.principal,
                                                  expiry_s=3600), signer), 400),
        "wrong request type": (envelope(content("query", cid, "get", no_args())), 400),
        "effective id mismatch": (envelope(content("call", Principal.from_text("rrkah-fqaaa-aaaaa-aaaaq-cai"), "inc",
                                                   no_args())), 400),
        "oversized body": (b"\x00" * (6 * 1024 * 1024), 413),
    }
    for name, (body, status) in cases.items():
        response = post(server, path, body)
        assert response.status_code == status, f"{name}: {response.status_code} {response.text}"
        assert response.text.strip(), name
    outside = Principal.from_text("rrkah-fqaaa-aaaaa-aaaaq-cai")  # outside the subnet's ranges: not routed
    response = post(server, f"/api/v4/canister/{outside}/call", envelope(content("call", outside, "inc", no_args())))
    assert response.status_code == 400 and "canister_not_found" in response.text
    unknown = canister_id_from_index(CANISTER_RANGE[0] + 999)  # inside the ranges, no such canister
    response = post(server, f"/api/v4/canister/{unknown}/call", envelope(content("call", unknown, "inc", no_args())))
    body = decode(response.content)
    assert response.status_code == 200 and body["status"] == "non_replicated_rejection" and body["reject_code"] == 3
    assert post(server, "/api/v9/nothing", b"").status_code == 404
    # after all of that, a valid request still works
    response = post(server, path, envelope(good, signer))
    assert response.status_code == 200 and decode(response.content)["status"] == "replied"


def test_query_response_is_signed_by_the_node(served: Any) -> None:
    import nacl.signing

    from ic_replica.request_auth import hash_of_map

    server, cid = served
    q = content("query", cid, "get", no_args())
    body = decode(post(server, f"/api/v3/canister/{cid}/query", envelope(q)).content)
    assert body["status"] == "replied" and candid.decode(body["reply"]["arg"]) == [5]
    (sig,) = body["signatures"]
    keys = server.replica.keys
    assert sig["identity"] == keys.node_id.raw
    signed = {"status": "replied", "reply": body["reply"], "timestamp": sig["timestamp"], "request_id": request_id(q)}
    nacl.signing.VerifyKey(keys.node_public_key_der[-32:]).verify(b"\x0bic-response" + hash_of_map(signed),
                                                                   sig["signature"])


def test_sdk_refuses_a_tampered_certificate(served: Any) -> None:
    server, cid = served
    with tampering_proxy(server.url) as proxy:
        conn = connect(Network("local", proxy))
        with pytest.raises(CertificateError):
            conn.call(str(cid), "inc", no_args())


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is required for the JS agent conformance tests")
    if not (JS_DIR / "node_modules" / "@dfinity" / "agent").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=JS_DIR, check=True,
                       timeout=300)
    return node


def test_js_agent_accepts_the_replica(served: Any, wasms: dict[str, bytes]) -> None:
    server, cid = served
    run = subprocess.run([_node(), str(JS_DIR / "conformance.mjs"), server.url, str(cid),
                          hashlib.sha256(wasms["counter"]).hexdigest()], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    import json

    result = json.loads(run.stdout)
    assert result == {"before": "5", "incremented": "6", "after": "6", "caller_matches": True,
                      "module_hash_matches": True, "controllers": [str(ALICE)], "time_ok": True}


def test_js_agent_rejects_a_tampered_certificate(served: Any, wasms: dict[str, bytes]) -> None:
    server, cid = served
    with tampering_proxy(server.url) as proxy:
        run = subprocess.run([_node(), str(JS_DIR / "conformance.mjs"), proxy, str(cid),
                              hashlib.sha256(wasms["counter"]).hexdigest()], capture_output=True, text=True,
                             timeout=120)
    assert run.returncode == 1
    assert "conformance client failed" in run.stderr
    # the client stopped at its first (tampered) response, so its update never ran
    assert candid.decode(server.replica.query_call(cid, "get", no_args()))[0] == 5
