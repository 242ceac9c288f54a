"""The IC's certified hash tree: building a witness for requested paths, hashing, and lookup.

Trees are tuples in the CBOR shape the spec uses: (0,) empty, (1, left, right) fork, (2, label, subtree)
labeled, (3, value) leaf, (4, hash) pruned. A state is a nested dict: label (bytes) -> dict | bytes, where a
large map may instead be a `Subtree` that keeps its hashes between certificates.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from bisect import bisect_left
from typing import Any, Union

State = dict[bytes, Union["State", bytes, "Subtree"]]
Tree = tuple[Any, ...]

EMPTY: Tree = (0,)


def _domain(s: str) -> bytes:
    return bytes([len(s)]) + s.encode()


_EMPTY_SEP, FORK_SEP = _domain("ic-hashtree-empty"), _domain("ic-hashtree-fork")
LABELED_SEP, _LEAF_SEP = _domain("ic-hashtree-labeled"), _domain("ic-hashtree-leaf")


class Subtree(ABC):
    """A map in the state whose children are built, and whose hashes are computed, on demand: `labels` sorted,
    and the hashes exactly those of the same map as a dict (`_balanced` over the sorted labels)."""

    labels: list[bytes]

    @abstractmethod
    def child(self, label: bytes) -> State | bytes:
        """The child at `label` (one of `labels`)."""

    @abstractmethod
    def child_digest(self, index: int) -> bytes:
        """The hash of the full tree of the child at `labels[index]` (unlabeled)."""

    @abstractmethod
    def range_digest(self, lo: int, hi: int) -> bytes:
        """The hash of the balanced tree of labeled children `labels[lo:hi]`."""


def reconstruct(tree: Tree) -> bytes:
    """The root hash of a (possibly pruned) tree."""
    kind = tree[0]
    if kind == 0:
        return hashlib.sha256(_EMPTY_SEP).digest()
    if kind == 1:
        return hashlib.sha256(FORK_SEP + reconstruct(tree[1]) + reconstruct(tree[2])).digest()
    if kind == 2:
        return hashlib.sha256(LABELED_SEP + tree[1] + reconstruct(tree[2])).digest()
    if kind == 3:
        return hashlib.sha256(_LEAF_SEP + tree[1]).digest()
    if kind == 4:
        return bytes(tree[1])
    raise ValueError(f"not a hash tree node: {tree!r}")


def full_tree(node: State | Subtree | bytes) -> Tree:
    """The complete tree of a state (no pruning)."""
    if isinstance(node, (bytes, bytearray)):
        return (3, bytes(node))
    if isinstance(node, Subtree):
        return _balanced([(2, label, full_tree(node.child(label))) for label in node.labels])
    labels = sorted(node)
    return _balanced([(2, label, full_tree(node[label])) for label in labels])


def digest(node: State | Subtree | bytes) -> bytes:
    """The root hash of a state's full tree (a `Subtree` gives its kept hash)."""
    if isinstance(node, Subtree):
        return node.range_digest(0, len(node.labels))
    return reconstruct(full_tree(node))


def _balanced(nodes: list[Tree]) -> Tree:
    if not nodes:
        return EMPTY
    if len(nodes) == 1:
        return nodes[0]
    mid = (len(nodes) + 1) // 2
    return (1, _balanced(nodes[:mid]), _balanced(nodes[mid:]))


def witness(state: State, paths: list[list[bytes]]) -> Tree:
    """A tree revealing every requested path (whole subtrees below it) and proving absent ones absent;
    everything else is pruned to its hash."""
    return _witness(state, [list(p) for p in paths])


def _witness(node: State | Subtree | bytes, paths: list[list[bytes]]) -> Tree:
    if isinstance(node, (bytes, bytearray)) or any(not p for p in paths):
        return full_tree(node)
    labels = node.labels if isinstance(node, Subtree) else sorted(node)
    wanted: dict[int, list[list[bytes]]] = {}  # index -> remaining paths below it ([] entries: just a neighbour)
    for path in paths:
        head, rest = path[0], path[1:]
        i = bisect_left(labels, head)
        if i < len(labels) and labels[i] == head:
            wanted.setdefault(i, []).append(rest)
        else:  # absent: reveal the neighbours' labels so the absence is provable
            for j in (i - 1, i):
                if 0 <= j < len(labels):
                    wanted.setdefault(j, [])
    return _witness_range(node, labels, 0, len(labels), wanted)


def _witness_range(node: State | Subtree, labels: list[bytes], lo: int, hi: int,
                   wanted: dict[int, list[list[bytes]]]) -> Tree:
    if lo >= hi:
        return EMPTY
    if isinstance(node, Subtree):
        if not any(lo <= i < hi for i in wanted):
            return (4, node.range_digest(lo, hi))
        if hi - lo == 1:
            below = wanted[lo]
            return (2, labels[lo], _witness(node.child(labels[lo]), below) if below else (4, node.child_digest(lo)))
    elif not any(lo <= i < hi for i in wanted):
        return (4, reconstruct(_balanced([(2, labels[i], (4, digest(node[labels[i]]))) for i in range(lo, hi)])))
    elif hi - lo == 1:
        label = labels[lo]
        below = wanted[lo]
        child = _witness(node[label], below) if below else (4, digest(node[label]))
        return (2, label, child)
    mid = lo + (hi - lo + 1) // 2
    return (1, _witness_range(node, labels, lo, mid, wanted), _witness_range(node, labels, mid, hi, wanted))


def lookup(tree: Tree, path: list[bytes]) -> tuple[str, bytes | None]:
    """("found", value) | ("absent", None) | ("unknown", None) | ("error", None), as the spec's lookup_path."""
    if not path:
        if tree[0] == 3:
            return "found", bytes(tree[1])
        if tree[0] == 0:
            return "absent", None
        if tree[0] == 4:
            return "unknown", None
        return "error", None
    head = path[0]
    result = _find_label(tree, head)
    if result[0] != "found":
        return result[0], None
    return lookup(result[1], path[1:])


def _flatten(tree: Tree) -> list[Tree]:
    if tree[0] == 0:
        return []
    if tree[0] == 1:
        return _flatten(tree[1]) + _flatten(tree[2])
    return [tree]


def _find_label(tree: Tree, label: bytes) -> tuple[str, Any]:
    nodes = _flatten(tree)
    unknown = False
    for node in nodes:
        if node[0] == 2:
            if node[1] == label:
                return "found", node[2]
            if node[1] > label:
                return ("unknown", None) if unknown else ("absent", None)
            unknown = False
        elif node[0] == 4:
            unknown = True
    return ("unknown", None) if unknown else ("absent", None)


def to_cbor(tree: Tree) -> list[Any]:
    """The CBOR-ready list form: [0] | [1, l, r] | [2, label, t] | [3, value] | [4, hash]."""
    kind = tree[0]
    if kind == 1:
        return [1, to_cbor(tree[1]), to_cbor(tree[2])]
    if kind == 2:
        return [2, tree[1], to_cbor(tree[2])]
    return list(tree)


def from_cbor(value: list[Any]) -> Tree:
    kind = value[0]
    if kind == 1:
        return (1, from_cbor(value[1]), from_cbor(value[2]))
    if kind == 2:
        return (2, bytes(value[1]), from_cbor(value[2]))
    return tuple(value)
