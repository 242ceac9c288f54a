"""The `/canister` subtree of the certified state, kept from one certificate to the next.

A certificate reveals a few canisters' entries and prunes the rest to hashes. Rebuilding and rehashing every
canister's entry for each certificate made its cost grow with the number of canisters (about 1 s at 20,000
canisters, in every update's reply and every data certificate), and anyone may create canisters. Here an
entry is rebuilt and rehashed only when its certified fields change, and the hash of a range of canisters only
when an entry inside it changed or the set of canisters did. A certificate then costs a scan that compares each
canister's certified fields with the kept ones (a few comparisons in C each), plus the hashes on its paths.

The tree's shape is `hash_tree`'s (`_balanced` over the sorted labels), so the root hash is the same as for the
plain nested-dict state; `tests/test_certified_canisters.py` checks witnesses against it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cbor2

from ic_replica.certification import CBOR_SELF_DESCRIBE
from ic_replica.hash_tree import EMPTY, FORK_SEP, LABELED_SEP, State, Subtree, full_tree, reconstruct

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


def entry_of(canister: Any) -> State:
    """A canister's certified entry: controllers, certified data, and with a module its hash and metadata."""
    node: State = {
        b"controllers": cbor2.dumps(cbor2.CBORTag(CBOR_SELF_DESCRIBE, list(canister.controllers))),
        b"certified_data": canister.certified_data,
    }
    module = canister.module
    if module is not None:
        node[b"module_hash"] = module.module_hash
        node[b"metadata"] = {name.encode(): value for name, value in
                             (module.private_metadata | module.public_metadata).items()}
    return node


@dataclass
class _Kept:
    """One canister's certified fields as last seen, with its entry and the entry's hash made on demand."""

    controllers: list[bytes]
    certified_data: bytes
    module: Any  # compared by identity: an install makes a new ModuleInfo
    entry: State | None = None
    digest: bytes | None = None  # of the entry's full tree (unlabeled)

    @classmethod
    def of(cls, canister: Any) -> _Kept:
        return cls(list(canister.controllers), canister.certified_data, canister.module)


class CertifiedCanisters(Subtree):
    """The `/canister` subtree for one replica's canisters (its only writer is `refresh`, under the replica's
    lock)."""

    def __init__(self) -> None:
        self.labels: list[bytes] = []
        self._kept: dict[bytes, _Kept] = {}
        self._canisters: Mapping[bytes, Any] = {}
        self._index: dict[bytes, int] = {}
        self._ranges: dict[tuple[int, int], bytes] = {}  # (lo, hi) -> hash of the balanced labeled nodes
        self.advertised: list[tuple[bytes, bytes]] = []  # the subnet's canister ranges, which follow the set

    def refresh(self, canisters: Mapping[bytes, Any], ranges: Callable[[], list[tuple[bytes, bytes]]]) -> None:
        """Bring the kept entries up to date with `canisters`; `ranges` gives the canister ranges the subnet
        advertises, asked again only when the set of canisters changed."""
        self._canisters = canisters
        changed_set = canisters.keys() != self._kept.keys() or not self.advertised
        if changed_set:
            self.advertised = ranges()
            self._kept = {cid: kept for cid, kept in self._kept.items() if cid in canisters}
            self.labels = sorted(canisters)
            self._index = {cid: i for i, cid in enumerate(self.labels)}
            self._ranges.clear()
        known = self._kept
        for cid, canister in canisters.items():  # the comparisons inline: this loop is the cost of a certificate
            kept = known.get(cid)
            if (kept is None or canister.module is not kept.module or canister.certified_data != kept.certified_data
                    or canister.controllers != kept.controllers):
                self._kept[cid] = _Kept.of(canister)
                if not changed_set:
                    self._forget_ranges_over(self._index[cid])

    def _forget_ranges_over(self, i: int) -> None:
        lo, hi = 0, len(self.labels)
        while hi - lo > 1:
            self._ranges.pop((lo, hi), None)
            mid = lo + (hi - lo + 1) // 2
            lo, hi = (lo, mid) if i < mid else (mid, hi)

    def child(self, label: bytes) -> State:
        kept = self._kept[label]
        if kept.entry is None:
            kept.entry = entry_of(self._canisters[label])
        return kept.entry

    def child_digest(self, index: int) -> bytes:
        label = self.labels[index]
        kept = self._kept[label]
        if kept.digest is None:
            kept.digest = reconstruct(full_tree(self.child(label)))
        return kept.digest

    def range_digest(self, lo: int, hi: int) -> bytes:
        if lo >= hi:
            return reconstruct(EMPTY)
        if hi - lo == 1:
            return hashlib.sha256(LABELED_SEP + self.labels[lo] + self.child_digest(lo)).digest()
        known = self._ranges.get((lo, hi))
        if known is None:
            mid = lo + (hi - lo + 1) // 2
            known = self._ranges[(lo, hi)] = hashlib.sha256(
                FORK_SEP + self.range_digest(lo, mid) + self.range_digest(mid, hi)).digest()
        return known
