"""Reject codes, IC error codes and the exceptions of the replica's Python API."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class RejectCode(IntEnum):
    """The spec's reject codes; the hundreds digit of an IC error code is its reject code."""

    SYS_FATAL = 1
    SYS_TRANSIENT = 2
    DESTINATION_INVALID = 3
    CANISTER_REJECT = 4
    CANISTER_ERROR = 5
    SYS_UNKNOWN = 6


class ErrorCode:
    """IC error codes (`IC0xxx`) the replica produces: the numbers of the IC's `ErrorCode` enum
    (`rs/types/error_types` in dfinity/ic); the hundreds digit is the reject code."""

    INGRESS_MESSAGE_TIMEOUT = "IC0202"
    CANISTER_OUT_OF_CYCLES = "IC0207"  # reject 2 (SYS_TRANSIENT), as on the IC
    CANISTER_NOT_FOUND = "IC0301"
    CANISTER_SNAPSHOT_NOT_FOUND = "IC0305"
    SUBNET_NOT_FOUND = "IC0404"
    CANISTER_NOT_HOSTED_BY_SUBNET = "IC0405"
    CANISTER_REJECTED_MESSAGE = "IC0406"
    UNKNOWN_MANAGEMENT_MESSAGE = "IC0407"
    INVALID_MANAGEMENT_PAYLOAD = "IC0408"
    CANISTER_TRAPPED = "IC0502"
    CANISTER_CALLED_TRAP = "IC0503"
    CANISTER_CONTRACT_VIOLATION = "IC0504"
    CANISTER_INVALID_WASM = "IC0505"
    CANISTER_DID_NOT_REPLY = "IC0506"
    CANISTER_STOPPED = "IC0508"
    CANISTER_STOPPING = "IC0509"
    CANISTER_NOT_STOPPED = "IC0510"
    CANISTER_STOPPING_CANCELLED = "IC0511"
    CANISTER_INVALID_CONTROLLER = "IC0512"
    CANISTER_NON_EMPTY = "IC0514"
    CANISTER_WASM_ENGINE_ERROR = "IC0521"
    CANISTER_INSTRUCTION_LIMIT_EXCEEDED = "IC0522"
    CANISTER_METHOD_NOT_FOUND = "IC0536"
    CANISTER_WASM_MODULE_NOT_FOUND = "IC0537"
    CANISTER_ALREADY_INSTALLED = "IC0538"  # creating a canister with a `specified_id` that exists
    DELETED_CANISTER_CONTEXT = "IC0535"


@dataclass(frozen=True)
class Reject:
    """A rejected call: the reject code, a readable message and, for system rejects, an IC error code."""

    code: RejectCode
    message: str
    error_code: str | None = None

    def __str__(self) -> str:
        suffix = f" ({self.error_code})" if self.error_code else ""
        return f"reject {int(self.code)} {self.code.name}{suffix}: {self.message}"


def reject_for(error_code: str, message: str) -> Reject:
    """A system reject whose reject code is the hundreds digit of its error code."""
    return Reject(RejectCode(int(error_code[3])), message, error_code)


class ReplicaError(Exception):
    """Misuse of the replica's Python API (unknown message id, closed instance, ...)."""


class IngressExpired(ReplicaError):
    """An ingress message submitted after its `ingress_expiry` (HTTP 400: it may never execute)."""


class CallRejected(Exception):
    """Raised by the synchronous call helpers when a call is rejected."""

    def __init__(self, reject: Reject) -> None:
        super().__init__(str(reject))
        self.reject = reject

    @property
    def code(self) -> RejectCode:
        return self.reject.code

    @property
    def error_code(self) -> str | None:
        return self.reject.error_code
