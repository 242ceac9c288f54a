"""The race scenarios of the escrow tests: a bounty set up in one phase of its life, the money- and
stake-moving calls that can be raced on it, and `run`, which races two of them (in one round or a few rounds
apart, with a ledger fault), then checks the bounds, drives every bounty to its end and checks exact books
(testkit/invariants.py)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ic_replica.principal import Principal
from testkit.backends import EmbeddedBackend
from testkit.invariants import Books, check_bounds, check_exact, quiesce
from testkit.protocol import AUDIT, DEV, REWARD, SPONSOR, STRANGER, VERIFIERS, Stack

HOUR = 3600 * 10**9
V0, V1, V2 = VERIFIERS[0], VERIFIERS[1], VERIFIERS[2]
PHASES = ["open", "open_due", "reserved", "expired", "claimed", "claimed_due"]
# (kind, ledger method): what the ledger does to the transfers of one race
FAULTS: list[tuple[str, str] | None] = [None, ("lose_reply", "icrc1_transfer"), ("reject", "icrc1_transfer"),
                                        ("trap", "icrc1_transfer"), ("lose_reply", "icrc2_transfer_from")]


@dataclass
class Scene:
    stack: Stack
    books: Books
    wasm_id: str
    bounty: int  # the bounty every op targets
    other: int  # a second bounty of the same round, held by V1 (its filing can finalize the audit)


def setup(stack: Stack, phase: str) -> Scene:
    books = Books.open(stack, [V0, V1, V2])
    wasm_id = stack.submit(os.urandom(500))
    ids = []
    for _ in range(2):
        books.approve(stack, REWARD)
        result = stack.registry("icrc127_create_bounty", stack.bounty_arg(wasm_id, timeout_ns=2 * HOUR),
                                sender=SPONSOR)
        books.note_reply("icrc127_create_bounty", result)
        ids.append(int(result["ok"]))
    bounty, other = ids
    reserve(stack, books, V1, other)
    if phase in ("reserved", "expired", "claimed", "claimed_due"):
        reserve(stack, books, V0, bounty)
    if phase in ("claimed", "claimed_due"):
        assert "ok" in stack.attest(V0, wasm_id, bounty)
    if phase in ("open_due", "expired", "claimed_due"):
        stack.ic.advance_time(2 * HOUR + 1)
    books.approve(stack, REWARD)  # for a `create` op
    return Scene(stack, books, wasm_id, bounty, other)


def reserve(stack: Stack, books: Books, verifier: Principal, bounty: int) -> None:
    result = stack.reserve(verifier, bounty)
    assert "ok" in result, result
    books.note_reply("reserve_bounty", result, bounty, AUDIT, sender=verifier)


Op = Callable[[Scene], tuple[str, str, tuple[Any, ...], Principal]]


def filing(scene: Scene, verifier: Principal, bounty: int, attest: bool) -> tuple[str, str, tuple[Any, ...], Principal]:
    s = scene.stack
    if attest:
        arg = {"wasm_id": scene.wasm_id, "metadata": s.metadata(bounty, **{"126hash": scene.wasm_id})}
        return "registry", "icrc126_file_attestation", (arg,), verifier
    arg = {"wasm_id": scene.wasm_id, "divergence_report": "differs",
           "metadata": s.metadata(bounty, **{"126found_hash": "00" * 32})}
    return "registry", "icrc126_file_divergence", (arg,), verifier


OPS: dict[str, Op] = {
    "refund": lambda c: ("registry", "icrc127_refund_bounty", (c.bounty,), STRANGER),
    "settle": lambda c: ("registry", "settle_bounty", (c.bounty,), STRANGER),
    "settle_other": lambda c: ("registry", "settle_bounty", (c.other,), STRANGER),
    "cleanup": lambda c: ("hub", "cleanup_expired_lock", (c.bounty,), STRANGER),
    "reserve": lambda c: ("hub", "reserve_bounty", (c.bounty, AUDIT), V0),
    "reserve_third": lambda c: ("hub", "reserve_bounty", (c.bounty, AUDIT), V2),
    "attest": lambda c: filing(c, V0, c.bounty, True),
    "diverge": lambda c: filing(c, V0, c.bounty, False),
    "attest_other": lambda c: filing(c, V1, c.other, True),
    "diverge_other": lambda c: filing(c, V1, c.other, False),
    "create": lambda c: ("registry", "icrc127_create_bounty", (c.stack.bounty_arg(c.wasm_id, timeout_ns=2 * HOUR),),
                         SPONSOR),
    "supersede": lambda c: ("registry", "icrc126_verification_request", ({
        "wasm_hash": bytes.fromhex(c.wasm_id), "repo": "https://example.com/fork.git", "commit_hash": "f" * 40,
        "metadata": [], "namespace": []},), DEV),
}


def submit(scene: Scene, name: str) -> tuple[str, tuple[Any, ...], Principal, bytes]:
    target, method, args, sender = OPS[name](scene)
    typed = getattr(scene.stack, target)
    return method, args, sender, typed.submit(method, *args, sender=sender)


def race(scene: Scene, first: str, second: str, gap: int, fault: tuple[str, str] | None) -> None:
    """Deliver `second` `gap` rounds after `first` (0: the same round), with `fault` on the ledger."""
    stack = scene.stack
    if fault is not None:
        stack.ic.inject_fault(fault[0], stack.ledger.canister_id, fault[1], caller=stack.registry.canister_id)
    calls = [submit(scene, first)]
    for _ in range(gap):
        stack.ic.tick()
    calls.append(submit(scene, second))
    for method, args, sender, message_id in calls:
        target = stack.hub if method in ("reserve_bounty", "cleanup_expired_lock") else stack.registry
        reply = target.decode(method, stack.ic.await_call(message_id))
        scene.books.note_reply(method, reply, *args, sender=sender)
        check_bounds(stack, scene.books)


def run(stack: Stack, phase: str, first: str, second: str, gap: int, fault: tuple[str, str] | None) -> None:
    scene = setup(stack, phase)
    check_bounds(stack, scene.books)
    try:
        race(scene, first, second, gap, fault)
        final = quiesce(stack, scene.books)
        check_exact(stack, scene.books, final)
    except AssertionError as exc:
        raise AssertionError(f"phase {phase}, {first} + {second}, gap {gap}, fault {fault}: {exc}") from exc


def prepare(stack: Stack) -> Stack:
    stack.set_policy(quorum=2)  # one filing does not finalize: `attest_other` can finalize during a race
    for v in (V0, V1, V2):
        stack.stake(v, amount=1_000_000)
    return stack


SCENARIOS_PER_DEPLOYMENT = 40  # a fresh IC now and then keeps every scenario's cost (heap copies) small


def deployments(product: dict[str, Any]) -> Iterator[Stack]:
    while True:
        yield prepare(Stack.deploy(EmbeddedBackend(), product))


PAIRS = list(itertools.combinations_with_replacement(sorted(OPS), 2))
