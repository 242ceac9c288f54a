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
    if listing.get("homepage"):  # an http(s) URL (the index keeps no other)
        server["websiteUrl"] = listing["homepage"]
    server["_meta"] = {META_KEY: {
        "tier": listing["tier"], "namespace": namespace, "wasm_sha256": listing["wasm"],
        "verifiers": listing["verifiers"], "commit": listing["commit_hash"], "registry": registry,
        "category": listing["category"], "tags": listing["tags"], "tools": listing["tools"],
        "credentials": listing["credentials"], "publisher": listing["publisher"] or None,
        "requester": listing["requester"], "deprecated": listing.get("deprecated"),
        "evidence": f"{base_url}/wasm/{listing['wasm']}?namespace={namespace}" if base_url else None,
        "verify": verify_commands(registry, namespace, listing["wasm"]),
    }}
    return server


def rfc3339(ns: int) -> str:
    """A time in nanoseconds as RFC 3339 with microseconds (truncated: never later than the time itself)."""
    from datetime import UTC, datetime, timedelta

    seconds, rest = divmod(ns, 10**9)
    moment = datetime.fromtimestamp(seconds, tz=UTC) + timedelta(microseconds=rest // 1000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def registry_entry(listing: dict[str, Any], registry: str, base_url: str = "", is_latest: bool = True
                   ) -> dict[str, Any]:
    """One item of `/v0/servers`: the server and the registry's own metadata about it."""
    updated = rfc3339(listing["updated_ns"])
    return {"server": server_json(listing, registry, base_url),
            "_meta": {REGISTRY_META_KEY: {"status": "deprecated" if listing.get("deprecated") else "active",
                                          "publishedAt": updated, "updatedAt": updated, "isLatest": is_latest}}}


def version_listing(listing: dict[str, Any], version: dict[str, Any]) -> dict[str, Any]:
    """The listing as one published version shows it: that version's wasm, round and publication."""
    return {**listing, "version": version["version"], "wasm": version["wasm"], "tier": version["tier"],
            "verifiers": version["verifiers"], "repo": version["repo"] or listing["repo"],
            "commit_hash": version["commit_hash"], "updated_ns": version["published_ns"],
            "deprecated": version["deprecated"]}
