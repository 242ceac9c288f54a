"""Verification tiers, derived from on-chain state only (the registry's ICRC-3 log): what a badge claims is what
the log's blocks show, and every tier names the blocks that earned it.

| tier | when (for one wasm in one namespace, its latest round) |
|---|---|
| `rejected` | an audit was finalized `Rejected` (for the build audit: rebuilds gave another wasm) |
| `unverified` | no finalized build-reproducibility audit (never requested, or verifiers still at work) |
| `verified` | the build-reproducibility audit was finalized `Verified` (N independent verifiers attested it) |
| `audited` | verified, and another audit type (e.g. `app_info_v1`, `tools_v1`, `data_safety_v1`) verified too |

Only the latest round counts: a correction round supersedes a rejected one, as on chain. Divergences filed in
a round that was still verified are shown with their reasons, never hidden.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

BUILD_AUDIT = "build_reproducibility_v1"


class Tier(IntEnum):
    """Ordered: `min_tier` filters compare these values."""

    REJECTED = -1
    UNVERIFIED = 0
    VERIFIED = 1
    AUDITED = 2

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Tier:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown tier {text!r}: one of {', '.join(t.label for t in cls)}") from None


@dataclass
class RoundState:
    """What the log says about one round (one verification request)."""

    outcomes: dict[str, str] = field(default_factory=dict)  # audit type -> "Verified" | "Rejected"
    attesters: dict[str, set[str]] = field(default_factory=dict)  # audit type -> verifiers who attested
    diverging: dict[str, set[str]] = field(default_factory=dict)  # audit type -> verifiers who diverged


def tier_of(state: RoundState | None) -> Tier:
    if state is None:
        return Tier.UNVERIFIED
    if "Rejected" in state.outcomes.values():  # as the registry decides a round with that audit required
        return Tier.REJECTED
    build = state.outcomes.get(BUILD_AUDIT)
    if build != "Verified":
        return Tier.UNVERIFIED
    others = [t for t, outcome in state.outcomes.items() if t != BUILD_AUDIT and outcome == "Verified"]
    return Tier.AUDITED if others else Tier.VERIFIED
