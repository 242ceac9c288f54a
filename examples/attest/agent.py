"""An agent that presents an attestation token to an MCP server and calls its tools (docs/attest.md).

    python examples/attest/agent.py --token TOKEN [--holder KEY.json] --audience AUD
                                    (--url http://127.0.0.1:PORT/mcp | -- SERVER COMMAND ...)

Prints one JSON object: each tool's answer, or the server's refusal (its JSON-RPC error and attestation code).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from prometheus_attest import SigningKey
from prometheus_attest.mcp import AttestingClientSession, Credentials


async def call(session: AttestingClientSession, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    try:
        result = await session.call_tool(tool, args)
    except MCPError as e:
        return {"refused": {"rpc_code": e.code, "message": e.message, "data": e.data}}
    return {"result": result.structured_content if result.structured_content is not None
            else [c.model_dump() for c in result.content], "is_error": result.is_error}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    holder = SigningKey.load(Path(args.holder)) if args.holder else None
    credentials = Credentials(args.token or "", args.audience, holder)
    if args.url:
        transport: Any = streamable_http_client(args.url)
    else:
        transport = stdio_client(StdioServerParameters(command=args.server[0], args=args.server[1:]))
    out: dict[str, Any] = {}
    async with transport as streams, AttestingClientSession(streams[0], streams[1], credentials=credentials) as s:
        await s.initialize()
        for tool, tool_args in (("health", {}), ("echo", {"text": "hello"}), ("whoami", {})):
            out[tool] = await call(s, tool, tool_args)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--token")
    p.add_argument("--holder")
    p.add_argument("--audience", default="")
    p.add_argument("--url")
    p.add_argument("server", nargs="*")
    args = p.parse_args()
    if not args.url and not args.server:
        p.error("give --url or a server command after --")
    print(json.dumps(anyio.run(run, args), indent=2, default=str))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
