"""The replicated state as the IC certifies it: `/time`, `/request_status`, `/canister`, `/subnet`,
`/canister_ranges` — and the rules for which paths a read_state request may see."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ic_replica.candid import leb
from ic_replica.certification import ranges_cbor
from ic_replica.hash_tree import State
from ic_replica.messages import IngressState

if TYPE_CHECKING:
    from ic_replica.replica import Replica


class PathRejected(ValueError):
    """A read_state path the sender may not read (HTTP 403)."""


def build(replica: Replica, request_ids: set[bytes]) -> State:
    """The certified state, with the request statuses in `request_ids` (and no others).

    Each certificate certifies a view of the state: every canister and subnet entry, but only the request
    statuses asked for, so certificate cost does not grow with the ingress history.
    """

    requests: State = {}
    for rid in request_ids:
        status = replica.ingress_status(rid)  # a pruned reply reads `done` until the request's expiry
        if status is not None:
            entry: State = {b"status": status.state.value.encode()}
            if status.state is IngressState.REPLIED:
                entry[b"reply"] = status.reply or b""
            elif status.state is IngressState.REJECTED and status.reject is not None:
                entry[b"reject_code"] = leb(int(status.reject.code))
                entry[b"reject_message"] = status.reject.message.encode()
                if status.reject.error_code:
                    entry[b"error_code"] = status.reject.error_code.encode()
            requests[rid] = entry
    canisters = replica.certified_canisters
    canisters.refresh(replica.canisters, replica.canister_ranges)
    keys = replica.keys
    advertised = canisters.advertised  # every canister this subnet hosts is inside them
    ranges = ranges_cbor(advertised)
    subnet: State = {
        b"public_key": keys.public_key_der,  # this subnet's own key (the root key on the root subnet)
        b"canister_ranges": ranges,
        b"type": b"application",
        b"node": {keys.node_id.raw: {b"public_key": keys.node_public_key_der}},
    }
    state: State = {
        b"time": leb(replica.time_ns),
        b"subnet": {replica.subnet_id: subnet},
        b"canister_ranges": {replica.subnet_id: {advertised[0][0]: ranges}},
        b"canister": canisters,
    }
    if requests:
        state[b"request_status"] = requests
    return state


def check_paths(replica: Replica, paths: list[list[bytes]], sender: bytes, effective: bytes, *,
                subnet_form: bool) -> None:
    """Apply the spec's read_state authorization rules; raise PathRejected for a path the sender may not read."""
    request_ids = set()
    for path in paths:
        if not path:
            raise PathRejected("empty path")
        head = path[0]
        if head == b"time" and len(path) == 1:
            continue
        if head == b"subnet" and len(path) <= 5:
            if len(path) >= 3 and path[2] == b"metrics" and not (subnet_form and path[1] == effective):
                raise PathRejected("/subnet/<id>/metrics is only readable at the subnet endpoint")
            continue
        if head == b"canister_ranges" and len(path) <= 2:
            if not subnet_form:
                raise PathRejected("/canister_ranges is only readable at the subnet endpoint")
            continue
        if head == b"request_status" and len(path) in (2, 3):
            request_ids.add(path[1])
            if len(path) == 3 and path[2] not in (b"status", b"reply", b"reject_code", b"reject_message",
                                                  b"error_code"):
                raise PathRejected(f"unknown request_status path {path[2]!r}")
            status = replica.ingress_status(path[1])
            if status is not None and (status.sender != sender or status.effective_canister_id != effective):
                raise PathRejected("the request was made by another sender or to another canister")
            continue
        if head == b"canister" and not subnet_form and len(path) >= 3:
            cid, leaf = path[1], path[2]
            if cid != effective:
                raise PathRejected("canister paths must name the effective canister id")
            if leaf in (b"module_hash", b"controllers") and len(path) == 3:
                continue
            if leaf == b"metadata" and len(path) == 4:
                _check_metadata(replica, cid, path[3], sender)
                continue
        raise PathRejected(f"path /{'/'.join(p.hex() if not p.isascii() else p.decode() for p in path)} "
                           "cannot be requested")
    if len(request_ids) > 1:
        raise PathRejected("all request_status paths must name the same request id")


def _check_metadata(replica: Replica, cid: bytes, name: bytes, sender: bytes) -> None:
    try:
        text = name.decode()
    except UnicodeDecodeError as exc:
        raise PathRejected("metadata names must be UTF-8") from exc
    canister = replica.canisters.get(cid)
    if canister is None or canister.module is None:
        return
    if text in canister.module.private_metadata and sender not in canister.controllers:
        raise PathRejected(f"metadata section {text!r} is private to the canister's controllers")
