"""Candid interface files (`.did`) -> the SDK's Candid types (`prometheus_sdk.candid`), for typed clients.

Parsing uses the `ic_candid_parser` extension that ships with icp-py-core; the resulting types are the SDK's
own, so encoding and decoding go through the SDK's codec (never the replica's: clients must not share code
with the server they test).

Limitation of that parser: a method declared by naming a func type (`m : F` instead of `m : (nat) -> ()`)
comes out of its AST without arguments or results; write method signatures out in full.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_sdk import candid
from prometheus_sdk.errors import ConfigError

_PRIMS = {p.name: p for p in (candid.NULL, candid.BOOL, candid.NAT, candid.INT, candid.NAT8, candid.NAT16,
                              candid.NAT32, candid.NAT64, candid.INT8, candid.INT16, candid.INT32, candid.INT64,
                              candid.FLOAT32, candid.FLOAT64, candid.TEXT, candid.RESERVED, candid.EMPTY,
                              candid.PRINCIPAL)}


@dataclass(frozen=True)
class Method:
    name: str
    args: list[candid.Type]
    rets: list[candid.Type]
    modes: tuple[str, ...]

    @property
    def is_query(self) -> bool:
        return "query" in self.modes or "composite_query" in self.modes


@dataclass
class Interface:
    """A service: its methods, its init arguments and its named types (`types["Account"]`, ...)."""

    methods: dict[str, Method]
    init: list[candid.Type] = field(default_factory=list)
    types: dict[str, candid.Type] = field(default_factory=dict)

    def encode_init(self, *values: Any) -> bytes:
        return candid.encode(self.init, list(values))


def parse(text: str) -> Interface:
    from icp_candid.did_loader import ic_candid_parser  # type: ignore[import-not-found]

    if ic_candid_parser is None:
        raise ConfigError("the Candid parser extension (ic_candid_parser) is not installed")
    try:
        ast = json.loads(ic_candid_parser.parse_did(text))
    except ValueError as exc:
        raise ConfigError(f"invalid Candid interface: {exc}") from exc
    env: dict[str, candid.Rec] = {entry["name"]: candid.Rec() for entry in ast.get("env", [])}
    for entry in ast.get("env", []):
        env[entry["name"]].define(_type(entry["datatype"], env))
    for name, rec in env.items():
        try:
            rec.resolve()
        except candid.CandidError as exc:
            raise ConfigError(f"Candid type {name!r}: {exc}") from exc
    actor = ast.get("actor") or {}
    methods = {}
    for m in actor.get("methods", []):
        methods[m["name"]] = Method(m["name"], [_type(a, env) for a in m["args"]], [_type(r, env) for r in m["rets"]],
                                    tuple(m.get("modes", [])))
    return Interface(methods, [_type(a, env) for a in actor.get("init") or []], dict(env))


def load(path: Path) -> Interface:
    try:
        return parse(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc


def _field_name(name: str) -> str | int:
    return int(name) if name.isdigit() else name


def _type(node: dict[str, Any], env: dict[str, candid.Rec]) -> candid.Type:
    """One type of the parser's AST; named types become the `Rec` placeholders of `env`."""
    kind: str = node["type"]
    value: Any = node.get("value")
    if kind == "Prim":
        if value not in _PRIMS:
            raise ConfigError(f"unsupported Candid type {value!r}")
        return _PRIMS[value]
    if kind == "Principal":
        return candid.PRINCIPAL
    if kind == "Id":
        if value not in env:
            raise ConfigError(f"undefined Candid type {value!r}")
        return env[value]
    if kind == "Opt":
        return candid.Opt(_type(value, env))
    if kind == "Vec":
        return candid.Vec(_type(value, env))
    try:
        if kind == "Record":
            return candid.Record(tuple((_field_name(n), _type(t, env)) for n, t in value))
        if kind == "Variant":
            return candid.Variant(tuple((_field_name(n), _type(t, env)) for n, t in value))
        if kind == "Func":
            return _func(value, env)
        if kind == "Service":
            return candid.Service(tuple((m["name"], _func(m, env)) for m in value or []))
    except candid.CandidError as exc:  # e.g. two field names with one id
        raise ConfigError(f"invalid Candid type: {exc}") from exc
    raise ConfigError(f"unsupported Candid type {kind!r}")


def _func(node: dict[str, Any], env: dict[str, candid.Rec]) -> candid.Func:
    return candid.Func(tuple(_type(a, env) for a in node["args"]), tuple(_type(r, env) for r in node["rets"]),
                       tuple(node.get("modes", [])))
