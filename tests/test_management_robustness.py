"""Every management method, sent garbage or mistyped arguments by a user or by a canister, answers with a
reject (never an internal error), and the replica keeps serving."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ic_replica import Replica, candid, management
from ic_replica.candid import BLOB, NAT, PRINCIPAL, TEXT, Record, Tuple, Variant, Vec
from ic_replica.errors import CallRejected, RejectCode
from ic_replica.principal import MANAGEMENT, Principal
from tests.conftest import ALICE, decode1, nat_arg, no_args

FORWARD_RESULT = Variant.of(ok=BLOB, err=Tuple(TEXT, TEXT))
METHODS = sorted(management.METHOD_NAMES) + ["no_such_method", "fetch_canister_logs"]


def bad_arguments(target: Principal) -> list[bytes]:
    """Not Candid, truncated Candid, wrong types, wrong record shapes, wrong principals."""
    return [
        b"", b"garbage", b"DIDL", b"DIDL\x00", b"DIDL\x00\x01\x7d\xff",
        candid.encode([NAT], [1]),
        candid.encode([TEXT], ["canister"]),
        candid.encode([Record.of(canister_id=TEXT)], [{"canister_id": "x"}]),
        candid.encode([Record.of(canister_id=PRINCIPAL)], [{"canister_id": Principal(b"\x00" * 29)}]),
        candid.encode([Record.of(canister_id=PRINCIPAL, snapshot_id=NAT)], [{"canister_id": target, "snapshot_id": 1}]),
        candid.encode([Record.of(canister_id=PRINCIPAL, settings=NAT)], [{"canister_id": target, "settings": 3}]),
        candid.encode([Record.of(canister_id=PRINCIPAL, mode=TEXT, wasm_module=BLOB, arg=BLOB)],
                      [{"canister_id": target, "mode": "install", "wasm_module": b"\x00asm", "arg": b""}]),
        candid.encode([Record.of(derivation_path=Vec(NAT), key_id=TEXT)], [{"derivation_path": [1], "key_id": "k"}]),
        candid.encode([Vec(NAT)], [[1] * 1000]),
    ]


def fits(method: str, arg: bytes) -> bool:
    """Whether `arg` decodes at the method's argument type."""
    if method not in management.METHOD_NAMES:
        return False
    try:
        management.decode_args(method, arg)
    except management.ManagementError:
        return False
    return True


def decodes(arg: bytes, t: candid.Type) -> bool:
    try:
        candid.decode(arg, [t])
    except candid.CandidError:
        return False
    return True


@pytest.fixture(scope="module")
def env(wasms: dict[str, bytes]) -> tuple[Replica, Principal, Principal, Principal]:
    replica = Replica()
    target = replica.create_canister(controllers=[ALICE], sender=ALICE)  # what well-typed arguments name
    relay = replica.create_canister(controllers=[ALICE], sender=ALICE)
    replica.install_code(relay, wasms["relay"], no_args(), sender=ALICE)
    counter = replica.create_canister(controllers=[ALICE], sender=ALICE)
    replica.install_code(counter, wasms["counter"], nat_arg(0), sender=ALICE)
    return replica, relay, counter, target


@pytest.mark.parametrize("method", METHODS)
def test_garbage_is_rejected_and_rounds_go_on(env: tuple[Replica, Principal, Principal, Principal], method: str,
                                               caplog: pytest.LogCaptureFixture) -> None:
    replica, relay, counter, target = env
    before = decode1(replica.query_call(counter, "get", no_args()))
    with caplog.at_level(logging.ERROR):
        for arg in bad_arguments(target):
            typed = fits(method, arg)  # some of these are well-typed for some methods (extra fields are skipped)
            # from a user: refused at submission or rejected when it runs, never a system error
            try:
                replica.update_call(MANAGEMENT, method, arg, ALICE, effective_canister_id=target)
                assert typed, (method, arg)
            except CallRejected as exc:
                assert exc.code != RejectCode.SYS_FATAL, exc
                assert typed or exc.error_code in ("IC0406", "IC0407", "IC0408"), exc
            # from a canister: the reject comes back as a reject
            out = replica.update_call(relay, "forward", candid.encode([PRINCIPAL, TEXT, BLOB],
                                                                      [MANAGEMENT, method, arg]))
            result = decode1(out, FORWARD_RESULT)
            assert typed or "err" in result, (method, arg, result)
            if "err" in result:
                assert "failed to execute" not in result["err"][1], result
    assert not [r for r in caplog.records if "internal error" in r.getMessage()]
    # the replica keeps serving
    assert decode1(replica.update_call(counter, "inc", no_args())) == before + 1


def test_every_method_of_ic_did_we_serve_has_a_handler() -> None:
    assert set(management._HANDLERS) == management.METHOD_NAMES


def test_raw_rand_from_a_canister(env: tuple[Replica, Principal, Principal, Principal]) -> None:
    replica, relay, _, _ = env
    out = replica.update_call(relay, "forward", candid.encode([PRINCIPAL, TEXT, BLOB],
                                                              [MANAGEMENT, "raw_rand", no_args()]))
    result: Any = decode1(out, FORWARD_RESULT)
    assert len(decode1(result["ok"], BLOB)) == 32


@pytest.mark.parametrize("method", ["canister_status", "canister_info", "fetch_canister_logs", "canister_metrics",
                                    "raw_rand", "no_such_method"])
def test_garbage_queries_are_rejected(env: tuple[Replica, Principal, Principal, Principal], method: str) -> None:
    replica, _, counter, target = env
    for arg in bad_arguments(target):
        typed = method in management._QUERY_METHODS and decodes(arg, management._QUERY_METHODS[method])
        try:
            replica.query_call(MANAGEMENT, method, arg, ALICE, effective_canister_id=target)
            assert typed, (method, arg)
        except CallRejected as exc:
            assert exc.code != RejectCode.SYS_FATAL, exc
    assert decode1(replica.query_call(counter, "get", no_args())) >= 0


def test_subnet_info_and_canister_metrics(env: tuple[Replica, Principal, Principal, Principal]) -> None:
    replica, relay, counter, _ = env
    arg = candid.encode([management.SUBNET_INFO_ARGS], [{"subnet_id": Principal(replica.subnet_id)}])
    out = replica.update_call(relay, "forward", candid.encode([PRINCIPAL, TEXT, BLOB],
                                                              [MANAGEMENT, "subnet_info", arg]))
    info = decode1(decode1(out, FORWARD_RESULT)["ok"], management.SUBNET_INFO_RESULT)
    assert info["registry_version"] == 1
    other = candid.encode([management.SUBNET_INFO_ARGS], [{"subnet_id": ALICE}])
    out = replica.update_call(relay, "forward", candid.encode([PRINCIPAL, TEXT, BLOB],
                                                              [MANAGEMENT, "subnet_info", other]))
    assert "not found" in decode1(out, FORWARD_RESULT)["err"][1]
    metrics = replica.query_call(MANAGEMENT, "canister_metrics", candid.encode(
        [management.CANISTER_ID_ARGS], [{"canister_id": counter}]), ALICE, effective_canister_id=counter)
    assert decode1(metrics, management.CANISTER_METRICS_RESULT)["cycles_consumed"]["instructions"] == 0
