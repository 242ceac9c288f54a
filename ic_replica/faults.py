"""Fault injection for calls between canisters, and from a canister to the management canister (embedded
replica only; PocketIC has no equivalent): a test makes such a call fail, trap or lose its reply, so code that
moves money or manages canisters can be tested against the failures the IC allows.

- `REJECT`: the call never reaches the callee; the caller gets a `SYS_TRANSIENT` reject.
- `TRAP`: the callee traps before doing anything (its state is unchanged); the caller gets `CANISTER_ERROR`.
- `LOSE_REPLY`: the callee executes and commits, but the caller gets a `SYS_UNKNOWN` reject instead of the
  answer -- what a call whose outcome is unknown looks like (e.g. a best-effort call past its deadline).

Rules match on callee, method and caller and fire a given number of times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from ic_replica.errors import ErrorCode, Reject, RejectCode
from ic_replica.messages import Request


class FaultKind(str, Enum):
    REJECT = "reject"
    TRAP = "trap"
    LOSE_REPLY = "lose_reply"


@dataclass
class Fault:
    kind: FaultKind
    callee: bytes
    method: str | None = None  # any method when None
    caller: bytes | None = None  # any caller when None
    times: int = 1

    def matches(self, req: Request) -> bool:
        return (self.times > 0 and req.dst == self.callee and (self.method is None or req.method == self.method)
                and (self.caller is None or req.src == self.caller))


@dataclass
class Faults:
    """The active rules and the calls whose replies are to be lost."""

    rules: list[Fault] = field(default_factory=list)
    lost_replies: set[tuple[bytes, int]] = field(default_factory=set)  # (caller, callback id)
    fired: int = 0

    def add(self, fault: Fault) -> None:
        self.rules.append(fault)

    def clear(self) -> None:
        self.rules.clear()
        self.lost_replies.clear()

    def take(self, req: Request) -> FaultKind | None:
        """The fault for this canister-to-canister request, if a rule matches (the rule's count goes down)."""
        if req.is_ingress or req.callback_id is None:
            return None
        for rule in self.rules:
            if rule.matches(req):
                rule.times -= 1
                self.fired += 1
                if rule.kind is FaultKind.LOSE_REPLY:
                    self.lost_replies.add((req.src, req.callback_id))
                return rule.kind
        return None

    def reject_before(self, kind: FaultKind, req: Request) -> Reject | None:
        """The reject a call gets instead of executing, for REJECT and TRAP faults."""
        if kind is FaultKind.REJECT:
            return Reject(RejectCode.SYS_TRANSIENT, f"injected fault: {req.method} did not reach its callee")
        if kind is FaultKind.TRAP:
            return Reject(RejectCode.CANISTER_ERROR, f"injected fault: the callee trapped in {req.method}",
                          ErrorCode.CANISTER_CALLED_TRAP)
        return None

    def replace_reply(self, caller: bytes, callback_id: int) -> Reject | None:
        """For a LOSE_REPLY call: the reject its caller gets instead of the callee's answer."""
        if (caller, callback_id) not in self.lost_replies:
            return None
        self.lost_replies.discard((caller, callback_id))
        return Reject(RejectCode.SYS_UNKNOWN, "injected fault: the reply was lost; the call may have executed")
