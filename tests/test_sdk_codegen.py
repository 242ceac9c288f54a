"""The client generator on interfaces written to trip it: every one yields importable Python whose client
encodes, calls and decodes as the interface says (the canister is a fake caller: the generator is under test)."""

from __future__ import annotations

from typing import Any

import pytest

from prometheus_sdk import candid as c
from prometheus_sdk.codegen import Source, generate
from prometheus_sdk.principal import Principal

SOURCE = Source("probe", "probe.did", "ProbeClient", "ProbeError")


class FakeCaller:
    """Answers every call with `reply` (Candid bytes) and remembers what it was sent."""

    def __init__(self, reply: bytes = b"DIDL\x00\x00") -> None:
        self.reply, self.sent = reply, []  # type: ignore[var-annotated]

    def call(self, canister_id: str, method: str, arg: bytes, *, effective_canister_id: str | None = None) -> bytes:
        self.sent.append((method, arg))
        return self.reply

    query = call


def load(did: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "probe"}
    exec(compile(generate(SOURCE, did), "probe.py", "exec"), namespace)  # noqa: S102 - generated code under test
    return namespace


def test_services_keep_their_methods_on_the_wire() -> None:
    ns = load("type S = service { ping : (nat) -> () }; service : { m : (S) -> (S) }")
    spec = ns["_M"]["m"]
    assert spec.args[0].resolve().methods[0][0] == "ping"
    caller = FakeCaller(c.encode(list(spec.rets), [Principal.anonymous()]))
    assert ns["ProbeClient"](caller, "aaaaa-aa").m(Principal.anonymous()) == Principal.anonymous()
    assert b"ping" in caller.sent[0][1]  # the service type travels with its method, not as `service {}`


def test_recursion_through_an_anonymous_record() -> None:
    ns = load("type List = opt record { head : int; tail : List }; service : { first : (List) -> (List) query }")
    value = [{"head": 1, "tail": [{"head": 2, "tail": []}]}]
    spec = ns["_M"]["first"]
    caller = FakeCaller(c.encode(list(spec.rets), [value]))
    assert ns["ProbeClient"](caller, "aaaaa-aa").first(value) == value


def test_a_method_typed_by_a_func_type_name_is_refused() -> None:
    with pytest.raises(ValueError, match="naming a func type"):
        generate(SOURCE, "type F = func (nat) -> (text); service : { m : F }")


def test_names_python_or_the_module_already_uses() -> None:
    ns = load('type MethodSpec = record { a : nat }; type CanisterError = variant { x }; type None = nat; '
              'service : { "_invoke" : (MethodSpec) -> (); "__init__" : () -> (); invoke : () -> (); '
              '"foo-bar" : (_M : nat, self : nat) -> (); "q\\\\uote" : () -> () }')
    client = ns["ProbeClient"](FakeCaller(), "aaaaa-aa")
    assert issubclass(ns["ProbeError"], c.SdkError)  # still the SDK's exception, not the .did's type
    client.m_invoke({"a": 1})
    client.m__init__()
    client.invoke_()
    client.foo_bar(1, 2)
    assert [m for m, _ in client.caller.sent] == ["_invoke", "__init__", "invoke", "foo-bar"]


def test_a_non_variant_error_payload_is_not_taken_for_a_case() -> None:
    ns = load("service : { m : () -> (variant { ok : nat; err : record { message : text } }) }")
    spec = ns["_M"]["m"]
    caller = FakeCaller(c.encode(list(spec.rets), [{"err": {"message": "boom"}}]))
    with pytest.raises(ns["ProbeError"]) as raised:
        ns["ProbeClient"](caller, "aaaaa-aa").m()
    assert raised.value.kind is None and raised.value.detail == {"message": "boom"}


def test_results_with_more_cases_than_ok_and_err_are_left_alone() -> None:
    ns = load("service : { m : () -> (variant { ok : nat; err : text; pending }) }")
    spec = ns["_M"]["m"]
    caller = FakeCaller(c.encode(list(spec.rets), [{"pending": None}]))
    assert ns["ProbeClient"](caller, "aaaaa-aa").m() == {"pending": None}
