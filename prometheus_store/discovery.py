"""The MCP discovery server (official `mcp` SDK): agents search the verified tools, read an app's versions and
the evidence behind a verdict. Results are `server.json` entries with the verification in `_meta`
(`prometheus_store.servers`). `search_servers` with `verified_only` (the default) returns nothing below the
`verified` tier and nothing deprecated; a lookup by name (`get_server`, `list_versions`, `get_verification`, the
app resources) answers for that app whatever its tier, with the tier in `_meta`.

Transports: stdio (`prometheus store mcp`) and streamable HTTP (mounted at `/mcp` by `prometheus store serve`).
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.extension import Extension
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from prometheus_store.index import MAX_PAGE, Index
from prometheus_store.servers import namespace_of, server_json, verify_commands
from prometheus_store.tiers import Tier

INSTRUCTIONS = (
    "Find MCP servers whose wasm was rebuilt from source and verified on the Internet Computer. search_servers "
    "returns only verified servers unless verified_only is false; every result's _meta names its tier, wasm "
    "sha256 and the commands that check the verdict offline. get_server, list_versions and get_verification answer "
    "for any app or wasm named, whatever its tier: read the tier before trusting it.")
READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
TIERS = ", ".join(t.label for t in Tier)


def _tier(text: str | None) -> Tier | None:
    if not text:
        return None
    try:
        return Tier.parse(text)
    except ValueError as exc:
        raise ToolError(str(exc)) from None


def build(index: Index, base_url: str = "", attestation: Extension | None = None) -> MCPServer:
    """A discovery server over `index` (`base_url`: where the web view links evidence, if served); with
    `attestation` (prometheus_attest.config), agents present attestation tokens as its policy says."""
    server = MCPServer(name="prometheus-store", title="Prometheus verified MCP servers", version="1",
                       instructions=INSTRUCTIONS, log_level="WARNING",
                       extensions=[attestation] if attestation is not None else None)
    registry = index.registry

    @server.tool(annotations=READ_ONLY)
    def search_servers(
        query: Annotated[str, Field(description="Words to look for in names, descriptions, tools and tags.",
                                    max_length=200)] = "",
        verified_only: Annotated[bool, Field(description="Only servers whose build was verified.")] = True,
        min_tier: Annotated[str | None, Field(description=f"Lowest tier to return: one of {TIERS}.")] = None,
        category: Annotated[str | None, Field(description="Only this category.", max_length=64)] = None,
        no_credentials: Annotated[bool, Field(description="Only servers that declare they need no API keys "
                                                          "or other credentials.")] = False,
        limit: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 10,
    ) -> dict[str, Any]:
        """Search the verified MCP servers, best match first."""
        found = index.search(query, verified_only=verified_only, min_tier=_tier(min_tier), category=category,
                             no_credentials=no_credentials, limit=limit)
        return {"servers": [server_json(item, registry, base_url) for item in found], "count": len(found)}

    @server.tool(annotations=READ_ONLY)
    def get_server(namespace: Annotated[str, Field(description="The app's namespace (com.example.app) or "
                                                               "server name (com.example/app).", max_length=253)]
                   ) -> dict[str, Any]:
        """One server's listing, its tier and the evidence of its current wasm."""
        listing = index.listing(namespace_of(namespace))
        if listing is None:
            raise ToolError(f"no app {namespace!r} in the registry {registry}")
        return {"server": server_json(listing, registry, base_url),
                "verification": index.verification(listing["wasm"], listing["namespace"])[:1]}

    @server.tool(annotations=READ_ONLY)
    def list_versions(namespace: Annotated[str, Field(max_length=253)]) -> dict[str, Any]:
        """The published versions of an app, newest first, each with its wasm, tier and deprecation."""
        ns = namespace_of(namespace)
        if index.listing(ns) is None:
            raise ToolError(f"no app {namespace!r} in the registry {registry}")
        return {"namespace": ns, "versions": index.versions(ns)}

    @server.tool(annotations=READ_ONLY)
    def get_verification(wasm_hash: Annotated[str, Field(description="The wasm's sha256, 64 hex digits.",
                                                         pattern="^[0-9a-fA-F]{64}$")]) -> dict[str, Any]:
        """The verification rounds of a wasm (the 10 newest): outcomes, each verifier's filing (signature state,
        toolchain, divergence reasons), bounties, and the commands to check it offline."""
        wasm = wasm_hash.lower()
        rounds = index.verification(wasm)
        if not rounds:
            raise ToolError(f"no verification was requested for wasm {wasm}")
        return {"wasm_sha256": wasm, "registry": registry, "rounds": rounds,
                "verify": verify_commands(registry, rounds[0]["namespace"], wasm)}

    @server.resource("prometheus://apps/{namespace}", mime_type="application/json")
    def app(namespace: str) -> dict[str, Any]:
        """An app's listing with its versions and the verification of its current wasm."""
        listing = index.listing(namespace)
        if listing is None:
            raise ResourceNotFoundError(f"no app {namespace!r}")
        return {"server": server_json(listing, registry, base_url), "versions": index.versions(namespace),
                "verification": index.verification(listing["wasm"], namespace)[:1]}

    @server.resource("prometheus://apps", mime_type="application/json")
    def apps() -> dict[str, Any]:
        """The verified apps (first page), each with the URI of its resource."""
        found = index.search("", verified_only=True, limit=MAX_PAGE)
        return {"apps": [{"uri": f"prometheus://apps/{a['namespace']}", "name": a["name"], "tier": a["tier"]}
                         for a in found]}

    return server
