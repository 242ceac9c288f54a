"""Typed canister clients: methods from a `.did`, Python values in and out, queries as queries."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_sdk import candid, did
from prometheus_sdk.agent import Connection
from prometheus_sdk.errors import ConfigError, SdkError


class CanisterClient:
    """`client.method(*args)` encodes with the interface's types, calls (or queries) and decodes the reply:
    one return value comes back as itself, several as a tuple, none as None."""

    def __init__(self, connection: Connection, canister_id: str, interface: did.Interface) -> None:
        self.connection = connection
        self.canister_id = canister_id
        self.interface = interface

    @classmethod
    def from_did(cls, connection: Connection, canister_id: str, path: Path) -> CanisterClient:
        return cls(connection, canister_id, did.load(path))

    def invoke(self, method: str, *args: Any) -> Any:
        m = self.interface.methods.get(method)
        if m is None:
            raise ConfigError(f"the interface has no method {method!r}")
        if len(args) != len(m.args):
            raise ConfigError(f"{method} takes {len(m.args)} argument(s), got {len(args)}")
        try:
            arg = candid.encode(m.args, list(args))
        except candid.CandidError as exc:
            raise ConfigError(f"arguments of {method} do not match its interface: {exc}") from exc
        send = self.connection.query if m.is_query else self.connection.call
        reply = send(self.canister_id, method, arg)
        try:
            values = candid.decode(reply, m.rets)
        except candid.CandidError as exc:
            raise SdkError(f"the reply of {method} does not match its interface: {exc}") from exc
        if not values:
            return None
        return values[0] if len(values) == 1 else tuple(values)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_") or name not in self.interface.methods:
            raise AttributeError(name)
        return lambda *args: self.invoke(name, *args)
