"""Deterministic work counts for complexity tests: tests never assert on wall-clock time (machines differ in
speed and load; figures belong in `bench/`), but a decoder that loops once per byte of a hostile length, or a
parse that goes quadratic, shows up as a count of Python function calls that does not depend on the machine."""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

T = TypeVar("T")


def calls(fn: Callable[[], T]) -> tuple[T | BaseException, int]:
    """Run `fn` and count the Python and builtin function calls it makes (its own frame excluded). Returns
    its result, or the exception it raised, and the count."""
    count = 0

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    outcome: T | BaseException
    sys.setprofile(profile)
    try:
        outcome = fn()
    except Exception as exc:  # the caller checks what was raised
        outcome = exc
    finally:
        sys.setprofile(None)
    return outcome, count - 1  # the call of `fn` itself
