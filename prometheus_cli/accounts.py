"""Who a command means: a principal given as text, or the principal of an identity by name."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_cli.output import fail

if TYPE_CHECKING:
    from prometheus_sdk.clients.ledger import Account


def principal_of(target: str) -> Any:
    """`target` as a Principal: a principal's text form, else the name of an identity (ours or dfx's)."""
    from prometheus_sdk import identity
    from prometheus_sdk.errors import IdentityError
    from prometheus_sdk.principal import InvalidPrincipal, Principal

    if "-" in target:
        try:
            return Principal.from_text(target)
        except InvalidPrincipal:
            pass
    try:
        return Principal.from_text(str(identity.load(target).sender()))
    except IdentityError as exc:
        fail(f"{target!r} is neither a principal nor a usable identity: {exc}",
             "give a principal (xxxxx-xxxxx-...-cai/-qe) or an identity name from `prometheus identity list`")


def account(owner: Any) -> Account:
    """The default ICRC-1 account of `owner`."""
    return {"owner": owner, "subaccount": []}
