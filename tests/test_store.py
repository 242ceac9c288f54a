"""The store (issue 15): an index of the registry's certified ICRC-3 log on real canisters, its tiers and search,
the MCP discovery server through real MCP clients (stdio and streamable HTTP), the registry-compatible REST API
and the web pages, all served by the `prometheus store` commands as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from ic_replica.http_server import IcHttpServer
from ic_replica.principal import Principal
from prometheus_sdk import Network, connect
from prometheus_sdk.clients.mcp_registry import RegistryClient
from prometheus_sdk.icrc3 import ChainError
from prometheus_store.index import Index
from testkit.backends import EmbeddedBackend
from testkit.http_helpers import shared_tls
from testkit.ports import free_port
from testkit.protocol import DEV, STRANGER, Stack
from testkit.store import prepare, submit_app

PROMETHEUS = str(Path(sys.executable).parent / "prometheus")


class Chain:
    def __init__(self, stack: Stack, url: str) -> None:
        self.stack, self.url = stack, url
        conn = connect(Network("local", url))
        self.registry = RegistryClient(conn, str(stack.registry.canister_id))
        self.root_key = conn.root_key
        self.wasms: dict[str, str] = {}

    def env(self, tmp: Path) -> dict[str, str]:
        return {**os.environ, "PROMETHEUS_NETWORK": self.url,
                "PROMETHEUS_MCP_REGISTRY_ID": str(self.stack.registry.canister_id),
                "XDG_DATA_HOME": str(tmp / "data"), "XDG_CONFIG_HOME": str(tmp / "config"), "NO_COLOR": "1"}


@pytest.fixture(scope="module")
def chain(product: dict[str, Any]) -> Iterator[Chain]:
    """A registry with apps in every tier, served over the IC HTTP interface."""
    ic = EmbeddedBackend()
    server = IcHttpServer(ic.replica).start()
    try:
        stack = Stack.deploy(ic, product, server.url)
        prepare(stack)
        c = Chain(stack, server.url)
        c.wasms["weather"] = submit_app(
            stack, "com.example.weather", "Weather", "Forecasts and severe weather alerts for any city",
            version=(1, 0, 0), tags="weather, forecast", tools="get_forecast, get_alerts", category="data",
            credentials="none")
        c.wasms["weather2"] = submit_app(
            stack, "com.example.weather", "Weather", "Forecasts and severe weather alerts for any city",
            version=(1, 1, 0), tags="weather, forecast", tools="get_forecast, get_alerts", category="data",
            credentials="none")
        c.wasms["mail"] = submit_app(stack, "com.example.mail", "Mailer", "Send and read email", outcome="rejected",
                                     tags="email", credentials="required")
        c.wasms["notes"] = submit_app(stack, "com.example.notes", "Notes", "Take notes", outcome=None,
                                      credentials="none")
        c.wasms["maps"] = submit_app(stack, "org.maps.routes", "Maps", "Routes with weather overlays",
                                     audits=("tools_v1",), credentials="required", category="data")
        # A later request for another wasm in a verified namespace: not verified, so not what the listing shows.
        c.wasms["weather_pro"] = submit_app(stack, "com.example.weather", "Weather Pro", "Reads any file",
                                            outcome=None, tools="read_any_file", credentials="none")
        c.wasms["old"] = submit_app(stack, "com.example.old", "Old", "Every version deprecated", version=(1, 0, 0),
                                    homepage="javascript:alert(document.domain)")
        assert "ok" in stack.registry("icrc118_deprecate", {"namespace": "com.example.old", "version": (1, 0, 0),
                                                            "reason": "critical vulnerability"}, sender=DEV)
        c.wasms["poison"] = submit_app(stack, "com.example.poison", "[/][bold red]Poison",
                                       "Hostile listing fields",
                                       outcome=None, tags="[" * 2000, tools="]" * 10 + "\x00\x1b[31m", homepage="x")
        c.wasms["signed"] = submit_app(stack, "com.example.signed", "Signed", "Verdicts signed by their verifiers",
                                       signed=True)
        c.wasms["forged"] = submit_app(stack, "com.example.forged", "Forged", "A verifier filed a bad signature",
                                       signed="bad signature", verifiers=1)
        assert "ok" in stack.registry("icrc118_deprecate", {"namespace": "com.example.weather", "version": (1, 1, 0),
                                                            "reason": "breaks get_alerts"}, sender=DEV)
        yield c
    finally:
        server.stop()
        ic.replica.close()


def test_the_index_follows_the_certified_log_and_derives_tiers(chain: Chain, tmp_path: Path) -> None:
    index = Index(tmp_path / "store.sqlite", str(chain.registry.canister_id))
    report = index.sync(chain.registry, chain.root_key)
    assert report.tip_index is not None and report.applied == report.next_index == report.tip_index + 1 > 20
    assert report.namespaces == 8 and report.signatures == 3
    tiers = {a["namespace"]: a["tier"] for a in index.search("", verified_only=False)}
    assert tiers == {"com.example.weather": "verified", "com.example.mail": "rejected",
                     "com.example.notes": "unverified", "org.maps.routes": "audited", "com.example.signed": "verified",
                     "com.example.old": "verified", "com.example.poison": "unverified",
                     "com.example.forged": "unverified"}
    old = index.listing("com.example.old")
    assert old is not None and old["deprecated"] == "critical vulnerability" and old["homepage"] == ""
    poison = index.listing("com.example.poison")
    assert poison is not None and poison["tags"] == [] and "\x1b" not in " ".join(poison["tools"])
    (signed,) = index.verification(chain.wasms["signed"])
    assert [f["signature"] for f in signed["filings"]] == ["valid", "valid"]
    assert {f["signature"] for f in index.verification(chain.wasms["weather"])[0]["filings"]} == {"unsigned"}
    weather = index.listing("com.example.weather")
    assert weather is not None
    # 1.1.0 was deprecated on chain: the listing is the latest version still current, with its own round's fields
    # (a later, unverified request in the namespace changes nothing shown)
    assert (weather["version"], weather["wasm"], weather["verifiers"]) == ("1.0.0", chain.wasms["weather"], 2)
    assert weather["name"] == "Weather" and "read_any_file" not in weather["tools"]
    assert weather["tools"] == ["get_forecast", "get_alerts"] and weather["credentials"] == "none"
    versions = index.versions("com.example.weather")
    assert [(v["version"], v["deprecated"]) for v in versions] == [("1.1.0", "breaks get_alerts"), ("1.0.0", None)]
    (mail,) = index.verification(chain.wasms["mail"])
    assert mail["tier"] == "rejected" and [f["report"] for f in mail["filings"]] == ["rebuilt wasm differs"] * 2
    assert all(not f["attested"] for f in mail["filings"]) and mail["outcomes"][0]["outcome"] == "Rejected"


def test_verified_only_never_returns_an_unverified_app(chain: Chain, tmp_path: Path) -> None:
    index = Index(tmp_path / "store.sqlite", str(chain.registry.canister_id))
    index.sync(chain.registry, chain.root_key)
    for query in ("", "weather", "mail", "notes", "email", "take notes", "routes"):
        for result in index.search(query):
            assert result["tier"] in ("verified", "audited"), (query, result)
    assert [a["namespace"] for a in index.search("weather")] == ["com.example.weather", "org.maps.routes"]
    assert [a["namespace"] for a in index.search("weather", no_credentials=True)] == ["com.example.weather"]
    assert index.search("every version deprecated") == []  # deprecated: out of the verified results
    assert index.search("deprecated", verified_only=False)[0]["namespace"] == "com.example.old"
    assert [a["namespace"] for a in index.search("", min_tier=index_tier("audited"))] == ["org.maps.routes"]
    assert index.search("notes") == [] and index.search("notes", verified_only=False)[0]["tier"] == "unverified"
    # without a query: the higher tier first
    assert [a["namespace"] for a in index.search("", category="DATA")] == ["org.maps.routes", "com.example.weather"]


def index_tier(label: str) -> Any:
    from prometheus_store.tiers import Tier

    return Tier.parse(label)


def test_a_restarted_index_resumes_from_the_last_block(chain: Chain, tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    first = Index(path, str(chain.registry.canister_id)).sync(chain.registry, chain.root_key)
    again = Index(path, str(chain.registry.canister_id))  # a new process would open the same file
    assert again.sync(chain.registry, chain.root_key).applied == 0
    submit_app(chain.stack, "io.calc.app", "Calculator", "Arithmetic for agents", tools="add, multiply",
               developer=STRANGER)
    report = again.sync(chain.registry, chain.root_key)
    assert report.applied == report.next_index - first.next_index > 0 and report.namespaces == 1
    assert [a["namespace"] for a in again.search("arithmetic")] == ["io.calc.app"]
    with pytest.raises(Exception, match="indexes registry"):
        Index(path, "aaaaa-aa")


class Tampered:
    """The registry client, with one answer altered on its way back (what a hostile boundary node could do)."""

    def __init__(self, inner: RegistryClient, what: str) -> None:
        self.inner, self.what = inner, what
        self.canister_id = inner.canister_id

    def icrc3_get_tip_certificate(self) -> Any:
        (tip,) = self.inner.icrc3_get_tip_certificate()
        if self.what == "certificate":
            cert = bytearray(tip["certificate"])
            cert[-5] ^= 1  # in the BLS signature at its end
            tip = {**tip, "certificate": bytes(cert)}
        return [tip]

    def get_provenance(self, wasm: bytes, namespace: Any) -> Any:
        found = self.inner.get_provenance(wasm, namespace)
        if self.what == "statement" and found:
            for f in found[0]["filings"]:
                for st in f["statement"]:
                    st["payload"] = st["payload"].replace(b"moc 1.10.1", b"moc 9.99.9")  # a claim changed
        return found

    def icrc3_get_blocks(self, ranges: Any) -> Any:
        reply = self.inner.icrc3_get_blocks(ranges)
        if self.what == "retype":  # every tx Map as the Blob that hashes the same: the chain still verifies
            import hashlib

            from prometheus_sdk.icrc3 import value_hash

            for entry in reply["blocks"]:
                fields = []
                for k, v in entry["block"]["Map"]:
                    if k == "tx":
                        parts = sorted(hashlib.sha256(key.encode()).digest() + value_hash(val) for key, val in v["Map"])
                        v = {"Blob": b"".join(parts)}
                    fields.append((k, v))
                entry["block"] = {"Map": fields}
        if self.what == "block" and reply["blocks"]:
            block = reply["blocks"][-1]["block"]
            fields = [(k, {"Nat": 1} if k == "ts" else v) for k, v in block["Map"]]
            reply["blocks"][-1]["block"] = {"Map": fields}
        return reply


@pytest.mark.parametrize("what", ["certificate", "block", "retype"])
def test_a_tampered_tip_or_block_stops_indexing_and_changes_nothing(chain: Chain, tmp_path: Path, what: str) -> None:
    index = Index(tmp_path / "store.sqlite", str(chain.registry.canister_id))
    with pytest.raises(ChainError):
        index.sync(Tampered(chain.registry, what), chain.root_key)
    assert index.status()["next_block"] == 0 and index.search("", verified_only=False) == []
    with pytest.raises(ChainError, match="certificate"):
        index.sync(chain.registry, b"\x00" * 133)  # another network's root key
    assert index.sync(chain.registry, chain.root_key).applied > 0


def test_signed_filings_are_checked_against_the_logged_envelope(chain: Chain, tmp_path: Path) -> None:
    """A statement whose envelope is not the one the certified block names is not that filing's: it is asked for
    again (a lagging or tampered answer), at most MAX_SIGNATURE_TRIES times; a logged statement whose signature
    does not verify is `invalid`."""
    from prometheus_store.index import MAX_SIGNATURE_TRIES

    honest = Index(tmp_path / "honest.sqlite", str(chain.registry.canister_id))
    honest.sync(chain.registry, chain.root_key)
    (forged,) = honest.verification(chain.wasms["forged"])
    assert [f["signature"][:9] for f in forged["filings"]] == ["invalid: "], forged["filings"]
    index = Index(tmp_path / "store.sqlite", str(chain.registry.canister_id))
    assert index.sync(Tampered(chain.registry, "statement"), chain.root_key).signatures == 0
    (signed,) = index.verification(chain.wasms["signed"])
    assert [f["signature"] for f in signed["filings"]] == ["not checked yet"] * 2
    for _ in range(MAX_SIGNATURE_TRIES - 1):
        index.sync(Tampered(chain.registry, "statement"), chain.root_key)
    (signed,) = index.verification(chain.wasms["signed"])
    assert all(f["signature"].startswith("unchecked: ") for f in signed["filings"]), signed["filings"]


def test_the_cli_indexes_searches_and_refuses_a_wrong_root_key(chain: Chain, tmp_path: Path) -> None:
    env = chain.env(tmp_path)
    out = subprocess.run([PROMETHEUS, "--json", "store", "index"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["listings"] >= 4
    out = subprocess.run([PROMETHEUS, "--json", "store", "search", "forecast", "--no-credentials"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert [a["namespace"] for a in json.loads(out.stdout)] == ["com.example.weather"]
    out = subprocess.run([PROMETHEUS, "store", "search", "--all", "hostile"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "[/][bold red]Poison" in out.stdout, out.stdout + out.stderr
    out = subprocess.run([PROMETHEUS, "store", "search", "--min-tier", "gold"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1 and "unknown tier 'gold'" in out.stderr and "Traceback" not in out.stderr


async def _exercise(session: Any, chain: Chain) -> None:
    await session.initialize()
    tools = {t.name for t in (await session.list_tools()).tools}
    assert tools == {"search_servers", "get_server", "list_versions", "get_verification"}
    found = (await session.call_tool("search_servers", {"query": "weather"})).structured_content
    names = [s["name"] for s in found["servers"]]
    assert names == ["com.example/weather", "org.maps/routes"]
    meta = found["servers"][0]["_meta"]["org.prometheus-protocol/verification"]
    assert meta["tier"] == "verified" and meta["wasm_sha256"] == chain.wasms["weather"]
    assert any("verify --offline" in line for line in meta["verify"])
    everything = (await session.call_tool("search_servers", {"query": "", "verified_only": False, "limit": 100}))
    assert len(everything.structured_content["servers"]) >= 4
    strict = (await session.call_tool("search_servers", {"query": "notes mail email"})).structured_content
    assert strict["servers"] == []  # neither the unverified nor the rejected app
    server = (await session.call_tool("get_server", {"namespace": "com.example/weather"})).structured_content
    assert server["server"]["version"] == "1.0.0" and server["verification"][0]["latest"]
    versions = (await session.call_tool("list_versions", {"namespace": "com.example.weather"})).structured_content
    assert [v["version"] for v in versions["versions"]] == ["1.1.0", "1.0.0"]
    rounds = (await session.call_tool("get_verification", {"wasm_hash": chain.wasms["mail"]})).structured_content
    assert rounds["rounds"][0]["tier"] == "rejected"
    missing = await session.call_tool("get_server", {"namespace": "com.nobody.here"})
    assert missing.is_error and "no app 'com.nobody.here'" in missing.content[0].text
    gold = await session.call_tool("search_servers", {"min_tier": "gold"})
    assert gold.is_error and "unknown tier 'gold'" in gold.content[0].text
    bad = await session.call_tool("get_verification", {"wasm_hash": "not hex"})
    assert bad.is_error
    resource = await session.read_resource("prometheus://apps/com.example.weather")
    assert json.loads(resource.contents[0].text)["server"]["name"] == "com.example/weather"


def test_mcp_discovery_over_stdio(chain: Chain, tmp_path: Path) -> None:
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(command=PROMETHEUS, args=["store", "mcp"], env=chain.env(tmp_path))

    async def main() -> None:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await _exercise(session, chain)

    anyio.run(main)


def test_the_discovery_server_requires_attested_agents_when_configured(chain: Chain, tmp_path: Path) -> None:
    """`--attestation FILE`: agents present a token (prometheus_attest) or get only the tools the policy leaves open;
    stdio here, and streamable HTTP (`serve`, then stateful) in the next test."""
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client
    from mcp.shared.exceptions import MCPError

    from prometheus_attest import Issuer, SigningKey
    from prometheus_attest.mcp import AttestingClientSession, Credentials

    with attested_store_config(tmp_path) as (config, key, issuer):
        params = StdioServerParameters(command=PROMETHEUS, args=["store", "mcp", "--attestation", str(config)],
                                       env=chain.env(tmp_path))

        async def main() -> None:
            token = Issuer(issuer, key).issue(STORE_AUDIENCE, {"provider": "test", "model_version": "m-1"})
            async with stdio_client(params) as (read, write), \
                    AttestingClientSession(read, write, credentials=Credentials(token)) as session:
                await session.initialize()
                found = (await session.call_tool("search_servers", {"query": "weather"})).structured_content
                assert [s["name"] for s in found["servers"]] == ["com.example/weather", "org.maps/routes"]
            async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                with pytest.raises(MCPError) as refused:
                    await session.call_tool("search_servers", {"query": "weather"})
                assert refused.value.data == {"code": "attestation_required"}
                open_tool = await session.call_tool("get_verification", {"wasm_hash": chain.wasms["mail"]})
                assert not open_tool.is_error  # the policy leaves this tool open
            other = Issuer(issuer, SigningKey.generate()).issue(STORE_AUDIENCE, {"provider": "x"})
            async with stdio_client(params) as (read, write), \
                    AttestingClientSession(read, write, credentials=Credentials(other)) as session:
                await session.initialize()
                with pytest.raises(MCPError) as forged:
                    await session.call_tool("search_servers", {"query": "weather"})
                assert forged.value.data == {"code": "unknown_key"}

        anyio.run(main)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"audience": STORE_AUDIENCE, "issuers": {"https://i.example": None}, "defualt": "none"}))
    out = subprocess.run([PROMETHEUS, "store", "mcp", "--attestation", str(bad)], env=chain.env(tmp_path),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "defualt" in out.stderr and "Traceback" not in out.stderr


def test_the_served_discovery_server_holds_sessions_for_attested_agents(chain: Chain, tmp_path: Path) -> None:
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.exceptions import MCPError

    from prometheus_attest import Issuer
    from prometheus_attest.mcp import AttestingClientSession, Credentials

    with attested_store_config(tmp_path) as (config, key, issuer):
        proc, url = start_serve(chain, tmp_path, "--attestation", str(config))
        try:
            token = Issuer(issuer, key).issue(STORE_AUDIENCE, {"provider": "test", "model_version": "m-1"})

            async def session(calls: int) -> list[Any]:
                out: list[Any] = []
                async with streamable_http_client(f"{url}/mcp") as (read, write, *_), \
                        AttestingClientSession(read, write, credentials=Credentials(token)) as s:
                    await s.initialize()
                    for _ in range(calls):
                        try:
                            out.append((await s.call_tool("search_servers", {"query": "weather"})).is_error)
                        except MCPError as e:
                            out.append(e.data)
                return out

            assert anyio.run(session, 3) == [False, False, False]  # one session: verified once, used thrice
            assert anyio.run(session, 1) == [{"code": "replay"}]  # the same token in a new session
        finally:
            proc.terminate()
            proc.wait(timeout=10)


STORE_AUDIENCE = "urn:prometheus:store"


@contextmanager
def attested_store_config(tmp_path: Path) -> Iterator[tuple[Path, Any, str]]:
    """An issuer serving its JWKS on loopback and a store configuration trusting it (search needs a token,
    get_verification does not)."""
    from prometheus_attest import SigningKey
    from prometheus_attest.jwks_server import JWKS_PATH, JWKSServer, Route
    from prometheus_attest.keys import jwks

    key = SigningKey.generate()
    with JWKSServer({JWKS_PATH: Route.jwks(jwks([key.public]))}) as issuer_http:
        issuer = f"http://127.0.0.1:{issuer_http.port}"
        config = tmp_path / "attestation.json"
        config.write_text(json.dumps({"audience": STORE_AUDIENCE, "issuers": {issuer: issuer_http.url()},
                                      "default": "required", "tools": {"get_verification": "none"}}))
        yield config, key, issuer


def start_serve(chain: Chain, tmp_path: Path, *options: str) -> tuple[subprocess.Popen[bytes], str]:
    """`prometheus store serve OPTIONS` in its own process, once /healthz answers."""
    port = free_port()
    proc = subprocess.Popen([PROMETHEUS, "store", "serve", "--port", str(port), *options],
                            env=chain.env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1, verify=shared_tls()).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(proc.stderr.read() if proc.stderr else "store serve did not start")
        time.sleep(0.1)


@pytest.fixture
def served(chain: Chain, tmp_path: Path) -> Iterator[str]:
    """`prometheus store serve` in its own process."""
    proc, url = start_serve(chain, tmp_path, "--interval", "0.5")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_mcp_discovery_over_streamable_http(chain: Chain, served: str) -> None:
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def main() -> None:
        async with streamable_http_client(f"{served}/mcp") as (read, write), ClientSession(read, write) as session:
            await _exercise(session, chain)

    anyio.run(main)


def test_the_registry_api_pages_with_cursors(chain: Chain, served: str) -> None:
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{served}/v0/servers", params=params, timeout=10).json()
        seen += [item["server"]["name"] for item in page["servers"]]
        for item in page["servers"]:
            assert item["server"]["version"] and item["_meta"]["io.modelcontextprotocol.registry/official"]
        cursor = page["metadata"].get("nextCursor")
        if not cursor:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen)) >= 4
    found = httpx.get(f"{served}/v0/servers", params={"search": "forecast"}, timeout=10).json()
    assert [s["server"]["name"] for s in found["servers"]] == ["com.example/weather"]
    future = httpx.get(f"{served}/v0/servers", params={"updated_since": "2999-01-01T00:00:00Z"}, timeout=10).json()
    assert future["servers"] == []
    for bad in ("yesterday", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-23:59", "2026-01-01T00:00:00"):
        assert httpx.get(f"{served}/v0/servers", params={"updated_since": bad}, timeout=10).status_code == 400
    one = httpx.get(f"{served}/v0/servers/com.example%2Fweather", timeout=10).json()
    assert one["server"]["version"] == "1.0.0"
    versions = httpx.get(f"{served}/v0/servers/com.example%2Fweather/versions", timeout=10).json()
    assert [s["server"]["version"] for s in versions["servers"]] == ["1.1.0", "1.0.0"]
    newer, current = versions["servers"]
    meta = "io.modelcontextprotocol.registry/official"
    assert (newer["_meta"][meta]["status"], newer["_meta"][meta]["isLatest"]) == ("deprecated", False)
    assert (current["_meta"][meta]["status"], current["_meta"][meta]["isLatest"]) == ("active", True)
    verification = "org.prometheus-protocol/verification"
    assert newer["server"]["_meta"][verification]["wasm_sha256"] == chain.wasms["weather2"]
    assert newer["server"]["_meta"][verification]["commit"] != current["server"]["_meta"][verification]["commit"]
    old = httpx.get(f"{served}/v0/servers/com.example%2Fold", timeout=10).json()
    assert "websiteUrl" not in old["server"] and old["_meta"][meta]["status"] == "deprecated"
    assert httpx.get(f"{served}/v0/servers/com.nobody%2Fhere", timeout=10).status_code == 404


def test_web_pages_show_tiers_evidence_and_the_verify_command(chain: Chain, served: str) -> None:
    home = httpx.get(served, timeout=10)
    assert home.status_code == 200 and "Weather" in home.text and "Notes" not in home.text
    everything = httpx.get(served, params={"verified": "0"}, timeout=10).text
    assert "Notes" in everything and "tier-rejected" in everything
    app = httpx.get(f"{served}/apps/com.example.weather", timeout=10).text
    assert "deprecated: breaks get_alerts" in app and "prometheus verify --offline" in app and "1.0.0" in app
    wasm = httpx.get(f"{served}/wasm/{chain.wasms['mail']}", timeout=10).text
    assert "rebuilt wasm differs" in wasm and "diverged" in wasm
    assert httpx.get(f"{served}/wasm/xyz", timeout=10).status_code == 400
    assert httpx.get(f"{served}/apps/com.nobody.here", timeout=10).status_code == 404
    old = httpx.get(f"{served}/apps/com.example.old", timeout=10).text
    assert "javascript:" not in old and "Deprecated" in old and "critical vulnerability" in old
    poison = httpx.get(f"{served}/apps/com.example.poison", timeout=10)
    assert poison.status_code == 200 and "\x1b" not in poison.text
    hostile = httpx.get(served, params={"q": "<script>alert(1)</script>" * 50, "tier": "gold"}, timeout=10)
    assert hostile.status_code == 400 and "<script>" not in hostile.text


def test_the_server_follows_new_blocks(chain: Chain, served: str) -> None:
    submit_app(chain.stack, "io.later.app", "Latecomer", "Arrives after the server started", developer=STRANGER)
    deadline = time.monotonic() + 20
    while "Latecomer" not in httpx.get(served, params={"q": "latecomer"}, timeout=10).text:
        assert time.monotonic() < deadline, "the server never indexed the new app"
        time.sleep(0.2)



@pytest.fixture(scope="module")
def catalog(product: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    """The fixed catalog (testkit/catalog.py, 52 listings) indexed from a real registry's log."""
    from testkit.catalog import LISTINGS

    ic = EmbeddedBackend()
    server = IcHttpServer(ic.replica).start()
    try:
        stack = Stack.deploy(ic, product)  # filled in process, read over HTTP as the store reads it
        prepare(stack)
        for i, (namespace, name, description, tools, tags, category) in enumerate(LISTINGS):
            developer = Principal(bytes([0x50 + i // 10]) * 29)  # a principal creates at most 10 namespaces
            submit_app(stack, namespace, name, description, outcome=None, tools=tools, tags=tags, category=category,
                       developer=developer)
        conn = connect(Network("local", server.url))
        index = Index(tmp_path_factory.mktemp("catalog") / "catalog.sqlite", str(stack.registry.canister_id))
        index.sync(RegistryClient(conn, str(stack.registry.canister_id)), conn.root_key)
        yield index
    finally:
        server.stop()
        ic.replica.close()


def test_ranking_finds_the_expected_app_for_a_fixed_set_of_queries(catalog: Index) -> None:
    from testkit.catalog import LISTINGS, QUERIES, recall_at

    assert len(LISTINGS) >= 50 and len(QUERIES) >= 30
    assert catalog.status()["listings"] == len(LISTINGS)

    def search(query: str) -> list[str]:
        return [a["namespace"] for a in catalog.search(query, verified_only=False, limit=10)]

    at1, misses1 = recall_at(1, search)
    at5, misses5 = recall_at(5, search)
    print(f"recall@1 {at1:.3f}, recall@5 {at5:.3f} over {len(QUERIES)} queries and {len(LISTINGS)} listings")
    assert at5 == 1.0, misses5
    assert at1 >= 0.9, misses1


ARTIFACTS = Path(__file__).resolve().parent.parent / "build" / "test-artifacts" / "store"


def _chromium() -> str:
    import shutil

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("Debian's chromium is not installed: `make setup` installs it (apt-get install chromium)")
    return found


def test_the_web_view_in_a_real_browser_without_javascript(chain: Chain, served: str) -> None:
    """Chromium (Debian's, driven by Playwright) with JavaScript off: search through the form, open an app and a
    wasm, on a desktop and a phone-sized screen; screenshots of every page are kept in build/test-artifacts."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            for device, (width, height) in (("desktop", (1280, 900)), ("phone", (375, 812))):
                page = browser.new_context(java_script_enabled=False,
                                           viewport={"width": width, "height": height}).new_page()
                page.goto(served)
                assert page.locator("h1").inner_text() == "Find a verified MCP server"
                page.get_by_label("Search").fill("forecast")
                page.get_by_role("button", name="Search").click()
                page.wait_for_load_state()
                assert "q=forecast" in page.url
                cards = page.locator("ul.apps > li")
                assert cards.count() == 1 and "Weather" in cards.first.inner_text()
                assert "verified" in cards.first.locator(".badge").inner_text()
                page.screenshot(path=str(ARTIFACTS / f"search-{device}.png"), full_page=True)
                page.get_by_label("Verified only").uncheck()
                page.get_by_label("Search").fill("")
                page.get_by_role("button", name="Search").click()
                page.wait_for_load_state()
                badges = page.locator("ul.apps .badge").all_inner_texts()
                assert {"verified", "audited", "unverified", "rejected"} <= set(badges)
                page.screenshot(path=str(ARTIFACTS / f"listing-all-{device}.png"), full_page=True)
                page.get_by_role("link", name="Weather").click()
                page.wait_for_load_state()
                assert page.locator("h1").inner_text().startswith("Weather")
                body = page.locator("main").inner_text()
                assert "deprecated: breaks get_alerts" in body and "prometheus verify --offline" in body
                assert "attested" in body and "unsigned" in body
                page.screenshot(path=str(ARTIFACTS / f"app-{device}.png"), full_page=True)
                page.locator("dd a.hash").first.click()
                page.wait_for_load_state()
                assert page.locator("h1").inner_text().startswith("Wasm")
                assert "Round" in page.locator("main").inner_text()
                page.screenshot(path=str(ARTIFACTS / f"wasm-{device}.png"), full_page=True)
                page.goto(f"{served}/wasm/{chain.wasms['mail']}")
                assert "rebuilt wasm differs" in page.locator("main").inner_text()
                page.screenshot(path=str(ARTIFACTS / f"wasm-rejected-{device}.png"), full_page=True)
            # The layout fits a phone's width (measured with scripts on, in the browser's own layout).
            phone = browser.new_context(viewport={"width": 375, "height": 812}).new_page()
            for path in ("/", "/apps/com.example.weather", f"/wasm/{chain.wasms['mail']}"):
                phone.goto(served + path)
                overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                assert overflow <= 0, (path, overflow)
                unlabeled = phone.evaluate("[...document.querySelectorAll('input:not([type=hidden]), select')]"
                                           ".filter(e => !e.labels || e.labels.length === 0).length")
                assert unlabeled == 0, path
        finally:
            browser.close()
    assert len(list(ARTIFACTS.glob("*.png"))) >= 10


def test_a_replayed_or_stale_tip_certificate_is_refused(chain: Chain, tmp_path: Path) -> None:
    index = Index(tmp_path / "store.sqlite", str(chain.registry.canister_id))
    (old_tip,) = chain.registry.icrc3_get_tip_certificate()
    index.sync(chain.registry, chain.root_key)
    submit_app(chain.stack, "io.replay.app", "Replay", "Added after the old tip", developer=STRANGER)
    index.sync(chain.registry, chain.root_key)

    class Replaying(Tampered):
        def icrc3_get_tip_certificate(self) -> Any:
            return [old_tip]

    before = index.status()
    with pytest.raises(ChainError, match="older than one already trusted|ends at block"):
        index.sync(Replaying(chain.registry, ""), chain.root_key)
    with pytest.raises(ChainError, match="certificate"):
        index.sync(chain.registry, chain.root_key, max_age_ns=1)  # any real certificate is older than 1 ns
    assert index.status() == before


def test_an_index_file_is_checked_before_it_is_touched(chain: Chain, tmp_path: Path) -> None:
    import sqlite3

    from prometheus_store.index import StoreError

    registry = str(chain.registry.canister_id)
    with pytest.raises(StoreError, match="directory"):
        Index(tmp_path, registry)
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match="not a store index"):
        Index(corrupt, registry)
    other = tmp_path / "notes.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    with pytest.raises(StoreError, match="not a store index"):
        Index(other, registry)
    with sqlite3.connect(other) as db:
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["notes"]
    old = tmp_path / "old.sqlite"
    with sqlite3.connect(old) as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('schema', '1'), ('registry', ?)", (registry,))
    with pytest.raises(StoreError, match="another version"):
        Index(old, registry)
    env = chain.env(tmp_path)
    for path in (tmp_path, corrupt, other):
        out = subprocess.run([PROMETHEUS, "store", "index", "--index", str(path)], env=env, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 1 and "Traceback" not in out.stderr and "--index" in out.stderr, out.stderr


def test_search_words_become_quoted_terms_and_versions_sort_by_number() -> None:
    from prometheus_store.index import _version_key, fts_query

    assert fts_query('weather" OR x NEAR(a b) *') == '"weather"* OR "or" OR "near"*'
    assert fts_query("a b c") is None and fts_query("") is None
    many = fts_query(" ".join(f"w{i}" for i in range(30)))
    assert many is not None and many.count("OR") == 7  # at most 8 words
    versions = [(1, 10, 0), (1, 9, 9), (2, 0, 0), (10, 0, 0), (2**70, 0, 0), (0, 0, 1)]
    assert sorted(versions, key=_version_key) == sorted(versions)


def test_a_rejected_audit_of_any_type_makes_the_tier_rejected() -> None:
    from prometheus_store.tiers import RoundState, Tier, tier_of

    assert tier_of(RoundState({"build_reproducibility_v1": "Verified"})) is Tier.VERIFIED
    assert tier_of(RoundState({"build_reproducibility_v1": "Verified", "tools_v1": "Verified"})) is Tier.AUDITED
    assert tier_of(RoundState({"build_reproducibility_v1": "Verified", "tools_v1": "Rejected",
                               "data_safety_v1": "Verified"})) is Tier.REJECTED
    assert tier_of(RoundState({"tools_v1": "Verified"})) is Tier.UNVERIFIED
    assert tier_of(None) is Tier.UNVERIFIED


def test_serving_beyond_loopback_needs_a_public_url_and_mcp_refuses_other_hosts(chain: Chain, served: str,
                                                                               tmp_path: Path) -> None:
    out = subprocess.run([PROMETHEUS, "store", "serve", "--host", "0.0.0.0", "--port", "1"], env=chain.env(tmp_path),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "--base-url" in out.stderr and "Traceback" not in out.stderr
    hostile = httpx.post(f"{served}/mcp", headers={"Host": "attacker.example", "Origin": "http://attacker.example",
                                                   "Content-Type": "application/json",
                                                   "Accept": "application/json, text/event-stream"},
                         content=b'{"jsonrpc":"2.0","id":1,"method":"ping"}', timeout=10)
    assert hostile.status_code in (403, 421), hostile.status_code


def test_mcp_accepts_the_public_host_with_or_without_its_default_port() -> None:
    from prometheus_store.web import _transport_security

    https = _transport_security("127.0.0.1", "https://store.example.org:443/x")
    assert {"store.example.org", "store.example.org:443"} <= set(https.allowed_hosts)
    assert "https://store.example.org" in https.allowed_origins
    custom = _transport_security("0.0.0.0", "http://store.example.org:8090")
    assert "store.example.org:8090" in custom.allowed_hosts and "store.example.org" not in custom.allowed_hosts
    ipv6 = _transport_security("::1", "http://[::1]:8090")
    assert "[::1]:8090" in ipv6.allowed_hosts


def test_the_registry_refuses_a_version_number_readers_could_not_decode(chain: Chain) -> None:
    """A version part of 2**800 (beyond 100 bytes of LEB128) made every reader's `icrc3_get_blocks` page
    undecodable (Candid decoders bound numbers), which would have stopped every store's indexing at that block."""
    stack = chain.stack
    huge = stack.registry("icrc118_update_wasm", {"namespace": "com.example.signed", "version": (2**600, 0, 0),
                                                  "wasm_hash": bytes.fromhex(chain.wasms["signed"]), "previous": []},
                          sender=DEV)
    assert huge == {"err": {"InvalidArgument": "each part of a version is at most 4294967295"}}
    edge = stack.registry("icrc118_update_wasm", {"namespace": "com.example.signed", "version": (4294967295, 0, 0),
                                                  "wasm_hash": bytes.fromhex(chain.wasms["signed"]), "previous": []},
                          sender=DEV)
    assert "ok" in edge, edge
    assert stack.registry("icrc118_deprecate", {"namespace": "com.example.signed", "version": (2**64, 0, 0),
                                                "reason": "x"}, sender=DEV) == {"err": {"VersionNotFound": None}}
