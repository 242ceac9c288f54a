"""The SDK's Candid codec and the replica's are written independently; here they must agree. Messages encoded
by one decode to the same values with the other, on a spread of types and values, on every method of every
checked-in .did file, and on real replies of the protocol canisters running on the replica."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ic_replica import candid as rc
from ic_replica.principal import Principal as ReplicaPrincipal
from prometheus_sdk import candid as c
from prometheus_sdk import did
from prometheus_sdk.principal import Principal
from tests.test_sdk_candid import tagged
from tests.test_sdk_candid import types as random_types
from tests.test_sdk_candid import values as random_values

ROOT = Path(__file__).resolve().parent.parent
DIDS = sorted((ROOT / "candid").glob("*.did"))
HYPOTHESIS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=100)


def replica_type(t: c.Type, recs: dict[int, rc.Rec] | None = None) -> rc.Type:
    """The same type built with the replica's constructors (recursive types stay recursive)."""
    recs = {} if recs is None else recs
    if isinstance(t, c.Rec):
        if id(t) not in recs:
            recs[id(t)] = rc.Rec()
            recs[id(t)].define(replica_type(t.resolve(), recs))
        return recs[id(t)]
    if isinstance(t, c.Prim):
        return getattr(rc, t.name.upper())  # type: ignore[no-any-return]
    if isinstance(t, c.Opt):
        return rc.Opt(replica_type(t.inner, recs))
    if isinstance(t, c.Vec):
        return rc.Vec(replica_type(t.inner, recs))
    if isinstance(t, c.Record):
        return rc.Record(tuple((n, replica_type(ft, recs)) for n, ft in t.fields))
    if isinstance(t, c.Variant):
        return rc.Variant(tuple((n, replica_type(ft, recs)) for n, ft in t.fields))
    if isinstance(t, c.Func):
        return rc.Func(tuple(replica_type(a, recs) for a in t.args), tuple(replica_type(r, recs) for r in t.rets),
                       t.modes)
    assert isinstance(t, c.Service)
    return rc.Service(tuple((n, replica_type(m, recs)) for n, m in t.methods))  # type: ignore[misc]


def replica_value(v: Any) -> Any:
    """A value for the replica's encoder: its own principals."""
    if isinstance(v, Principal):
        return ReplicaPrincipal(v.raw)
    if isinstance(v, dict):
        return {k: replica_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(replica_value(x) for x in v)
    return v


def sdk_shape(t: c.Type, v: Any) -> Any:
    """A value at `t` in the form both codecs decode to: tuple records as tuples (a dict or a list given for
    one to encode becomes a tuple), other records as dicts."""
    if isinstance(t, c.Rec):
        t = t.resolve()
    if isinstance(t, c.Opt) or (isinstance(t, c.Vec) and not isinstance(v, bytes)):
        return [sdk_shape(t.inner, x) for x in v]
    if isinstance(t, c.Record):
        types = dict(t.fields)
        items = dict(enumerate(v)) if isinstance(v, (tuple, list)) else v
        shaped = {k: sdk_shape(types[k], x) for k, x in items.items()}
        return tuple(shaped[i] for i in range(len(shaped))) if t.is_tuple and shaped else shaped
    if isinstance(t, c.Variant):
        ((tag, x),) = v.items()
        return {tag: sdk_shape(dict(t.fields)[tag], x)}
    return v


def replica_decode(data: bytes, ts: list[c.Type]) -> list[Any]:
    return [sdk_shape(t, v) for t, v in zip(ts, rc.decode(data, [replica_type(t) for t in ts]))]


def plain(v: Any) -> Any:
    """A comparable form: principals of either library as tagged bytes, NaN as a marker, tuples as lists."""
    if isinstance(v, (Principal, ReplicaPrincipal)):
        return ("principal", v.raw)
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return v


def agree(ts: list[c.Type], vs: list[Any]) -> None:
    """Both directions: SDK-encoded bytes decode alike in both codecs, and so do replica-encoded bytes."""
    rts = [replica_type(t) for t in ts]
    ours = c.encode(ts, vs)
    theirs = rc.encode(rts, [replica_value(v) for v in vs])
    for data in (ours, theirs):
        expected = plain([sdk_shape(t, v) for t, v in zip(ts, vs)])
        assert plain(c.decode(data, ts)) == expected
        assert plain(replica_decode(data, ts)) == expected
        assert plain(c.decode(data)) == plain(rc.decode(data))  # without types: fields by id in both


P = Principal.from_text("ryjl3-tyaaa-aaaaa-aaaba-cai")
TREE = c.Rec()
TREE.define(c.Variant.of(leaf=c.INT, node=c.Vec(c.Tuple(c.TEXT, TREE))))
SPREAD: list[tuple[c.Type, Any]] = [
    (c.NULL, None), (c.BOOL, True), (c.NAT, 2**100), (c.INT, -(2**100)), (c.NAT8, 255), (c.NAT16, 65535),
    (c.NAT32, 2**32 - 1), (c.NAT64, 2**64 - 1), (c.INT8, -128), (c.INT16, -(2**15)), (c.INT32, 2**31 - 1),
    (c.INT64, -(2**63)), (c.FLOAT32, -1.5), (c.FLOAT64, math.pi), (c.FLOAT64, math.inf), (c.TEXT, "ünïcode ✓"),
    (c.RESERVED, None), (c.PRINCIPAL, P), (c.PRINCIPAL, Principal.management()), (c.Opt(c.NAT), []),
    (c.Opt(c.Opt(c.NULL)), [[None]]), (c.Vec(c.INT64), [-1, 2**62]), (c.BLOB, bytes(range(256))),
    (c.Vec(c.Opt(c.TEXT)), [["a"], []]), (c.Vec(c.NULL), [None, None]),
    (c.Record.of(owner=c.PRINCIPAL, subaccount=c.Opt(c.BLOB)), {"owner": P, "subaccount": [bytes(32)]}),
    (c.Tuple(c.NAT, c.Tuple(c.TEXT, c.BOOL)), {0: 1, 1: {0: "x", 1: False}}),
    (c.Record(((0, c.NAT), ("name", c.TEXT), (2**32 - 1, c.BOOL))), {0: 1, "name": "n", 2**32 - 1: True}),
    (c.Variant.of(Ok=c.NAT, Err=c.Variant.of(Generic=c.Record.of(message=c.TEXT))),
     {"Err": {"Generic": {"message": "no"}}}),
    (TREE, {"node": [("a", {"leaf": -1}), ("b", {"node": [("c", {"leaf": 2})]})]}),
    (c.Func((c.NAT,), (c.TEXT,), ("query",)), (P, "callback")), (c.Service(), P),
]


@pytest.mark.parametrize("t,v", SPREAD, ids=[str(i) for i in range(len(SPREAD))])
def test_both_codecs_agree_on_a_spread_of_values(t: c.Type, v: Any) -> None:
    agree([t], [v])


def test_both_codecs_agree_on_several_arguments() -> None:
    agree([t for t, _ in SPREAD], [v for _, v in SPREAD])


def test_both_codecs_apply_the_same_subtyping() -> None:
    wide = c.Record.of(a=c.NAT, extra=c.TEXT, o=c.Opt(c.Variant.of(x=c.NAT, y=c.NULL)))
    narrow = c.Record.of(a=c.INT, o=c.Opt(c.Variant.of(x=c.NAT)), missing=c.Opt(c.NAT))
    for value in ({"a": 1, "extra": "e", "o": [{"y": None}]}, {"a": 2, "extra": "", "o": [{"x": 5}]}):
        data = c.encode([wide], [value])
        assert plain(c.decode(data, [narrow])) == plain(replica_decode(data, [narrow]))


@HYPOTHESIS
@given(random_types.flatmap(lambda t: st.tuples(st.just(t), random_values(t))))
def test_both_codecs_agree_on_random_values(case: tuple[c.Type, Any]) -> None:
    t, v = case
    agree([t], [v])


def min_value(t: c.Type, seen: frozenset[int] = frozenset()) -> Any:
    """The smallest value of `t` (None when it has none without going around a recursive type again)."""
    if isinstance(t, c.Rec):
        return None if id(t) in seen else min_value(t.resolve(), seen | {id(t)})
    if isinstance(t, c.Prim):
        return {"bool": False, "text": "", "float32": 0.0, "float64": 0.0, "principal": P}.get(
            t.name, None if t.name in ("null", "reserved", "empty") else 0)
    if isinstance(t, c.Opt | c.Vec):
        return b"" if t == c.BLOB else []
    if isinstance(t, c.Record):
        return {n: min_value(ft, seen) for n, ft in t.fields}
    if isinstance(t, c.Variant):
        for n, ft in t.fields:
            v = min_value(ft, seen)
            if v is not None or c._nullable(ft) or ft == c.NULL:
                return {n: v}
        return None
    return (P, "m") if isinstance(t, c.Func) else P


def did_values(t: c.Type, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values of a .did type; recursive types bottom out in their smallest value after a few levels."""
    if isinstance(t, c.Rec):
        if depth > 4:
            return st.just(min_value(t))
        return st.deferred(lambda: did_values(t.resolve(), depth + 1))
    if isinstance(t, c.Opt):
        return st.one_of(st.just([]), did_values(t.inner, depth + 1).map(lambda v: [v]))
    if isinstance(t, c.Vec) and t != c.BLOB:
        return st.lists(did_values(t.inner, depth + 1), max_size=2 if depth < 4 else 0)
    if isinstance(t, c.Record):
        return st.fixed_dictionaries({n: did_values(ft, depth + 1) for n, ft in t.fields})
    if isinstance(t, c.Variant):
        return st.one_of(*[did_values(ft, depth + 1).map(tagged(n)) for n, ft in t.fields])
    return random_values(t)


def did_methods() -> list[tuple[str, str, str, list[c.Type]]]:
    cases = []
    for path in DIDS:
        iface = did.load(path)
        for name, m in sorted(iface.methods.items()):
            cases += [(path.name, name, "args", m.args), (path.name, name, "rets", m.rets)]
        cases.append((path.name, "(init)", "args", iface.init))
    return cases


@pytest.mark.parametrize("case", did_methods(), ids=lambda case: f"{case[0]}:{case[1]}:{case[2]}")
def test_both_codecs_agree_on_every_did_method(case: tuple[str, str, str, list[c.Type]]) -> None:
    ts = case[3]

    @settings(deadline=None, suppress_health_check=list(HealthCheck), max_examples=10, database=None)
    @given(st.tuples(*[did_values(t) for t in ts]))
    def check(vs: tuple[Any, ...]) -> None:
        agree(ts, list(vs))

    check()


def test_both_codecs_agree_on_real_replies(product: dict[str, Any]) -> None:
    """Replies of the ledger and the audit hub, deployed on the replica, decode alike in both codecs."""
    from ic_replica.replica import Replica

    built = product
    replica = Replica()
    me = Principal(b"\x0a" * 29)
    ledger_iface, hub_iface = did.load(ROOT / "candid" / "ledger.did"), did.load(ROOT / "candid" / "audit_hub.did")
    ledger, hub = replica.create_canister(), replica.create_canister()
    account = {"owner": me, "subaccount": []}
    replica.install_code(ledger, built["ledger"].wasm.read_bytes(), ledger_iface.encode_init({
        "name": "Cross Check", "symbol": "XC", "decimals": 8, "fee": 10, "minting_account": {"owner": P},
        "initial_balances": [(account, 1_000)]}))
    replica.install_code(hub, built["audit_hub"].wasm.read_bytes(),
                         hub_iface.encode_init({"governance": me, "registry": []}))
    calls: list[tuple[Any, did.Interface, str, list[Any]]] = [
        (ledger, ledger_iface, "icrc1_metadata", []), (ledger, ledger_iface, "icrc1_supported_standards", []),
        (ledger, ledger_iface, "icrc1_minting_account", []), (ledger, ledger_iface, "icrc1_balance_of", [account]),
        (ledger, ledger_iface, "icrc1_name", []), (hub, hub_iface, "get_policy", []),
        (hub, hub_iface, "get_auditor_profile", [me]), (hub, hub_iface, "get_locks", [[], 10])]
    decoded = {}
    for canister, iface, method, args in calls:
        m = iface.methods[method]
        reply = replica.query_call(canister, method, c.encode(m.args, args))
        ours, theirs = c.decode(reply, m.rets), replica_decode(reply, m.rets)
        assert plain(ours) == plain(theirs), method
        assert plain(c.decode(reply)) == plain(rc.decode(reply)), method
        decoded[method] = ours
    assert decoded["icrc1_balance_of"] == [1_000] and decoded["icrc1_name"] == ["Cross Check"]
    assert decoded["icrc1_minting_account"] == [[{"owner": P, "subaccount": []}]]
    assert isinstance(decoded["icrc1_minting_account"][0][0]["owner"], Principal)
    assert decoded["get_auditor_profile"][0]["principal"] == me
