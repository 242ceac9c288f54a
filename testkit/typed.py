"""Calling a canister with the Candid types of its checked-in .did file, in process or over HTTP.

Arguments and replies go through the SDK's codec (a client's, independent of the replica's). Replies are
then given the replica's `Principal`, which the tests compare with and pass to the replica.
"""

from __future__ import annotations

from typing import Any

from ic_replica.principal import Principal
from prometheus_sdk import candid
from prometheus_sdk.principal import Principal as SdkPrincipal
from testkit import ALICE, ROOT


def replica_values(t: candid.Type, value: Any) -> Any:
    """`value`, decoded by the SDK at type `t`, with the replica's principals."""
    if isinstance(t, candid.Rec):
        t = t.resolve()
    if isinstance(value, SdkPrincipal):
        return Principal(value.raw)
    if isinstance(t, candid.Opt):
        return [replica_values(t.inner, v) for v in value]
    if isinstance(t, candid.Vec) and not isinstance(value, bytes):
        return [replica_values(t.inner, v) for v in value]
    if isinstance(t, candid.Record):
        types = dict(t.fields)
        if isinstance(value, tuple):
            return tuple(replica_values(types[i], v) for i, v in enumerate(value))
        return {k: replica_values(types[k], v) for k, v in value.items()}
    if isinstance(t, candid.Variant):
        ((tag, inner),) = value.items()
        return {tag: replica_values(dict(t.fields)[tag], inner)}
    if isinstance(t, candid.Func):
        return Principal(value[0].raw), value[1]
    return value


class Typed:
    """Calls a canister with Candid types taken from its checked-in .did file: in process, or, when an
    `http` transport is set, as signed requests through the SDK over the IC HTTP interface."""

    def __init__(self, ic: Any, canister_id: Principal, name: str, http: HttpTransport | None = None) -> None:
        from prometheus_sdk import did

        self.ic, self.canister_id, self.http = ic, canister_id, http
        self.interface = did.load(ROOT / "candid" / f"{name}.did")

    def encode(self, method: str, *args: Any) -> bytes:
        return candid.encode(self.interface.methods[method].args, list(args))

    def decode(self, method: str, reply: bytes) -> Any:
        rets = self.interface.methods[method].rets
        values = [replica_values(t, v) for t, v in zip(rets, candid.decode(reply, rets))]
        return values[0] if len(values) == 1 else tuple(values)

    def __call__(self, method: str, *args: Any, sender: Principal = ALICE) -> Any:
        m = self.interface.methods[method]
        arg = self.encode(method, *args)
        if self.http is not None:
            conn = self.http.connection(sender, query=m.is_query)
            send_http = conn.query if m.is_query else conn.call
            return self.decode(method, send_http(str(self.canister_id), method, arg))
        send = self.ic.query_call if m.is_query else self.ic.update_call
        return self.decode(method, send(self.canister_id, method, arg, sender=sender))

    def submit(self, method: str, *args: Any, sender: Principal = ALICE) -> bytes:
        return self.ic.submit_call(self.canister_id, method, self.encode(method, *args), sender)  # type: ignore[no-any-return]


class HttpTransport:
    """SDK connections (one per identity) to a running replica; senders are looked up by principal."""

    def __init__(self, url: str, identities: dict[Principal, Any]) -> None:
        self.url, self.identities = url, identities
        self._connections: dict[Principal, Any] = {}

    def connection(self, sender: Principal, query: bool = False) -> Any:
        """The sender's connection; queries from a principal without a key go out anonymously."""
        from icp_identity.identity import Identity  # type: ignore[import-not-found]

        from prometheus_sdk import Network, connect

        if sender not in self.identities and query:
            self.identities[sender] = Identity(anonymous=True)
        if sender not in self._connections:
            if sender not in self.identities:
                raise KeyError(f"no identity for {sender}: over HTTP every sender needs a key")
            self._connections[sender] = connect(Network("local", self.url), self.identities[sender])
        return self._connections[sender]
