"""PocketIC's JSON shapes (`packages/pocket-ic/src/common/rest.rs` in dfinity/ic): blobs are base64 strings,
principals in bodies are base64 of their bytes (topology keys are textual), results are `{"Ok": ...}` /
`{"Err": RejectResponse}`, and a failed operation is HTTP 400 with `{"message": ...}`."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from ic_replica.errors import Reject, RejectCode
from ic_replica.principal import MAX_PRINCIPAL_BYTES, Principal

REJECT_CODE_NAMES = {RejectCode.SYS_FATAL: "SysFatal", RejectCode.SYS_TRANSIENT: "SysTransient",
                     RejectCode.DESTINATION_INVALID: "DestinationInvalid",
                     RejectCode.CANISTER_REJECT: "CanisterReject", RejectCode.CANISTER_ERROR: "CanisterError",
                     RejectCode.SYS_UNKNOWN: "SysUnknown"}

# PocketIC's `ErrorCode` variant names by IC error code number.
ERROR_CODE_NAMES = {
    101: "SubnetOversubscribed", 102: "MaxNumberOfCanistersReached",
    201: "CanisterQueueFull", 202: "IngressMessageTimeout", 203: "CanisterQueueNotEmpty",
    204: "IngressHistoryFull", 205: "CanisterIdAlreadyExists", 206: "StopCanisterRequestTimeout",
    207: "CanisterOutOfCycles", 208: "CertifiedStateUnavailable", 209: "CanisterInstallCodeRateLimited",
    210: "CanisterHeapDeltaRateLimited",
    301: "CanisterNotFound", 305: "CanisterSnapshotNotFound",
    402: "InsufficientMemoryAllocation", 403: "InsufficientCyclesForCreateCanister", 404: "SubnetNotFound",
    405: "CanisterNotHostedBySubnet", 406: "CanisterRejectedMessage", 407: "UnknownManagementMessage",
    408: "InvalidManagementPayload", 409: "CanisterSnapshotImmutable",
    502: "CanisterTrapped", 503: "CanisterCalledTrap", 504: "CanisterContractViolation",
    505: "CanisterInvalidWasm", 506: "CanisterDidNotReply", 507: "CanisterOutOfMemory", 508: "CanisterStopped",
    509: "CanisterStopping", 510: "CanisterNotStopped", 511: "CanisterStoppingCancelled",
    512: "CanisterInvalidController", 513: "CanisterFunctionNotFound", 514: "CanisterNonEmpty",
    517: "QueryCallGraphLoopDetected", 520: "InsufficientCyclesInCall", 521: "CanisterWasmEngineError",
    522: "CanisterInstructionLimitExceeded", 524: "CanisterMemoryAccessLimitExceeded",
    525: "QueryCallGraphTooDeep", 526: "QueryCallGraphTotalInstructionLimitExceeded",
    527: "CompositeQueryCalledInReplicatedMode", 528: "QueryTimeLimitExceeded", 529: "QueryCallGraphInternal",
    530: "InsufficientCyclesInComputeAllocation", 531: "InsufficientCyclesInMemoryAllocation",
    532: "InsufficientCyclesInMemoryGrow", 533: "ReservedCyclesLimitExceededInMemoryAllocation",
    534: "ReservedCyclesLimitExceededInMemoryGrow", 535: "InsufficientCyclesInMessageMemoryGrow",
    536: "CanisterMethodNotFound", 537: "CanisterWasmModuleNotFound", 538: "CanisterAlreadyInstalled",
    539: "CanisterWasmMemoryLimitExceeded", 540: "ReservedCyclesLimitIsTooLow",
    601: "DeadlineExpired", 602: "ResponseDropped",
}
# A reject without an IC error code (a canister's own reject) gets the name PocketIC gives it.
_DEFAULT_ERROR_CODE = {RejectCode.CANISTER_REJECT: "CanisterRejectedMessage",
                       RejectCode.CANISTER_ERROR: "CanisterCalledTrap",
                       RejectCode.DESTINATION_INVALID: "CanisterNotFound",
                       RejectCode.SYS_FATAL: "SubnetOversubscribed",
                       RejectCode.SYS_TRANSIENT: "CanisterQueueFull", RejectCode.SYS_UNKNOWN: "DeadlineExpired"}
U64_MAX = (1 << 64) - 1
U128_MAX = (1 << 128) - 1


@dataclass
class ApiError(Exception):
    """A failed operation: PocketIC answers `status` with `{"message": message}`."""

    message: str
    status: int = 400

    def __str__(self) -> str:
        return self.message


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise ApiError(f"Failed to deserialize the JSON body: {what} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(f"Failed to deserialize the JSON body: {what} is not base64: {exc}") from exc


def principal_field(body: Any, key: str) -> bytes:
    """A principal in a body: base64 of its bytes."""
    if not isinstance(body, dict) or key not in body:
        raise ApiError(f"Failed to deserialize the JSON body: missing field `{key}`")
    raw = unb64(body[key], key)
    if len(raw) > MAX_PRINCIPAL_BYTES:
        raise ApiError(f"Failed to deserialize the JSON body: {key} is longer than a principal")
    return raw


def nat_field(body: Any, key: str, maximum: int) -> int:
    """An unsigned integer field: times are u64 and cycles u128 in PocketIC's types, whose deserialization
    refuses anything else (a float, a string, a number out of range) with 400."""
    value = body.get(key) if isinstance(body, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        kind = "u64" if maximum == U64_MAX else "u128" if maximum == U128_MAX else f"integer in [0, {maximum}]"
        raise ApiError(f"Failed to deserialize the JSON body: `{key}` must be a {kind}")
    return value


def text(raw: bytes) -> str:
    return Principal(raw).to_text()


def canister_debug(raw: bytes) -> str:
    """How PocketIC's errors print a canister id (Rust `Debug`)."""
    return f"CanisterId({text(raw)})"


@dataclass(frozen=True)
class Effective:
    """`RawEffectivePrincipal`: "None", {"SubnetId": b64} or {"CanisterId": b64}."""

    kind: str  # "None" | "SubnetId" | "CanisterId"
    raw: bytes = b""

    @classmethod
    def parse(cls, value: Any) -> Effective:
        if value is None or value == "None":
            return cls("None")
        if isinstance(value, dict) and len(value) == 1:
            (kind, data), = value.items()
            if kind in ("SubnetId", "CanisterId"):
                return cls(kind, unb64(data, f"effective_principal.{kind}"))
        raise ApiError("Failed to deserialize the JSON body: effective_principal must be \"None\", "
                       "{\"SubnetId\": <base64>} or {\"CanisterId\": <base64>}")

    def to_json(self) -> Any:
        return "None" if self.kind == "None" else {self.kind: b64(self.raw)}


@dataclass(frozen=True)
class CanisterCall:
    """`RawCanisterCall`."""

    sender: bytes
    canister_id: bytes
    effective: Effective
    method: str
    payload: bytes

    @classmethod
    def parse(cls, body: Any) -> CanisterCall:
        if not isinstance(body, dict) or not isinstance(body.get("method"), str):
            raise ApiError("Failed to deserialize the JSON body: missing field `method`")
        return cls(principal_field(body, "sender"), principal_field(body, "canister_id"),
                   Effective.parse(body.get("effective_principal", "None")), body["method"],
                   unb64(body.get("payload", ""), "payload"))


def error_code_name(reject: Reject) -> str:
    if reject.error_code and reject.error_code.startswith("IC") and reject.error_code[2:].isdigit():
        number = int(reject.error_code[2:])
        return ERROR_CODE_NAMES.get(number, reject.error_code)
    return _DEFAULT_ERROR_CODE.get(reject.code, "CanisterCalledTrap")


def reject_response(reject: Reject, certified: bool) -> dict[str, Any]:
    """PocketIC's `RejectResponse`."""
    return {"reject_code": REJECT_CODE_NAMES.get(reject.code, "SysUnknown"), "reject_message": reject.message,
            "error_code": error_code_name(reject), "certified": certified}


def ok(data: bytes) -> dict[str, Any]:
    return {"Ok": b64(data)}


def err(reject: Reject, certified: bool) -> dict[str, Any]:
    return {"Err": reject_response(reject, certified)}
