"""Injected failures of canister-to-canister calls (embedded replica only): a call that never arrives, a
callee that traps, and a reply that is lost after the callee committed."""

from __future__ import annotations

from typing import Any

import pytest

from ic_replica.candid import NAT
from tests.conftest import decode1, install, nat_arg, no_args
from tests.test_replica_calls import direct

pytestmark = pytest.mark.embedded_only


def count(ic: Any, counter: Any) -> int:
    return int(decode1(ic.query_call(counter, "get", no_args()), NAT))


@pytest.mark.parametrize(("kind", "code", "executed"), [
    ("reject", "system_transient", False),
    ("trap", "canister_error", False),
    ("lose_reply", "system_unknown", True),
])
def test_a_fault_hits_the_matching_call_once(ic: Any, wasms: dict[str, bytes], kind: str, code: str,
                                             executed: bool) -> None:
    relay = install(ic, wasms, "relay")
    counter = install(ic, wasms, "counter", nat_arg(5))
    ic.inject_fault(kind, counter, "inc", caller=relay)
    result = direct(ic, relay, counter, "inc")
    assert result["err"][0] == code and "injected fault" in result["err"][1]
    assert count(ic, counter) == (6 if executed else 5)  # a lost reply hides a call that did execute
    assert direct(ic, relay, counter, "inc") == {"ok": 7 if executed else 6}  # the rule fired once


def test_a_fault_matches_callee_method_and_caller(ic: Any, wasms: dict[str, bytes]) -> None:
    relay, other_relay = install(ic, wasms, "relay"), install(ic, wasms, "relay")
    counter = install(ic, wasms, "counter", nat_arg(0))
    ic.inject_fault("trap", counter, "inc", caller=other_relay, times=2)
    assert direct(ic, relay, counter, "inc") == {"ok": 1}  # another caller: untouched
    assert direct(ic, other_relay, counter, "inc")["err"][0] == "canister_error"
    ic.replica.faults.clear()
    assert direct(ic, other_relay, counter, "inc") == {"ok": 2}
