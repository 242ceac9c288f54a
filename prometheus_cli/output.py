"""How every command speaks: Rich for people, `--json` for scripts, one-line errors with a hint."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer


class UserError(Exception):
    """A problem the user can fix: printed as one line with a hint, exit code 1 (or `code`). `details` are
    extra fields of the `--json` error object (e.g. the id of a bounty whose funding is not confirmed)."""

    def __init__(self, message: str, hint: str | None = None, code: int = 1,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message, self.hint, self.code, self.details = message, hint, code, details or {}


def fail(message: str, hint: str | None = None, code: int = 1, details: dict[str, Any] | None = None) -> NoReturn:
    raise UserError(message, hint, code, details)


def emit(data: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        render(data)


GLOBAL_JSON = False  # the global `--json` (set by the app's callback), for commands with their own --json too
WIDE = 250  # columns when stdout is not a terminal: Rich's default of 80 would cut principals and hashes


def console() -> Any:
    from rich.console import Console

    c = Console()
    return c if c.is_terminal else Console(width=WIDE)


def say(text: str) -> None:
    """Print text that holds what others wrote (names, URIs from a canister) as it is: never Rich markup."""
    console().print(text, markup=False, highlight=False, soft_wrap=True)


def table(*headers: str, full: tuple[str, ...] = ()) -> Any:
    """A Rich table whose `full` columns (principals, hashes, ids) are never cut or wrapped mid-value: they keep
    their whole width (other columns give way first) and fold onto a second line only in a narrow terminal."""
    from rich.table import Table

    t = Table()
    for header in headers:
        if header in full:
            t.add_column(header, no_wrap=True, overflow="fold")
        else:
            t.add_column(header, overflow="fold")
    return t


@contextmanager
def user_errors(as_json: bool = False) -> Iterator[None]:
    """Turn expected failures (ours and the SDK's) into a readable line and a non-zero exit."""
    from prometheus_sdk.errors import SdkError

    try:
        yield
    except UserError as exc:
        _print_error(exc.message, exc.hint, as_json, exc.details)
        raise typer.Exit(exc.code) from None
    except SdkError as exc:
        _print_error(str(exc), _sdk_hint(exc), as_json)
        raise typer.Exit(1) from None


def _sdk_hint(exc: Exception) -> str | None:
    """Every error line comes with what to do: the SDK's errors get one by kind."""
    from prometheus_sdk.errors import CertificateError, IdentityError, TransportError

    if isinstance(exc, IdentityError):
        return "`prometheus identity list` shows yours; `prometheus identity new NAME` makes one"
    if isinstance(exc, TransportError):
        return "is the network up? `prometheus localnet status` (local) or check --network"
    if isinstance(exc, CertificateError):
        return "the answer did not verify against the network's root key: check --network"
    return None


def _print_error(message: str, hint: str | None, as_json: bool, details: dict[str, Any] | None = None) -> None:
    if as_json:
        print(json.dumps({**(details or {}), "error": message, "hint": hint}, default=str))
        return
    line = f"error: {message}"
    if hint:
        line += f"\n  hint: {hint}"
    print(line, file=sys.stderr)
