"""Who a command means: a principal given as text, or the principal of an identity by name."""

from __future__ import annotations

from typing import Any

from prometheus_cli.output import fail


def principal_of(target: str) -> Any:
    """`target` as a Principal: a principal's text form, else the name of an identity (ours or dfx's)."""
    from ic_replica.principal import InvalidPrincipal, Principal
    from prometheus_sdk import identity
    from prometheus_sdk.errors import IdentityError

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


def account(owner: Any) -> dict[str, Any]:
    return {"owner": owner, "subaccount": []}
