"""Subnet delegations on a multi-subnet `prometheus-pocket-ic` instance (NNS + two application subnets), driven
through the REST API with the unmodified `pocket-ic` client: each application subnet has its own BLS key, id and
node, its certificates carry a root-signed delegation, and canisters see their own subnet's id. Certificates are
checked here independently of `ic_replica` (pyblst, our own hash-tree code), and with icp-py-core's agent."""

from __future__ import annotations

import base64
import hashlib
import urllib.request
from collections.abc import Iterator
from typing import Any

import cbor2
import pyblst
import pytest

from ic_replica import candid
from ic_replica.principal import Principal
from tests.conftest import decode1, no_args
from tests.test_pocket_ic_server import BIN, b64, delete, http, install_counter, raw, server  # noqa: F401 - fixture
from tests.test_system_api_complete import Reader, probe_wasm

pocket_ic = pytest.importorskip("pocket_ic")
pytestmark = pytest.mark.skipif(not BIN.exists(), reason="prometheus-pocket-ic is not installed (pip install -e .)")

BLS_DER_PREFIX_LEN = 37  # DER SubjectPublicKeyInfo header of an IC BLS12-381 G2 key; the raw key (96 bytes) follows
BLS_DST = b"BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_"
G2_GENERATOR = bytes.fromhex(
    "93e02b6052719f607dacd3a088274f65596bd0d09920b61ab5da61bbdc7f5049334cf11213945d57e5ac7d055d042b7e"
    "024aa2b2f08f0a91260805272dc51051c6e47ad4fa403b02b4510b647ae3d1770bac0326a805bbefd48056c8c121bdb8")


@pytest.fixture
def pic(server: Any) -> Iterator[Any]:  # noqa: F811 - `server` is the fixture imported above
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POCKET_IC_BIN", str(BIN))
        mp.setenv("POCKET_IC_MUTE_SERVER", "1")
        instance = pocket_ic.PocketIC(pocket_ic.SubnetConfig(application=2, nns=True))
    yield instance
    delete(instance)


def subnets(pic: Any) -> dict[str, list[Any]]:
    """Subnet principals by kind."""
    out: dict[str, list[Any]] = {}
    for sid, kind in pic.topology().items():
        out.setdefault(kind.value, []).append(sid)
    return out


# ------------------------------------------------------------------ an independent certificate checker


def root_hash(tree: list[Any]) -> bytes:
    def h(sep: str, data: bytes) -> bytes:
        return hashlib.sha256(bytes([len(sep)]) + sep.encode() + data).digest()

    kind = tree[0]
    if kind == 0:
        return h("ic-hashtree-empty", b"")
    if kind == 1:
        return h("ic-hashtree-fork", root_hash(tree[1]) + root_hash(tree[2]))
    if kind == 2:
        return h("ic-hashtree-labeled", tree[1] + root_hash(tree[2]))
    if kind == 3:
        return h("ic-hashtree-leaf", tree[1])
    assert kind == 4
    return bytes(tree[1])


def labeled(tree: list[Any]) -> list[list[Any]]:
    """The labeled children of a (possibly forked) tree node."""
    if tree[0] == 1:
        return labeled(tree[1]) + labeled(tree[2])
    return [tree] if tree[0] == 2 else []


def subtree(tree: list[Any], path: list[bytes]) -> list[Any] | None:
    for label in path:
        found = next((node[2] for node in labeled(tree) if node[1] == label), None)
        if found is None:
            return None
        tree = found
    return tree


def leaf(tree: list[Any], path: list[bytes]) -> bytes | None:
    node = subtree(tree, path)
    return bytes(node[1]) if node is not None and node[0] == 3 else None


def bls_ok(der_key: bytes, cert: dict[str, Any]) -> bool:
    """min-sig BLS12-381: e(sig, g2) == e(H(sep · root hash), pk)."""
    message = b"\x0dic-state-root" + root_hash(cert["tree"])
    sig = pyblst.BlstP1Element.uncompress(cert["signature"])
    pk = pyblst.BlstP2Element.uncompress(der_key[BLS_DER_PREFIX_LEN:])
    g2 = pyblst.BlstP2Element.uncompress(G2_GENERATOR)
    h = pyblst.BlstP1Element.hash_to_group(message, BLS_DST)
    return bool(pyblst.final_verify(pyblst.miller_loop(sig, g2), pyblst.miller_loop(h, pk)))


def untag(value: Any) -> Any:
    while isinstance(value, cbor2.CBORTag) and value.tag == 55799:
        value = value.value
    return value


def read_state(pic: Any, canister: bytes, paths: list[list[bytes]]) -> dict[str, Any]:
    """An anonymous read_state through the instance's IC HTTP interface; the decoded certificate."""
    _, now = http("GET", f"{pic.server.url}/instances/{pic.instance_id}/read/get_time")
    content = {"request_type": "read_state", "sender": b"\x04", "paths": paths,
               "ingress_expiry": now["nanos_since_epoch"] + 60 * 10**9}
    request = urllib.request.Request(
        f"{pic.server.url}/instances/{pic.instance_id}/api/v3/canister/{Principal(canister).to_text()}/read_state",
        data=cbor2.dumps(cbor2.CBORTag(55799, {"content": content})), method="POST",
        headers={"Content-Type": "application/cbor"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        body = untag(cbor2.loads(resp.read()))
    return dict(untag(cbor2.loads(body["certificate"])))


def node_ids(topology: dict[str, Any], subnet: Any) -> list[bytes]:
    return [base64.b64decode(n["node_id"]) for n in topology[subnet.to_str()]["node_ids"]]


def thaw(value: Any) -> Any:
    """cbor2's immutable decoding (frozendict, tuple) back to dicts and lists."""
    if isinstance(value, (dict, cbor2.frozendict)):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


def in_ranges(encoded: bytes, canister: bytes) -> bool:
    return any(lo <= canister <= hi for lo, hi in untag(cbor2.loads(encoded)))


def install(pic: Any, wasm: bytes, subnet: Any) -> Any:
    cid = pic.create_canister(subnet=subnet)
    payload = candid.encode([candid.Record.of(mode=candid.Variant.of(install=candid.NULL),
                                              canister_id=candid.PRINCIPAL, wasm_module=candid.BLOB,
                                              arg=candid.BLOB)],
                            [{"mode": {"install": None}, "canister_id": Principal(raw(cid)),
                              "wasm_module": wasm, "arg": b""}])
    pic.update_call_with_effective_principal(None, {"CanisterId": b64(raw(cid))}, "install_code", payload)
    return cid


# ------------------------------------------------------------------ tests


def test_an_application_subnet_certifies_with_a_delegation_from_the_root_key(pic: Any,
                                                                              wasms: dict[str, bytes]) -> None:
    root_key = bytes(pic.get_root_key())
    topology = pic.server.instance_get("read/topology", pic.instance_id)["subnet_configs"]
    for app in subnets(pic)["Application"]:
        cid = raw(install_counter(pic, wasms, subnet=app))
        subnet_id = raw(app)
        cert = read_state(pic, cid, [[b"time"], [b"canister", cid, b"module_hash"], [b"subnet", subnet_id]])
        delegation = cert["delegation"]
        assert bytes(delegation["subnet_id"]) == subnet_id
        inner = dict(untag(cbor2.loads(delegation["certificate"])))
        assert inner.get("delegation") is None  # the root's certificate delegates no further
        assert bls_ok(root_key, inner), "the delegation is not signed by the root key"
        subnet_key = leaf(inner["tree"], [b"subnet", subnet_id, b"public_key"])
        assert subnet_key is not None and subnet_key != root_key
        assert hashlib.sha224(subnet_key).digest() + b"\x02" == subnet_id  # the id derives from the subnet's key
        assert bls_ok(subnet_key, cert), "the certificate is not signed by the delegated subnet key"
        assert not bls_ok(root_key, cert)
        # the delegation is scoped to the subnet's ranges, in both places agents look
        shards = subtree(inner["tree"], [b"canister_ranges", subnet_id])
        assert shards is not None and any(in_ranges(node[2][1], cid) for node in labeled(shards))
        assert in_ranges(leaf(inner["tree"], [b"subnet", subnet_id, b"canister_ranges"]) or b"", cid)
        assert leaf(inner["tree"], [b"time"]) is not None
        # the subnet's own state names itself: its key, its node, its ranges
        assert leaf(cert["tree"], [b"subnet", subnet_id, b"public_key"]) == subnet_key
        assert leaf(cert["tree"], [b"canister", cid, b"module_hash"]) == hashlib.sha256(wasms["counter"]).digest()
        nodes = subtree(cert["tree"], [b"subnet", subnet_id, b"node"])
        listed = [bytes(n[1]) for n in labeled(nodes or [0])]
        assert listed == node_ids(topology, app)
        assert leaf(cert["tree"], [b"subnet", subnet_id, b"node", listed[0], b"public_key"]) is not None
        assert in_ranges(leaf(cert["tree"], [b"subnet", subnet_id, b"canister_ranges"]) or b"", cid)
    assert len({node_ids(topology, s)[0] for s in pic.topology()}) == 3  # a node of its own on every subnet


def test_the_root_subnet_certifies_without_delegation(pic: Any, wasms: dict[str, bytes]) -> None:
    root_key = bytes(pic.get_root_key())
    nns = subnets(pic)["NNS"][0]
    assert raw(nns) == hashlib.sha224(root_key).digest() + b"\x02"
    cid = raw(install_counter(pic, wasms, subnet=nns))
    cert = read_state(pic, cid, [[b"time"], [b"subnet", raw(nns), b"public_key"]])
    assert "delegation" not in cert
    assert bls_ok(root_key, cert)
    assert leaf(cert["tree"], [b"subnet", raw(nns), b"public_key"]) == root_key


def test_canisters_see_their_own_subnet_id_and_the_network_root_key(pic: Any) -> None:
    root_key = bytes(pic.get_root_key())
    by_kind = subnets(pic)
    seen = set()
    for subnet in [*by_kind["Application"], *by_kind["NNS"]]:
        cid = install(pic, probe_wasm(), subnet)
        r = Reader(bytes(pic.update_call(cid, "ids", b"")))
        assert r.blob() == raw(cid)
        subnet_self = r.blob()
        assert subnet_self == raw(pic.get_subnet(cid)) == raw(subnet)
        assert r.blob() == root_key
        seen.add(subnet_self)
    assert len(seen) == 3
    # every subnet reports the network's root key
    for subnet in pic.topology():
        assert bytes(pic.server.instance_post("read/pub_key", pic.instance_id,
                                              {"subnet_id": b64(raw(subnet))})) == root_key


def test_an_agent_verifying_certificates_and_query_signatures_calls_an_application_subnet(
        pic: Any, wasms: dict[str, bytes]) -> None:
    """icp-py-core (through the SDK) verifies the delegation of update and read_state certificates, and with
    query signature verification on, looks up the signing node under the delegation's subnet id.

    icp-py-core's query signature check wants the `signatures` array as a list, but cbor2 decodes the content
    of a tagged item (the IC's self-describe tag 55799 around every response) immutably, as a tuple; so the
    agent sees the response thawed here, as it would without the tag."""
    from prometheus_sdk.agent import connect
    from prometheus_sdk.network import Network

    apps = subnets(pic)["Application"]
    topology = pic.server.instance_get("read/topology", pic.instance_id)["subnet_configs"]
    targets = [install_counter(pic, wasms, 10 * k, subnet=app) for k, app in enumerate(apps, start=1)]
    pic.server.instance_post("auto_progress", pic.instance_id, {})
    try:
        conn = connect(Network("pocket", f"{pic.server.url}/instances/{pic.instance_id}"))
        conn.agent.verify_query_signatures = True
        query_endpoint = conn.agent.query_endpoint
        conn.agent.query_endpoint = lambda *args, **kwargs: thaw(query_endpoint(*args, **kwargs))
        for k, cid in enumerate(targets, start=1):
            target = Principal(raw(cid)).to_text()
            assert decode1(conn.call(target, "inc", no_args())) == 10 * k + 1
            assert decode1(conn.query(target, "get", no_args())) == 10 * k + 1
            assert conn.module_hash(target) == hashlib.sha256(wasms["counter"]).digest()
        # each subnet's own node signed its queries, and the agent found its key under the subnet's id
        assert set(conn.agent.node_key_cache.cache) == {(raw(app), node_ids(topology, app)[0]) for app in apps}
    finally:
        pic.server.instance_post("stop_progress", pic.instance_id, {})


def test_the_delegation_follows_the_subnets_ranges_and_time() -> None:
    """`SubnetKeys` reuses its delegation until the subnet's ranges change or it is 10 minutes old."""
    from ic_replica.certification import DELEGATION_REFRESH_NS, NetworkKeys, SubnetKeys

    scope: list[Any] = [[(b"\x00" * 9 + b"\x01", b"\x00" * 8 + b"\xff\x01")], 10**18]
    keys = SubnetKeys.for_subnet(NetworkKeys.generate(), lambda: (scope[0], scope[1]))
    first = keys.delegation()
    scope[1] += DELEGATION_REFRESH_NS - 1
    assert keys.delegation() is first
    scope[0] = [*scope[0], (b"\x01" * 8 + b"\x01\x01", b"\x01" * 8 + b"\x01\x01")]
    second = keys.delegation()
    assert second is not first
    inner = untag(cbor2.loads(second["certificate"]))
    shard = leaf(inner["tree"], [b"canister_ranges", keys.subnet_id.raw, b"\x00" * 9 + b"\x01"])
    assert shard is not None and in_ranges(shard, b"\x01" * 8 + b"\x01\x01")
    scope[1] += DELEGATION_REFRESH_NS
    third = keys.delegation()
    assert third is not second
    assert leaf(untag(cbor2.loads(third["certificate"]))["tree"], [b"time"]) != leaf(inner["tree"], [b"time"])


def test_the_http_gateway_accepts_a_delegated_data_certificate_for_the_subnets_canisters_only() -> None:
    """The gateway's response verification (`validate_certificate`) follows a delegation to the subnet key, and
    refuses it for a canister outside the delegation's ranges."""
    from ic_replica.pocket_ic.instance import Instance
    from ic_replica.response_verification import VerificationError, validate_certificate

    instance = Instance(0, {"subnet_config_set": {"nns": {}, "application": [{}, {}]}})
    try:
        app, other = instance.subnets[1].replica, instance.subnets[2].replica
        cid = app.create_canister().raw
        certificate = app.certify_data(cid)
        root = instance.keys.root_public_key
        assert validate_certificate(certificate, cid, root, app.get_time()) == b""
        foreign = other.create_canister().raw
        with pytest.raises(VerificationError, match="not in the canister ranges"):
            validate_certificate(certificate, foreign, root, app.get_time())
        with pytest.raises(VerificationError, match="signature does not verify"):
            validate_certificate(certificate, cid, app.keys.public_key_der[BLS_DER_PREFIX_LEN:], app.get_time())
    finally:
        instance.close()
