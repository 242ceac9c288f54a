"""Listings in the MCP registry's `server.json` shape (as its generic `/v0/servers` API serves them), with the
on-chain evidence in `_meta`: registry clients read the usual fields, and anyone can check the claim.

A namespace maps to a server name by its last dot: `com.example.weather` <-> `com.example/weather` (the registry's
names are reverse-DNS, a slash, a name).
"""

from __future__ import annotations

from typing import Any

SCHEMA = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
META_KEY = "org.prometheus-protocol/verification"
REGISTRY_META_KEY = "io.modelcontextprotocol.registry/official"
MAX_DESCRIPTION = 100  # server.json's limit


def server_name(namespace: str) -> str:
    head, _, tail = namespace.rpartition(".")
    return f"{head}/{tail}" if head else namespace


def namespace_of(name: str) -> str:
    return name.replace("/", ".", 1) if "/" in name else name


def version_of(listing: dict[str, Any]) -> str:
    """The published version, else a pre-release naming the wasm (server.json requires a version)."""
    return str(listing["version"]) if listing.get("version") else f"0.0.0-wasm.{listing['wasm'][:12]}"


def verify_commands(registry: str, namespace: str, wasm: str) -> list[str]:
    """What to run to check the verdict without trusting this store (docs/provenance.md)."""
    return [f"prometheus attestation export {wasm} --namespace {namespace} -o {namespace}.bundle.json",
            f"prometheus verify --offline {namespace}.bundle.json --hash {wasm} --registry {registry}"]


def server_json(listing: dict[str, Any], registry: str, base_url: str = "") -> dict[str, Any]:
    namespace = listing["namespace"]
    description = listing["description"] or listing["name"]
    server: dict[str, Any] = {
        "$schema": SCHEMA, "name": server_name(namespace), "title": listing["name"],
        "description": description[:MAX_DESCRIPTION], "version": version_of(listing),
        "repository": {"url": listing["repo"], "source": "git"},
    }
    if listing.get("homepage"):
        server["websiteUrl"] = listing["homepage"]
    server["_meta"] = {META_KEY: {
        "tier": listing["tier"], "namespace": namespace, "wasm_sha256": listing["wasm"],
        "verifiers": listing["verifiers"], "commit": listing["commit_hash"], "registry": registry,
        "category": listing["category"], "tags": listing["tags"], "tools": listing["tools"],
        "credentials": listing["credentials"], "publisher": listing["publisher"],
        "evidence": f"{base_url}/wasm/{listing['wasm']}?namespace={namespace}" if base_url else None,
        "verify": verify_commands(registry, namespace, listing["wasm"]),
    }}
    return server


def registry_entry(listing: dict[str, Any], registry: str, base_url: str = "") -> dict[str, Any]:
    """One item of `/v0/servers`: the server and the registry's own metadata about it."""
    from datetime import UTC, datetime

    updated = datetime.fromtimestamp(listing["updated_ns"] / 1e9, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"server": server_json(listing, registry, base_url),
            "_meta": {REGISTRY_META_KEY: {"status": "active", "publishedAt": updated, "updatedAt": updated,
                                          "isLatest": True}}}
