"""`prometheus attest`: agent attestation tokens for MCP (docs/attest.md) -- make keys, issue, inspect and verify
tokens, serve an issuer's JWK Set, and run the attack suite.

Exit codes: 0 success; 1 a user error (unreadable key file, bad option value); 8 the token was refused (the
error's code is printed and in `--json`); 9 `attack`: an attack was not detected as expected.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import typer

from prometheus_cli import exits, output
from prometheus_cli.output import console, emit, fail, table, user_errors

app = typer.Typer(help="Agent attestation for MCP: keys, tokens, JWKS, verification, attacks.", no_args_is_help=True)

REFUSED, UNDETECTED = exits.REFUSED, exits.UNDETECTED

Json = typer.Option(False, "--json", help="Print JSON.")


def _as_json(flag: bool) -> bool:
    return flag or output.GLOBAL_JSON


def _key(path: Path) -> Any:
    from prometheus_attest import SigningKey
    from prometheus_attest.errors import AttestationError

    try:
        return SigningKey.load(path)
    except AttestationError as e:
        fail(e.message, "make one with `prometheus attest keygen --out FILE`")


def _token_arg(token: str) -> str:
    return sys.stdin.read().strip() if token == "-" else token.strip()


@app.command()
def keygen(out: Path = typer.Option(..., "--out", help="Where to write the private key (a JWK, mode 0600)."),
           kid: str = typer.Option(None, "--kid", help="The key id (default: its RFC 7638 thumbprint)."),
           as_json: bool = Json) -> None:
    """Make an Ed25519 signing key; prints its public JWK (what the issuer publishes)."""
    from prometheus_attest import SigningKey
    from prometheus_attest.errors import AttestationError

    with user_errors(_as_json(as_json)):
        try:
            key = SigningKey.generate(kid)
        except AttestationError as e:
            fail(e.message)
        try:
            key.save(out)
        except FileExistsError:
            fail(f"{out} exists", "keys are never overwritten: pass another --out")
        except OSError as e:
            fail(f"cannot write {out}: {e.strerror}")
        emit({"kid": key.kid, "file": str(out), "public_jwk": key.public.jwk()}, _as_json(as_json),
             lambda d: console().print(f"[green]key {d['kid']}[/green] written to {d['file']} (private: keep it so)\n"
                                       + json.dumps(d["public_jwk"])))


@app.command()
def generate(key: Path = typer.Option(..., "--key", help="The issuer's signing key file."),
             issuer: str = typer.Option(..., "--issuer", help="The issuer URL the token names (iss)."),
             audience: list[str] = typer.Option(..., "--audience", help="The server(s) the token is for (aud)."),
             lifetime: int = typer.Option(300, "--lifetime", min=1, max=86400, help="Seconds until it expires."),
             model_family: str = typer.Option("unknown", "--model-family"),
             model_version: str = typer.Option("unknown", "--model-version"),
             provider: str = typer.Option("unknown", "--provider"),
             holder: Path = typer.Option(None, "--holder", help="Bind the token to this agent key file (cnf)."),
             as_json: bool = Json) -> None:
    """Issue an attestation token (prints the compact JWS)."""
    from prometheus_attest import Issuer
    from prometheus_attest.errors import AttestationError

    with user_errors(_as_json(as_json)):
        signing = _key(key)
        bound = _key(holder).public if holder else None
        try:
            token = Issuer(issuer, signing, lifetime).issue(
                audience[0] if len(audience) == 1 else list(audience),
                {"model_family": model_family, "model_version": model_version, "provider": provider}, holder=bound)
        except AttestationError as e:
            fail(e.message)
        emit({"token": token}, _as_json(as_json), lambda d: print(d["token"]))


@app.command()
def inspect(token: str = typer.Argument(..., help="The token ('-': read it from stdin)."),
            as_json: bool = Json) -> None:
    """Show a token's header and claims WITHOUT verifying anything."""
    from prometheus_attest import tokens
    from prometheus_attest.errors import AttestationError

    with user_errors(_as_json(as_json)):
        try:
            shown = tokens.inspect(_token_arg(token))
        except AttestationError as e:
            fail(e.message, "a token is three base64url parts separated by dots")
        emit({**shown, "verified": False}, _as_json(as_json),
             lambda d: console().print("[yellow]not verified[/yellow] (use `prometheus attest verify`)\n"
                                       + json.dumps({"header": d["header"], "claims": d["claims"]}, indent=2)))


@app.command()
def verify(token: str = typer.Argument(..., help="The token ('-': read it from stdin)."),
           issuer: list[str] = typer.Option(..., "--issuer", help="A trusted issuer (repeat for several)."),
           audience: str = typer.Option(..., "--audience", help="This server's audience: tokens must name it."),
           jwks_url: str = typer.Option(None, "--jwks-url", help="Where the issuer's JWK Set is (default "
                                                                 "<issuer>/.well-known/jwks.json)."),
           key: list[Path] = typer.Option(None, "--key", help="Trust these key files' public keys instead of JWKS."),
           proof: str = typer.Option(None, "--proof", help="The proof of possession for a key-bound token."),
           leeway: int = typer.Option(30, "--leeway", min=0, max=300, help="Clock skew tolerated, in seconds."),
           as_json: bool = Json) -> None:
    """Verify a token as a server would (signature, issuer, audience, times, proof); exit 8 when refused."""
    from prometheus_attest import JWKSKeys, Policy, StaticKeys, Verifier
    from prometheus_attest.errors import AttestationError

    out = _as_json(as_json)
    with user_errors(out):
        logging.getLogger("prometheus_attest").setLevel(logging.ERROR)  # the outcome is printed below instead
        try:
            policy = Policy(frozenset(issuer), audience, leeway=leeway)
            if key:
                keys: Any = StaticKeys({i: [_key(k).public for k in key] for i in issuer})
            else:
                keys = JWKSKeys({i: jwks_url for i in issuer})
            verifier = Verifier(policy, keys)
        except AttestationError as e:
            fail(e.message)

        async def run() -> Any:
            try:
                return await verifier.verify(_token_arg(token), proof)
            finally:
                if isinstance(keys, JWKSKeys):
                    await keys.aclose()

        import asyncio  # here, not at the top: every `prometheus` command would pay its import

        try:
            agent = asyncio.run(run())
        except AttestationError as e:
            emit({"verified": False, **e.as_dict()}, out,
                 lambda d: console().print(f"[red]refused[/red] ({d['code']}): {d['message']}", markup=True,
                                           highlight=False))
            raise typer.Exit(REFUSED) from None
        emit({"verified": True, **agent.as_dict()}, out,
             lambda d: console().print(f"[green]verified[/green]: {d['subject']} vouched for by {d['issuer']} "
                                       f"(key {d['kid']}), expires at {d['expires_at']}"
                                       + (", key-bound" if d["key_bound"] else ""), highlight=False))


@app.command()
def jwks(key: list[Path] = typer.Option(..., "--key", help="Key file(s) to publish (current and next, to rotate)."),
         serve: bool = typer.Option(False, "--serve", help="Serve it over HTTP on loopback until interrupted."),
         port: int = typer.Option(0, "--port", min=0, max=65535, help="With --serve: the port (0: any free)."),
         max_age: int = typer.Option(300, "--max-age", min=0, help="With --serve: Cache-Control max-age."),
         as_json: bool = Json) -> None:
    """Print (or serve) the issuer's JWK Set: public keys only."""
    from prometheus_attest.jwks_server import JWKS_PATH, JWKSServer, Route
    from prometheus_attest.keys import jwks as key_set

    with user_errors(_as_json(as_json)):
        document = key_set([_key(k).public for k in key])
        if not serve:
            print(json.dumps(document, indent=2))
            return
        try:
            server = JWKSServer({JWKS_PATH: Route.jwks(document, max_age)}, port=port).start()
        except OSError as e:
            fail(f"cannot listen on 127.0.0.1:{port}: {e.strerror}", "pass another --port, or 0 for any free one")
        print(json.dumps({"jwks_url": server.url(), "keys": [k["kid"] for k in document["keys"]]}), flush=True)
        try:
            while True:
                import time

                time.sleep(3600)
        except KeyboardInterrupt:
            server.stop()


@app.command()
def attack(as_json: bool = Json) -> None:
    """Run the attack suite against a real verifier and a loopback JWKS endpoint; exit 9 unless all are caught."""
    import asyncio

    from prometheus_attest import attacks

    logging.getLogger("prometheus_attest").setLevel(logging.CRITICAL)
    results = asyncio.run(attacks.run_all())
    report = {**attacks.summary(results), "results": [r.as_dict() for r in results]}

    def render(d: dict[str, Any]) -> None:
        t = table("attack", "expected", "got", "")
        for r in d["results"]:
            mark = "[green]caught[/green]" if r["as_expected"] else "[red]NOT AS EXPECTED[/red]"
            t.add_row(r["name"], r["expected"], str(r["got"]), mark)
        console().print(t)
        console().print(f"detected {d['detected']}/{d['attacks']} ({d['detection_rate']:.0%}), "
                        f"for the expected reason: {d['as_expected']}/{d['attacks']}")

    emit(report, _as_json(as_json), render)
    if report["as_expected"] != report["attacks"]:
        raise typer.Exit(UNDETECTED)
