"""The registry's blocks, read strictly: each known block type's fields must have the kinds the canister writes.

Why strictly: ICRC-3's value hash does not separate kinds -- a `Map` hashes like a `Blob` holding its
entries' hashes, `Text` like the `Blob` of its UTF-8, `Nat` like the `Blob` of its LEB128 -- so a block
whose fields were re-typed still chains to the certified tip. Read leniently, such a block would be skipped or
read as empty and the index would silently miss it (a deprecation, a rejection). Here a `Blob` standing for a
`Text` or `Nat` is read back as that value (it means the same bytes), and any other kind that is not the one
the canister writes is a `ChainError`: indexing stops rather than drops a block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_sdk.icrc3 import ChainError, unleb128, variant

NAT, TEXT, BLOB, MAP, VERSION = "Nat", "Text", "Blob", "Map", "Version"
MAX_METADATA_TEXT = 8_192

# btype -> field -> (kind, required). Fields not listed are ignored; unknown block types are kept, not read.
FIELDS: dict[str, dict[str, tuple[str, bool]]] = {
    "126request": {"request_id": (NAT, True), "namespace": (TEXT, True), "wasm_id": (TEXT, True),
                   "repo": (TEXT, True), "commit_hash": (TEXT, True), "requester": (BLOB, True),
                   "metadata": (MAP, True)},
    "126attest": {"request_id": (NAT, True), "wasm_id": (TEXT, True), "audit_type": (TEXT, True),
                  "bounty_id": (NAT, True), "verifier": (BLOB, True), "metadata": (MAP, True),
                  "envelope_sha256": (BLOB, False)},
    "126verified": {"request_id": (NAT, True), "wasm_id": (TEXT, True), "audit_type": (TEXT, True),
                    "attestations": (NAT, True), "divergences": (NAT, True)},
    "127bounty": {"bounty_id": (NAT, True), "request_id": (NAT, True), "wasm_id": (TEXT, True),
                  "audit_type": (TEXT, True), "amount": (NAT, True), "creator": (BLOB, True)},
    "127payout": {"bounty_id": (NAT, True), "claimant": (BLOB, True), "amount": (NAT, True)},
    "127refund": {"bounty_id": (NAT, True), "creator": (BLOB, True), "amount": (NAT, True)},
    "118version": {"namespace": (TEXT, True), "wasm_id": (TEXT, True), "request_id": (NAT, True),
                   "version": (VERSION, True), "caller": (BLOB, True), "previous": (TEXT, False)},
    "118deprecate": {"namespace": (TEXT, True), "version": (VERSION, True), "reason": (TEXT, True),
                     "caller": (BLOB, True)},
}
FIELDS["126divergence"] = {**FIELDS["126attest"], "report": (TEXT, False)}
FIELDS["126rejected"] = FIELDS["126verified"]


@dataclass(frozen=True)
class Block:
    index: int
    btype: str
    ts: int
    tx: dict[str, Any]  # the known fields as Python values (metadata: a dict of str -> str | int | other)
    known: bool  # a block type this reader understands


def _entries(inner: Any, where: str) -> list[tuple[str, Any]]:
    """A Map's entries; the canister never writes a key twice in a block's own fields."""
    out: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for entry in inner:
        key, value = entry[0], entry[1]
        if not isinstance(key, str):
            raise ChainError(f"{where} has a key that is not text")
        if key in seen:
            raise ChainError(f"{where} names {key!r} twice")
        seen.add(key)
        out.append((key, value))
    return out


def _metadata(inner: Any) -> dict[str, Any]:
    """A filer's metadata map: the first value of a key counts (the registry does not refuse repeated keys)."""
    out: dict[str, Any] = {}
    for entry in inner:
        key, value = entry[0], entry[1]
        if isinstance(key, str) and key not in out:
            out[key] = metadata_value(value)
    return out


def read(value: Any, kind: str, where: str) -> Any:
    """`value` as `kind`, or a ChainError; a Blob is read as the Text or Nat whose hash it shares."""
    found, inner = variant(value, where)
    if kind == TEXT:
        if found == TEXT:
            return inner
        if found == BLOB:
            try:
                return bytes(inner).decode()
            except UnicodeDecodeError:
                pass
    elif kind == NAT:
        if found == NAT:
            return inner
        if found == BLOB:
            return unleb128(bytes(inner), where)
    elif kind == BLOB and found == BLOB:
        return bytes(inner)
    elif kind == MAP and found == MAP:
        return inner
    elif kind == VERSION and found == "Array" and len(inner) == 3:
        return tuple(read(v, NAT, where) for v in inner)
    raise ChainError(f"{where} is a {found}, the registry writes a {kind} there")


def metadata_value(value: Any, depth: int = 0) -> Any:
    """A request's or filing's metadata value (ICRC-16 as the registry logs it): text (a Blob of UTF-8 reads as
    text), numbers, anything else as None -- metadata is the filer's, so an odd kind is ignored, not an error."""
    kind, inner = variant(value, "a metadata value")
    if kind == TEXT:
        return inner[:MAX_METADATA_TEXT]
    if kind == BLOB:
        try:
            return bytes(inner).decode()[:MAX_METADATA_TEXT]
        except UnicodeDecodeError:
            return None
    if kind in (NAT, "Int"):
        return inner
    if kind == "Array":
        items = [metadata_value(v, depth + 1) for v in inner[:32]] if depth < 1 else []
        return [v for v in items if isinstance(v, str)]
    return None


def parse(index: int, value: Any) -> Block:
    """One certified block, strictly (see the module docstring)."""
    fields = dict(_entries(read(value, MAP, f"block {index}"), f"block {index}"))
    for name in ("btype", "ts", "tx"):
        if name not in fields:
            raise ChainError(f"block {index} has no {name}")
    btype = read(fields["btype"], TEXT, f"block {index}'s btype")
    ts = read(fields["ts"], NAT, f"block {index}'s ts")
    tx_fields = dict(_entries(read(fields["tx"], MAP, f"block {index}'s tx"), f"block {index}'s tx"))
    spec = FIELDS.get(btype)
    if spec is None:
        return Block(index, btype, ts, {}, False)
    tx: dict[str, Any] = {}
    for name, (kind, required) in spec.items():
        where = f"block {index} ({btype}) field {name}"
        if name not in tx_fields:
            if required:
                raise ChainError(f"{where} is missing")
            continue
        raw = read(tx_fields[name], kind, where)
        tx[name] = _metadata(raw) if kind == MAP else raw
    return Block(index, btype, ts, tx, True)
