"""Messages between users, canisters and the management canister, and ingress message status."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ic_replica.errors import Reject


@dataclass
class Request:
    """A call to a canister method: from a user (ingress, `message_id` set) or a canister (`callback_id` set)."""

    src: bytes
    dst: bytes
    method: str
    arg: bytes
    cycles: int = 0
    callback_id: int | None = None
    message_id: bytes | None = None
    deadline: int = 0

    @property
    def is_ingress(self) -> bool:
        return self.message_id is not None


@dataclass
class Response:
    """A reply or reject travelling back to the calling canister's callback."""

    dst: bytes
    callback_id: int
    reply: bytes | None = None
    reject: Reject | None = None
    refund: int = 0


class IngressState(str, Enum):
    RECEIVED = "received"
    PROCESSING = "processing"
    REPLIED = "replied"
    REJECTED = "rejected"
    DONE = "done"


@dataclass
class IngressStatus:
    """What `read_state` reports for `/request_status/<id>`; kept (and so never executed twice) until `expiry`
    (the request's `ingress_expiry`, ns) has passed."""

    message_id: bytes
    sender: bytes
    canister_id: bytes
    method: str
    state: IngressState
    reply: bytes | None = None
    reject: Reject | None = None
    updated_at: int = 0
    effective_canister_id: bytes = b""
    expiry: int = 0

    @property
    def final(self) -> bool:
        return self.state in (IngressState.REPLIED, IngressState.REJECTED, IngressState.DONE)
