"""For resource servers (an MCP server, an API) that accept the auth_server canister's access tokens and charge
per use (docs/auth.md).

- `TokenValidator`: checks an access token offline, as RFC 9068 says: `typ: at+jwt`, `alg: EdDSA` only, a key
  from the issuer's JWKS (fetched over HTTP, cached for its max-age, fetched again for an unknown `kid` at most
  every 30 seconds), `iss`, `aud` (this server's resource URI), `exp` / `iat` with a leeway, required scopes.
  JWT parsing and signatures are PyJWT's.
- `RequireToken`: the same as a Starlette / FastAPI dependency (401 / 403 with `WWW-Authenticate` naming the
  protected resource metadata, RFC 9728).
- `McpTokenVerifier`: the same as the `mcp` SDK's `TokenVerifier` (`MCPServer(auth=..., token_verifier=...)`).
- `PrometheusServerClient.charge`: `charge_user` with the server's identity, retried with the same request id
  when the answer was lost (the canister and the ledger make the retry bill at most once).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from starlette.requests import Request

from prometheus_sdk.clients.auth_server import AuthServerClient, AuthServerError

MAX_JWKS_BYTES = 64 * 1024
MIN_REFETCH_S = 30.0
DEFAULT_MAX_AGE_S = 300.0
TYP = "at+jwt"


class InvalidToken(Exception):
    """A token this server must refuse. `status` is 401 (no or bad token) or 403 (valid, scope missing)."""

    def __init__(self, message: str, status: int = 401, error: str = "invalid_token") -> None:
        super().__init__(message)
        self.status, self.error = status, error


@dataclass(frozen=True)
class VerifiedToken:
    subject: str  # the user's principal
    client_id: str
    scopes: frozenset[str]
    audience: str
    expires_at: int
    claims: dict[str, Any] = field(repr=False)


class _Keys:
    """The issuer's JWK Set, cached; fetched again when it expires or names no key for a `kid` (rate-limited)."""

    def __init__(self, url: str, http: httpx.Client | None, clock: Callable[[], float]) -> None:
        self.url, self.clock = url, clock
        self.http = http or httpx.Client(timeout=10, follow_redirects=False)
        self.keys: dict[str, jwt.PyJWK] = {}
        self.expires = 0.0
        self.fetched = -MIN_REFETCH_S
        self.lock = threading.Lock()

    def get(self, kid: str) -> jwt.PyJWK:
        with self.lock:
            stale = self.clock() >= self.expires
            if (stale or kid not in self.keys) and self.clock() - self.fetched >= MIN_REFETCH_S:
                self._fetch()
            if kid not in self.keys:
                raise InvalidToken(f"no key {kid!r} in the issuer's JWKS")
            return self.keys[kid]

    def _fetch(self) -> None:
        self.fetched = self.clock()
        try:
            keys, max_age = self._download()
        except InvalidToken:
            if not self.keys:
                raise
            return  # keep the keys we have (an outage or an error answer) until the next attempt
        self.keys = keys
        self.expires = self.clock() + max_age

    def _download(self) -> tuple[dict[str, jwt.PyJWK], float]:
        try:
            with self.http.stream("GET", self.url, headers={"Accept": "application/json"}) as reply:
                if reply.status_code != 200:
                    raise InvalidToken(f"the issuer's JWKS answered {reply.status_code}")
                body = b""
                for chunk in reply.iter_bytes():
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise InvalidToken("the issuer's JWKS is larger than 64 KiB")
                max_age = _max_age(reply.headers.get("cache-control", ""))
            keys = {entry.key_id: entry for entry in jwt.PyJWKSet.from_json(body.decode()).keys
                    if entry.key_id and entry.algorithm_name == "EdDSA"}
        except (httpx.HTTPError, jwt.PyJWKSetError, UnicodeDecodeError, ValueError) as exc:
            raise InvalidToken(f"the issuer's JWKS cannot be read: {exc}") from None
        return keys, max_age


def _max_age(cache_control: str) -> float:
    for part in cache_control.split(","):
        name, _, value = part.strip().partition("=")
        if name.lower() == "max-age" and value.isdigit():
            return float(min(int(value), 86_400))
    return DEFAULT_MAX_AGE_S


class TokenValidator:
    """Verifies the auth server's access tokens for one resource (this server's URI, the tokens' `aud`)."""

    def __init__(self, issuer: str, audience: str, *, jwks_url: str | None = None, leeway_s: int = 30,
                 required_scopes: Iterable[str] = (), http: httpx.Client | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.issuer, self.audience, self.leeway, self.clock = issuer, audience, leeway_s, clock
        self.required = frozenset(required_scopes)
        self.keys = _Keys(jwks_url or f"{issuer}/.well-known/jwks.json", http, clock)

    def verify(self, token: str, scopes: Iterable[str] = ()) -> VerifiedToken:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"not a JWT: {exc}") from None
        if header.get("typ") != TYP or header.get("alg") != "EdDSA" or not isinstance(header.get("kid"), str):
            raise InvalidToken("not an access token of this issuer (typ at+jwt, alg EdDSA, a kid)")
        key = self.keys.get(header["kid"])
        try:
            claims = jwt.decode(token, key, algorithms=["EdDSA"], audience=self.audience, issuer=self.issuer,
                                options={"require": ["exp", "iat", "sub", "aud", "iss"], "verify_exp": False,
                                         "verify_iat": False, "verify_nbf": False})
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"refused: {exc}") from None
        now = self.clock()  # times are checked here, on this validator's clock (PyJWT's would be the wall clock)
        if not isinstance(claims["exp"], int) or not isinstance(claims["iat"], int):
            raise InvalidToken("refused: exp and iat must be integers")
        if claims["exp"] + self.leeway <= now:
            raise InvalidToken("refused: the token expired")
        if claims["iat"] > now + self.leeway:
            raise InvalidToken("refused: issued in the future")
        granted = frozenset(str(claims.get("scope", "")).split())
        missing = (self.required | frozenset(scopes)) - granted
        if missing:
            raise InvalidToken(f"missing scope: {' '.join(sorted(missing))}", 403, "insufficient_scope")
        return VerifiedToken(str(claims["sub"]), str(claims.get("client_id", "")), granted, self.audience,
                             int(claims["exp"]), claims)


class RequireToken:
    """A Starlette / FastAPI dependency: `Depends(RequireToken(validator, ["tools:call"]))`, or
    `await require(request)` in a Starlette endpoint. Raises `HTTPException` 401 / 403 with the RFC 6750
    `WWW-Authenticate` header (and the RFC 9728 `resource_metadata` URL when given)."""

    def __init__(self, validator: TokenValidator, scopes: Iterable[str] = (),
                 resource_metadata: str | None = None) -> None:
        self.validator, self.scopes, self.metadata = validator, tuple(scopes), resource_metadata

    async def __call__(self, request: Request) -> VerifiedToken:  # typed: FastAPI injects by the annotation
        from starlette.concurrency import run_in_threadpool
        from starlette.exceptions import HTTPException

        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        try:
            if scheme.lower() != "bearer" or not token:
                raise InvalidToken("a Bearer token is required", error="")
            return await run_in_threadpool(self.validator.verify, token.strip(), self.scopes)
        except InvalidToken as exc:
            params = [f'error="{exc.error}"'] if exc.error else []
            if self.metadata:
                params.append(f'resource_metadata="{self.metadata}"')
            if exc.status == 403:
                params.append(f'scope="{" ".join(self.scopes)}"')
            challenge = "Bearer" + (" " + ", ".join(params) if params else "")
            raise HTTPException(exc.status, str(exc), headers={"WWW-Authenticate": challenge}) from None


class McpTokenVerifier:
    """The `mcp` SDK's `TokenVerifier` over a `TokenValidator`: `None` for any token it refuses."""

    def __init__(self, validator: TokenValidator) -> None:
        self.validator = validator

    async def verify_token(self, token: str) -> Any:
        from mcp.server.auth.provider import AccessToken
        from starlette.concurrency import run_in_threadpool

        try:
            v = await run_in_threadpool(self.validator.verify, token)
        except InvalidToken:
            return None
        return AccessToken(token=token, client_id=v.client_id, scopes=sorted(v.scopes), expires_at=v.expires_at,
                           resource=v.audience, subject=v.subject, claims=v.claims)


class ChargeFailed(Exception):
    """The charge was refused (`kind`: NoPaymentGrant, NoLimit, OverLimit, Failed, ...); nothing was billed,
    except for `Unknown`, whose outcome the canister could not learn (ask again with the same request id)."""

    def __init__(self, kind: str, detail: Any) -> None:
        super().__init__(f"{kind}: {detail}" if detail is not None else kind)
        self.kind, self.detail = kind, detail


@dataclass(frozen=True)
class Charge:
    block: int
    charge_id: int


class PrometheusServerClient:
    """A resource server's side of payments: `charge(user, amount, request_id)` with the server's identity."""

    def __init__(self, conn: Any, auth_server_id: str, ledger_id: str, retries: int = 3,
                 backoff_s: float = 0.5) -> None:
        self.server = AuthServerClient(conn, auth_server_id)
        self.ledger_id, self.retries, self.backoff = ledger_id, retries, backoff_s

    def charge(self, user: str, amount: int, request_id: str) -> Charge:
        """Bill `user` once for `request_id` (your id for this use, at most 64 characters: the same id is never
        billed twice, so retrying after a crash is safe)."""
        from prometheus_sdk.principal import Principal

        args = {"user": Principal.from_text(user), "ledger": Principal.from_text(self.ledger_id), "amount": amount,
                "request_id": request_id}
        for attempt in range(self.retries + 1):
            try:
                ok = self.server.charge_user(args)  # type: ignore[arg-type]
                return Charge(int(ok["block"]), int(ok["charge_id"]))
            except AuthServerError as exc:
                if exc.kind not in ("Unknown", "InFlight") or attempt == self.retries:
                    raise ChargeFailed(str(exc.kind), exc.detail) from None
            time.sleep(self.backoff * (2 ** attempt))
        raise AssertionError("unreachable")
