"""The CLI's exit codes, in one place so docs, commands and scripts agree (docs/cli.md lists them)."""

from __future__ import annotations

OK = 0  # success; for `status`: the wasm is verified (and `--canister` runs it)
ERROR = 1  # a user error or a refusal, printed as one line with a hint
USAGE = 2  # a bad option or argument (Typer's own)
PENDING = 3  # `status`: no outcome yet
REJECTED = 4  # `status`: the verifiers rejected the current round
MISMATCH = 5  # `status --canister`: the canister runs another wasm; `verify`: the rebuild differs
PARTIAL = 6  # part of the command took effect (said so, with what to run next), e.g. `submit --bounty`
TAMPERED = 7  # `verify --offline`: the bundle or its proof does not verify (3: too few verifiers, 4: divergent)
REFUSED = 8  # `attest verify`: the attestation token was refused
UNDETECTED = 9  # `attest attack`: an attack was not caught for its expected reason


def for_status(outcome: str, live_matches: bool | None) -> int:
    """`status`: rejected wins, then a canister that runs another wasm, then pending; 0 when verified."""
    if outcome == "Rejected":
        return REJECTED
    if live_matches is False:
        return MISMATCH
    if outcome != "Verified":
        return PENDING
    return OK
