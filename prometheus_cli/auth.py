"""`prometheus auth register-client | show | approve | deny | tokens | revoke`: the auth_server canister's OAuth
flow from the command line. `register-client` registers an OAuth client (RFC 7591) for an application's
developer. An application sends its user to the server's `/authorize` page, which names a request id; the user
reads what is asked (`show`) and approves or declines it with a call signed by their IC identity, so the grant
is bound to their principal. `tokens` lists the grants they approved (each a family of refresh tokens),
`revoke` ends one (its refresh tokens stop working; access tokens expire within 5 minutes).

The server is named by `--issuer URL` (its canister id is read from the host, `<id>.localhost` / `<id>.icp0.io`)
or `--canister ID`, else the `auth_server` id recorded for the network.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import typer

from prometheus_cli import errors
from prometheus_cli.context import Options, canister_id, connection
from prometheus_cli.output import emit, fail, say, user_errors

app = typer.Typer(help="Approve, deny and revoke OAuth grants of an auth_server canister with your identity.",
                  no_args_is_help=True)
IssuerOption = typer.Option(None, "--issuer", help="The authorization server's issuer URL (as its page shows).")
CanisterOption = typer.Option(None, "--canister", help="The auth_server canister id (instead of --issuer).")


def _opts(ctx: typer.Context) -> Options:
    return ctx.obj if isinstance(ctx.obj, Options) else Options()


def server_id(issuer: str | None, canister: str | None, network: str) -> str:
    """The canister id: given, or the first label of the issuer's host that is a principal, or the recorded one."""
    from prometheus_sdk.principal import InvalidPrincipal, Principal

    if canister is not None:
        try:
            return str(Principal.from_text(canister))
        except InvalidPrincipal:
            fail(f"invalid canister id {canister!r}", "a canister id, e.g. rrkah-fqaaa-aaaaa-aaaaq-cai")
    if issuer is not None:
        host = urlsplit(issuer).hostname or ""
        for label in host.split("."):
            try:
                return str(Principal.from_text(label))
            except InvalidPrincipal:
                continue
        fail(f"the issuer {issuer!r} names no canister in its host", "pass the canister id with --canister")
    return canister_id("auth_server", network)


def _client(ctx: typer.Context, issuer: str | None, canister: str | None) -> tuple[Options, Any]:
    from prometheus_sdk.clients.auth_server import AuthServerClient

    opts = _opts(ctx)
    conn = connection(opts)
    return opts, AuthServerClient(conn, server_id(issuer, canister, conn.network.name))


def _refused(exc: Any, request_id: str) -> None:
    if exc.kind == "NotFound":
        fail(f"no authorization request {request_id!r} is waiting", "it was answered already or expired (after "
             "10 minutes); start again from the application")
    fail(f"the auth server refused: {errors.of(exc)}")


@app.command()
def show(ctx: typer.Context, request_id: str = typer.Argument(..., help="The id the /authorize page shows."),
         issuer: str | None = IssuerOption, canister: str | None = CanisterOption) -> None:
    """Show what an application asks for. Example: prometheus auth show ID --issuer https://ID.icp0.io"""
    with user_errors(_opts(ctx).as_json):
        opts, client = _client(ctx, issuer, canister)
        found = client.get_authorization(request_id)
        if not found:
            fail(f"no authorization request {request_id!r} is waiting", "it was answered already or expired")
        request = found[0]
        emit(dict(request), opts.as_json, lambda r: say(
            f"{r['client_name']} ({r['client_id']}) asks to act for you at {r['resource']}\n"
            f"  scopes: {' '.join(r['scopes']) or '(none)'}\n  answer goes to: {r['redirect_uri']}"))


@app.command()
def approve(ctx: typer.Context, request_id: str = typer.Argument(..., help="The id the /authorize page shows."),
            issuer: str | None = IssuerOption, canister: str | None = CanisterOption) -> None:
    """Approve a request with your identity; prints the URL to open (it carries the code to the application)."""
    from prometheus_sdk.clients.auth_server import AuthServerError

    with user_errors(_opts(ctx).as_json):
        opts, client = _client(ctx, issuer, canister)
        try:
            done = client.approve(request_id)
        except AuthServerError as exc:
            _refused(exc, request_id)
        emit({"approved": request_id, "principal": client.caller.principal, "redirect_to": done["redirect_to"]},
             opts.as_json, lambda r: say(
                 f"approved as {r['principal']}; open this URL to finish:\n{r['redirect_to']}"))


@app.command()
def deny(ctx: typer.Context, request_id: str = typer.Argument(..., help="The id the /authorize page shows."),
         issuer: str | None = IssuerOption, canister: str | None = CanisterOption) -> None:
    """Decline a request; prints the URL that tells the application."""
    from prometheus_sdk.clients.auth_server import AuthServerError

    with user_errors(_opts(ctx).as_json):
        opts, client = _client(ctx, issuer, canister)
        try:
            done = client.deny(request_id)
        except AuthServerError as exc:
            _refused(exc, request_id)
        emit({"denied": request_id, "redirect_to": done["redirect_to"]}, opts.as_json,
             lambda r: say(f"declined; open this URL to tell the application:\n{r['redirect_to']}"))


@app.command("register-client")
def register_client(ctx: typer.Context,
                    redirect_uri: list[str] = typer.Option(..., "--redirect-uri", help="Where codes go (repeatable)."),
                    name: str = typer.Option("(unnamed client)", "--name", help="Shown to users when they approve."),
                    auth_method: str = typer.Option("none", "--auth-method",
                                                    help="none (public client), client_secret_post or "
                                                         "client_secret_basic (a secret is printed once)."),
                    refresh: bool = typer.Option(True, "--refresh/--no-refresh", help="Ask for refresh tokens."),
                    issuer: str | None = IssuerOption, canister: str | None = CanisterOption) -> None:
    """Register an OAuth client (RFC 7591) and print its client_id (and secret, once: store it)."""
    import json

    with user_errors(_opts(ctx).as_json):
        opts, client = _client(ctx, issuer, canister)
        body = {"client_name": name, "redirect_uris": redirect_uri, "token_endpoint_auth_method": auth_method,
                "grant_types": ["authorization_code"] + (["refresh_token"] if refresh else [])}
        reply = client.http_request_update({"method": "POST", "url": "/register", "body": json.dumps(body).encode(),
                                            "headers": [("Content-Type", "application/json")]})
        try:
            answer = json.loads(bytes(reply["body"]))
        except ValueError:
            fail(f"the auth server answered {reply['status_code']} without JSON")
        if reply["status_code"] != 201:
            fail(f"registration refused: {answer.get('error')}: {answer.get('error_description')}",
                 "redirect URIs are https, loopback http or a reverse-domain scheme; see docs/auth.md")

        def show_text(a: dict[str, Any]) -> None:
            say(f"client_id: {a['client_id']}")
            if "client_secret" in a:
                say(f"client_secret: {a['client_secret']}  (shown once: store it now)")

        emit(answer, opts.as_json, show_text)


@app.command()
def tokens(ctx: typer.Context, issuer: str | None = IssuerOption, canister: str | None = CanisterOption,
           limit: int = typer.Option(20, min=1, max=100, help="How many, newest first.")) -> None:
    """List the grants you approved (each a family of refresh tokens), newest first."""
    with user_errors(_opts(ctx).as_json):
        opts, client = _client(ctx, issuer, canister)
        rows = [dict(g) for g in client.my_grants([], limit)]

        def show_rows(items: list[dict[str, Any]]) -> None:
            if not items:
                say("no grants")
            for g in items:
                when = datetime.fromtimestamp(g["created_at_ns"] / 1e9, UTC).strftime("%Y-%m-%d %H:%M")
                state = "revoked" if g["revoked"] else "active"
                say(f"{g['id']:>5}  {state:<8} {when}  {g['client_name']} -> {g['resource']}  "
                                f"[{' '.join(g['scopes'])}]")

        emit(rows, opts.as_json, show_rows)


@app.command()
def revoke(ctx: typer.Context, grant_id: int = typer.Argument(..., help="The grant's id (`prometheus auth tokens`)."),
           issuer: str | None = IssuerOption, canister: str | None = CanisterOption) -> None:
    """End one of your grants: its refresh tokens stop working at once, access tokens within 5 minutes."""
    from prometheus_sdk.clients.auth_server import AuthServerError

    with user_errors(_opts(ctx).as_json):
        opts, client = _client(ctx, issuer, canister)
        try:
            client.revoke_grant(grant_id)
        except AuthServerError as exc:
            if exc.kind == "NotFound":
                fail(f"you have no grant {grant_id}", "`prometheus auth tokens` lists yours")
            fail(f"the auth server refused: {errors.of(exc)}")
        emit({"revoked": grant_id}, opts.as_json, lambda r: say(f"revoked grant {r['revoked']}"))
