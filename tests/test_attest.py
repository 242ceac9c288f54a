"""Agent attestation (seed 003, prometheus_attest): tokens, the fail-closed checks (each failure its error), JWKS
over real HTTP on loopback (caching, rotation, retry, circuit breaker, redirects), replay caches (memory, and a
real redis-server shared by verifiers), metrics, real MCP sessions (stdio and streamable HTTP, server and agent
in separate processes), the CLI, and every attack of the suite as its own test."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from prometheus_attest import (
    Issuer,
    JWKSKeys,
    MemoryReplayCache,
    Policy,
    RedisReplayCache,
    SigningKey,
    StaticKeys,
    Verifier,
    attacks,
    errors,
    jwks,
    make_proof,
    tokens,
)
from prometheus_attest.attacks import refused as code_of
from prometheus_attest.jwks_server import JWKS_PATH, JWKSServer, Route
from prometheus_attest.keys import jwks as key_set
from testkit import ROOT
from testkit.ports import free_port, wait_for_port
from testkit.redis_server import redis_server

ISS = "https://issuer.example.com"
AUD = "urn:example:tools"
IDENTITY = {"model_family": "claude-4", "model_version": "claude-sonnet-4", "provider": "anthropic"}
PY = sys.executable
PROMETHEUS = str(Path(sys.executable).parent / "prometheus")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def verifier(key: SigningKey, **policy: Any) -> Verifier:
    return Verifier(Policy(frozenset({ISS}), AUD, **policy), StaticKeys({ISS: [key.public]}))


# ---------------------------------------------------------------- tokens and the checks


def test_a_token_verifies_once_and_says_who_vouches() -> None:
    key = SigningKey.generate()
    token = Issuer(ISS, key).issue(AUD, IDENTITY, metadata={"safety_level": "enhanced"})
    header = tokens.inspect(token)["header"]
    assert header == {"alg": "Ed25519", "typ": tokens.TOKEN_TYPE, "kid": key.kid}  # RFC 9864's name, explicit type
    v = verifier(key)
    agent = run(v.verify(token))
    assert (agent.issuer, agent.identity, agent.kid, agent.key_bound) == (ISS, IDENTITY, key.kid, False)
    assert agent.metadata["safety_level"] == "enhanced" and agent.expires_at - agent.issued_at == 300
    assert run(code_of(v, token)) == "replay"
    assert v.observer.count("ok") == 1 and v.observer.count("replay") == 1


def test_the_eddsa_name_of_rfc_8037_is_accepted_too() -> None:
    key = SigningKey.generate()
    claims = attacks.claims_of(Issuer(ISS, key).issue(AUD, IDENTITY))
    token = attacks.forge(key, claims, {"alg": "EdDSA", "typ": tokens.TOKEN_TYPE, "kid": key.kid})
    assert run(verifier(key).verify(token)).jti == claims["jti"]


def test_a_key_bound_token_counts_only_with_its_holders_fresh_proof() -> None:
    key, holder = SigningKey.generate(), SigningKey.generate()
    issuer = Issuer(ISS, key)
    v = verifier(key)
    token = issuer.issue(AUD, IDENTITY, holder=holder.public)
    assert run(code_of(v, token)) == "proof_required"
    stale = make_proof(holder, token, AUD, now=int(time.time()) - 600)
    assert run(code_of(v, token, stale)) == "bad_proof"
    assert run(code_of(v, token, make_proof(holder, token, "urn:other"))) == "bad_proof"
    assert run(code_of(v, token, "not.a.proof")) == "bad_proof"
    proof = make_proof(holder, token, AUD)
    agent = run(v.verify(token, proof))  # refusals above did not spend the jti
    assert agent.key_bound
    run(v.use(agent, token, make_proof(holder, token, AUD)))  # a later use: a fresh proof each time
    with pytest.raises(errors.Replay):
        run(v.use(agent, token, proof))  # a proof is spent like a token
    with pytest.raises(errors.BadProof):
        run(v.use(agent, token, make_proof(SigningKey.generate(), token, AUD)))
    strict = verifier(key, require_proof=True)
    assert run(code_of(strict, issuer.issue(AUD, IDENTITY))) == "proof_required"


def test_the_policy_refuses_what_would_accept_too_much() -> None:
    with pytest.raises(errors.PolicyError):
        Policy(frozenset({ISS}), "")  # no audience: the reference skipped the check then
    with pytest.raises(errors.PolicyError):
        Policy(frozenset(), AUD)
    for url in ("http://issuer.example.com/jwks.json", "https://[::1", "https://h:99999/x"):  # plain http off
        with pytest.raises(errors.PolicyError):                                              # loopback, not a URL
            JWKSKeys({ISS: url})
    with pytest.raises(errors.PolicyError):  # a cache that would forget an id before its token expires
        Verifier(Policy(frozenset({ISS}), AUD, max_lifetime=7200), StaticKeys({}), MemoryReplayCache(horizon=3600))
    from prometheus_attest import config
    short = config.from_dict({"audience": AUD, "issuers": {ISS: None}, "max_lifetime": 60})  # proofs' ids too
    assert short.verifier.replay.horizon >= 2 * tokens.PROOF_WINDOW  # type: ignore[attr-defined]
    from prometheus_attest.mcp import ServerPolicy
    for bad in ({"tools": {"pay": {"requirement": "required", "isuers": ["x"]}}}, {"tools": {"pay": {"issuers": "x"}}},
                {"tools": ["pay"]}, {"default": "requird"}, {"tools": {"pay": 3}}):
        with pytest.raises(errors.PolicyError):
            ServerPolicy.from_dict(bad)


def test_malformed_input_of_every_shape_is_refused_without_a_crash() -> None:
    key = SigningKey.generate()
    v = verifier(key)
    good = Issuer(ISS, key).issue(AUD, IDENTITY)
    h, p, s = good.split(".")
    shapes: list[object] = [None, "", 42, b"bytes", "a.b", "a.b.c.d", "é.é.é", f"{h}.{p}", f"{h}.{p}.{s}.",
                            f"{h}.{p}.{s[:-4]}", f"{h}.{p}.!!!!", "e30.e30.", f"{h}.W10.{s}", f"{h}.bnVsbA.{s}",
                            "x" * 10_000, f"{h}.{p}.{s}" + "A" * 4]
    shapes += [attacks.forge(key, {**attacks.claims_of(good), "iat": "now"}),
               attacks.forge(key, {**attacks.claims_of(good), "exp": True}),
               attacks.forge(key, {**attacks.claims_of(good), "aud": []}),
               attacks.forge(key, {**attacks.claims_of(good), "aud": [AUD] * 100}),
               attacks.forge(key, {**attacks.claims_of(good), "jti": ""}),
               attacks.forge(key, {**attacks.claims_of(good), "agent_identity": "text"}),
               attacks.forge(key, {**attacks.claims_of(good), "cnf": {"jwk": {"kty": "RSA"}}}),
               attacks.forge(key, {**attacks.claims_of(good), "jti": "\ud800"})]  # a lone surrogate
    for shape in shapes:
        code = run(code_of(v, shape, "x.y.z"))
        assert code is not None and code != "replay", shape
    assert run(v.verify(good)).jti  # none of them spent anything


def test_without_the_crypto_library_nothing_is_made_or_accepted() -> None:
    code = ("import sys; sys.modules['nacl'] = sys.modules['nacl.bindings'] = sys.modules['nacl.exceptions'] = None\n"
            "from prometheus_attest import SigningKey, Verifier, Policy, StaticKeys, errors\n"
            "for f in (lambda: SigningKey.generate(),\n"
            "          lambda: Verifier(Policy(frozenset({'i'}), 'a'), StaticKeys({}))):\n"
            "    try: f()\n"
            "    except errors.CryptoUnavailable as e: print('refused', e.code)\n"
            "    else: print('ACCEPTED')\n")
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.stdout.split("\n")[:2] == ["refused crypto_unavailable"] * 2, out.stderr


def test_key_files_are_private_never_overwritten_and_checked(tmp_path: Path) -> None:
    key = SigningKey.generate("issuer-2026")
    path = tmp_path / "key.json"
    key.save(path)
    assert (path.stat().st_mode & 0o777) == 0o600
    with pytest.raises(FileExistsError):
        SigningKey.generate().save(path)
    assert SigningKey.load(path).public == key.public and "seed" not in repr(key)
    data = json.loads(path.read_text())
    data["x"] = SigningKey.generate().public.x
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(errors.Malformed):
        SigningKey.load(tmp_path / "bad.json")


# ---------------------------------------------------------------- every attack is a test


@pytest.mark.parametrize("name", [a[0] for a in attacks.ATTACKS])
def test_attack(name: str) -> None:
    (entry,) = [a for a in attacks.ATTACKS if a[0] == name]
    _, _, expected, fn = entry

    async def one() -> str | None:
        with JWKSServer() as server:
            return await fn(attacks.World(server))

    assert run(one()) == expected


def test_the_suite_covers_the_reference_and_more_and_catches_everything() -> None:
    results = run(attacks.run_all())
    summary = attacks.summary(results)
    assert summary["attacks"] >= 8 + 20 and summary["as_expected"] == summary["attacks"]
    assert {r.name for r in results} >= {"model_spoofing", "provenance_forgery", "token_replay", "token_tampering",
                                         "issuer_typosquatting", "downgrade", "audience_mismatch", "safety_downgrade"}


# ---------------------------------------------------------------- JWKS over HTTP


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def issuer_http() -> Iterator[tuple[JWKSServer, SigningKey]]:
    key = SigningKey.generate()
    with JWKSServer({JWKS_PATH: Route.jwks(key_set([key.public]), max_age=120)}) as server:
        yield server, key


def test_jwks_is_cached_as_http_says_and_rotates_by_kid(issuer_http: tuple[JWKSServer, SigningKey]) -> None:
    server, key = issuer_http
    clock = Clock()
    keys = JWKSKeys({ISS: server.url()}, clock=clock, backoff=0)
    v = Verifier(Policy(frozenset({ISS}), AUD), keys)

    async def scenario() -> None:
        for _ in range(3):
            await v.verify(Issuer(ISS, key).issue(AUD, IDENTITY))
        assert server.hits[JWKS_PATH] == 1  # fresh for max-age=120
        clock.now += 121
        await v.verify(Issuer(ISS, key).issue(AUD, IDENTITY))
        assert server.hits[JWKS_PATH] == 2
        nxt = SigningKey.generate()  # rotation: the issuer publishes the next key and signs with it
        server.routes[JWKS_PATH] = Route.jwks(key_set([key.public, nxt.public]), max_age=120)
        clock.now += jwks.REFRESH_INTERVAL
        await v.verify(Issuer(ISS, nxt).issue(AUD, IDENTITY))  # an unknown kid refreshes once
        assert server.hits[JWKS_PATH] == 3
        stranger = SigningKey.generate()  # random kids do not turn the verifier into a fetch loop
        for _ in range(5):
            assert await code_of(v, Issuer(ISS, stranger).issue(AUD, IDENTITY)) == "unknown_key"
        assert server.hits[JWKS_PATH] == 3
        await keys.aclose()

    run(scenario())


def test_an_unreachable_jwks_fails_closed_unless_a_copy_is_cached(issuer_http: tuple[JWKSServer, SigningKey]) -> None:
    server, key = issuer_http
    clock = Clock()

    async def scenario() -> None:
        cold = JWKSKeys({ISS: f"http://127.0.0.1:{free_port()}/jwks.json"}, clock=clock, backoff=0)
        assert await code_of(Verifier(Policy(frozenset({ISS}), AUD), cold),
                             Issuer(ISS, key).issue(AUD, IDENTITY)) == "jwks_unavailable"
        keys = JWKSKeys({ISS: server.url()}, clock=clock, backoff=0)
        v = Verifier(Policy(frozenset({ISS}), AUD), keys)
        await v.verify(Issuer(ISS, key).issue(AUD, IDENTITY))
        server.routes[JWKS_PATH] = Route(503, b"down")
        clock.now += 200  # stale: refreshes fail (retried), the cached set still serves
        await v.verify(Issuer(ISS, key).issue(AUD, IDENTITY))
        assert server.hits[JWKS_PATH] == 1 + keys.retries
        await v.verify(Issuer(ISS, key).issue(AUD, IDENTITY))  # within REFRESH_INTERVAL: not asked again
        assert server.hits[JWKS_PATH] == 1 + keys.retries
        for _ in range(jwks.FAILURES_TO_OPEN - 1):  # each refresh fails; the fifth in a row opens the breaker
            clock.now += jwks.REFRESH_INTERVAL
            await v.verify(Issuer(ISS, key).issue(AUD, IDENTITY))
        hits = server.hits[JWKS_PATH]
        assert hits == 1 + jwks.FAILURES_TO_OPEN * keys.retries
        clock.now += jwks.REFRESH_INTERVAL
        await v.verify(Issuer(ISS, key).issue(AUD, IDENTITY))
        assert server.hits[JWKS_PATH] == hits  # open: no request
        assert v.observer.registry.get_sample_value("prometheus_attest_jwks_fetches_total",
                                                    {"issuer": ISS, "outcome": "circuit_open"}) == 1
        server.routes[JWKS_PATH] = Route.jwks(key_set([key.public]), max_age=120)
        clock.now += jwks.OPEN_FOR  # half-open: one try, it works, the breaker closes
        await v.verify(Issuer(ISS, key).issue(AUD, IDENTITY))
        assert server.hits[JWKS_PATH] == hits + 1
        server.routes[JWKS_PATH] = Route(503, b"down")
        clock.now += jwks.MAX_STALE + 1  # too stale to trust: fail closed
        assert await code_of(v, Issuer(ISS, key).issue(AUD, IDENTITY)) == "jwks_unavailable"
        await keys.aclose()
        await cold.aclose()

    run(scenario())


def test_a_jwks_reply_that_is_a_redirect_too_big_or_not_a_key_set_is_not_used() -> None:
    key = SigningKey.generate()
    big = {"keys": [key.public.jwk()], "pad": "x" * (jwks.MAX_JWKS_BYTES + 1)}
    routes = {"/redirect": Route.redirect("/good"), "/good": Route.jwks(key_set([key.public])),
              "/big": Route.jwks(big), "/html": Route(200, b"<html>", {}), "/many": Route.jwks(
                  {"keys": [SigningKey.generate().public.jwk() for _ in range(jwks.MAX_KEYS + 1)]}),
              "/private": Route.jwks({"keys": [key.private_jwk()]}),
              "/twice": Route.jwks({"keys": [key.public.jwk(), {**SigningKey.generate().public.jwk(),
                                                                "kid": key.kid}]}),
              "/then-rsa": Route.jwks({"keys": [key.public.jwk(), {"kty": "RSA", "kid": key.kid, "n": "AQAB",
                                                                   "e": "AQAB"}]}),
              "/nested": Route(200, b"[" * 100_000 + b"]" * 100_000, {"Content-Type": "application/json"}),
              "/gzip": Route(200, b"\x1f\x8b" + b"\x00" * 100, {"Content-Encoding": "gzip"}),
              "/drip": Route(200, json.dumps(key_set([key.public])).encode(), {}, drip=0.2)}
    with JWKSServer(routes) as server:
        async def scenario() -> dict[str, str | None]:
            out = {}
            for path in routes:
                keys = JWKSKeys({ISS: server.url(path)}, backoff=0, timeout=1.0, retries=1)
                out[path] = await code_of(Verifier(Policy(frozenset({ISS}), AUD), keys),
                                          Issuer(ISS, key).issue(AUD, IDENTITY))
                await keys.aclose()
            return out

        assert run(scenario()) == {"/redirect": "jwks_unavailable", "/good": None, "/big": "jwks_unavailable",
                                   "/html": "jwks_unavailable", "/many": "jwks_unavailable",
                                   "/private": "unknown_key", "/twice": "key_confusion",
                                   "/then-rsa": "key_confusion", "/nested": "jwks_unavailable",
                                   "/gzip": "jwks_unavailable", "/drip": "jwks_unavailable"}
        assert server.hits.get("/good") == 1  # only the direct fetch: the redirect was not followed


# ---------------------------------------------------------------- replay caches


def test_the_memory_cache_forgets_expired_ids_in_constant_time_and_refuses_when_full() -> None:
    clock = Clock()
    cache = MemoryReplayCache(capacity=1000, horizon=600, clock=clock)
    for i in range(999):
        assert cache.check_and_add_sync(ISS, f"j{i}", int(clock.now) + 1 + i % 300)
    assert not cache.check_and_add_sync(ISS, "j5", int(clock.now) + 100)
    assert cache.check_and_add_sync("https://other.example", "j5", int(clock.now) + 100)  # scoped by issuer
    with pytest.raises(errors.ReplayCacheFull):
        cache.check_and_add_sync(ISS, "one-more", int(clock.now) + 100)
    clock.now += 150
    assert cache.check_and_add_sync(ISS, "one-more", int(clock.now) + 100) and len(cache) < 600
    clock.now += 10_000  # idle past the horizon: everything is gone at once
    assert cache.check_and_add_sync(ISS, "j5", int(clock.now) + 100) and len(cache) == 1


def test_redis_shares_spent_ids_between_verifiers_and_fails_closed_when_down() -> None:
    key = SigningKey.generate()
    with redis_server() as url:
        async def scenario() -> list[str | None]:
            a = verifier_with(key, RedisReplayCache.from_url(url))
            b = verifier_with(key, RedisReplayCache.from_url(url))  # another server process's verifier
            token = Issuer(ISS, key).issue(AUD, IDENTITY)
            results = [await code_of(a, token), await code_of(b, token), await code_of(a, token)]
            results.append(await code_of(b, Issuer(ISS, key).issue(AUD, IDENTITY)))
            return results

        assert run(scenario()) == [None, "replay", "replay", None]

    async def down() -> str | None:
        return await code_of(verifier_with(key, RedisReplayCache.from_url(f"redis://127.0.0.1:{free_port()}/0")),
                             Issuer(ISS, key).issue(AUD, IDENTITY))

    assert run(down()) == "replay_cache_unavailable"


def verifier_with(key: SigningKey, cache: Any) -> Verifier:
    return Verifier(Policy(frozenset({ISS}), AUD), StaticKeys({ISS: [key.public]}), cache)


def test_concurrent_presentations_of_one_token_succeed_once() -> None:
    key = SigningKey.generate()
    token = Issuer(ISS, key).issue(AUD, IDENTITY)
    with redis_server() as url:
        async def scenario() -> list[str | None]:
            vs = [verifier_with(key, RedisReplayCache.from_url(url)) for _ in range(8)]
            return list(await asyncio.gather(*(code_of(v, token) for v in vs)))

        codes = run(scenario())
    assert codes.count(None) == 1 and codes.count("replay") == 7


# ---------------------------------------------------------------- MCP sessions (separate processes)


@pytest.fixture
def issuer_files(tmp_path: Path) -> Iterator[tuple[JWKSServer, Path, Path, str]]:
    """An issuer key file, an agent (holder) key file, and the issuer's JWKS served on loopback."""
    key, holder = SigningKey.generate(), SigningKey.generate()
    key.save(tmp_path / "issuer.json")
    holder.save(tmp_path / "agent.json")
    with JWKSServer({JWKS_PATH: Route.jwks(key_set([key.public]))}) as server:
        yield server, tmp_path / "issuer.json", tmp_path / "agent.json", f"http://127.0.0.1:{server.port}"


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMETHEUS, *args], capture_output=True, text=True, timeout=120, input=stdin)


def agent(token: str | None, target: list[str], holder: Path | None = None) -> dict[str, Any]:
    args = [PY, str(ROOT / "examples/attest/agent.py"), "--audience", AUD]
    args += ["--token", token] if token else []
    args += ["--holder", str(holder)] if holder else []
    out = subprocess.run([*args, *target], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def server_args(issuer: str, jwks_url: str, *extra: str) -> list[str]:
    return [PY, str(ROOT / "examples/attest/server.py"), "--issuer", issuer, "--jwks-url", jwks_url,
            "--audience", AUD, *extra]


def test_an_attested_agent_over_stdio(issuer_files: tuple[JWKSServer, Path, Path, str]) -> None:
    server, issuer_key, holder, issuer = issuer_files
    token = cli("attest", "generate", "--key", str(issuer_key), "--issuer", issuer, "--audience", AUD,
                "--provider", "anthropic", "--model-version", "claude-sonnet-4").stdout.strip()
    got = agent(token, ["--", *server_args(issuer, server.url())])
    assert got["whoami"]["result"]["identity"]["model_version"] == "claude-sonnet-4"
    assert got["echo"]["result"] == {"result": "hello (from agent:anthropic/claude-sonnet-4)"}
    none = agent(None, ["--", *server_args(issuer, server.url())])
    assert none["health"]["result"] == {"result": "ok"}
    assert none["echo"]["result"] == {"result": "hello (from an unattested agent)"}  # optional for echo
    assert none["whoami"]["refused"]["data"] == {"code": "attestation_required"}
    bound = cli("attest", "generate", "--key", str(issuer_key), "--issuer", issuer, "--audience", AUD,
                "--holder", str(holder)).stdout.strip()
    assert agent(bound, ["--", *server_args(issuer, server.url())])["whoami"]["refused"]["data"] == {
        "code": "proof_required"}  # a stolen key-bound token: no key, no proof
    assert agent(bound, ["--", *server_args(issuer, server.url())], holder)["whoami"]["result"]["key_bound"]
    wrong = cli("attest", "generate", "--key", str(issuer_key), "--issuer", issuer, "--audience", "urn:other").stdout
    refused = agent(wrong.strip(), ["--", *server_args(issuer, server.url())])
    assert refused["whoami"]["refused"]["data"] == {"code": "wrong_audience"}
    assert refused["echo"]["refused"]["data"] == {"code": "wrong_audience"}  # optional, but a bad token is refused


def test_two_http_servers_share_spent_tokens_through_redis(issuer_files: tuple[JWKSServer, Path, Path, str]) -> None:
    server, issuer_key, _, issuer = issuer_files
    with redis_server() as url:
        ports = [free_port(), free_port()]
        procs = [subprocess.Popen(server_args(issuer, server.url(), "--transport", "http", "--port", str(p),
                                              "--redis", url), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for p in ports]
        try:
            for p in ports:
                wait_for_port(p)
            token = cli("attest", "generate", "--key", str(issuer_key), "--issuer", issuer, "--audience",
                        AUD).stdout.strip()
            first = agent(token, ["--url", f"http://127.0.0.1:{ports[0]}/mcp"])
            assert first["whoami"]["result"]["issuer"] == issuer  # the session verified once, every call used it
            assert first["echo"]["result"]["result"].startswith("hello (from agent:")
            second = agent(token, ["--url", f"http://127.0.0.1:{ports[1]}/mcp"])
            assert second["whoami"]["refused"]["data"] == {"code": "replay"}
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(10)


# ---------------------------------------------------------------- CLI


def test_the_cli_round_trip_with_json_and_exit_codes(tmp_path: Path) -> None:
    made = cli("attest", "keygen", "--out", str(tmp_path / "k.json"), "--kid", "k-2026", "--json")
    assert made.returncode == 0 and json.loads(made.stdout)["kid"] == "k-2026"
    again = cli("attest", "keygen", "--out", str(tmp_path / "k.json"))
    assert again.returncode == 1 and "exists" in again.stderr + again.stdout and "Traceback" not in again.stderr
    token = cli("attest", "generate", "--key", str(tmp_path / "k.json"), "--issuer", ISS, "--audience", AUD)
    assert token.returncode == 0
    shown = json.loads(cli("attest", "inspect", "-", "--json", stdin=token.stdout).stdout)
    assert shown["verified"] is False and shown["header"]["kid"] == "k-2026"
    ok = cli("attest", "verify", token.stdout.strip(), "--issuer", ISS, "--audience", AUD,
             "--key", str(tmp_path / "k.json"), "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["verified"] is True
    no = cli("attest", "verify", token.stdout.strip(), "--issuer", "https://else.example", "--audience", AUD,
             "--key", str(tmp_path / "k.json"), "--json")
    assert no.returncode == 8 and json.loads(no.stdout)["code"] == "untrusted_issuer"
    printed = json.loads(cli("attest", "jwks", "--key", str(tmp_path / "k.json")).stdout)
    assert [k["kid"] for k in printed["keys"]] == ["k-2026"] and "d" not in printed["keys"][0]
    missing = cli("attest", "generate", "--key", str(tmp_path / "none.json"), "--issuer", ISS, "--audience", AUD)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    suite = cli("attest", "attack", "--json")
    report = json.loads(suite.stdout)
    assert suite.returncode == 0 and report["detection_rate"] == 1.0 and report["attacks"] >= 28


def test_jwks_serve_publishes_over_http(tmp_path: Path) -> None:
    import httpx

    SigningKey.generate().save(tmp_path / "k.json")
    proc = subprocess.Popen([PROMETHEUS, "attest", "jwks", "--key", str(tmp_path / "k.json"), "--serve"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = json.loads(proc.stdout.readline())["jwks_url"]
        reply = httpx.get(url, timeout=10)
        assert reply.headers["cache-control"] == "public, max-age=300" and len(reply.json()["keys"]) == 1
    finally:
        proc.terminate()
        proc.wait(10)
    assert os.path.exists(tmp_path / "k.json")


def test_the_demo_runs_every_part_as_a_process() -> None:
    out = subprocess.run([PY, str(ROOT / "examples/attest/demo.py")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "every step behaved as described" in out.stdout and "refused (replay)" in out.stdout


def test_cache_control_is_read_as_delta_seconds_and_a_refused_kid_stays_refused() -> None:
    key = SigningKey.generate()
    clock = Clock()
    routes = {"/nan": Route(200, json.dumps(key_set([key.public])).encode(), {"Cache-Control": "max-age=nan"}),
              "/then-rsa": Route.jwks({"keys": [key.public.jwk(), {"kty": "RSA", "kid": key.kid, "n": "AQAB",
                                                                   "e": "AQAB"}]})}
    with JWKSServer(routes) as server:
        async def scenario() -> list[str | None]:
            keys = JWKSKeys({ISS: server.url("/nan")}, clock=clock, backoff=0)
            v = Verifier(Policy(frozenset({ISS}), AUD), keys)
            await v.verify(Issuer(ISS, key).issue(AUD, IDENTITY))
            clock.now += jwks.DEFAULT_TTL + 1  # max-age=nan is no max-age: the default freshness
            await v.verify(Issuer(ISS, key).issue(AUD, IDENTITY))
            assert server.hits["/nan"] == 2
            confused = Verifier(Policy(frozenset({ISS}), AUD), JWKSKeys({ISS: server.url("/then-rsa")}, clock=clock))
            return [await code_of(confused, Issuer(ISS, key).issue(AUD, IDENTITY)) for _ in range(3)]

        assert run(scenario()) == ["key_confusion"] * 3


# ---------------------------------------------------------------- MCP sessions in process (both protocols)


def attested_app(verifier: Verifier) -> Any:
    from mcp.server.mcpserver import MCPServer

    from prometheus_attest.mcp import AttestationExtension, Requirement, ServerPolicy, ToolRule, current_agent

    app = MCPServer("attested", extensions=[AttestationExtension(verifier, ServerPolicy(
        tools={"echo": ToolRule(Requirement.OPTIONAL)}))])

    @app.tool()
    def whoami() -> str:
        agent = current_agent()
        assert agent is not None
        return f"{agent.subject} {agent.jti}"

    @app.tool()
    def echo(text: str) -> str:
        return text

    return app


async def call(client: Any, tool: str, args: dict[str, Any] | None = None) -> Any:
    from mcp.shared.exceptions import MCPError

    try:
        result = await client.session.call_tool(tool, args or {})
    except MCPError as e:
        return e.data
    return result.structured_content["result"]


class WallClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_a_session_verifies_once_shares_concurrent_first_calls_and_rechecks_expiry() -> None:
    from prometheus_attest.mcp import AttestingClient, Credentials

    key, holder = SigningKey.generate(), SigningKey.generate()
    clock = WallClock()
    with redis_server() as url:
        verifier = Verifier(Policy(frozenset({ISS}), AUD), StaticKeys({ISS: [key.public]}),
                            RedisReplayCache.from_url(url), clock=clock)
        app = attested_app(verifier)

        async def scenario() -> None:
            token = Issuer(ISS, key).issue(AUD, IDENTITY)
            async with AttestingClient(app, mode="legacy", credentials=Credentials(token, AUD)) as c:
                first = await asyncio.gather(*(call(c, "whoami") for _ in range(5)))
                assert len(set(first)) == 1 and str(first[0]).endswith(attacks.claims_of(token)["jti"])
                assert await call(c, "echo", {"text": "x"}) == "x"
                clock.now += 300 + 31  # the token expired (beyond the leeway): the session does not outlive it
                assert await call(c, "whoami") == {"code": "expired"}
                assert await call(c, "echo", {"text": "x"}) == {"code": "expired"}  # optional, but refused
            clock.now = time.time()
            bound = Issuer(ISS, key).issue(AUD, IDENTITY, holder=holder.public)
            async with AttestingClient(app, mode="legacy", credentials=Credentials(bound, AUD, holder)) as c:
                assert str(await call(c, "whoami")).startswith("agent:")
                assert str(await call(c, "whoami")).startswith("agent:")  # a fresh proof per call
                c.session._credentials = Credentials(bound, AUD)  # the session without the key (a hijacker)
                assert await call(c, "whoami") == {"code": "proof_required"}

        run(scenario())


def test_the_stateless_protocol_takes_key_bound_tokens_with_a_proof_per_request() -> None:
    from prometheus_attest.mcp import AttestingClient, Credentials

    key, holder = SigningKey.generate(), SigningKey.generate()
    verifier = Verifier(Policy(frozenset({ISS}), AUD), StaticKeys({ISS: [key.public]}))
    app = attested_app(verifier)

    async def scenario() -> None:
        bearer = Issuer(ISS, key).issue(AUD, IDENTITY)
        async with AttestingClient(app, mode="2026-07-28", credentials=Credentials(bearer, AUD)) as c:
            assert c.session.protocol_version == "2026-07-28"
            assert await call(c, "whoami") == {"code": "proof_required"}  # good for one request only: refused
        bound = Issuer(ISS, key).issue(AUD, IDENTITY, holder=holder.public)
        async with AttestingClient(app, mode="auto", credentials=Credentials(bound, AUD, holder)) as c:
            answers = [await call(c, "whoami") for _ in range(3)]
            assert len(set(answers)) == 1 and str(answers[0]).startswith("agent:")
        async with AttestingClient(app, mode="2026-07-28", credentials=Credentials(bound, AUD)) as c:
            assert await call(c, "whoami") == {"code": "proof_required"}  # the token without the key

    run(scenario())


def test_a_shared_token_check_survives_its_first_callers_cancellation_and_forgets_refusals() -> None:
    from prometheus_attest.mcp import _shared

    key = SigningKey.generate()
    verifier = Verifier(Policy(frozenset({ISS}), AUD), StaticKeys({ISS: [key.public]}))
    token = Issuer(ISS, key).issue(AUD, IDENTITY)

    async def slow_establish() -> Any:
        await asyncio.sleep(0.2)
        return await verifier.establish(token)

    async def scenario() -> None:
        table: dict[str, Any] = {}
        first = asyncio.ensure_future(_shared(table, "t", slow_establish))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(_shared(table, "t", slow_establish))
        await asyncio.sleep(0.05)
        first.cancel()  # the first caller gives up (a thief abandoning its request)
        agent = await second  # the honest caller still gets the one check
        assert agent.jti == attacks.claims_of(token)["jti"] and "t" in table

        async def refuse() -> Any:
            raise errors.BadSignature("no")

        with pytest.raises(errors.BadSignature):
            await _shared(table, "bad", refuse)
        assert "bad" not in table  # a refusal is not remembered: the next call checks again

    run(scenario())


def test_key_bound_tokens_work_across_server_processes_sharing_redis_on_the_stateless_protocol() -> None:
    from prometheus_attest.mcp import AttestingClient, Credentials

    key, holder = SigningKey.generate(), SigningKey.generate()
    with redis_server() as url:
        apps = [attested_app(Verifier(Policy(frozenset({ISS}), AUD), StaticKeys({ISS: [key.public]}),
                                      RedisReplayCache.from_url(url))) for _ in range(2)]
        bound = Issuer(ISS, key).issue(AUD, IDENTITY, holder=holder.public)

        async def scenario() -> list[Any]:
            out = []
            for app in apps + apps:  # the token's id is not spent: each request spends its own proof's
                async with AttestingClient(app, mode="2026-07-28", credentials=Credentials(bound, AUD, holder)) as c:
                    out.append(await call(c, "whoami"))
            return out

        answers = run(scenario())
    assert len(answers) == 4 and all(str(a).startswith("agent:") for a in answers)


def test_every_refusal_is_counted_once() -> None:
    from prometheus_attest.mcp import AttestingClient, Credentials

    key = SigningKey.generate()
    verifier = Verifier(Policy(frozenset({ISS}), AUD), StaticKeys({ISS: [key.public]}))
    app = attested_app(verifier)

    async def scenario() -> None:
        bearer = Issuer(ISS, key).issue(AUD, IDENTITY)
        async with AttestingClient(app, mode="2026-07-28", credentials=Credentials(bearer, AUD)) as c:
            await call(c, "whoami")
        wrong = Issuer(ISS, key).issue("urn:other", IDENTITY)
        async with AttestingClient(app, mode="legacy", credentials=Credentials(wrong, AUD)) as c:
            await asyncio.gather(*(call(c, "whoami") for _ in range(5)))

    run(scenario())
    assert verifier.observer.count("proof_required") == 1 and verifier.observer.count("wrong_audience") == 5


def test_every_error_has_its_own_code_and_is_documented() -> None:
    codes = [e.code for e in errors.ALL]
    assert len(codes) == len(set(codes))
    documented = (ROOT / "docs/attest.md").read_text()
    assert [c for c in codes if f"`{c}`" not in documented and c != "policy_error"] == []


def test_a_refresh_revalidates_with_the_etag_and_expires_counts_without_max_age() -> None:
    from email.utils import format_datetime

    key = SigningKey.generate()
    clock = Clock()
    now = time.time()
    body = json.dumps(key_set([key.public])).encode()
    routes = {"/etag": Route(200, body, {"Content-Type": "application/json", "ETag": '"v1"',
                                         "Cache-Control": "max-age=60"}),
              "/expires": Route(200, body, {"Content-Type": "application/json", "Cache-Control": "public",
                                            "Expires": format_datetime(datetime.fromtimestamp(now + 600, UTC),
                                                                       usegmt=True)})}  # the server adds Date
    with JWKSServer(routes) as server:
        async def scenario() -> None:
            keys = JWKSKeys({ISS: server.url("/etag")}, clock=clock, backoff=0)
            v = Verifier(Policy(frozenset({ISS}), AUD), keys)
            await v.verify(Issuer(ISS, key).issue(AUD, IDENTITY))
            clock.now += 61
            await v.verify(Issuer(ISS, key).issue(AUD, IDENTITY))  # stale: revalidated, 304, the same keys
            assert (server.hits["/etag"], server.hits.get("/etag 304")) == (2, 1)
            assert v.observer.registry.get_sample_value("prometheus_attest_jwks_fetches_total",
                                                        {"issuer": ISS, "outcome": "not_modified"}) == 1
            timed = JWKSKeys({ISS: server.url("/expires")}, clock=clock, backoff=0)
            w = Verifier(Policy(frozenset({ISS}), AUD), timed)
            await w.verify(Issuer(ISS, key).issue(AUD, IDENTITY))
            clock.now += 500  # Expires - Date = about 600 s: still fresh, no request
            await w.verify(Issuer(ISS, key).issue(AUD, IDENTITY))
            assert server.hits["/expires"] == 1
            clock.now += 110
            await w.verify(Issuer(ISS, key).issue(AUD, IDENTITY))
            assert server.hits["/expires"] == 2

        run(scenario())


def test_a_non_ascii_etag_is_not_kept_and_rotation_still_works() -> None:
    key, nxt = SigningKey.generate(), SigningKey.generate()
    clock = Clock()
    route = Route(200, json.dumps(key_set([key.public])).encode(),
                  {"ETag": '"v1-\u00e9"', "Cache-Control": "max-age=60"})
    with JWKSServer({"/k": route}) as server:
        async def scenario() -> str | None:
            v = Verifier(Policy(frozenset({ISS}), AUD), JWKSKeys({ISS: server.url("/k")}, clock=clock, backoff=0))
            await v.verify(Issuer(ISS, key).issue(AUD, IDENTITY))
            server.routes["/k"] = Route.jwks(key_set([nxt.public]), max_age=60)  # the issuer rotates
            clock.now += 61
            assert await code_of(v, Issuer(ISS, nxt).issue(AUD, IDENTITY)) is None
            return await code_of(v, Issuer(ISS, key).issue(AUD, IDENTITY))

        assert run(scenario()) == "unknown_key"  # the removed key is no longer trusted


def test_a_proof_is_remembered_through_its_last_fresh_second() -> None:
    key, holder = SigningKey.generate(), SigningKey.generate()
    policy = Policy(frozenset({ISS}), AUD)
    token = Issuer(ISS, key).issue(AUD, IDENTITY, holder=holder.public)
    agent = run(verifier(key).establish(token))
    at = int(time.time())
    proof = tokens.check_proof(make_proof(holder, token, AUD, now=at), agent, token, policy, at)
    window = tokens.PROOF_WINDOW + policy.leeway
    tokens.check_proof(make_proof(holder, token, AUD, now=at), agent, token, policy, at + window)  # still fresh
    assert proof.expires_at == at + window + 1  # so Redis (EXAT) keeps its id through that second


def test_tool_arguments_of_any_json_shape_bind_a_proof_and_a_token_is_made_per_session() -> None:
    from mcp.server.mcpserver import MCPServer

    from prometheus_attest.mcp import AttestationExtension, AttestingClient, Credentials

    key, holder = SigningKey.generate(), SigningKey.generate()
    app = MCPServer("ids", extensions=[AttestationExtension(verifier(key))])

    @app.tool()
    def lookup(id: int, labels: dict[str, Any]) -> str:
        return f"{id} {len(labels)}"

    made: list[str] = []

    def fresh_token() -> str:
        made.append(Issuer(ISS, key).issue(AUD, IDENTITY, holder=holder.public))
        return made[-1]

    async def scenario() -> list[Any]:
        out = []
        credentials = Credentials(fresh_token, AUD, holder)
        for _ in range(2):  # two sessions with one Credentials: a token each
            async with AttestingClient(app, mode="legacy", credentials=credentials) as c:
                out.append(await call(c, "lookup", {"id": 2**63 + 5, "labels": {"é\u2028": 1.5, "x": [None, -0.0]}}))
        return out

    assert run(scenario()) == [f"{2**63 + 5} 2"] * 2 and len(made) == 2
