"""`prometheus attestation export`: a wasm's signed verdicts with the proof the registry holds them, as a bundle
that `prometheus verify --offline` checks with only the IC root key (docs/provenance.md)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import typer

from prometheus_cli import exits
from prometheus_cli.context import Options, client, connection
from prometheus_cli.developer import ManifestPath, target
from prometheus_cli.output import console, emit, fail, user_errors

app = typer.Typer(help="Signed provenance: export a wasm's signed verdicts as an offline-verifiable bundle.",
                  no_args_is_help=True)


def _opts(ctx: typer.Context) -> Options:
    return ctx.obj if isinstance(ctx.obj, Options) else Options()


def _plain(text: str | None) -> str:
    """Text from a bundle (a verifier's reason, a problem quoting input) on one line, without control characters."""
    return "".join(ch if ch.isprintable() else " " for ch in str(text or ""))[:500]


def _wasm_id(text: str) -> str:
    wasm = text.lower().removeprefix("sha256:")
    if len(wasm) != 64 or any(c not in "0123456789abcdef" for c in wasm):
        fail(f"invalid wasm hash {text!r}", "a sha256 in hex: 64 digits")
    return wasm


@app.command()
def export(
    ctx: typer.Context,
    wasm_hash: str | None = typer.Argument(None, help="The wasm's sha256 (hex; default: the manifest's wasm)."),
    out: Path | None = typer.Option(None, "-o", "--output",
                                    help="Where to write the bundle (default: <first 16 hex digits>.provenance.json)."),
    namespace: str | None = typer.Option(None, "--namespace",
                                         help="The namespace whose rounds to export (default: the manifest's when it "
                                              "describes this wasm, else the only one with filings)."),
    path: Path = ManifestPath,
) -> None:
    """Write the wasm's signed verdicts, their keys, the registry's records and a certificate with a witness
    that they are on chain, to one file. Example: prometheus attestation export -o bundle.json"""
    from prometheus_sdk.provenance import bundles

    opts = _opts(ctx)
    with user_errors(opts.as_json):
        wasm, ns = target(wasm_hash, namespace, path)
        out = out or Path(f"{wasm[:16]}.provenance.json")
        conn = connection(opts)
        registry = client(conn, "mcp_registry")
        found = registry.get_provenance(bytes.fromhex(wasm), [ns] if ns else [])
        answer = found[0] if found else None
        if answer is None:
            fail(f"the registry holds no filing on wasm {wasm[:16]}…" + (f" in {ns}" if ns else ""),
                 "verifiers file on a round once they rebuilt it (`prometheus status`); with filings in several "
                 "namespaces, name one with --namespace")
        data = bundles.export(answer, str(registry.canister_id), wasm)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, out)
        signed = sum(1 for f in answer["filings"] if f["statement"])
        result: dict[str, Any] = {"wasm": wasm, "namespace": answer["namespace"], "bundle": str(out),
                                  "bytes": len(data), "filings": len(answer["filings"]), "signed": signed}
        emit(result, opts.as_json, lambda r: console().print(
            f"wrote {r['bundle']} ({r['bytes']} bytes: {r['filings']} filing(s) in {r['namespace']}, {r['signed']} "
            f"signed); check it with `prometheus verify --offline {r['bundle']}`"))


def verify_offline(opts: Options, bundle: Path, wasm_file: Path | None, wasm_hash: str | None, threshold: int,
                   trusted_file: Path | None, root_key_file: Path | None, max_age_s: int | None,
                   registry_id: str | None, path: Path) -> None:
    """`prometheus verify --offline`: no network call; exits 0 verified, 3 insufficient, 4 divergent, 7 tampered.
    The wasm to compare with: --wasm, --hash, else the manifest's when there is one (else none: said so)."""
    import hashlib
    import json

    from prometheus_cli import manifest as manifests
    from prometheus_sdk import canister_ids, localnet
    from prometheus_sdk.certificates import MAINNET_ROOT_KEY
    from prometheus_sdk.principal import Principal
    from prometheus_sdk.provenance import bundles

    as_json = opts.as_json
    with user_errors(as_json):
        if wasm_file is not None and wasm_hash is not None:
            fail("give --wasm or --hash, not both")
        if threshold < 1:
            fail("--threshold is at least 1")
        network = opts.network or os.environ.get("PROMETHEUS_NETWORK", "local")
        pinned_by = "--registry"
        if registry_id is None:
            # Trusted sources only: the environment, or your localnet's record (a file in your data directory,
            # read whether or not the replica runs); never a canister_ids.json found in the working tree, which
            # whoever wrote the project controls.
            variable = canister_ids.env_name("mcp_registry")
            recorded = localnet.deployed_ids().get("mcp_registry") if network == "local" else None
            registry_id, pinned_by = ((os.environ[variable], variable) if os.environ.get(variable)
                                      else (recorded, "the localnet record") if recorded else (None, ""))
            if registry_id is None:
                fail("which registry must the bundle come from?",
                     f"pass --registry CANISTER_ID (or set {variable}); an id from a project's canister_ids.json "
                     "is not taken on trust")
        try:
            Principal.from_text(registry_id)
            with bundle.open("rb") as f:
                data = f.read(bundles.MAX_BUNDLE_BYTES + 1)
            root = bundles.root_key_from(root_key_file.read_bytes()) if root_key_file else MAINNET_ROOT_KEY
            if wasm_file is None and wasm_hash is None and path.is_file():
                wasm_file = manifests.wasm_file(manifests.load(path), path)
            wasm = (hashlib.sha256(wasm_file.read_bytes()).hexdigest() if wasm_file
                    else _wasm_id(wasm_hash) if wasm_hash else None)
            trusted = None
            if trusted_file is not None:
                text = trusted_file.read_text()
                names = json.loads(text) if text.lstrip().startswith("[") else text.split()
                trusted = {str(Principal.from_text(str(n))) for n in names}
        except (OSError, ValueError) as exc:
            fail(str(exc))
        report = bundles.verify(data, root, registry_id, wasm=wasm, threshold=threshold, trusted=trusted,
                                max_age_ns=max_age_s * 10**9 if max_age_s is not None else None)
        result = report.to_json()
        result["compared_with_local_wasm"] = wasm is not None
        result["registry_from"] = pinned_by

        def render(r: dict[str, Any]) -> None:
            c = console()
            colour = {"verified": "green", "insufficient": "yellow", "divergent": "red", "tampered": "red"}
            c.print(f"[bold {colour[r['status']]}]{r['status']}[/]", end="")
            c.print(f": {_plain(r['problem'])}" if r["problem"] else "", markup=False, highlight=False)
            if r["wasm"]:
                age = max(0, time.time_ns() - r["certified_at_ns"]) // 10**9
                c.print(f"wasm {r['wasm']} in namespace {_plain(r['namespace'])}, registry {r['registry']} (from "
                        f"{r['registry_from']}), certified {age // 86400} d {age % 86400 // 3600} h ago (later "
                        "filings are not in it: export a fresh bundle, or --max-age)", markup=False)
                if not r["compared_with_local_wasm"]:
                    c.print("[yellow]not compared with a local wasm: pass --wasm FILE or --hash HEX[/]")
            for f in r["filings"]:
                mark = "signed" if f["signature_valid"] else "no valid signature"
                trust = "" if f["trusted"] else " (not trusted)"
                why = f": {_plain(f['reason'])}" if f["reason"] else ""
                c.print(f"  {f['verdict']:8} {f['verifier']}{trust} (round {f['request_id']}, {mark}){why}",
                        markup=False, highlight=False)
            if r["status"] in ("verified", "insufficient"):
                c.print(f"{len(r['agreeing'])} trusted verifier(s) agree (threshold {threshold})")

        emit(result, as_json, render)
    code = {bundles.Status.VERIFIED: exits.OK, bundles.Status.INSUFFICIENT: exits.PENDING,
            bundles.Status.DIVERGENT: exits.REJECTED, bundles.Status.TAMPERED: exits.TAMPERED}[report.status]
    if code:
        raise typer.Exit(code)
