"""Every ordered pair of the money- and stake-moving methods, the second delivered 1-3 rounds after the first
(so it lands between the first one's awaits), with ledger faults (scenarios in tests/security/races.py)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from testkit.protocol import Stack
from tests.security.races import (
    FAULTS,
    OPS,
    SCENARIOS_PER_DEPLOYMENT,
    deployments,
    prepare,
    run,
)

pytestmark = [pytest.mark.embedded_only, pytest.mark.inproc_only]


@pytest.fixture
def world(stack: Stack) -> Stack:
    return prepare(stack)


@pytest.mark.parametrize("phase", ["reserved", "claimed", "expired"])
def test_every_ordered_pair_across_rounds(world: Stack, product: dict[str, Any], phase: str) -> None:
    stacks = deployments(product)
    stack = world
    ordered = list(itertools.product(sorted(OPS), repeat=2))
    for i, (first, second) in enumerate(ordered):
        if i and i % SCENARIOS_PER_DEPLOYMENT == 0:
            stack = next(stacks)
        run(stack, phase, first, second, 1 + i % 3, FAULTS[(i // 3) % len(FAULTS)])


