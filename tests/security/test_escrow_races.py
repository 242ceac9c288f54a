"""Every pair of the methods that move money or stake, raced on one bounty in the same round, in every phase of
a bounty's life, with the ledger's transfers failing, trapping or losing their reply; and random sequences of
all of them with random faults and time jumps (scenarios in tests/security/races.py)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from testkit.invariants import check_bounds, check_exact, quiesce
from testkit.protocol import REWARD, Stack
from tests.security.races import (
    FAULTS,
    HOUR,
    OPS,
    PAIRS,
    PHASES,
    SCENARIOS_PER_DEPLOYMENT,
    deployments,
    prepare,
    run,
    setup,
    submit,
)

pytestmark = [pytest.mark.embedded_only, pytest.mark.inproc_only]


@pytest.fixture
def world(stack: Stack) -> Stack:
    return prepare(stack)


@pytest.mark.parametrize("phase", PHASES)
def test_every_pair_in_one_round(world: Stack, product: dict[str, Any], phase: str) -> None:
    stacks = deployments(product)
    stack = world
    for i, (first, second) in enumerate(PAIRS):
        if i and i % SCENARIOS_PER_DEPLOYMENT == 0:
            stack = next(stacks)
        run(stack, phase, first, second, 0, FAULTS[i % len(FAULTS)])


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_random_sequences_with_faults(world: Stack, seed: int) -> None:
    """Random ops on a few bounties, delivered in random round patterns, with random ledger faults and time
    jumps; bounds checked after every step, exact books at the end."""
    rng = random.Random(seed)
    stack = world
    scenes = [setup(stack, rng.choice(PHASES)) for _ in range(3)]
    books = scenes[0].books
    for scene in scenes[1:]:  # one set of books for the whole run
        books.bounties |= scene.books.bounties
        books.reservations.update(scene.books.reservations)
        books.approvals += scene.books.approvals
        scene.books = books
    for _ in range(60):
        scene = rng.choice(scenes)
        if rng.random() < 0.3:
            kind = rng.choice(["lose_reply", "reject", "trap"])
            method = rng.choice(["icrc1_transfer", "icrc2_transfer_from"])
            stack.ic.inject_fault(kind, stack.ledger.canister_id, method, caller=stack.registry.canister_id,
                                  times=rng.randint(1, 3))
        if rng.random() < 0.15:
            stack.ic.advance_time(rng.choice([10**9, HOUR, 3 * HOUR]))
        if rng.random() < 0.2:
            books.approve(stack, REWARD)
        ops = [rng.choice(sorted(OPS)) for _ in range(rng.randint(1, 3))]
        pending = []
        for name in ops:
            pending.append(submit(scene, name))
            for _ in range(rng.randint(0, 2)):
                stack.ic.tick()
        for method, args, sender, message_id in pending:
            target = stack.hub if method in ("reserve_bounty", "cleanup_expired_lock") else stack.registry
            books.note_reply(method, target.decode(method, stack.ic.await_call(message_id)), *args, sender=sender)
        check_bounds(stack, books)
    check_exact(stack, books, quiesce(stack, books))
