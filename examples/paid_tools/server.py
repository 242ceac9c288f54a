"""An MCP server whose tools need an access token from an auth_server canister and charge the user per call
(docs/auth.md): the `mcp` SDK serves the protected resource metadata (RFC 9728) naming the authorization server,
`McpTokenVerifier` checks each token (signature from the canister's JWKS, issuer, audience = this server,
expiry, scopes `tools:call` and `payments`), and `word_count` bills the token's user through `charge_user`.

    python examples/paid_tools/server.py --issuer URL --auth-server ID --ledger ID --network URL \
        --identity-pem FILE [--port 8790] [--price 1000] [--jwks-url URL] [--leeway 30]

`--jwks-url` is for a localnet whose issuer host (`<id>.localhost`) this machine does not resolve: the same
keys at `http://127.0.0.1:<port>/.well-known/jwks.json?canisterId=<id>`. `--leeway` is how many seconds this
machine's clock may differ from the IC's when a token's `iat` and `exp` are checked.
"""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from prometheus_sdk import connect, identity
from prometheus_sdk.network import Network
from prometheus_sdk.resource_server import ChargeFailed, McpTokenVerifier, PrometheusServerClient, TokenValidator

SCOPES = ["tools:call", "payments"]  # every tool here charges: a token without `payments` is of no use


def build(issuer: str, resource: str, payments: PrometheusServerClient, price: int,
          jwks_url: str | None = None, leeway_s: int = 30) -> MCPServer:
    validator = TokenValidator(issuer, resource, jwks_url=jwks_url, required_scopes=SCOPES, leeway_s=leeway_s)
    app = MCPServer("paid-tools", token_verifier=McpTokenVerifier(validator),
                    auth=AuthSettings(issuer_url=issuer, resource_server_url=resource, required_scopes=SCOPES,
                                      validate_token_resource=True))

    @app.tool()
    def word_count(text: str) -> dict[str, object]:
        """Count the words of a text; costs `price` base units of the ledger's token per call."""
        token = get_access_token()
        assert token is not None and token.subject  # the SDK refuses unauthenticated calls before this
        try:
            charge = payments.charge(token.subject, price, request_id=uuid.uuid4().hex)
        except ChargeFailed as exc:  # the tool's answer says why (e.g. OverLimit: the user's limit is reached)
            raise ToolError(f"not charged, so not run: {exc}") from None
        return {"words": len(text.split()), "charged": price, "block": charge.block, "user": token.subject}

    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--issuer", required=True, help="the auth server's issuer URL")
    p.add_argument("--auth-server", required=True, help="the auth_server canister id")
    p.add_argument("--ledger", required=True, help="the ledger this server charges in")
    p.add_argument("--network", required=True, help="the IC's URL (e.g. http://127.0.0.1:4943)")
    p.add_argument("--identity-pem", required=True, help="this server's identity (registered for payments)")
    p.add_argument("--port", type=int, default=8790)
    p.add_argument("--price", type=int, default=1_000)
    p.add_argument("--jwks-url")
    p.add_argument("--leeway", type=int, default=30, help="seconds of clock difference with the IC tolerated")
    args = p.parse_args()
    conn = connect(Network("local", args.network), identity.from_pem_file(Path(args.identity_pem)))
    resource = f"http://127.0.0.1:{args.port}/mcp"
    app = build(args.issuer, resource, PrometheusServerClient(conn, args.auth_server, args.ledger), args.price,
                args.jwks_url, args.leeway)
    app.run("streamable-http", host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
