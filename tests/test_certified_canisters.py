"""The `/canister` subtree kept between certificates (`ic_replica.certified_canisters`) gives exactly the
witnesses and root hashes of the same state rebuilt as plain dicts, through every kind of change, and a real
replica's certificates follow its canisters' changes."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import cbor2

from ic_replica import hash_tree, state_tree
from ic_replica.certified_canisters import CertifiedCanisters, entry_of
from ic_replica.replica import Replica


@dataclass
class _Module:
    module_hash: bytes
    public_metadata: dict[str, bytes] = field(default_factory=dict)
    private_metadata: dict[str, bytes] = field(default_factory=dict)


@dataclass
class _Canister:  # the certified fields of ic_replica.canister.Canister
    controllers: list[bytes]
    certified_data: bytes = b""
    module: _Module | None = None


def _ranges() -> list[tuple[bytes, bytes]]:
    return [(b"\x00", b"\xff")]


def _paths(rng: random.Random, labels: list[bytes]) -> list[list[bytes]]:
    paths: list[list[bytes]] = [[b"time"]]
    for _ in range(rng.randrange(4)):
        cid = rng.choice(labels) if labels and rng.random() < 0.7 else rng.randbytes(rng.randrange(1, 11))
        leaf = rng.choice([[b"certified_data"], [b"controllers"], [b"module_hash"], [b"metadata", b"x"], []])
        paths.append([b"canister", cid, *leaf])
    if rng.random() < 0.05:
        paths.append([b"canister"])  # the whole subtree
    return paths


def test_witnesses_match_the_plain_state_through_every_change() -> None:
    rng = random.Random(7)
    canisters: dict[bytes, _Canister] = {}
    kept = CertifiedCanisters()
    for step in range(600):
        op = rng.random()
        if op < 0.25 or not canisters:
            canisters[rng.randbytes(10)] = _Canister([rng.randbytes(29)])
        elif op < 0.35:
            del canisters[rng.choice(list(canisters))]
        elif op < 0.55:
            canisters[rng.choice(list(canisters))].certified_data = rng.randbytes(rng.randrange(33))
        elif op < 0.7:
            rng.choice(list(canisters.values())).controllers.append(rng.randbytes(29))  # in place
        elif op < 0.85:
            rng.choice(list(canisters.values())).module = _Module(
                rng.randbytes(32), {"candid:service": rng.randbytes(5)}, {"private": rng.randbytes(3)})
        else:
            rng.choice(list(canisters.values())).module = None  # uninstalled
        kept.refresh(canisters, _ranges)
        plain: hash_tree.State = {b"time": b"\x01", b"canister": {cid: entry_of(c) for cid, c in canisters.items()}}
        cached: hash_tree.State = {b"time": b"\x01", b"canister": kept}
        for _ in range(3):
            paths = _paths(rng, list(canisters))
            assert hash_tree.witness(cached, paths) == hash_tree.witness(plain, paths), (step, paths)
        assert hash_tree.digest(cached) == hash_tree.digest(plain) == hash_tree.reconstruct(
            hash_tree.full_tree(plain))


def test_a_certificate_follows_the_canisters_changes_on_a_real_replica() -> None:
    replica = Replica()
    ids = [replica.create_canister().raw for _ in range(40)]
    target = ids[17]

    def revealed(path: list[bytes]) -> bytes | None:
        with replica.lock:
            state = state_tree.build(replica, set())
            tree = hash_tree.witness(state, [path])
        assert hash_tree.reconstruct(tree) == hash_tree.digest(state)
        return hash_tree.lookup(tree, path)[1]

    assert revealed([b"canister", target, b"certified_data"]) == b""
    replica.canisters[target].certified_data = b"new"
    assert revealed([b"canister", target, b"certified_data"]) == b"new"
    replica.canisters[target].controllers = [b"\x01" * 29]
    assert list(cbor2.loads(revealed([b"canister", target, b"controllers"]) or b"")) == [b"\x01" * 29]
    del replica.canisters[ids[3]]
    assert hash_tree.lookup(hash_tree.witness(state_tree.build(replica, set()), [[b"canister", ids[3]]]),
                            [b"canister", ids[3]])[0] == "absent"
