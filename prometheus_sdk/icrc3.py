"""An ICRC-3 log read as a client must read it: the tip comes from a certificate signed by the root key, and every
block is hash-chained (`phash`) from the last one the reader trusted up to that certified tip. A block that
does not chain, or a tip that does not verify, is a `ChainError` and nothing after the trusted point is used.

Values are the Candid `Value` variant as the generated clients decode it (`{"Map": [(key, value), ...]}`,
`{"Nat": n}`, ...).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import cbor2

from prometheus_sdk import certificates
from prometheus_sdk.errors import CertificateError, SdkError
from prometheus_sdk.principal import Principal
from prometheus_sdk.provenance import hashtree

MAX_VALUE_DEPTH = 32  # registry blocks nest 4 deep; deeper is hostile
PAGE = 500  # blocks asked for per call (the canister answers fewer when its reply budget runs out)


class ChainError(SdkError):
    """The log's tip or blocks do not verify: stop reading, trust nothing past the last verified block."""


@dataclass(frozen=True)
class Tip:
    """The last block of a log, as its canister certified it."""

    index: int
    hash: bytes
    certified_at_ns: int


def leb128(n: int) -> bytes:
    """Unsigned LEB128, as ICRC-3 hashes a Nat."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if n == 0:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def _sleb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if (n == 0 and not byte & 0x40) or (n == -1 and byte & 0x40):
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def unleb128(data: bytes, what: str = "a number") -> int:
    """One canonical unsigned LEB128 number filling `data` (no trailing zero groups), or ChainError."""
    n = shift = 0
    for i, byte in enumerate(data):
        n |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            if i == len(data) - 1 and (i == 0 or byte != 0):
                return n
            break
    raise ChainError(f"{what} is not one LEB128 number")


def _pairs(entries: Any) -> list[tuple[str, Any]]:
    out = []
    for entry in entries:
        key, value = entry[0], entry[1]  # a tuple, or a record with fields 0 and 1
        if not isinstance(key, str):
            raise ChainError("a Map key is not text")
        out.append((key, value))
    return out


def variant(value: Any, where: str = "a value") -> tuple[str, Any]:
    """(kind, content) of a Value as the generated clients decode it, or ChainError naming `where`."""
    if not isinstance(value, dict) or len(value) != 1:
        raise ChainError(f"{where} is not an ICRC-3 value")
    ((kind, inner),) = value.items()
    return kind, inner


def value_hash(value: Any, depth: int = 0) -> bytes:
    """ICRC-3's representation-independent hash of a Value."""
    if depth > MAX_VALUE_DEPTH:
        raise ChainError("an ICRC-3 Value nested too deep")
    kind, inner = variant(value)
    if kind == "Blob":
        return hashlib.sha256(bytes(inner)).digest()
    if kind == "Text":
        return hashlib.sha256(inner.encode()).digest()
    if kind == "Nat":
        return hashlib.sha256(leb128(inner)).digest()
    if kind == "Int":
        return hashlib.sha256(_sleb(inner)).digest()
    if kind == "Array":
        return hashlib.sha256(b"".join(value_hash(v, depth + 1) for v in inner)).digest()
    if kind == "Map":
        parts = sorted(hashlib.sha256(k.encode()).digest() + value_hash(v, depth + 1) for k, v in _pairs(inner))
        return hashlib.sha256(b"".join(parts)).digest()
    raise ChainError(f"unknown ICRC-3 Value kind {kind!r}")


def certified_tip(client: Any, root_key: bytes, max_age_ns: int = 1 << 80) -> Tip | None:
    """The tip `client`'s canister certifies (None for an empty log), after checking the certificate's signature
    (root key, delegation), that it is for this canister, and that the hash tree is what it certifies."""
    answer = client.icrc3_get_tip_certificate()
    if not answer:
        return None
    canister = Principal.from_text(str(client.canister_id))
    try:
        certificate = certificates.verify(bytes(answer[0]["certificate"]), root_key, str(canister), max_age_ns)
        certified = certificate.lookup([b"canister", canister.raw, b"certified_data"])
        tree = certificates.untag(cbor2.loads(bytes(answer[0]["hash_tree"])))
        if certified is None or hashtree.digest(tree) != bytes(certified):
            raise ChainError("the tip's hash tree is not what the canister certified")
        index, last_hash = hashtree.lookup(tree, [b"last_block_index"]), hashtree.lookup(tree, [b"last_block_hash"])
        at = int(certificate.lookup_time())
    except CertificateError as exc:
        raise ChainError(f"the tip certificate does not verify: {exc}") from exc
    except (ValueError, TypeError, cbor2.CBORDecodeError) as exc:
        raise ChainError(f"the tip certificate is malformed: {exc}") from exc
    if index is None or last_hash is None or len(last_hash) != 32:
        raise ChainError("the tip certificate names no last block")
    return Tip(unleb128(bytes(index), "the certified last_block_index"), bytes(last_hash), at)


def blocks(client: Any, start: int, end: int) -> Iterator[tuple[int, Any]]:
    """Blocks `start` to `end` (exclusive) as (index, Value), paging as the canister answers."""
    i = start
    while i < end:
        reply = client.icrc3_get_blocks([{"start": i, "length": min(PAGE, end - i)}])
        if reply["archived_blocks"]:
            raise ChainError("the log points to archive canisters, which this reader does not follow")
        got = reply["blocks"]
        if not got:
            raise ChainError(f"the canister served no block at {i} (its log has {reply['log_length']})")
        for entry in got:
            if int(entry["id"]) != i:
                raise ChainError(f"asked for block {i}, got block {entry['id']}")
            yield i, entry["block"]
            i += 1
            if i == end:
                return


def _parent(value: Any, index: int) -> bytes | None:
    """A block's `phash` (None for a block without one)."""
    kind, inner = variant(value)
    if kind != "Map":
        raise ChainError(f"block {index} is not a Map")
    phash = dict(_pairs(inner)).get("phash")
    if phash is None:
        return None
    parent = variant(phash)
    if parent[0] != "Blob":
        raise ChainError(f"block {index}'s phash is not a Blob")
    return bytes(parent[1])


def tip_after(client: Any, root_key: bytes, next_index: int, last_hash: bytes | None, max_age_ns: int = 1 << 80,
              not_before_ns: int = 0) -> Tip | None:
    """The certified tip, checked against the reader's trusted point (`next_index`, the hash of the block before
    it, `not_before_ns`: the time of the last tip it trusted, so a replayed older certificate is refused)."""
    tip = certified_tip(client, root_key, max_age_ns)
    if tip is None:
        if next_index:
            raise ChainError("the log is empty now but had blocks before")
        return None
    if tip.certified_at_ns < not_before_ns:
        raise ChainError("the tip certificate is older than one already trusted (a replayed answer)")
    if tip.index + 1 < next_index:
        raise ChainError(f"the certified log ends at block {tip.index}, before block {next_index - 1} read earlier")
    if tip.index + 1 == next_index and last_hash != tip.hash:
        raise ChainError(f"block {tip.index} does not hash to the certified tip")
    return tip


def verified_windows(client: Any, tip: Tip, next_index: int, last_hash: bytes | None
                     ) -> Iterator[list[tuple[int, Any, bytes]]]:
    """The blocks from `next_index` to `tip`, as windows of (index, value, hash), newest window first, each
    proven before it is yielded: the last block hashes to the certified hash and every block to the `phash` of
    the one after it, so a forged block is refused in the first window that holds it and a reader holds one
    window at a time. After the oldest window, the check that it chains to the reader's trusted point (raises
    ChainError: the log's history changed); use the windows only once the iteration ended without error."""
    expected = tip.hash  # the hash the newest block not yet proven must have
    end = tip.index + 1
    while end > next_index:
        start = max(next_index, end - PAGE)
        window = []
        for index, value in blocks(client, start, end):
            window.append((index, value, value_hash(value)))
        for index, value, digest in reversed(window):
            if digest != expected:
                raise ChainError(f"block {index} does not hash to what the certified tip chains to")
            parent = _parent(value, index)
            if index == 0:
                if parent is not None:
                    raise ChainError("block 0 names a parent")
            elif parent is None:
                raise ChainError(f"block {index} names no parent")
            else:
                expected = parent
        yield window
        end = start
    if next_index > 0 and expected != last_hash:
        raise ChainError(f"block {next_index} does not chain to block {next_index - 1} read earlier")
