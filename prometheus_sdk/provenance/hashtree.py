"""IC hash trees (interface specification, "Certification"): a witness's root hash and the leaf at a path.

Parsing is strict -- every node is one of the five shapes with the right types -- so a witness that is not a
tree is an error, never a tree with a different meaning.
"""

from __future__ import annotations

import hashlib
from typing import Any

from prometheus_sdk.errors import CertificateError

MAX_DEPTH = 64


def _domain(name: str) -> bytes:
    return bytes([len(name)]) + name.encode()


def _blob(x: Any) -> bytes:
    if not isinstance(x, bytes):
        raise CertificateError("a hash tree's labels, leaves and hashes are byte strings")
    return x


def digest(tree: Any, depth: int = 0) -> bytes:
    """The root hash of `tree` (decoded CBOR)."""
    if depth > MAX_DEPTH or not isinstance(tree, (list, tuple)) or not tree or type(tree[0]) is not int:
        raise CertificateError("not a hash tree node")
    tag, rest = tree[0], tree[1:]
    if tag == 0 and not rest:
        return hashlib.sha256(_domain("ic-hashtree-empty")).digest()
    if tag == 1 and len(rest) == 2:
        left, right = digest(rest[0], depth + 1), digest(rest[1], depth + 1)
        return hashlib.sha256(_domain("ic-hashtree-fork") + left + right).digest()
    if tag == 2 and len(rest) == 2:
        return hashlib.sha256(_domain("ic-hashtree-labeled") + _blob(rest[0]) + digest(rest[1], depth + 1)).digest()
    if tag == 3 and len(rest) == 1:
        return hashlib.sha256(_domain("ic-hashtree-leaf") + _blob(rest[0])).digest()
    if tag == 4 and len(rest) == 1 and len(_blob(rest[0])) == 32:
        return bytes(rest[0])
    raise CertificateError("not a hash tree node")


def _labeled(tree: Any, label: bytes) -> Any | None:
    """The subtree under `label` among the labeled nodes reachable through forks (None if not revealed)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if node[0] == 1:
            stack.extend((node[2], node[1]))
        elif node[0] == 2 and node[1] == label:
            return node[2]
    return None


def lookup(tree: Any, path: list[bytes]) -> bytes | None:
    """The leaf at `path` when the witness reveals it (call `digest` first: it checks the shapes)."""
    node = tree
    for label in path:
        found = _labeled(node, label)
        if found is None:
            return None
        node = found
    return bytes(node[1]) if node[0] == 3 else None
