"""An agent's side of the store: find a verified MCP server through the discovery server and check its evidence.

    python examples/agent/find_tool.py "what you need"

It starts `prometheus store mcp` (the discovery server, on stdio) the way an MCP host would from its
configuration ({"command": "prometheus", "args": ["store", "mcp"]}), asks `search_servers` for verified servers
only, then `get_verification` for the best match's wasm, and prints what it would trust and why.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import anyio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

VERIFICATION = "org.prometheus-protocol/verification"


async def find(query: str) -> int:
    # The `prometheus` command, or this Python's module when it is not on PATH (a checkout's .venv); the server
    # inherits this environment (which network and identity), as an MCP host passes one from its configuration.
    command = shutil.which("prometheus")
    argv = [command] if command else [sys.executable, "-m", "prometheus_cli"]
    server = StdioServerParameters(command=argv[0], args=[*argv[1:], "store", "mcp"], env=dict(os.environ))
    async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        found = (await session.call_tool("search_servers", {"query": query, "verified_only": True})).structured_content
        if not found or not found["servers"]:
            print(f"no verified MCP server matches {query!r}")
            return 1
        best = found["servers"][0]
        meta = best["_meta"][VERIFICATION]
        print(f"found {best['name']} {best['version']}: {best['description']}")
        print(f"  tier {meta['tier']}, built from {best['repository']['url']} at {meta['commit'][:12]}, "
              f"attested by {meta['verifiers']} verifier(s); wasm sha256 {meta['wasm_sha256']}")
        evidence = (await session.call_tool("get_verification", {"wasm_hash": meta["wasm_sha256"]})).structured_content
        latest = evidence["rounds"][0]
        for filing in latest["filings"]:
            verdict = "attested" if filing["attested"] else f"diverged ({filing['report']})"
            print(f"  {verdict} by {filing['verifier']} (signature: {filing['signature']})")
        print("  check it yourself: " + " && ".join(evidence["verify"]))
        if "--json" in sys.argv:
            print(json.dumps(best))
        return 0


def main() -> int:
    query = " ".join(a for a in sys.argv[1:] if not a.startswith("--"))
    return anyio.run(find, query)


if __name__ == "__main__":
    sys.exit(main())
