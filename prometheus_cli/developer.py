"""The developer's lifecycle: `init`, `submit`, `status`, `publish`."""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from prometheus_cli import errors, exits
from prometheus_cli import manifest as manifests
from prometheus_cli.context import Options, client, connection, network_of
from prometheus_cli.output import UserError, console, emit, fail, table, user_errors

if TYPE_CHECKING:
    from prometheus_sdk.clients.mcp_registry import RegistryClient

ManifestPath = typer.Option(Path(manifests.MANIFEST), "--manifest", "-m", help="Path of prometheus.yml.")
AUDIT = "build_reproducibility_v1"
CHUNK = 1024 * 1024
MAX_TIMEOUT_DAYS = 365  # the registry takes a bounty timeout between 1 hour and 366 days ahead


def _opts(ctx: typer.Context) -> Options:
    return ctx.obj if isinstance(ctx.obj, Options) else Options()


def init(
    ctx: typer.Context,
    name: str = typer.Option(None, help="App name."),
    namespace: str = typer.Option(None, help="Reverse-DNS namespace, e.g. com.example.app."),
    repo_url: str = typer.Option(None, "--repo-url", help="https:// URL of the git repository (default: the "
                                                          "`origin` remote)."),
    commit: str = typer.Option(None, help="Full 40-character commit SHA the wasm is built from (default: HEAD)."),
    wasm_path: str = typer.Option(None, "--wasm-path", help="Path of the built wasm, relative to the manifest."),
    description: str = typer.Option(None, help="One-line description for the app store."),
    source_dir: str = typer.Option(None, "--source-dir", help="Folder the recipe builds from (default `.`)."),
    main: str = typer.Option(None, "--main", help="Entry point under source_dir (default `src/main.mo`)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask: required fields come from flags, the rest "
                                                        "from defaults."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing prometheus.yml."),
    path: Path = ManifestPath,
) -> None:
    """Write prometheus.yml, asking for every field the flags do not give (or nothing with --yes).

    The repository URL must be one verifiers fetch: https:// on a public host (a loopback repository only
    with --network local). Example: prometheus init --yes --name hello --namespace com.example.hello \\
      --repo-url https://github.com/me/hello --commit $(git rev-parse HEAD) --wasm-path out/hello.wasm
    """
    opts = _opts(ctx)
    with user_errors(opts.as_json):
        if path.exists() and not force:
            fail(f"{path} already exists", "pass --force to overwrite it")
        local = network_of(opts).is_local
        git = _git_defaults(path.parent)
        required = {"name": name, "namespace": namespace, "repo_url": repo_url, "commit": commit,
                    "wasm_path": wasm_path}
        defaults = {"repo_url": git.get("repo_url"), "commit": git.get("commit")}
        validators = {"name": manifests.validate_name, "namespace": manifests.validate_namespace,
                      "repo_url": lambda v: manifests.validate_repo(v, local, resolve_host=True),
                      "commit": manifests.validate_commit, "wasm_path": manifests.validate_wasm_path}
        values: dict[str, str] = {}
        for key, value in required.items():
            if value is None and key == "wasm_path":
                defaults["wasm_path"] = manifests.default_wasm_path(values.get("name", "app"))
                value = defaults["wasm_path"] if yes else None
            if value is None and yes:
                fail(f"--{key.replace('_', '-')} is required with --yes")
            if value is None:
                value = typer.prompt(key.replace("_", " "), default=defaults.get(key))
            if key in validators:
                validators[key](value)
            values[key] = value
        optional = {"description": (description, ""), "source_dir": (source_dir, "."),
                    "main": (main, "src/main.mo")}
        for key, (value, default) in optional.items():
            if value is None:
                value = default if yes else typer.prompt(key.replace("_", " "), default=default, show_default=True)
            values[key] = value
        m = manifests.validate(manifests.Manifest(**values))  # type: ignore[arg-type]
        path.write_text(m.to_yaml())
        emit({"manifest": str(path), **vars(m)}, opts.as_json, lambda _: console().print(f"wrote {path}"))


def _git_defaults(folder: Path) -> dict[str, str]:
    """`origin`'s URL and HEAD of the git repository holding `folder`, as prompt defaults (empty if none)."""
    import subprocess

    out: dict[str, str] = {}
    for key, args in (("repo_url", ["remote", "get-url", "origin"]), ("commit", ["rev-parse", "HEAD"])):
        try:
            run = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            continue
        if run.returncode == 0 and run.stdout.strip():
            out[key] = run.stdout.strip()
    return out


def submit(
    ctx: typer.Context,
    path: Path = ManifestPath,
    build: bool = typer.Option(False, "--build", help="Build the wasm with the reproducible recipe first."),
    bounty: int | None = typer.Option(None, "--bounty", help="Also fund a bounty of this many token units."),
    timeout_days: int = typer.Option(7, "--bounty-timeout-days", help="When an unclaimed bounty is refunded."),
    force: bool = typer.Option(False, "--force", help="Submit even though the local source is not the "
                                                      "manifest's commit (verifiers will build that commit)."),
) -> None:
    """Upload the wasm (resumable, per-chunk hashes) and request its verification; optionally fund a bounty.

    Running it again with the same source changes nothing; after a rejection it opens a new verification
    round (a correction). Example: prometheus submit --bounty 5000000
    """
    from prometheus_cli import wasm as wasm_check

    opts = _opts(ctx)
    with user_errors(opts.as_json):
        m = manifests.load(path)
        if build:
            _build(m, path)
        wasm_path = manifests.wasm_file(m, path)
        wasm = wasm_check.check(wasm_path.read_bytes(), wasm_path)
        from prometheus_cli import gitsource

        notes = gitsource.submit_warnings(path.parent.resolve(), m.commit, path.parent / m.source_dir,
                                          (path, wasm_path))
        for note in notes:
            print(f"warning: {note}", file=sys.stderr)
        if not force and any(note.startswith(gitsource.SOURCE_DIFFERS) for note in notes):
            fail(f"not submitted: the wasm was built from other source than commit {m.commit}, which verifiers "
                 "will rebuild, so it would most likely be rejected",
                 "update `commit` in prometheus.yml and check with `prometheus verify`; --force submits anyway")
        # Everything the registry or a verifier would refuse is refused before anything is created.
        manifests.validate_repo(m.repo_url, network_of(opts).is_local, resolve_host=True)
        _check_request_fields(m)
        digest = hashlib.sha256(wasm).digest()
        conn = connection(opts)
        registry = client(conn, "mcp_registry")
        from prometheus_sdk.clients.mcp_registry import RegistryError
        if bounty is not None:
            check_bounty(conn, bounty, timeout_days)
        namespace = registry.icrc118_get_canister_type(m.namespace)
        if namespace and conn.principal not in [str(p) for p in namespace[0]["controllers"]]:
            fail(f"namespace {m.namespace} belongs to someone else", "ask one of its controllers to add you")
        if not namespace:
            from prometheus_cli.tokens import principal_of_conn

            quota = registry.upload_quota(principal_of_conn(conn))
            if quota["incomplete"] >= quota["max_incomplete"]:
                fail(f"you have {quota['incomplete']} incomplete uploads, the registry's limit per principal: "
                     f"namespace {m.namespace} was not created",
                     "finish them with `prometheus submit` from their apps, or wait a day for them to expire")
            budget = _upload_budget(registry)  # what all uploads may hold: principals are free, so it is global
            if budget is not None and (
                    budget["incomplete_bytes"] + len(wasm) > budget["max_incomplete_bytes"]
                    or budget["stored_bytes"] + budget["incomplete_bytes"] + len(wasm) > budget["max_stored_bytes"]):
                fail(f"the registry's upload budget cannot take {len(wasm)} more bytes now "
                     f"({budget['incomplete_bytes']} of {budget['max_incomplete_bytes']} held by incomplete uploads, "
                     f"{budget['stored_bytes']} of {budget['max_stored_bytes']} stored): "
                     f"namespace {m.namespace} was not created",
                     "try again once uploads complete or expire (a day), or ask the registry's governance")
            try:
                registry.icrc118_create_canister_type({"namespace": m.namespace, "description": m.description})
            except RegistryError as exc:
                fail(f"cannot create namespace {m.namespace}: {errors.of(exc)}")
        chunks = [wasm[i : i + CHUNK] for i in range(0, len(wasm), CHUNK)]
        _upload(registry, m.namespace, digest, chunks, opts.as_json, created=not namespace)
        request_id, new_round, amends = _request(registry, m, digest)
        result: dict[str, Any] = {"wasm_id": digest.hex(), "namespace": m.namespace, "size": len(wasm),
                                  "chunks": len(chunks), "request_id": request_id, "new_round": new_round,
                                  "amends": amends, "namespace_created": not namespace}
        if bounty is not None:
            try:
                result["bounty_id"] = create_bounty(conn, digest.hex(), bounty, AUDIT, timeout_days, m.namespace)
            except UserError as exc:  # the submission itself stands: say what it produced and what to run next
                retry = f"prometheus bounty create {bounty} --namespace {m.namespace}"
                fail(f"submitted wasm {digest.hex()} to {m.namespace} (request #{request_id}), but the bounty "
                     f"was not created: {exc.message}",
                     (f"{exc.hint}; then " if exc.hint else "") + f"run `{retry}`", code=exits.PARTIAL,
                     details={**result, **exc.details, "submitted": True, "next": retry})
        emit(result, opts.as_json, lambda r: console().print(
            f"submitted [bold]{r['wasm_id']}[/] ({r['size']} bytes) to {r['namespace']}, request #{r['request_id']}"
            + ("" if r["new_round"] else " (unchanged)")
            + (f" (a new round after #{r['amends']})" if r["amends"] is not None else "")
            + (f", bounty #{r['bounty_id']}" if "bounty_id" in r else "")))


def _upload_budget(registry: Any) -> dict[str, int] | None:
    """The registry's global upload budget; None from a registry released before it had one (which refuses no
    upload for want of room)."""
    from prometheus_sdk.errors import CallRejectedError

    try:
        return registry.upload_budget()  # type: ignore[no-any-return]
    except CallRejectedError as exc:
        if exc.error_code == "IC0536" or "has no query method" in exc.reject_message:
            return None
        raise


def _build(m: manifests.Manifest, path: Path) -> None:
    """`submit --build`: the manifest's canister, its packages and toolchain, into wasm_path."""
    from prometheus_cli.build import build_manifest

    build_manifest(m, path, out=path.parent / m.wasm_path)


def _check_request_fields(m: manifests.Manifest) -> None:
    """The registry's limits on what `submit` stores (Limits.mo), checked before the namespace is created."""
    if len(m.description.encode()) > 1024:
        fail("description is longer than 1024 bytes", "shorten it in prometheus.yml")
    if len(m.listing) > 30:
        fail(f"listing has {len(m.listing)} fields: at most 30", "keep the app-store fields that matter")
    for key, value in m.listing.items():
        if len(f"listing:{key}".encode()) > 64 or len(str(value).encode()) > 1024:
            fail(f"listing field {key!r} is too long", "keys up to 55 bytes, values up to 1024 bytes")


def _upload(registry: RegistryClient, namespace: str, digest: bytes, chunks: list[bytes], quiet: bool,
            created: bool = False) -> None:
    """Upload what the registry does not have yet; its `missing` list makes an interrupted upload resume.

    The registry cannot remove a namespace: everything it could refuse is checked before one is created, and
    if the first chunk is still refused right after creating it, the error says so (the namespace stays
    yours, empty, and the next `submit` reuses it)."""
    from rich.progress import Progress

    from prometheus_sdk.clients.mcp_registry import RegistryError

    def send(index: int) -> Any:
        chunk = chunks[index]
        try:
            return registry.icrc118_upload_wasm_chunk({
                "namespace": namespace, "wasm_hash": digest, "total_chunks": len(chunks), "chunk_index": index,
                "chunk": chunk, "chunk_hash": hashlib.sha256(chunk).digest()})
        except RegistryError as exc:
            err = errors.of(exc)
            hint = "the file changed while uploading, or it is not the wasm you meant" if "Hash" in err else None
            if created and index == 0:
                hint = (f"namespace {namespace} was created just before and holds nothing yet; fix the cause and "
                        "run `prometheus submit` again (it reuses the namespace)")
            fail(f"upload of chunk {index} refused: {err}", hint)

    with Progress(disable=quiet, transient=True) as progress:
        task = progress.add_task("uploading", total=len(chunks))
        state = send(0)
        progress.advance(task)
        for index in state["missing"]:
            state = send(index)
            progress.advance(task)
        if not state["complete"]:
            fail(f"upload incomplete, chunks {state['missing']} still missing", "run `prometheus submit` again")


def _request(registry: RegistryClient, m: manifests.Manifest, digest: bytes) -> tuple[int, bool, int | None]:
    """The verification request for the manifest's source in its namespace, whether this call opened it, and
    the round it follows (`amends`) when it did.

    The current round is kept when it has the same source and was not rejected (a retry changes nothing);
    otherwise the registry opens a new round: a correction after a rejection, or a replacement of a round
    nobody has filed on yet (its unclaimed bounties are refunded)."""
    from prometheus_sdk.clients.mcp_registry import RegistryError
    from prometheus_sdk.icrc16 import to_map

    found = registry.get_wasm_status(digest.hex(), [m.namespace])
    current = found[0]["request"][0] if found and found[0]["request"] else None
    if (current is not None and current["repo"] == m.repo_url and current["commit_hash"] == m.commit
            and _outcome(found[0]["outcome"]) != "Rejected"):
        return int(current["id"]), False, None
    metadata = to_map({"name": m.name, "description": m.description, **{f"listing:{k}": str(v)
                                                                         for k, v in m.listing.items()}})
    try:
        request_id = registry.icrc126_verification_request({"wasm_hash": digest, "repo": m.repo_url,
                                                            "commit_hash": m.commit, "metadata": metadata,
                                                            "namespace": [m.namespace]})
    except RegistryError as exc:
        _request_refused(str(exc.kind), exc.detail, m, digest.hex(), current)
    if current is not None and request_id == int(current["id"]):
        return request_id, False, None
    return request_id, True, None if current is None else int(current["id"])


def _request_refused(name: str, payload: Any, m: manifests.Manifest, wasm_id: str,
                     current: Any) -> NoReturn:
    wasm = f"wasm {wasm_id[:16]}…"
    if name == "AlreadyFinalized":
        source = f"{current['repo']} @ {current['commit_hash']}" if current else "another source"
        fail(f"{wasm} is already verified in {m.namespace} from {source}: a verified round is final",
             "publish it with `prometheus publish VERSION`; another source needs a rebuilt wasm")
    if name == "RoundInProgress":
        fail(f"the current verification round of {wasm} cannot be replaced: {payload}",
             "wait for its outcome with `prometheus status --watch`; after a rejection, `prometheus submit` "
             "opens a new round")
    if name == "QuotaExceeded":
        fail(f"verification request refused: {payload}", "a rebuilt wasm (any source change) starts afresh")
    if name == "WasmIncomplete":
        fail(f"the upload of {wasm} is incomplete (chunks {', '.join(map(str, payload['missing']))} missing)",
             "run `prometheus submit` again to resume it")
    if name == "NotAuthorized":
        fail(f"you do not control namespace {m.namespace}", "ask one of its controllers to add you")
    fail(f"verification request refused: {errors.describe(name, payload)}")


def check_bounty(conn: Any, amount: int, timeout_days: int, balance: bool = True) -> None:
    """What the registry and the ledger would refuse about a bounty, whatever the wasm: checked first, so
    `submit --bounty` refuses before uploading anything."""
    from prometheus_sdk.principal import Principal

    if amount <= 0:
        fail("the bounty amount must be positive")
    if not 1 <= timeout_days <= MAX_TIMEOUT_DAYS:
        fail(f"invalid bounty timeout of {timeout_days} days", f"a bounty runs 1 to {MAX_TIMEOUT_DAYS} days")
    minimum = int(client(conn, "mcp_registry").get_policy()["min_bounty_reward"])
    if amount < minimum:
        fail(f"a reward of {amount} is below the registry's minimum of {minimum}", f"offer at least {minimum}")
    if balance:
        ledger = client(conn, "ledger")
        fee = ledger.icrc1_fee()
        have = ledger.icrc1_balance_of({"owner": Principal.from_text(conn.principal), "subaccount": []})
        if have < amount + 3 * fee:
            fail(f"balance {have} is too low for a bounty of {amount}",
                 f"it needs amount + 3 × fee ({3 * fee}); on a local network: `prometheus localnet fund "
                 f"{conn.principal} {amount + 3 * fee}`")


def create_bounty(conn: Any, wasm_id: str, amount: int, audit_type: str, timeout_days: int,
                  namespace: str | None = None) -> int:
    """Approve the registry for reward + 2 fees, then create the bounty (the registry escrows reward + fee)
    on the current verification round of the wasm in `namespace` (needed when several namespaces hold it)."""
    from prometheus_sdk.clients.ledger import LedgerError
    from prometheus_sdk.clients.mcp_registry import RegistryError
    from prometheus_sdk.icrc16 import to_icrc16, to_map
    from prometheus_sdk.principal import Principal

    check_bounty(conn, amount, timeout_days, balance=False)
    ledger, registry = client(conn, "ledger"), client(conn, "mcp_registry")
    # Refuse before the approval (which costs a fee) what the registry would refuse. Without a namespace only
    # "no namespace holds it" is certain: the registry may pick another namespace than get_wasm_status.
    found = registry.get_wasm_status(wasm_id, [namespace] if namespace else [])
    if not found or (namespace is not None and not found[0]["request"]):
        _bounty_refused("RequestNotFound", None, wasm_id, namespace)
    if namespace is not None and (found[0]["outcome"] or any(a["audit_type"] == audit_type and a["outcome"]
                                                             for a in found[0]["audits"])):
        _bounty_refused("AlreadyFinalized", None, wasm_id, namespace)
    fee = ledger.icrc1_fee()
    me = {"owner": Principal.from_text(conn.principal), "subaccount": []}
    balance = ledger.icrc1_balance_of(me)
    if balance < amount + 3 * fee:
        fail(f"balance {balance} is too low for a bounty of {amount}", f"it needs amount + 3 × fee ({3 * fee})")
    spender = {"owner": Principal.from_text(registry.canister_id), "subaccount": []}
    try:
        ledger.icrc2_approve({"from_subaccount": [], "spender": spender, "amount": amount + 2 * fee,
                              "expected_allowance": [], "expires_at": [], "fee": [], "memo": [],
                              "created_at_time": []})
    except LedgerError as exc:
        fail(f"the ledger refused the approval: {errors.of(exc)}")
    now_ns = time.time_ns()
    challenge: dict[str, Any] = {"wasm_hash": bytes.fromhex(wasm_id), "audit_type": audit_type}
    if namespace is not None:
        challenge["namespace"] = namespace
    try:
        return registry.icrc127_create_bounty({
            "challenge_parameters": to_icrc16(challenge),
            "bounty_metadata": to_map({"icrc127:reward_canister": Principal.from_text(ledger.canister_id),
                                       "icrc127:reward_amount": amount}),
            "timeout_date": now_ns + timeout_days * 86_400 * 10**9})
    except RegistryError as exc:
        _bounty_refused(str(exc.kind), exc.detail, wasm_id, namespace)


def _bounty_refused(name: str, payload: Any, wasm_id: str, namespace: str | None) -> NoReturn:
    wasm = f"wasm {wasm_id[:16]}…" + (f" in {namespace}" if namespace else "")
    if name == "LedgerOutcomeUnknown":
        bounty_id = payload["bounty_id"]
        fail(f"bounty #{bounty_id} is recorded, but the ledger's answer to its escrow transfer was lost: its "
             "funding is not confirmed yet",
             f"run `prometheus bounty settle {bounty_id}` to retry the transfer safely (it never executes twice)",
             details={"bounty_id": bounty_id, "state": "Funding"})
    if name == "RequestNotFound":
        fail(f"no verification request for {wasm}", "run `prometheus submit` first")
    if name == "AlreadyFinalized":
        fail(f"the current verification round of {wasm} is already decided",
             "see `prometheus status`; after a rejection, `prometheus submit` opens a new round to fund")
    if name == "Ambiguous":
        fail(f"bounty refused: {payload}", "name the namespace with --namespace")
    if name == "QuotaExceeded":
        fail(f"bounty refused: {payload}", "wait until some of this round's bounties are settled")
    if name == "TransferFailed":
        fail(f"the ledger refused the escrow transfer: {payload}", "check your balance and allowance")
    if name == "LedgerNotAllowed":
        fail("the registry does not take rewards on this ledger")
    fail(f"bounty refused: {errors.describe(name, payload)}")


def wasm_id_arg(wasm_hash: str | None, path: Path) -> str:
    """A wasm hash given on the command line, or the sha256 of the manifest's wasm."""
    return target(wasm_hash, None, path)[0]


def target(wasm_hash: str | None, namespace: str | None, path: Path) -> tuple[str, str | None]:
    """(wasm id, namespace) a command is about: the hash given, else the manifest's wasm; the namespace given,
    else the manifest's when the manifest describes that wasm, else None (the registry picks the only one)."""
    if namespace is not None:
        manifests.validate_namespace(namespace)
    if not wasm_hash:
        m = manifests.load(path)
        return hashlib.sha256(manifests.wasm_file(m, path).read_bytes()).hexdigest(), namespace or m.namespace
    value = wasm_hash.lower().removeprefix("0x")
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        fail(f"invalid wasm hash {wasm_hash!r}", "a sha256 in hex: 64 characters")
    if namespace is None and path.is_file():
        try:
            m = manifests.load(path)
            if hashlib.sha256(manifests.wasm_file(m, path).read_bytes()).hexdigest() == value:
                namespace = m.namespace
        except UserError:
            pass  # a manifest about something else (or broken) says nothing about this wasm
    return value, namespace


def status(
    ctx: typer.Context,
    wasm_hash: str | None = typer.Argument(None, help="sha256 of the wasm (default: the manifest's wasm)."),
    namespace: str | None = typer.Option(None, "--namespace", help="The namespace holding the wasm (default: the "
                                                                   "manifest's, when it describes this wasm)."),
    watch: bool = typer.Option(False, "--watch", help="Refresh until the outcome is final."),
    canister: str | None = typer.Option(None, "--canister", help="Also check that this deployed canister runs "
                                                                 "the wasm (certified module hash)."),
    interval: float = typer.Option(2.0, "--interval", help="Seconds between refreshes with --watch."),
    path: Path = ManifestPath,
) -> None:
    """Show every verification round of a wasm (earlier rejected ones too) and, for the current one, audits,
    attestations and divergences, bounties and the outcome.

    Exit code: 0 verified, 3 pending, 4 rejected, 5 the --canister runs another wasm (1 on errors).
    Example: prometheus status --watch
    """
    opts = _opts(ctx)
    with user_errors(opts.as_json):
        conn = connection(opts)
        from_canister = bool(canister and wasm_hash is None and not path.exists())
        if from_canister:  # no manifest: the wasm the canister runs
            wasm_hash = _module_hash(conn, str(canister)) or fail(f"canister {canister} is empty (no module installed)")
        wasm_id, ns = target(wasm_hash, namespace, path)
        registry = client(conn, "mcp_registry")
        while True:
            found = registry.get_wasm_status(wasm_id, [ns] if ns else [])
            if not found and from_canister:
                fail(f"canister {canister} runs a module the registry does not know ({wasm_id}): unverified",
                     "deploy verified versions with `prometheus deploy NAMESPACE`", code=exits.MISMATCH)
            if not found:
                _not_found(registry, wasm_id, ns)
            st = found[0]
            if not watch or st["outcome"] or opts.as_json:
                break
            _render_status(st)
            time.sleep(interval)
        st = {**st, "signatures": _signatures(registry, wasm_id, st["namespace"])}
        data = _status_json(st)
        if canister:
            data["live"] = _live(conn, registry, canister, wasm_id)
        emit(data, opts.as_json, lambda d: _render_status(st, d.get("live")))
    code = exits.for_status(data["outcome"], data["live"]["matches"] if canister else None)
    if code:
        raise typer.Exit(code)


def _not_found(registry: Any, wasm_id: str, ns: str | None) -> NoReturn:
    """Say whether the namespace is the problem (a typo) or the wasm, and where the wasm is if elsewhere."""
    if ns and not registry.icrc118_get_canister_type(ns):
        elsewhere = registry.get_wasm_status(wasm_id, [])
        fail(f"namespace {ns} does not exist", f"the wasm is in {elsewhere[0]['namespace']}: pass --namespace "
             f"{elsewhere[0]['namespace']}" if elsewhere else "check the spelling (prometheus.yml or --namespace)")
    if ns and (elsewhere := registry.get_wasm_status(wasm_id, [])):
        fail(f"namespace {ns} holds no wasm {wasm_id}", f"it is in {elsewhere[0]['namespace']}: pass --namespace "
             f"{elsewhere[0]['namespace']}")
    fail(f"the registry knows no wasm {wasm_id}" + (f" in {ns}" if ns else ""), "submit it with `prometheus submit`")


def _module_hash(conn: Any, canister: str) -> str | None:
    """The canister's certified module hash (hex), None for an empty canister."""
    from prometheus_sdk.principal import InvalidPrincipal, Principal

    try:
        Principal.from_text(canister)
    except InvalidPrincipal:
        fail(f"invalid canister id {canister!r}", "pass the canister's principal, e.g. "
             "--canister rrkah-fqaaa-aaaaa-aaaaq-cai (`prometheus localnet status` lists local ones)")
    module_hash = conn.module_hash(canister)
    return module_hash.hex() if module_hash else None


def _live(conn: Any, registry: Any, canister: str, wasm_id: str) -> dict[str, Any]:
    """Whether the canister runs `wasm_id`, and what the registry says of the module it does run: its
    namespace, outcome, published versions and attestations (`runs`: None when the registry does not know it)."""
    module_hash = _module_hash(conn, canister)
    runs = None
    if module_hash is not None and (found := registry.get_wasm_status(module_hash, [])):
        st = found[0]
        runs = {"namespace": st["namespace"], "outcome": _outcome(st["outcome"]),
                "versions": [".".join(map(str, v["version"])) for v in st["versions"]],
                "attestations": sum(a["attestations"] for a in st["audits"])}
    return {"canister": canister, "module_hash": module_hash, "matches": module_hash == wasm_id, "runs": runs}


def _outcome(value: list[Any]) -> str:
    return next(iter(value[0])) if value else "pending"


def bounty_state(state: dict[str, Any]) -> dict[str, Any]:
    """A BountyState as flat JSON fields: `state` (Funding, Open, Reserved, Claimed, Paying, Paid, Refunding,
    Refunded, Cancelled) and, when the state carries them, `claimant`, `reserved_until` and `ledger_block`."""
    ((name, payload),) = state.items()
    out: dict[str, Any] = {"state": name}
    if isinstance(payload, dict):
        if "claimant" in payload:
            out["claimant"] = str(payload["claimant"])
        if "until" in payload:
            out["reserved_until"] = payload["until"]
        if "block" in payload:
            out["ledger_block"] = payload["block"]
    return out


def state_text(row: dict[str, Any]) -> str:
    """`Reserved by <principal> until <time>`, `Paid to <principal>`, `Open`, ... for tables."""
    text = str(row["state"])
    if "claimant" in row:
        text += f" {'to' if row['state'] in ('Paying', 'Paid') else 'by'} {row['claimant']}"
    if "reserved_until" in row:
        text += f" until {errors.when(row['reserved_until'])}"
        if row["reserved_until"] <= time.time_ns():
            text += " (expired unused: open to other verifiers)"
    return text


def _audits(audits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"audit_type": a["audit_type"], "attestations": a["attestations"], "divergences": a["divergences"],
             "outcome": _outcome(a["outcome"])} for a in audits]


def _request_json(r: dict[str, Any]) -> dict[str, Any]:
    return {"request_id": r["id"], "repo": r["repo"], "commit": r["commit_hash"], "requested_at": r["timestamp"],
            "amends": r["amends"][0] if r["amends"] else None}


def _signatures(registry: Any, wasm_id: str, namespace: str) -> dict[int, str]:
    """Each signed filing (by its index): `valid`, or why its statement does not verify -- checked here, from
    the envelope, the key and the statement, not taken from the registry."""
    from prometheus_sdk.provenance.filings import signature_state

    found = registry.get_provenance(bytes.fromhex(wasm_id), [namespace])
    return {int(f["index"]): signature_state(f["statement"][0], wasm_id, f["attested"], f["verifier"])[0]
            for f in (found[0]["filings"] if found else []) if f["statement"]}


def _status_json(st: dict[str, Any]) -> dict[str, Any]:
    current = st["request"][0]["id"] if st["request"] else None
    return {
        "wasm_id": st["wasm_id"], "namespace": st["namespace"], "outcome": _outcome(st["outcome"]),
        "request": _request_json(st["request"][0]) if st["request"] else None,
        "audits": _audits(st["audits"]),
        "filings": [{"verifier": str(f["verifier"]), "attested": f["attested"], "bounty_id": f["bounty_id"],
                     "request_id": f["request_id"], "report": f["report"][0] if f["report"] else None,
                     "timestamp": f["timestamp"], "signature": st.get("signatures", {}).get(f["index"], "unsigned")}
                    for f in st["filings"]],
        "bounties": [{"bounty_id": b["bounty_id"], "audit_type": b["audit_type"], "reward": b["reward_amount"],
                      **bounty_state(b["state"])} for b in st["bounties"]],
        "rounds": [{**_request_json(r["request"]), "outcome": _outcome(r["outcome"]), "audits": _audits(r["audits"]),
                    "current": r["request"]["id"] == current} for r in st["rounds"]],
        "versions": [".".join(map(str, v["version"])) for v in st["versions"]],
    }


def _render_status(st: dict[str, Any], live: dict[str, Any] | None = None) -> None:
    from rich.markup import escape

    data = _status_json(st)
    c = console()
    c.print(f"[bold]{data['wasm_id']}[/] in {data['namespace']}: [bold]{data['outcome']}[/]")
    if len(data["rounds"]) > 1:
        rounds = table("round", "repository", "commit", "outcome", "audits", full=("repository", "commit"))
        for r in data["rounds"]:
            rounds.add_row(f"#{r['request_id']}" + (" (current)" if r["current"] else ""),
                           r["repo"], r["commit"], r["outcome"],
                           "; ".join(f"{a['audit_type']}: {a['attestations']} attested, {a['divergences']} diverged"
                                     for a in r["audits"]) or "no filings")
        c.print(rounds)
    if data["request"]:
        c.print(f"round #{data['request']['request_id']}: source {data['request']['repo']} @ "
                f"{data['request']['commit']}")
    audits = table("audit type", "attestations", "divergences", "outcome")
    for a in data["audits"]:
        audits.add_row(a["audit_type"], str(a["attestations"]), str(a["divergences"]), a["outcome"])
    c.print(audits)
    if data["filings"]:
        filings = table("verifier", "filing", "bounty", "signed statement", "report", full=("verifier",))
        for f in data["filings"]:
            filings.add_row(f["verifier"], "attestation" if f["attested"] else "divergence", str(f["bounty_id"]),
                            escape(f["signature"]), escape(f["report"] or ""))  # a verifier's text: never markup
        c.print(filings)
    if data["bounties"]:
        bounties = table("bounty", "audit type", "reward", "state", full=("state",))
        for b in data["bounties"]:
            bounties.add_row(str(b["bounty_id"]), b["audit_type"], str(b["reward"]), state_text(b))
        c.print(bounties)
    if data["versions"]:
        c.print(f"published as {', '.join(data['versions'])}")
    if live is not None:
        if live["matches"]:
            c.print(f"canister {live['canister']} runs this wasm (certified module hash)")
        else:
            c.print(f"[bold red]canister {live['canister']} does not run this wasm[/]: module hash "
                    f"{live['module_hash'] or 'none (empty canister)'}")
        runs = live["runs"]
        if runs is not None and not live["matches"]:
            published = f" {', '.join(runs['versions'])}" if runs["versions"] else " (unpublished)"
            c.print(f"it runs {runs['namespace']}{published}: {runs['outcome']}, {runs['attestations']} "
                    "attestation(s)", soft_wrap=True)
        elif runs is None and live["module_hash"]:
            c.print("[bold red]the registry does not know the module it runs: unverified[/]")


def _semver(text: str) -> tuple[int, int, int]:
    parts = text.removeprefix("v").split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        fail(f"invalid version {text!r}", "use MAJOR.MINOR.PATCH, e.g. 1.0.0")
    return int(parts[0]), int(parts[1]), int(parts[2])


def publish(
    ctx: typer.Context,
    version: str = typer.Argument(..., help="Semantic version, e.g. 1.0.0."),
    previous: str | None = typer.Option(None, "--previous", metavar="VERSION",
                                        help="A lower published version this one must be installed over (ICRC-118 "
                                             "upgrade path): the orchestrator upgrades through it."),
    path: Path = ManifestPath,
) -> None:
    """Link the manifest's verified wasm to a version of its namespace (refused if unverified or rejected).

    Example: prometheus publish 1.1.0 --previous 1.0.0
    """
    opts = _opts(ctx)
    with user_errors(opts.as_json):
        parts = _semver(version)
        version = ".".join(map(str, parts))  # as the registry stores it: v1.03.0 is 1.3.0
        m = manifests.load(path)
        digest = hashlib.sha256(manifests.wasm_file(m, path).read_bytes()).digest()
        registry = client(connection(opts), "mcp_registry")
        from prometheus_sdk.clients.mcp_registry import RegistryError

        previous_hash: list[bytes] = []
        if previous is not None:
            wanted = _semver(previous)
            found = [v for v in registry.icrc118_get_wasms(m.namespace) if tuple(v["version"]) == wanted]
            if not found:
                fail(f"version {'.'.join(map(str, wanted))} is not published in {m.namespace}",
                     "--previous names a published version; see `prometheus instances` or the registry")
            previous_hash = [bytes.fromhex(found[0]["wasm_id"])]
        try:
            block, err = registry.icrc118_update_wasm({"namespace": m.namespace, "wasm_hash": digest,
                                                       "version": dict(enumerate(parts)),
                                                       "previous": previous_hash}), None
        except RegistryError as exc:
            block, err = None, str(exc.kind)
        hints = {"NotVerified": ("is not verified yet", "follow it with `prometheus status --watch`"),
                 "WasmRejected": ("was rejected by its verifiers", "see `prometheus status` for the divergences"),
                 "VersionExists": (f"cannot take version {version}: it is already published", "use a new version"),
                 "WasmNotFound": ("was never submitted to this namespace", "run `prometheus submit` first"),
                 "NotAuthorized": ("cannot be published by you", "only the namespace's controllers publish"),
                 "InvalidArgument": ("cannot name that --previous", "name a lower published version")}
        if err:
            what, hint = hints.get(err, (f"was refused ({err})", None))
            fail(f"wasm {digest.hex()[:16]}… {what}", hint)
        emit({"namespace": m.namespace, "version": version, "wasm_id": digest.hex(), "block": block,
              "previous": previous_hash[0].hex() if previous_hash else None},
             opts.as_json, lambda r: console().print(f"published {r['namespace']} {r['version']} ({r['wasm_id']})"))


def verify(
    ctx: typer.Context,
    wasm_hash: str | None = typer.Option(None, "--hash", help="Expected sha256 (default: the manifest's wasm; "
                                                              "with --offline, when there is a manifest)."),
    sandboxed: bool = typer.Option(True, "--sandbox/--no-sandbox",
                                   help="Rebuild in the verifiers' builder image (Docker, no network) or, with "
                                        "--no-sandbox, with the toolchain on this machine."),
    worktree: bool = typer.Option(False, "--worktree", help="Rebuild the working tree as it is, not the "
                                                            "manifest's commit (what verifiers will NOT see)."),
    offline: Path | None = typer.Option(None, "--offline", metavar="BUNDLE",
                                        help="Instead of rebuilding: check a provenance bundle (`prometheus "
                                             "attestation export`) with no network call."),
    wasm_file: Path | None = typer.Option(None, "--wasm", help="--offline: the local wasm the bundle must be about."),
    threshold: int = typer.Option(1, "--threshold", help="--offline: distinct trusted verifiers that must attest."),
    trusted: Path | None = typer.Option(None, "--trusted-verifiers",
                                        help="--offline: a file of verifier principals (JSON list or one per "
                                             "line) whose verdicts count (default: every signer)."),
    root_key: Path | None = typer.Option(None, "--root-key",
                                         help="--offline: the IC root key (DER or raw, or their hex; default: "
                                              "mainnet's). `prometheus localnet root-key` prints the local one."),
    max_age: int | None = typer.Option(None, "--max-age", help="--offline: the certificate's maximum age, seconds."),
    registry: str | None = typer.Option(None, "--registry", metavar="CANISTER_ID",
                                        help="--offline: the registry the bundle must come from (default: the "
                                             "network's, from canister_ids.json or the localnet record)."),
    path: Path = ManifestPath,
) -> None:
    """Rebuild exactly what verifiers will — the manifest's commit, from the local git repository — and compare
    sha256 before submitting; or, with --offline BUNDLE, check signed verdicts offline.

    Warns when the working tree differs from that commit or the commit is on no remote branch. By default
    the rebuild runs in the locked-down builder image the verifier worker uses (Docker via $DOCKER_HOST).
    Exit code: 0 matches, 5 differs, 1 on errors. With --offline: 0 verified, 3 too few trusted verifiers,
    4 a trusted verifier diverged, 7 tampered. Examples: prometheus verify;
    prometheus verify --offline bundle.json --wasm app.wasm --threshold 2
    """
    import tempfile

    opts = _opts(ctx)
    if offline is not None:
        from prometheus_cli.attestations import verify_offline

        verify_offline(opts, offline, wasm_file, wasm_hash, threshold, trusted, root_key, max_age, registry, path)
        return
    with user_errors(opts.as_json):
        m = manifests.load(path)
        expected = wasm_id_arg(wasm_hash, path)
        with tempfile.TemporaryDirectory(prefix="prometheus-verify-") as tmp:
            source, main, notes = _verify_source(m, path, worktree, Path(tmp) / "src")
            for note in notes:
                if not opts.as_json:
                    print(f"warning: {note}", file=sys.stderr)
            rebuilt, where = _rebuild(sandboxed, source, main, Path(tmp) / "build")
        matches = rebuilt == expected
        verdict = "[bold green]matches[/]" if matches else f"[bold red]differs[/] from {expected}"
        built_from = "working tree" if worktree else m.commit
        emit({"expected": expected, "rebuilt": rebuilt, "matches": matches, "built_in": where,
              "built_from": built_from, "warnings": notes}, opts.as_json,
             lambda r: console().print(f"rebuilt {r['rebuilt']} from {built_from} ({r['built_in']}): {verdict}"))
    if not matches:
        raise typer.Exit(exits.MISMATCH)


def _verify_source(m: manifests.Manifest, path: Path, worktree: bool, dest: Path) -> tuple[Path, str, list[str]]:
    """(source folder, entry point, warnings): the commit exported as a verifier gets it, with the entry point
    from the committed prometheus.yml (as the worker reads it); or, with --worktree, the local source_dir."""
    if worktree:
        source = (path.parent / m.source_dir).resolve()
        if not (source / m.main).is_file():
            fail(f"{source / m.main} does not exist", "set source_dir and main in prometheus.yml")
        return source, m.main, ["--worktree: rebuilt the working tree, which verifiers never see"]
    from prometheus_build.project import entry_point
    from prometheus_cli import gitsource

    checkout = gitsource.export(path.parent.resolve(), m.commit, dest, scope=(path.parent / m.source_dir),
                                ignore=(path, path.parent / m.wasm_path))
    try:
        source_dir, main = entry_point(checkout.root)
    except ValueError as exc:
        fail(f"at commit {m.commit}: {exc}", "commit prometheus.yml (source_dir, main) and the sources, then "
             "update `commit`")
    return checkout.root / source_dir, main, checkout.warnings


def _rebuild(sandboxed: bool, source: Path, main: str, tmp: Path) -> tuple[str, str]:
    tmp.mkdir(parents=True, exist_ok=True)
    return (_rebuild_sandboxed if sandboxed else _rebuild_on_host)(source, main, tmp)


def _rebuild_on_host(source: Path, main: str, tmp: Path) -> tuple[str, str]:
    """The checkout holding `source` (its prometheus.yml: canister, toolchain, packages) built on this machine."""
    from prometheus_cli.build import HostFetcher, build_on_host, find_root, plan_tree

    root, data = find_root(source, main)
    plan = plan_tree(root, data, HostFetcher())
    return build_on_host(plan, tmp, "rebuilt", lambda _line: None, tmp / "cache").sha256, "host toolchain"


def _rebuild_sandboxed(source: Path, main: str, tmp: Path) -> tuple[str, str]:
    """The same, in the verifiers' builder image for the app's toolchain (Docker via $DOCKER_HOST)."""
    from prometheus_cli.build import HostFetcher, build_in_sandbox, find_root, plan_tree

    root, data = find_root(source, main)
    fetcher = HostFetcher()
    plan = plan_tree(root, data, fetcher)
    sha, tag, _did = build_in_sandbox(plan, fetcher, tmp, lambda _line: None)
    return sha, tag
