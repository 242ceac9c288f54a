"""The runtime under the generated canister clients (`prometheus_sdk/clients/`).

A generated client is an ordinary class with one method per canister method; each method hands its
`MethodSpec` (the Candid types from the checked-in `.did`) and its arguments to `Client._invoke`, which
encodes them with the SDK's own codec, calls or queries through a `Caller` (a `Connection` over HTTP, or
anything with the same two methods), and decodes the reply. A method whose single result is
`variant { ok : T; err : E }` (or `Ok`/`Err`) returns `T` and raises the client's `CanisterError` subclass
for `E`, so callers write the success path and catch one exception type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from prometheus_sdk import candid
from prometheus_sdk.errors import SdkError
from prometheus_sdk.principal import Principal

RESULT_TAGS = (("ok", "err"), ("Ok", "Err"))


class Caller(Protocol):
    """What a client needs to reach a canister: `prometheus_sdk.Connection` is one."""

    def call(self, canister_id: str, method: str, arg: bytes, *,
             effective_canister_id: str | None = None) -> bytes: ...

    def query(self, canister_id: str, method: str, arg: bytes, *,
              effective_canister_id: str | None = None) -> bytes: ...


@dataclass(frozen=True)
class MethodSpec:
    """One canister method: its Candid argument and result types, whether it is a query, and whether its
    result is an ok/err variant the client unwraps (then `ok_tag`/`err_tag` name the two cases)."""

    name: str
    args: tuple[candid.Type, ...]
    rets: tuple[candid.Type, ...]
    query: bool = False
    ok_tag: str | None = None
    err_tag: str | None = None
    err_is_variant: bool = True  # whether the error payload is a variant (its case becomes `kind`)


class CanisterError(SdkError):
    """A canister answered a call with its error case (`#err` / `#Err`).

    `error` is the whole error value as decoded; when it is a variant, `kind` is its case name and `detail`
    the case's payload (None for a case without one), else `kind` is None and `detail` is the value.
    """

    def __init__(self, canister_id: str, method: str, error: Any, is_variant: bool = True) -> None:
        self.canister_id, self.method, self.error = canister_id, method, error
        if is_variant and isinstance(error, dict) and len(error) == 1 and isinstance(next(iter(error)), str):
            ((self.kind, self.detail),) = error.items()
        else:
            self.kind, self.detail = None, error
        super().__init__(f"{method}: {describe(self.kind, self.detail)}")


def describe(kind: str | None, detail: Any) -> str:
    """`Kind`, `Kind: text`, `Kind (field value, ...)` or the value itself: one readable line."""
    if kind is None:
        return str(detail)
    if detail is None:
        return kind
    if isinstance(detail, Mapping):
        return f"{kind} ({', '.join(f'{k} {v}' for k, v in detail.items())})"
    return f"{kind}: {detail}"


class Client:
    """Base class of the generated clients: one canister, reached through one caller."""

    error_class: ClassVar[type[CanisterError]] = CanisterError
    methods: ClassVar[Mapping[str, MethodSpec]] = {}

    def __init__(self, caller: Caller, canister_id: str | Principal) -> None:
        self.caller = caller
        self.canister_id = str(canister_id)

    def invoke(self, method: str, *args: Any) -> Any:
        """Call a method by name and return its decoded result as is (no ok/err unwrapping)."""
        spec = self.methods.get(method)
        if spec is None:
            raise SdkError(f"{type(self).__name__} has no method {method!r}")
        return self._send(spec, args)

    def _invoke(self, spec: MethodSpec, args: Sequence[Any]) -> Any:
        """Call, decode, and for an ok/err result return the ok payload or raise `error_class`."""
        value = self._send(spec, args)
        if spec.ok_tag is None:
            return value
        if isinstance(value, dict) and spec.ok_tag in value:
            return value[spec.ok_tag]
        raise self.error_class(self.canister_id, spec.name, value.get(spec.err_tag) if isinstance(value, dict)
                               else value, spec.err_is_variant)

    def _send(self, spec: MethodSpec, args: Sequence[Any]) -> Any:
        if len(args) != len(spec.args):
            raise TypeError(f"{spec.name} takes {len(spec.args)} argument(s), got {len(args)}")
        try:
            arg = candid.encode(spec.args, list(args))
        except candid.CandidError as exc:
            raise candid.CandidError(f"arguments of {spec.name} do not fit its interface: {exc}") from exc
        send = self.caller.query if spec.query else self.caller.call
        reply = send(self.canister_id, spec.name, arg, effective_canister_id=self._effective_id(spec, args))
        try:
            values = candid.decode(reply, spec.rets)
        except candid.CandidError as exc:
            raise candid.CandidError(f"the reply of {spec.name} does not fit its interface: {exc}") from exc
        if not values:
            return None
        return values[0] if len(values) == 1 else tuple(values)

    def _effective_id(self, spec: MethodSpec, args: Sequence[Any]) -> str | None:
        """The canister a request is routed by; the callee itself for ordinary canisters."""
        return None


class ManagementClient(Client):
    """Base of the management canister's client: calls go to `aaaaa-aa` and are routed by the canister they
    name (`canister_id` / `target_canister` of the argument), or by `effective_canister_id` when they name
    none (creating a canister, `raw_rand`)."""

    def __init__(self, caller: Caller, effective_canister_id: str | Principal | None = None) -> None:
        super().__init__(caller, "aaaaa-aa")
        self.effective_canister_id = str(effective_canister_id) if effective_canister_id is not None else None

    def _effective_id(self, spec: MethodSpec, args: Sequence[Any]) -> str | None:
        if args and isinstance(args[0], Mapping):
            for field in ("canister_id", "target_canister"):
                if field in args[0]:
                    return str(Principal.of(args[0][field]))
        return self.effective_canister_id
