"""The developer's lifecycle: `init`, `submit`, `status`, `publish`."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import typer

from prometheus_cli import manifest as manifests
from prometheus_cli.context import Options, client, connection
from prometheus_cli.output import console, emit, fail, user_errors

ManifestPath = typer.Option(Path(manifests.MANIFEST), "--manifest", "-m", help="Path of prometheus.yml.")
AUDIT = "build_reproducibility_v1"
CHUNK = 1024 * 1024


def _opts(ctx: typer.Context) -> Options:
    return ctx.obj if isinstance(ctx.obj, Options) else Options()


def _err(result: Any) -> str | None:
    """The error variant's name (and text payload) of a canister `#err`, or None on success."""
    if isinstance(result, dict) and "err" in result:
        (name, payload), = result["err"].items()
        return f"{name}: {payload}" if isinstance(payload, str) else name
    return None


def init(
    ctx: typer.Context,
    name: str = typer.Option(None, help="App name."),
    namespace: str = typer.Option(None, help="Reverse-DNS namespace, e.g. com.example.app."),
    repo_url: str = typer.Option(None, "--repo-url", help="https:// URL of the git repository."),
    commit: str = typer.Option(None, help="Full 40-character commit SHA the wasm is built from."),
    wasm_path: str = typer.Option(None, "--wasm-path", help="Path of the built wasm, relative to the manifest."),
    description: str = typer.Option("", help="One-line description for the app store."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask: every required field comes from flags."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing prometheus.yml."),
    path: Path = ManifestPath,
) -> None:
    """Write prometheus.yml, asking for what the flags do not give (or nothing with --yes).

    Example: prometheus init --yes --name hello --namespace com.example.hello \\
      --repo-url https://github.com/me/hello --commit $(git rev-parse HEAD) --wasm-path out/hello.wasm
    """
    opts = _opts(ctx)
    with user_errors(opts.as_json):
        if path.exists() and not force:
            fail(f"{path} already exists", "pass --force to overwrite it")
        values = {"name": name, "namespace": namespace, "repo_url": repo_url, "commit": commit,
                  "wasm_path": wasm_path}
        validators = {"name": manifests.validate_name, "namespace": manifests.validate_namespace,
                      "repo_url": manifests.validate_repo, "commit": manifests.validate_commit}
        for key, value in values.items():
            if value is None:
                if yes:
                    fail(f"--{key.replace('_', '-')} is required with --yes")
                value = typer.prompt(key.replace("_", " "))
            if key in validators:
                validators[key](value)
            values[key] = value
        m = manifests.validate(manifests.Manifest(description=description, **values))  # type: ignore[arg-type]
        path.write_text(m.to_yaml())
        emit({"manifest": str(path), **vars(m)}, opts.as_json, lambda _: console().print(f"wrote {path}"))


def submit(
    ctx: typer.Context,
    path: Path = ManifestPath,
    build: bool = typer.Option(False, "--build", help="Build the wasm with the reproducible recipe first."),
    bounty: int | None = typer.Option(None, "--bounty", help="Also fund a bounty of this many token units."),
    timeout_days: int = typer.Option(7, "--bounty-timeout-days", help="When an unclaimed bounty is refunded."),
) -> None:
    """Upload the wasm (resumable, per-chunk hashes) and request its verification; optionally fund a bounty.

    Example: prometheus submit --bounty 5000000
    """
    opts = _opts(ctx)
    with user_errors(opts.as_json):
        m = manifests.load(path)
        if build:
            _build(m, path)
        wasm = manifests.wasm_file(m, path).read_bytes()
        digest = hashlib.sha256(wasm).digest()
        conn = connection(opts)
        registry = client(conn, "mcp_registry")
        if registry.icrc118_get_canister_type(m.namespace) == []:
            err = _err(registry.icrc118_create_canister_type({"namespace": m.namespace, "description": m.description}))
            if err:
                fail(f"cannot create namespace {m.namespace}: {err}")
        elif conn.principal not in [str(p) for p in registry.icrc118_get_canister_type(m.namespace)[0]["controllers"]]:
            fail(f"namespace {m.namespace} belongs to someone else", "ask one of its controllers to add you")
        chunks = [wasm[i : i + CHUNK] for i in range(0, len(wasm), CHUNK)] or [b""]
        _upload(registry, m.namespace, digest, chunks, opts.as_json)
        request_id = _request(registry, m, digest)
        result: dict[str, Any] = {"wasm_id": digest.hex(), "namespace": m.namespace, "size": len(wasm),
                                  "chunks": len(chunks), "request_id": request_id}
        if bounty is not None:
            result["bounty_id"] = create_bounty(conn, digest.hex(), bounty, AUDIT, timeout_days)
        emit(result, opts.as_json, lambda r: console().print(
            f"submitted [bold]{r['wasm_id']}[/] ({r['size']} bytes) to {r['namespace']}, request #{r['request_id']}"
            + (f", bounty #{r['bounty_id']}" if "bounty_id" in r else "")))


def _build(m: manifests.Manifest, path: Path) -> None:
    from prometheus_build.recipe import BuildError, build_canister

    source = (path.parent / m.source_dir).resolve()
    out = (path.parent / m.wasm_path).resolve()
    try:
        result = build_canister(out.stem, source, m.main, out.parent, source / ".prometheus-build-cache")
    except BuildError as exc:
        fail(str(exc))
    if result.wasm != out:
        out.write_bytes(result.wasm.read_bytes())


def _upload(registry: Any, namespace: str, digest: bytes, chunks: list[bytes], quiet: bool) -> None:
    """Upload what the registry does not have yet; its `missing` list makes an interrupted upload resume."""
    from rich.progress import Progress

    def send(index: int) -> dict[str, Any]:
        chunk = chunks[index]
        result = registry.icrc118_upload_wasm_chunk({
            "namespace": namespace, "wasm_hash": digest, "total_chunks": len(chunks), "chunk_index": index,
            "chunk": chunk, "chunk_hash": hashlib.sha256(chunk).digest()})
        err = _err(result)
        if err:
            hint = "the file changed while uploading, or it is not the wasm you meant" if "Hash" in err else None
            fail(f"upload of chunk {index} refused: {err}", hint)
        return result["ok"]  # type: ignore[no-any-return]

    with Progress(disable=quiet, transient=True) as progress:
        task = progress.add_task("uploading", total=len(chunks))
        state = send(0)
        progress.advance(task)
        for index in state["missing"]:
            state = send(index)
            progress.advance(task)
        if not state["complete"]:
            fail(f"upload incomplete, chunks {state['missing']} still missing", "run `prometheus submit` again")


def _request(registry: Any, m: manifests.Manifest, digest: bytes) -> int:
    from prometheus_sdk.icrc16 import to_map

    existing = registry.get_verification_request(digest.hex())
    if existing and existing[0]["repo"] == m.repo_url and existing[0]["commit_hash"] == m.commit:
        return int(existing[0]["id"])  # already requested with the same source: nothing to amend
    metadata = to_map({"name": m.name, "description": m.description, **{f"listing:{k}": str(v)
                                                                         for k, v in m.listing.items()}})
    result = registry.icrc126_verification_request({"wasm_hash": digest, "repo": m.repo_url,
                                                    "commit_hash": m.commit, "metadata": metadata})
    err = _err(result)
    if err:
        fail(f"verification request refused: {err}")
    return int(result["ok"])


def create_bounty(conn: Any, wasm_id: str, amount: int, audit_type: str, timeout_days: int) -> int:
    """Approve the registry for reward + 2 fees, then create the bounty (the registry escrows reward + fee)."""
    from ic_replica.principal import Principal
    from prometheus_sdk.icrc16 import to_icrc16, to_map

    if amount <= 0:
        fail("the bounty amount must be positive")
    ledger, registry = client(conn, "ledger"), client(conn, "mcp_registry")
    fee = ledger.icrc1_fee()
    me = {"owner": Principal.from_text(conn.principal), "subaccount": []}
    balance = ledger.icrc1_balance_of(me)
    if balance < amount + 3 * fee:
        fail(f"balance {balance} is too low for a bounty of {amount}", f"it needs amount + 3 × fee ({3 * fee})")
    spender = {"owner": Principal.from_text(registry.canister_id), "subaccount": []}
    approved = ledger.icrc2_approve({"from_subaccount": [], "spender": spender, "amount": amount + 2 * fee,
                                     "expected_allowance": [], "expires_at": [], "fee": [], "memo": [],
                                     "created_at_time": []})
    if "Err" in approved:
        fail(f"the ledger refused the approval: {approved['Err']}")
    now_ns = time.time_ns()
    result = registry.icrc127_create_bounty({
        "challenge_parameters": to_icrc16({"wasm_hash": bytes.fromhex(wasm_id), "audit_type": audit_type}),
        "bounty_metadata": to_map({"icrc127:reward_canister": Principal.from_text(ledger.canister_id),
                                   "icrc127:reward_amount": amount}),
        "timeout_date": now_ns + timeout_days * 86_400 * 10**9})
    err = _err(result)
    if err:
        fail(f"bounty refused: {err}")
    return int(result["ok"])


def wasm_id_arg(wasm_hash: str | None, path: Path) -> str:
    """A wasm hash given on the command line, or the sha256 of the manifest's wasm."""
    if wasm_hash:
        value = wasm_hash.lower().removeprefix("0x")
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            fail(f"invalid wasm hash {wasm_hash!r}", "a sha256 in hex: 64 characters")
        return value
    m = manifests.load(path)
    return hashlib.sha256(manifests.wasm_file(m, path).read_bytes()).hexdigest()


def status(
    ctx: typer.Context,
    wasm_hash: str | None = typer.Argument(None, help="sha256 of the wasm (default: the manifest's wasm)."),
    watch: bool = typer.Option(False, "--watch", help="Refresh until the outcome is final."),
    canister: str | None = typer.Option(None, "--canister", help="Also check that this deployed canister runs "
                                                                 "the wasm (certified module hash)."),
    interval: float = typer.Option(2.0, "--interval", help="Seconds between refreshes with --watch."),
    path: Path = ManifestPath,
) -> None:
    """Show audits, attestations and divergences, bounties and the final outcome of a wasm.

    Example: prometheus status --watch
    """
    opts = _opts(ctx)
    with user_errors(opts.as_json):
        wasm_id = wasm_id_arg(wasm_hash, path)
        conn = connection(opts)
        registry = client(conn, "mcp_registry")
        while True:
            found = registry.get_wasm_status(wasm_id)
            if not found:
                fail(f"the registry knows no wasm {wasm_id}", "submit it with `prometheus submit`")
            st = found[0]
            if not watch or st["outcome"] or opts.as_json:
                break
            _render_status(st)
            time.sleep(interval)
        data = _status_json(st)
        if canister:
            data["live"] = _live(conn, canister, wasm_id)
        emit(data, opts.as_json, lambda d: _render_status(st, d.get("live")))


def _live(conn: Any, canister: str, wasm_id: str) -> dict[str, Any]:
    from ic_replica.principal import InvalidPrincipal, Principal

    try:
        Principal.from_text(canister)
    except InvalidPrincipal:
        fail(f"invalid canister id {canister!r}")
    module_hash = conn.module_hash(canister)
    return {"canister": canister, "module_hash": module_hash.hex() if module_hash else None,
            "matches": module_hash is not None and module_hash.hex() == wasm_id}


def _outcome(value: list[Any]) -> str:
    return next(iter(value[0])) if value else "pending"


def _status_json(st: dict[str, Any]) -> dict[str, Any]:
    return {
        "wasm_id": st["wasm_id"], "namespace": st["namespace"], "outcome": _outcome(st["outcome"]),
        "request": ({"repo": st["request"][0]["repo"], "commit": st["request"][0]["commit_hash"]}
                    if st["request"] else None),
        "audits": [{"audit_type": a["audit_type"], "attestations": a["attestations"],
                    "divergences": a["divergences"], "outcome": _outcome(a["outcome"])} for a in st["audits"]],
        "filings": [{"verifier": str(f["verifier"]), "attested": f["attested"], "bounty_id": f["bounty_id"],
                     "report": f["report"][0] if f["report"] else None, "timestamp": f["timestamp"]}
                    for f in st["filings"]],
        "bounties": [{"bounty_id": b["bounty_id"], "audit_type": b["audit_type"], "reward": b["reward_amount"],
                      "state": next(iter(b["state"]))} for b in st["bounties"]],
        "versions": [".".join(map(str, v["version"])) for v in st["versions"]],
    }


def _render_status(st: dict[str, Any], live: dict[str, Any] | None = None) -> None:
    from rich.table import Table

    data = _status_json(st)
    c = console()
    c.print(f"[bold]{data['wasm_id']}[/] in {data['namespace']}: [bold]{data['outcome']}[/]")
    if data["request"]:
        c.print(f"source {data['request']['repo']} @ {data['request']['commit']}")
    table = Table("audit type", "attestations", "divergences", "outcome")
    for a in data["audits"]:
        table.add_row(a["audit_type"], str(a["attestations"]), str(a["divergences"]), a["outcome"])
    c.print(table)
    if data["filings"]:
        filings = Table("verifier", "filing", "bounty", "report")
        for f in data["filings"]:
            filings.add_row(f["verifier"], "attestation" if f["attested"] else "divergence", str(f["bounty_id"]),
                            f["report"] or "")
        c.print(filings)
    if data["bounties"]:
        bounties = Table("bounty", "audit type", "reward", "state")
        for b in data["bounties"]:
            bounties.add_row(str(b["bounty_id"]), b["audit_type"], str(b["reward"]), b["state"])
        c.print(bounties)
    if data["versions"]:
        c.print(f"published as {', '.join(data['versions'])}")
    if live is not None:
        if live["matches"]:
            c.print(f"canister {live['canister']} runs this wasm (certified module hash)")
        else:
            c.print(f"[bold red]canister {live['canister']} does not run this wasm[/]: module hash "
                    f"{live['module_hash'] or 'none (empty canister)'}")


def publish(
    ctx: typer.Context,
    version: str = typer.Argument(..., help="Semantic version, e.g. 1.0.0."),
    path: Path = ManifestPath,
) -> None:
    """Link the manifest's verified wasm to a version of its namespace (refused if unverified or rejected).

    Example: prometheus publish 1.0.0
    """
    opts = _opts(ctx)
    with user_errors(opts.as_json):
        parts = version.removeprefix("v").split(".")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            fail(f"invalid version {version!r}", "use MAJOR.MINOR.PATCH, e.g. 1.0.0")
        m = manifests.load(path)
        digest = hashlib.sha256(manifests.wasm_file(m, path).read_bytes()).digest()
        registry = client(connection(opts), "mcp_registry")
        result = registry.icrc118_update_wasm({"namespace": m.namespace, "version": tuple(int(p) for p in parts),
                                               "wasm_hash": digest})
        err = _err(result)
        hints = {"NotVerified": ("is not verified yet", "follow it with `prometheus status --watch`"),
                 "WasmRejected": ("was rejected by its verifiers", "see `prometheus status` for the divergences"),
                 "VersionExists": (f"cannot take version {version}: it is already published", "use a new version"),
                 "WasmNotFound": ("was never submitted to this namespace", "run `prometheus submit` first"),
                 "NotAuthorized": ("cannot be published by you", "only the namespace's controllers publish")}
        if err:
            what, hint = hints.get(err, (f"was refused ({err})", None))
            fail(f"wasm {digest.hex()[:16]}… {what}", hint)
        emit({"namespace": m.namespace, "version": version, "wasm_id": digest.hex(), "block": result["ok"]},
             opts.as_json, lambda r: console().print(f"published {r['namespace']} {r['version']} ({r['wasm_id']})"))


def verify(
    ctx: typer.Context,
    wasm_hash: str | None = typer.Option(None, "--hash", help="Expected sha256 (default: the manifest's wasm)."),
    sandboxed: bool = typer.Option(True, "--sandbox/--no-sandbox",
                                   help="Rebuild in the verifiers' builder image (Docker, no network) or, with "
                                        "--no-sandbox, with the toolchain on this machine."),
    path: Path = ManifestPath,
) -> None:
    """Rebuild the manifest's source exactly as verifiers will, and compare sha256 before submitting.

    By default the rebuild runs in the same locked-down builder image the verifier worker uses (Docker via
    $DOCKER_HOST). Example: prometheus verify
    """
    import tempfile

    opts = _opts(ctx)
    with user_errors(opts.as_json):
        m = manifests.load(path)
        expected = wasm_id_arg(wasm_hash, path)
        source = (path.parent / m.source_dir).resolve()
        if not (source / m.main).is_file():
            fail(f"{source / m.main} does not exist", "set source_dir and main in prometheus.yml")
        with tempfile.TemporaryDirectory(prefix="prometheus-verify-") as tmp:
            rebuilt, where = (_rebuild_sandboxed if sandboxed else _rebuild_on_host)(source, m.main, Path(tmp))
        matches = rebuilt == expected
        verdict = "[bold green]matches[/]" if matches else f"[bold red]differs[/] from {expected}"
        emit({"expected": expected, "rebuilt": rebuilt, "matches": matches, "built_in": where}, opts.as_json,
             lambda r: console().print(f"rebuilt {r['rebuilt']} ({r['built_in']}): {verdict}"))
        if not matches:
            raise typer.Exit(1)


def _rebuild_on_host(source: Path, main: str, tmp: Path) -> tuple[str, str]:
    from prometheus_build.recipe import BuildError, build_canister

    try:
        return build_canister("rebuilt", source, main, tmp, tmp / "cache").sha256, "host toolchain"
    except BuildError as exc:
        fail(str(exc))
        raise  # unreachable: fail() raises


def _rebuild_sandboxed(source: Path, main: str, tmp: Path) -> tuple[str, str]:
    import docker

    from verifier_bot import sandbox
    from verifier_bot.image import ImageError, ensure_image

    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as exc:
        fail(f"cannot reach Docker: {exc}", "start Docker (or set DOCKER_HOST), or use --no-sandbox to rebuild "
             "with the toolchain on this machine")
    try:
        image = ensure_image(client)
        result = sandbox.build(client, image, source, main, tmp / "out")
    except (ImageError, sandbox.SandboxUnavailable) as exc:
        fail(str(exc), "check Docker, or use --no-sandbox")
    if not result.ok or result.sha256 is None:
        fail(f"{result.reason}\n{result.log.strip()}")
    return str(result.sha256), image.tag
