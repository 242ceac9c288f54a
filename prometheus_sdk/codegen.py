"""Generate the typed canister clients in `prometheus_sdk/clients/` from the checked-in `.did` files.

    python -m prometheus_sdk.codegen           # rewrite prometheus_sdk/clients/*.py
    python -m prometheus_sdk.codegen --check   # exit 1 if any generated module is stale (a test runs this)

Each module gets: a `TypedDict` per named record/variant of the interface (and per anonymous one, named
after where it appears), the Candid types for the SDK's codec, the exception raised for the service's
`#err` results, and a client class with one ordinary method per canister method, so a reader (or an
editor) can jump from `registry.icrc118_upload_wasm_chunk(...)` to its argument and result types. Values
stay what the codec produces (dicts, lists, ints, bytes, `Principal`), so the TypedDicts cost nothing at
run time. The `.did` text is parsed by icp-py-core's `ic_candid_parser`; argument names, which its AST
drops, are read from the method signatures in the `.did` text.
"""

from __future__ import annotations

import argparse
import json
import keyword
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLIENTS_DIR = Path(__file__).resolve().parent / "clients"


@dataclass(frozen=True)
class Source:
    """One generated module: where its interface is, what its client and exception are called."""

    module: str
    did: str  # relative to the interfaces folder
    client: str
    error: str
    management: bool = False


SOURCES = (
    Source("ledger", "ledger.did", "LedgerClient", "LedgerError"),
    Source("audit_hub", "audit_hub.did", "AuditHubClient", "AuditHubError"),
    Source("mcp_registry", "mcp_registry.did", "RegistryClient", "RegistryError"),
    Source("mcp_orchestrator", "mcp_orchestrator.did", "OrchestratorClient", "OrchestratorError"),
    Source("auth_server", "auth_server.did", "AuthServerClient", "AuthServerError"),
    Source("management", "management.did", "ManagementCanister", "ManagementError", management=True),
)

_PRIM_ANN = {"null": "None", "bool": "bool", "text": "str", "reserved": "Any", "empty": "Any",
             "float32": "float", "float64": "float"}
_INTS = {"nat", "int", "nat8", "nat16", "nat32", "nat64", "int8", "int16", "int32", "int64"}
_CLIENT_ATTRS = {"caller", "canister_id", "invoke", "methods", "error_class", "effective_canister_id"}
# names a generated module defines or imports: a .did type may not take them
_MODULE_NAMES = {"Principal", "Any", "TypedDict", "c", "MethodSpec", "CanisterError", "Client", "ManagementClient",
                 "INIT_ARGS", "encode_init", "None", "True", "False", "_T", "_M"}
_RESERVED_PARAMS = {"self", "c", "_T", "_M"}


def _by_name(method: dict[str, Any]) -> str:
    return str(method["name"])


def _method_name(name: str) -> str:
    """A Python method name for a canister method: private, dunder or client names get a distinct spelling."""
    py = _ident(name)
    if py.startswith("_"):
        py = f"m{py}"
    return f"{py}_" if py in _CLIENT_ATTRS else py


def _doc(text: str) -> str:
    """`text` safe inside a triple-quoted docstring."""
    return text.replace(BACKSLASH, BACKSLASH * 2).replace(QUOTES, SINGLE_QUOTES)


BACKSLASH, QUOTES, SINGLE_QUOTES = chr(92), chr(34) * 3, chr(39) * 3


def _camel(name: str) -> str:
    parts = re.split(r"[^0-9A-Za-z]+", name)
    out = "".join(p[:1].upper() + p[1:] for p in parts if p)
    out = out if out and not out[0].isdigit() else f"T{out}"
    return f"{out}_" if keyword.iskeyword(out) else out


def _ident(name: str) -> str:
    clean = re.sub(r"\W", "_", name)
    if not clean or clean[0].isdigit():
        clean = f"a_{clean}"
    return f"{clean}_" if keyword.iskeyword(clean) else clean


def _key(name: str) -> str | int:
    return int(name) if name.isdigit() else name


def _is_tuple(fields: list[list[Any]]) -> bool:
    return bool(fields) and [f[0] for f in fields] == [str(i) for i in range(len(fields))]


def _split_top(text: str, sep: str) -> list[str]:
    """`text` split at `sep` outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in parts if p.strip()]


def _closing(text: str, open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] in "({[":
            depth += 1
        elif text[i] in ")}]":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError("unbalanced brackets in the .did text")


def _arg_names(params: str) -> list[str | None]:
    """Names of `(a: nat, b: text, record {...})` as written, None where an argument has no name."""
    names: list[str | None] = []
    for part in _split_top(params, ","):
        head = _split_top(part, ":")
        match = re.fullmatch(r'\s*"?([A-Za-z_][A-Za-z0-9_]*)"?\s*', head[0]) if len(head) > 1 else None
        names.append(match.group(1) if match else None)
    return names


def _strip_comments(text: str) -> str:
    return re.sub(r"//[^\n]*", "", text)


@dataclass
class _Signature:
    text: str  # `name : (args) -> (rets) mode`, whitespace collapsed
    arg_names: list[str | None]


def _signatures(did_text: str) -> tuple[dict[str, _Signature], list[str | None]]:
    """The actor's method signatures as written (in its own `service : { ... }` block, or in the named
    service type it refers to, as Motoko writes it), and the init argument names of `service : (...) -> ...`."""
    text = _strip_comments(did_text)
    blocks: dict[str, dict[str, _Signature]] = {}
    init_names: list[str | None] = []
    actor_block: str | None = None
    for found in re.finditer(r"\bservice\b", text):
        named = re.search(r"\btype\s+([A-Za-z_][A-Za-z0-9_]*)\s*=\s*$", text[:found.start()])
        at = found.end()
        head = re.match(r"\s*(?:[A-Za-z_][A-Za-z0-9_]*\s*)?:?\s*", text[at:])
        at += head.end() if head else 0
        if named is None and text.startswith("(", at):  # the actor's init arguments
            close = _closing(text, at)
            init_names = _arg_names(text[at + 1:close])
            arrow = re.match(r"\s*->\s*", text[close + 1:])
            at = close + 1 + (arrow.end() if arrow else 0)
        if named is None:
            target = re.match(r"[A-Za-z_][A-Za-z0-9_]*", text[at:])
            actor_block = target.group(0) if target else "<actor>"
        if not text.startswith("{", at):
            continue
        sigs = blocks.setdefault(named.group(1) if named else "<actor>", {})
        for entry in _split_top(text[at + 1:_closing(text, at)], ";"):
            match = re.match(r'\s*"?([A-Za-z_][A-Za-z0-9_]*)"?\s*:', entry)
            if not match:
                continue
            rest = entry[match.end():]
            names: list[str | None] = []
            if rest.lstrip().startswith("("):
                start = rest.index("(")
                names = _arg_names(rest[start + 1:_closing(rest, start)])
            sigs[match.group(1)] = _Signature(" ".join(entry.split()), names)
    if actor_block in blocks:
        return blocks[actor_block], init_names
    merged: dict[str, _Signature] = {}
    for sigs in blocks.values():
        for name, sig in sigs.items():
            merged.setdefault(name, sig)
    return merged, init_names


@dataclass
class _Module:
    """The generator's state for one interface."""

    env: dict[str, dict[str, Any]]
    class_names: dict[str, str] = field(default_factory=dict)  # did type name -> TypedDict name
    used: set[str] = field(default_factory=set)
    typed_dicts: list[str] = field(default_factory=list)
    anonymous: list[str] = field(default_factory=list)  # TypedDicts named after where they appear
    expanding: set[str] = field(default_factory=set)  # named non-class types being spelled out (recursion)

    def unique(self, name: str) -> str:
        candidate, n = name, 2
        while candidate in self.used:
            candidate, n = f"{name}{n}", n + 1
        self.used.add(candidate)
        return candidate

    def declare_named(self) -> None:
        """Reserve a class name for every named record/variant first, so references resolve in any order."""
        for name, node in self.env.items():
            if node["type"] in ("Record", "Variant") and not (node["type"] == "Record" and _is_tuple(node["value"])):
                self.class_names[name] = self.unique(_camel(name))
        for name, node in self.env.items():
            if name in self.class_names:
                self._typed_dict(self.class_names[name], node)

    # -- annotations

    def ann(self, node: dict[str, Any], hint: str, depth: int = 0) -> str:
        kind: str = node["type"]
        value: Any = node.get("value")
        if depth > 32:
            return "Any"
        if kind == "Prim":
            return "int" if value in _INTS else _PRIM_ANN[value]
        if kind == "Principal" or kind == "Service":
            return "Principal"
        if kind == "Func":
            return "tuple[Principal, str]"
        if kind == "Id":
            if value in self.class_names:
                return self.class_names[value]
            if value in self.expanding:  # e.g. `type List = opt record { head : int; tail : List }`
                return "Any"
            self.expanding.add(value)
            try:
                return self.ann(self.env[value], _camel(value), depth + 1)
            finally:
                self.expanding.discard(value)
        if kind == "Opt":
            return f"list[{self.ann(value, hint, depth + 1)}]"
        if kind == "Vec":
            if value == {"type": "Prim", "value": "nat8"}:
                return "bytes"
            return f"list[{self.ann(value, hint + 'Item', depth + 1)}]"
        if kind == "Record" and _is_tuple(value):
            return f"tuple[{', '.join(self.ann(t, f'{hint}{i}', depth + 1) for i, (_, t) in enumerate(value))}]"
        if kind in ("Record", "Variant"):
            name = self.unique(hint)
            self.anonymous.append(name)
            self._typed_dict(name, node)
            return name
        raise ValueError(f"unsupported Candid type {kind}")

    def _typed_dict(self, name: str, node: dict[str, Any]) -> None:
        fields = [(fname, self.ann(ftype, name + _camel(fname))) for fname, ftype in node["value"]]
        variant = node["type"] == "Variant"
        doc = "A variant: exactly one of these keys is present." if variant else "A record."
        if all(f.isidentifier() and not keyword.iskeyword(f) for f, _ in fields):
            body = "".join(f"\n    {f}: {a}" for f, a in fields)
            self.typed_dicts.append(f"class {name}(TypedDict{', total=False' if variant else ''}):\n"
                                    f'    """{doc}"""\n{body}\n\n')
        else:  # a field name Python cannot spell as an attribute
            spelled = ", ".join(f"{f!r}: {a!r}" for f, a in fields)
            self.typed_dicts.append(f"{name} = TypedDict({name!r}, {{{spelled}}}{', total=False' if variant else ''})"
                                    f"  # {doc}\n\n")

    # -- codec expressions

    def expr(self, node: dict[str, Any]) -> str:
        kind: str = node["type"]
        value: Any = node.get("value")
        if kind == "Prim":
            return f"c.{value.upper()}"
        if kind == "Principal":
            return "c.PRINCIPAL"
        if kind == "Service":
            methods = "".join(f"({m['name']!r}, {self._func(m)}), " for m in sorted(value or [], key=_by_name))
            return f"c.Service(({methods}))"
        if kind == "Id":
            return f"_T[{value!r}]"
        if kind == "Opt":
            return f"c.Opt({self.expr(value)})"
        if kind == "Vec":
            return "c.BLOB" if value == {"type": "Prim", "value": "nat8"} else f"c.Vec({self.expr(value)})"
        if kind in ("Record", "Variant"):
            fields = "".join(f"({_key(n)!r}, {self.expr(t)}), " for n, t in value)
            return f"c.{kind}(({fields}))"
        if kind == "Func":
            return self._func(value)
        raise ValueError(f"unsupported Candid type {kind}")

    def _func(self, value: dict[str, Any]) -> str:
        args = "".join(f"{self.expr(a)}, " for a in value["args"])
        rets = "".join(f"{self.expr(r)}, " for r in value["rets"])
        modes = "".join(f"{m!r}, " for m in value.get("modes", []))
        return f"c.Func(({args}), ({rets}), ({modes}))"

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while node["type"] == "Id" and seen < 32:
            node, seen = self.env[node["value"]], seen + 1
        return node


def _result_tags(mod: _Module, rets: list[dict[str, Any]]) -> tuple[str, str, dict[str, Any], dict[str, Any]] | None:
    """(ok tag, err tag, ok type, err type) when the method's one result is an ok/err variant."""
    if len(rets) != 1:
        return None
    node = mod.resolve(rets[0])
    if node["type"] != "Variant":
        return None
    cases = {name: t for name, t in node["value"]}
    for ok, err in (("ok", "err"), ("Ok", "Err")):
        if set(cases) == {ok, err}:
            return ok, err, cases[ok], cases[err]
    return None


def _param_names(names: list[str | None], count: int) -> list[str]:
    out: list[str] = []
    for i in range(count):
        name = names[i] if i < len(names) and names[i] else ("arg" if count == 1 else f"arg{i}")
        name = _ident(name)  # type: ignore[arg-type]
        while name in out or name in _RESERVED_PARAMS:
            name += "_"
        out.append(name)
    return out


def generate(source: Source, did_text: str) -> str:
    """The Python module for one interface."""
    from icp_candid.did_loader import ic_candid_parser  # type: ignore[import-not-found]

    ast = json.loads(ic_candid_parser.parse_did(did_text))
    env = {e["name"]: e["datatype"] for e in ast.get("env", [])}
    mod = _Module(env)
    mod.used.update({source.client, source.error, *_MODULE_NAMES})
    mod.declare_named()
    sigs, init_names = _signatures(did_text)
    actor = ast.get("actor") or {}

    init = actor.get("init") or []
    specs, methods, error_types = [], [], set()
    for m in sorted(actor.get("methods", []), key=lambda m: m["name"]):
        name, hint = m["name"], _camel(m["name"])
        query = "query" in m.get("modes", []) or "composite_query" in m.get("modes", [])
        sig = sigs.get(name, _Signature(name, []))
        if name in sigs and not re.match(r'\s*"?[^":]*"?\s*:\s*\(', sig.text):
            raise ValueError(f"method {name} is declared by naming a func type ({sig.text!r}): the parser drops its "
                             "arguments and results, so write its signature inline")
        params = _param_names(sig.arg_names, len(m["args"]))
        arg_anns = [mod.ann(a, f"{hint}Arg" if len(m["args"]) == 1 else f"{hint}Arg{i}")
                    for i, a in enumerate(m["args"])]
        result = _result_tags(mod, m["rets"])
        raises = ""
        if result is not None:
            ok, err, ok_type, err_type = result
            ret_ann = mod.ann(ok_type, f"{hint}Ok")
            error_types.add(mod.ann(err_type, f"{hint}Err"))
            err_variant = mod.resolve(err_type)["type"] == "Variant"
            tags = f", ok_tag={ok!r}, err_tag={err!r}" + ("" if err_variant else ", err_is_variant=False")
            raises = f" Raises `{source.error}` for `{err}`."
        else:
            tags = ""
            rets = [mod.ann(r, f"{hint}Result" if len(m["rets"]) == 1 else f"{hint}Result{i}")
                    for i, r in enumerate(m["rets"])]
            ret_ann = "None" if not rets else rets[0] if len(rets) == 1 else f"tuple[{', '.join(rets)}]"
        args = "".join(f"{mod.expr(a)}, " for a in m["args"])
        rets_expr = "".join(f"{mod.expr(r)}, " for r in m["rets"])
        specs.append(f"    {name!r}: MethodSpec({name!r}, ({args}), ({rets_expr}), query={query}{tags}),")
        py_name = _method_name(name)
        query_note = " (query)" if query and "query" not in sig.text else ""
        signature = ", ".join(["self", *(f"{p}: {a}" for p, a in zip(params, arg_anns))])
        call_args = "".join(f"{p}, " for p in params)
        methods.append(
            f"    def {py_name}({signature}) -> {ret_ann}:\n"
            f"        \"\"\"`{_doc(sig.text)}`{query_note}.{raises}\"\"\"\n"
            f"        return self._invoke(_M[{name!r}], ({call_args}))  # type: ignore[no-any-return]\n")

    init_params = _param_names(init_names, len(init))
    init_anns = [mod.ann(a, "InitArg" if len(init) == 1 else f"InitArg{i}") for i, a in enumerate(init)]
    init_exprs = "".join(f"{mod.expr(a)}, " for a in init)

    base = "ManagementClient" if source.management else "Client"
    out = [
        f'"""Typed client for `{source.did}`. Generated by `python -m prometheus_sdk.codegen`: do not edit."""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Any, TypedDict" if "Any" in "".join(mod.typed_dicts) + "".join(methods)
        else "from typing import TypedDict",
        "",
        "from prometheus_sdk import candid as c",
        f"from prometheus_sdk.client import CanisterError, {base}, MethodSpec",
        "from prometheus_sdk.principal import Principal",
        "",
        "__all__ = [" + ", ".join(repr(n) for n in sorted(
            {source.client, source.error, *(["encode_init"] if init else []), *mod.class_names.values(),
             *mod.anonymous})) + "]",
        "",
        "",
        *mod.typed_dicts,
        "# The Candid types of the interface, for the codec.",
        f"_T: dict[str, c.Rec] = {{name: c.Rec() for name in {tuple(env)!r}}}",
        *(f"_T[{name!r}].define({mod.expr(node)})" for name, node in env.items()),
        "",
        "_M: dict[str, MethodSpec] = {",
        *specs,
        "}",
        f"INIT_ARGS: tuple[c.Type, ...] = ({init_exprs})",
        *([] if not init else [
            "",
            "",
            f"def encode_init({', '.join(f'{p}: {a}' for p, a in zip(init_params, init_anns))}) -> bytes:",
            '    """The install argument of this canister, Candid-encoded."""',
            f"    return c.encode(INIT_ARGS, [{', '.join(init_params)}])"]),
        "",
        "",
        f"class {source.error}(CanisterError):",
        f'    """An `#err` result of `{source.did}`: `kind` is the case of '
        f'{" / ".join(sorted(error_types)) or "the error"}, `detail` its payload."""',
        "",
        "",
        f"class {source.client}({base}):",
        f'    """One method per method of `{source.did}`; values as the codec decodes them (see the types above)."""',
        "",
        f"    error_class = {source.error}",
        "    methods = _M",
        "",
        "\n".join(methods),
    ]
    return "\n".join(out).rstrip() + "\n"


def _default_interfaces() -> Path:
    """`candid/` of the checkout codegen runs in (a development tool: run it from the repository's root)."""
    return Path("candid")


def run(interfaces: Path, out_dir: Path, check: bool) -> list[str]:
    """Regenerate (or with `check`, compare); returns the modules that were (or would be) rewritten."""
    changed = []
    for source in SOURCES:
        text = generate(source, (interfaces / source.did).read_text())
        target = out_dir / f"{source.module}.py"
        if not target.is_file() or target.read_text() != text:
            changed.append(source.module)
            if not check:
                out_dir.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
    init = out_dir / "__init__.py"
    if not check and not init.is_file():
        init.write_text('"""Generated typed clients of the protocol canisters and the management canister."""\n')
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prometheus_sdk.codegen", description=__doc__.splitlines()[0])
    parser.add_argument("--interfaces", type=Path, default=None, help="folder of the .did files (default: candid/)")
    parser.add_argument("--out", type=Path, default=CLIENTS_DIR)
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated module is stale")
    ns = parser.parse_args(argv)
    changed = run(ns.interfaces or _default_interfaces(), ns.out, ns.check)
    if ns.check and changed:
        print(f"stale: {', '.join(changed)}; run `python -m prometheus_sdk.codegen`", file=sys.stderr)
        return 1
    print(("would rewrite: " if ns.check else "rewrote: ") + (", ".join(changed) or "nothing"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
