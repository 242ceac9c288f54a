"""An MCP server that requires attested agents (docs/attest.md): `whoami` needs a verified token, `echo` takes
one optionally, `health` ignores attestation. Keys come from the issuer's JWKS endpoint; spent token ids go
to Redis when --redis is given (several server processes share it), else to memory.

    python examples/attest/server.py --issuer URL --jwks-url URL --audience AUD [--redis URL]
                                     [--transport stdio|http --port N]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mcp.server.mcpserver import MCPServer

from prometheus_attest import JWKSKeys, Policy, RedisReplayCache, Verifier
from prometheus_attest.mcp import AttestationExtension, Requirement, ServerPolicy, ToolRule, current_agent


def build(issuer: str, jwks_url: str | None, audience: str, redis_url: str | None) -> MCPServer:
    verifier = Verifier(Policy(frozenset({issuer}), audience), JWKSKeys({issuer: jwks_url}),
                        RedisReplayCache.from_url(redis_url) if redis_url else None)  # None: in memory
    policy = ServerPolicy(tools={"echo": ToolRule(Requirement.OPTIONAL), "health": ToolRule(Requirement.NONE)})
    app = MCPServer("attested-example", extensions=[AttestationExtension(verifier, policy)])

    @app.tool()
    def whoami() -> dict[str, Any]:
        """The verified agent calling this tool."""
        agent = current_agent()
        assert agent is not None  # the rule for this tool is "required"
        return {"subject": agent.subject, "issuer": agent.issuer, "identity": agent.identity,
                "key_bound": agent.key_bound}

    @app.tool()
    def echo(text: str) -> str:
        """Echo, saying whether the caller was attested."""
        agent = current_agent()
        return f"{text} (from {agent.subject if agent else 'an unattested agent'})"

    @app.tool()
    def health() -> str:
        return "ok"

    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--issuer", required=True)
    p.add_argument("--jwks-url")
    p.add_argument("--audience", required=True)
    p.add_argument("--redis")
    p.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    p.add_argument("--port", type=int, default=8765)
    args = p.parse_args()
    app = build(args.issuer, args.jwks_url, args.audience, args.redis)
    if args.transport == "stdio":
        app.run("stdio")
    else:
        print(json.dumps({"mcp": f"http://127.0.0.1:{args.port}/mcp"}), file=sys.stderr, flush=True)
        app.run("streamable-http", host="127.0.0.1", port=args.port, stateless_http=False)  # sessions carry tokens


if __name__ == "__main__":
    main()
