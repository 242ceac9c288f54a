"""`prometheus.yml`: what a developer submits — parsed and validated with one clear message per problem."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from prometheus_cli.output import fail

MANIFEST = "prometheus.yml"
NAMESPACE = re.compile(r"^(?=.{3,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")


@dataclass
class Manifest:
    name: str
    namespace: str
    repo_url: str
    commit: str
    wasm_path: str
    description: str = ""
    source_dir: str = "."
    main: str = "src/main.mo"
    listing: dict[str, Any] = field(default_factory=dict)  # category, tags, homepage, ... for the app store
    canister: str = ""  # which canister of the repository (the build output's name); docs/build.md
    candid: str = ""  # a checked-in .did, compared with the compiler's interface (never changes the wasm)
    toolchain: str = ""  # the moc version, e.g. "1.10.1" (or [toolchain] moc in mops.toml)
    packages: dict[str, str] = field(default_factory=dict)  # name -> vendored folder, for apps without mops.toml

    def to_yaml(self) -> str:
        import yaml

        data = {k: v for k, v in asdict(self).items() if v not in ("", {}, None)}
        return str(yaml.safe_dump(data, sort_keys=False))


def validate_namespace(value: str) -> str:
    if not NAMESPACE.match(value):
        fail(f"invalid namespace {value!r}", "use reverse-DNS in lowercase, e.g. com.example.my-app")
    return value


def validate_repo(value: str, local_network: bool = True, resolve_host: bool = False) -> str:
    """The verifiers' URL policy (`prometheus_sdk.urls`): refuse here what a worker would refuse later (which
    would reject the wasm for good). `local_network`: loopback repositories are fine (the network is this
    machine). A host that does not resolve now is not refused: the worker retries it."""
    from prometheus_sdk.urls import HostUnresolved, RepoPolicy, RepoUrlRefused, check_repo_url, is_loopback_host

    try:
        check_repo_url(value, RepoPolicy(local_network=local_network), resolve_host=resolve_host)
    except HostUnresolved:
        pass
    except RepoUrlRefused as exc:
        host = urlparse(value).hostname or ""
        hint = ("loopback repositories are for `--network local` only; use the repository's public https:// URL"
                if host and is_loopback_host(host) else
                "use the public https:// URL of the git repository (verifiers fetch nothing else)")
        fail(f"invalid repo_url {value!r}: {exc}", hint)
    return value


def validate_commit(value: str) -> str:
    if not COMMIT.match(value):
        fail(f"invalid commit {value!r}", "use the full 40-character lowercase hex commit SHA (git rev-parse HEAD)")
    return value


def validate_name(value: str) -> str:
    if not NAME.match(value):
        fail(f"invalid name {value!r}", "1-64 letters, digits, spaces, '.', '_' or '-'")
    return value


def validate(m: Manifest) -> Manifest:
    validate_name(m.name)
    validate_namespace(m.namespace)
    validate_repo(m.repo_url)
    validate_commit(m.commit)
    validate_wasm_path(m.wasm_path)
    return m


def validate_wasm_path(value: str) -> str:
    if not value:
        fail("wasm_path is empty", "point it at the .wasm `prometheus build` writes, e.g. .prometheus/build/app.wasm")
    if not value.endswith((".wasm", ".wasm.gz")):
        fail(f"wasm_path {value!r} does not name a .wasm or .wasm.gz file",
             "point it at the .wasm `prometheus build` writes, e.g. .prometheus/build/app.wasm")
    return value


def default_wasm_path(name: str) -> str:
    """Where `init` suggests `prometheus build` writes the module: under the (git-ignored) .prometheus/."""
    slug = re.sub(r"[^a-z0-9_.-]+", "-", name.lower()).strip("-.") or "app"
    return f".prometheus/build/{slug}.wasm"


def load(path: Path) -> Manifest:
    import yaml

    if not path.is_file():
        fail(f"no manifest at {path}", "create one with `prometheus init`")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        fail(f"{path} is not valid YAML{where}", "fix the syntax or recreate it with `prometheus init --force`")
    if not isinstance(data, dict):
        fail(f"{path} must be a mapping of fields", "see `prometheus init --help` for the fields")
    known = set(Manifest.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        fail(f"{path}: unknown field(s) {', '.join(unknown)}", f"known fields: {', '.join(sorted(known))}")
    missing = [k for k in ("name", "namespace", "repo_url", "commit", "wasm_path") if not data.get(k)]
    if missing:
        fail(f"{path}: missing field(s) {', '.join(missing)}", "every manifest needs name, namespace, repo_url, "
             "commit and wasm_path")
    for key, value in data.items():
        if key not in ("listing", "packages") and not isinstance(value, str):
            fail(f"{path}: field {key} must be text, got {type(value).__name__}")
    return validate(Manifest(**data))


def wasm_file(m: Manifest, manifest_path: Path) -> Path:
    path = (manifest_path.parent / m.wasm_path).resolve()
    if not path.is_file():
        fail(f"wasm file {path} does not exist", "build it with `prometheus build` (or `prometheus submit --build`)")
    return path
