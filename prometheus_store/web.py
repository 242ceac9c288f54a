"""`prometheus store serve`: the web view (server-rendered, usable without JavaScript), the MCP registry's generic
REST API (`/v0/servers`, so registry clients can use this store as a subregistry) and the MCP discovery server
over streamable HTTP at `/mcp`, in one Starlette app. The index is read per request; `serve` keeps it in step
with the chain from a background thread.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from prometheus_store import discovery
from prometheus_store.index import MAX_OFFSET, MAX_PAGE, Index, http_url
from prometheus_store.servers import (
    namespace_of,
    registry_entry,
    server_name,
    verify_commands,
    version_listing,
    version_of,
)
from prometheus_store.tiers import Tier

TEMPLATES = Path(__file__).parent / "templates"
WASM = re.compile(r"^[0-9a-f]{64}$")
MAX_PARAM = 200
PAGE_SIZE = 25  # apps on one page of the web view


def _when(ns: int | None) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M UTC") if ns else ""


def _param(request: Request, name: str, default: str = "") -> str:
    return request.query_params.get(name, default)[:MAX_PARAM]


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    try:
        return max(low, min(high, int(_param(request, name, str(default)))))
    except ValueError:
        return default


def _rfc3339_ns(text: str) -> int | None:
    """RFC 3339 -> nanoseconds since the epoch, in integers (no float rounding)."""
    import calendar

    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            return None
        moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return (calendar.timegm(moment.timetuple()) * 10**6 + moment.microsecond) * 1000


def _transport_security(host: str, base_url: str) -> Any:
    """DNS-rebinding protection for /mcp: the Host and Origin headers a browser may send are this server's own
    (loopback, and the public URL it is reached at), never another site's."""
    from urllib.parse import urlparse

    from mcp.server.transport_security import TransportSecuritySettings

    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    public = urlparse(base_url) if base_url else None
    if public is not None and public.hostname:
        name = f"[{public.hostname}]" if ":" in public.hostname else public.hostname
        default = {"http": 80, "https": 443}.get(public.scheme)
        port = public.port
        if port is None or port == default:  # clients leave a default port out of Host and Origin
            hosts += [name, f"{name}:{default}"] if default else [name]
            origins.append(f"{public.scheme}://{name}")
        else:
            hosts.append(f"{name}:{port}")
            origins.append(f"{public.scheme}://{name}:{port}")
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts,
                                     allowed_origins=origins)


def create_app(index: Index, base_url: str = "", host: str = "127.0.0.1",
               follower_state: Callable[[], dict[str, Any]] | None = None, attestation: Any = None) -> Starlette:
    """The app; `follower_state` reports whether the index keeps up with the chain (in /healthz); `attestation`
    (an AttestationExtension) makes /mcp hold sessions, since an agent's token is presented at initialize."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    env.filters["when"] = _when
    env.filters["link"] = http_url  # anything but an http(s) URL is shown as text, never as a link
    env.globals["tiers"] = [t.label for t in Tier]
    mcp = discovery.build(index, base_url, attestation)
    mcp_app = mcp.streamable_http_app(streamable_http_path="/mcp", host=host,
                                      stateless_http=attestation is None,  # read-only: no sessions to hold, unless
                                      transport_security=_transport_security(host, base_url))  # tokens need them

    def page(template: str, code: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(template).render(registry=index.registry, **context)
        return HTMLResponse(html, status_code=code)

    def home(request: Request) -> Response:  # (a thread: SQLite blocks)
        query, tier, category = _param(request, "q"), _param(request, "tier"), _param(request, "category")
        verified = _param(request, "verified", "1") != "0"
        no_credentials = _param(request, "no_credentials") == "1"
        try:
            min_tier = Tier.parse(tier) if tier else None
        except ValueError as exc:
            return page("error.html", 400, message=str(exc))
        offset = _int_param(request, "offset", 0, 0, MAX_OFFSET)
        found = index.search(query, verified_only=verified, min_tier=min_tier, category=category or None,
                             no_credentials=no_credentials, limit=PAGE_SIZE + 1, offset=offset)
        more = len(found) > PAGE_SIZE and offset + PAGE_SIZE <= MAX_OFFSET
        params = {"q": query, "tier": tier, "category": category, "verified": "1" if verified else "0",
                  "no_credentials": "1" if no_credentials else ""}
        next_link = "/?" + urlencode({**params, "offset": offset + PAGE_SIZE}) if more else None
        return page("home.html", apps=found[: PAGE_SIZE], query=query, tier=tier, category=category,
                    verified=verified, no_credentials=no_credentials, next_link=next_link, status=index.status())

    def app_page(request: Request) -> Response:  # (a thread: SQLite blocks)
        namespace = request.path_params["namespace"][:253]
        listing = index.listing(namespace)
        if listing is None:
            return page("error.html", 404, message=f"No app {namespace} in this registry.")
        rounds = index.verification(listing["wasm"], namespace)
        return page("app.html", app=listing, versions=index.versions(namespace), rounds=rounds,
                    verify=verify_commands(index.registry, namespace, listing["wasm"]))

    def wasm_page(request: Request) -> Response:  # (a thread: SQLite blocks)
        wasm = request.path_params["wasm"].lower()
        if not WASM.match(wasm):
            return page("error.html", 400, message="A wasm is named by its sha256: 64 hex digits.")
        namespace = _param(request, "namespace") or None
        rounds = index.verification(wasm, namespace)
        if not rounds:
            return page("error.html", 404, message=f"No verification was requested for wasm {wasm}.")
        return page("wasm.html", wasm=wasm, rounds=rounds,
                    verify=verify_commands(index.registry, rounds[0]["namespace"], wasm))

    def entry(listing: dict[str, Any], is_latest: bool = True) -> dict[str, Any]:
        return registry_entry(listing, index.registry, base_url, is_latest)

    def v0_servers(request: Request) -> Response:  # (a thread: SQLite blocks)
        since = _param(request, "updated_since")
        since_ns = _rfc3339_ns(since) if since else None
        if since and since_ns is None:
            return JSONResponse({"error": "updated_since must be an RFC 3339 time"}, status_code=400)
        cursor = _param(request, "cursor") or None
        limit = _int_param(request, "limit", 30, 1, MAX_PAGE)
        items, next_cursor = index.listings_page(namespace_of(cursor) if cursor else None, limit, since_ns,
                                                 _param(request, "search"))
        metadata: dict[str, Any] = {"count": len(items)}
        if next_cursor is not None:
            metadata["nextCursor"] = server_name(next_cursor)
        return JSONResponse({"servers": [entry(i) for i in items], "metadata": metadata})

    def v0_server(request: Request) -> Response:  # (a thread: SQLite blocks)
        listing = index.listing(namespace_of(request.path_params["name"][:254]))
        if listing is None:
            return JSONResponse({"error": "Server not found"}, status_code=404)
        version = request.path_params.get("version")
        if version is None or version in ("latest", version_of(listing)):
            return JSONResponse(entry(listing))
        for v in index.versions(listing["namespace"]):
            if v["version"] == version:
                return JSONResponse(entry(version_listing(listing, v), is_latest=False))
        return JSONResponse({"error": "Server version not found"}, status_code=404)

    def v0_versions(request: Request) -> Response:  # (a thread: SQLite blocks)
        listing = index.listing(namespace_of(request.path_params["name"][:254]))
        if listing is None:
            return JSONResponse({"error": "Server not found"}, status_code=404)
        versions = index.versions(listing["namespace"])
        items = ([entry(version_listing(listing, v), is_latest=v["version"] == listing["version"]) for v in versions]
                 or [entry(listing)])
        return JSONResponse({"servers": items, "metadata": {"count": len(items)}})

    def health(request: Request) -> Response:  # (a thread: SQLite blocks)
        status = index.status()
        if follower_state is not None:
            status["follower"] = follower_state()
        return JSONResponse(status)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with mcp.session_manager.run():
            yield

    routes = [
        Route("/", home), Route("/apps/{namespace}", app_page), Route("/wasm/{wasm}", wasm_page),
        Route("/v0/servers", v0_servers), Route("/v0/servers/{name:path}/versions", v0_versions),
        Route("/v0/servers/{name:path}/versions/{version}", v0_server), Route("/v0/servers/{name:path}", v0_server),
        Route("/healthz", health), *mcp_app.routes,
    ]
    return Starlette(routes=routes, lifespan=lifespan)
