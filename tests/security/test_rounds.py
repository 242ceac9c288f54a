"""Attack 6: a management call with a mistyped argument raised inside a round and, over HTTP, killed the round
thread, so later calls stayed `received` forever. A mistyped argument is now an IC0408 reject; any other
error while one message executes becomes a reject of that message; rounds and the ticker go on."""

from __future__ import annotations

from typing import Any

import cbor2
import httpx
import pytest

from ic_replica import candid, management
from ic_replica.candid import NAT, TEXT, Record
from ic_replica.principal import MANAGEMENT
from ic_replica.request_auth import request_id
from testkit.http_helpers import content, envelope
from tests.conftest import no_args
from tests.security.support import counter_value, wait_final


def submit(served: Any, cid: Any, method: str, arg: bytes, effective: Any = None) -> tuple[bytes, httpx.Response]:
    c = content("call", cid, method, arg, served.signer.principal)
    response = httpx.post(f"{served.url}/api/v2/canister/{effective or cid}/call", content=envelope(c, served.signer),
                          headers={"Content-Type": "application/cbor"}, timeout=10)
    assert response.status_code in (200, 202), response.text
    return request_id(c), response


def rejected(served: Any, rid: bytes, response: httpx.Response) -> tuple[int, str | None, str]:
    """The reject, whether the call was refused at submission (200) or rejected in a round (202, then poll)."""
    if response.status_code == 200:
        body = cbor2.loads(response.content)
        return body["reject_code"], body.get("error_code"), body["reject_message"]
    status = wait_final(served.server, rid)
    assert status.reject is not None, status
    return int(status.reject.code), status.reject.error_code, status.reject.message


def normal_call_completes(served: Any) -> None:
    before = counter_value(served.server, served.cid)
    rid, _ = submit(served, served.cid, "inc", no_args())
    assert wait_final(served.server, rid).reply is not None
    assert counter_value(served.server, served.cid) == before + 1


@pytest.mark.parametrize(("method", "arg"), [
    ("canister_status", candid.encode([Record.of(canister_id=TEXT)], [{"canister_id": "bkyz2-fmaaa-aaaaa-qaaaq-cai"}])),
    ("start_canister", candid.encode([NAT], [5])),
    ("update_settings", candid.encode([Record.of(canister_id=NAT, settings=TEXT)], [{"canister_id": 1,
                                                                                       "settings": "x"}])),
    ("provisional_top_up_canister", candid.encode([Record.of(canister_id=TEXT, amount=TEXT)],
                                                  [{"canister_id": "x", "amount": "y"}])),
])
def test_a_mistyped_management_call_is_rejected_and_later_calls_complete(served, method: str, arg: bytes) -> None:  # type: ignore[no-untyped-def]
    rid, response = submit(served, MANAGEMENT, method, arg, effective=served.cid)
    code, error_code, message = rejected(served, rid, response)
    assert (code, error_code) == (4, "IC0408"), message
    normal_call_completes(served)


def test_an_error_inside_a_management_method_is_a_reject(served, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    def broken(*args: Any) -> bytes:
        raise RuntimeError("a bug in the management canister")

    monkeypatch.setitem(management._HANDLERS, "start_canister", broken)
    arg = candid.encode([management.CANISTER_ID_ARGS], [{"canister_id": served.cid}])
    rid, response = submit(served, MANAGEMENT, "start_canister", arg, effective=served.cid)
    code, _, message = rejected(served, rid, response)
    assert code == 1 and "a bug in the management canister" in message
    normal_call_completes(served)


def test_an_error_while_a_canister_executes_is_a_reject(served, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from ic_replica import replica as replica_module

    real, calls = replica_module.execute, []

    def fails_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug in the replica")
        return real(*args, **kwargs)

    monkeypatch.setattr(replica_module, "execute", fails_once)
    rid, _ = submit(served, served.cid, "inc", no_args())
    status = wait_final(served.server, rid)
    assert status.reject is not None and int(status.reject.code) == 5, status
    assert status.reject.error_code == "IC0521" and "a bug in the replica" in status.reject.message
    normal_call_completes(served)


def test_the_ticker_survives_a_failing_round(served, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    replica = served.server.replica
    real, calls = replica.tick, []

    def fails_once(rounds: int = 1) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a round that fails")
        real(rounds)

    monkeypatch.setattr(replica, "tick", fails_once)
    normal_call_completes(served)
    assert len(calls) > 1
