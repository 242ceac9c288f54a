"""A bounded, seeded fuzz of the IC HTTP endpoints on loopback: random bytes, malformed CBOR, odd delegations,
huge integers, bad lengths and random mutations of valid signed envelopes. Every answer must be a 4xx (or a
proper 2xx when the mutation left the request valid), within a time budget, and the server must answer a
normal signed call afterwards. `FUZZ_SEED` picks another run; the whole file stays well under a minute."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import cbor2
import httpx
import pytest

from ic_replica import candid, management
from ic_replica.candid import NAT, PRINCIPAL, TEXT, Opt, Record, Vec
from ic_replica.principal import MANAGEMENT, Principal
from ic_replica.request_auth import DELEGATION_SEPARATOR, hash_of_map
from testkit.http_helpers import Ed25519Signer, Secp256k1Signer, content, decode, delegation, envelope
from tests.conftest import no_args
from tests.security.support import BUDGET_S, Answer, counter_value, raw_post, timed_post

SEED = int(os.environ.get("FUZZ_SEED", "20240611"))
ROUNDS = {"random bytes": 150, "malformed cbor": 200, "odd delegations": 200, "huge integers": 120,
          "bad lengths": 60, "mutated envelopes": 500, "management arguments": 150}


def endpoints(cid: Principal) -> list[str]:
    return [f"/api/{v}/canister/{cid}/call" for v in ("v2", "v3", "v4")] + [
        f"/api/{v}/canister/{cid}/query" for v in ("v2", "v3")] + [
        f"/api/{v}/canister/{cid}/read_state" for v in ("v2", "v3")] + [
        f"/api/v3/subnet/{cid}/read_state"]


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(12 if depth < 3 else 8)
    if kind == 0:
        return rng.randrange(-1000, 1000)
    if kind == 1:
        return rng.choice([1, -1]) * (1 << rng.randrange(60, 4000))  # beyond 64 bits: a CBOR bignum
    if kind == 2:
        return rng.randbytes(rng.choice([0, 1, 29, 30, 32, 33, 64, 200]))
    if kind == 3:
        return rng.choice(["", "call", "query", "read_state", "all", "queries", "x" * 1000, "\u2603"])
    if kind == 4:
        return None
    if kind == 5:
        return rng.choice([True, False])
    if kind == 6:
        return rng.choice([1.5, float("inf"), -0.0])
    if kind == 7:
        return rng.choice([0, 2**64 - 1, 2**64, -(2**64), 10**9])
    if kind in (8, 9):
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["pubkey", "expiration", "targets", "delegation", "signature", "content", "sender", "x"]):
            random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


class Fuzz:
    def __init__(self, served: Any) -> None:
        self.served, self.cid, self.signer = served, served.cid, served.signer
        self.rng = random.Random(SEED)
        self.client = httpx.Client(timeout=30)
        self.paths = endpoints(self.cid)
        self.count = 0

    def valid_contents(self) -> list[dict[str, Any]]:
        s = self.signer.principal
        return [content("call", self.cid, "inc", no_args(), s, nonce=self.rng.randbytes(8)),
                content("query", self.cid, "get", no_args(), s),
                content("read_state", self.cid, sender=s, paths=[[b"time"]])]

    def check(self, name: str, answer: Answer, *, may_succeed: bool = False) -> None:
        self.count += 1
        assert answer.status != 0, f"{name}: the connection was closed without an answer"
        ok = 400 <= answer.status < 500 or (may_succeed and answer.status in (200, 202))
        assert ok, f"{name}: {answer.status} {answer.text[:300]}"
        assert answer.seconds < BUDGET_S, f"{name}: {answer.seconds:.2f} s"

    def post(self, name: str, body: bytes, *, path: str | None = None, may_succeed: bool = False) -> None:
        path = path or self.rng.choice(self.paths)
        self.check(f"{name} -> {path}", timed_post(self.client, self.served.url + path, body),
                   may_succeed=may_succeed)

    # ---------------------------------------------------------- the families

    def random_bytes(self) -> None:
        body = self.rng.randbytes(self.rng.randrange(0, 300))
        if self.rng.random() < 0.5:
            body = b"\xd9\xd9\xf7" + body
        self.post("random bytes", body)

    def malformed_cbor(self) -> None:
        body = bytearray(envelope(self.rng.choice(self.valid_contents()), self.signer))
        for _ in range(self.rng.randrange(1, 4)):
            if not body:
                break
            i = self.rng.randrange(len(body))
            action = self.rng.randrange(4)
            if action == 0:
                del body[i:]
            elif action == 1:
                body[i] ^= 1 << self.rng.randrange(8)
            elif action == 2:
                body[i:i] = self.rng.choice([b"\x9f", b"\xbf", b"\x5f", b"\xff", b"\xd8\x1d\x00", b"\xfb",
                                             b"\xc2\x5a\xff\xff\xff\xff", b"\x9b" + b"\xff" * 8])
            else:
                body[i] = self.rng.choice([0xFF, 0x1F, 0x3F, 0x5F, 0x7F, 0x9F, 0xBF, 0xDF, 0xFC])
        self.post("malformed cbor", bytes(body), may_succeed=True)  # a flip may land in a nonce or a label

    def odd_delegations(self) -> None:
        root = Ed25519Signer()
        session: Any = Ed25519Signer() if self.rng.random() < 0.5 else Secp256k1Signer()
        chain: list[Any] = []
        for _ in range(self.rng.randrange(1, 4)):
            roll = self.rng.random()
            if roll < 0.3:
                chain.append(random_value(self.rng))
            elif roll < 0.5:
                chain.append(delegation(root, session, time.time_ns() + 60 * 10**9,
                                        self.rng.choice([None, [self.cid], [Principal(b"\x01")]])))
            else:
                d = {k: random_value(self.rng) if self.rng.random() < 0.5 else plausible
                     for k, plausible in (("pubkey", session.der), ("expiration", time.time_ns() + 60 * 10**9),
                                          ("targets", [self.cid.raw]), ("permissions", "all"))
                     if self.rng.random() < 0.8}
                try:
                    signature: Any = root.sign(DELEGATION_SEPARATOR + hash_of_map(d))
                except Exception:  # noqa: BLE001 - a value our own hash refuses: send a random signature
                    signature = random_value(self.rng)
                chain.append({"delegation": d, "signature": signature})
        c = self.rng.choice(self.valid_contents()) | {"sender": root.principal.raw}
        env = decode(envelope(c, session, key_signer=root)) | {"sender_delegation": chain}
        self.post("odd delegation", cbor2.dumps(cbor2.CBORTag(55799, env)), may_succeed=True)

    def huge_integers(self) -> None:
        env = decode(envelope(self.rng.choice(self.valid_contents()), self.signer))
        field = self.rng.choice(["ingress_expiry", "nonce", "sender", "canister_id", "arg", "x"])
        env["content"][field] = self.rng.choice([1 << 64, 1 << 1000, -(1 << 64), 1 << (8 * 100_000), 2**63])
        where = self.rng.choice(["content", "sender_pubkey", "sender_sig"])
        if where != "content":
            env[where] = 1 << self.rng.randrange(64, 100_000)
        self.post(f"huge integer in {field}/{where}", cbor2.dumps(env))

    def bad_lengths(self) -> None:
        body = envelope(self.rng.choice(self.valid_contents()), self.signer)
        headers = self.rng.choice([
            [("Content-Length", str(self.rng.randrange(-(2**40), 0)))],
            [("Content-Length", str(self.rng.randrange(6 * 2**20, 2**70)))],
            [("Content-Length", self.rng.choice(["x", "0x10", "1e3", "+3", "3_0", "", " ", "١"]))],
            [("Content-Length", str(len(body))), ("Content-Length", str(len(body) + 1))],
            [("Transfer-Encoding", self.rng.choice(["chunked", "gzip, chunked", "identity"]))],
            [],
        ])
        answer = raw_post(self.served.server, self.rng.choice(self.paths),
                          [(k, v.encode().decode("latin-1")) for k, v in headers], body)
        self.check(f"bad length {headers}", answer)

    def mutated_envelopes(self) -> None:
        env = decode(envelope(self.rng.choice(self.valid_contents()), self.signer))
        for _ in range(self.rng.randrange(1, 4)):
            target = env if self.rng.random() < 0.4 else env.get("content")
            if not isinstance(target, dict):
                break
            key = self.rng.choice(sorted(target) + ["unknown", "nonce", "sender_delegation"])
            action = self.rng.randrange(3)
            if action == 0:
                target.pop(key, None)
            else:
                target[key] = random_value(self.rng)
        body = cbor2.dumps(cbor2.CBORTag(55799, env) if self.rng.random() < 0.7 else env)
        self.post("mutated envelope", body, may_succeed=True)

    def management_arguments(self) -> None:
        """Anonymous management calls with arguments of the wrong type, truncated or random (decoded by the
        effective-canister check and by the management canister inside a round)."""
        method = self.rng.choice(sorted(management.METHOD_NAMES))
        shapes = [(Record.of(canister_id=PRINCIPAL), {"canister_id": self.cid}),
                  (Record.of(canister_id=TEXT), {"canister_id": str(self.cid)}),
                  (Record.of(canister_id=PRINCIPAL, amount=NAT), {"canister_id": self.cid, "amount": 1 << 200}),
                  (Record.of(settings=Opt(Record.of(controllers=Opt(Vec(TEXT))))),
                   {"settings": [{"controllers": [["x"]]}]}),
                  (Vec(NAT), [1, 2, 3]), (NAT, 7)]
        t, v = self.rng.choice(shapes)
        arg = candid.encode([t], [v])
        roll = self.rng.random()
        if roll < 0.3:
            arg = arg[: self.rng.randrange(len(arg))]
        elif roll < 0.5:
            arg = b"DIDL" + self.rng.randbytes(self.rng.randrange(40))
        elif roll < 0.6:
            arg = b"DIDL\x01\x6d\x7f\x01\x00" + candid.leb(1 << self.rng.randrange(20, 64))  # vec null
        c = content("call", MANAGEMENT, method, arg)
        path = f"/api/{self.rng.choice(['v2', 'v3'])}/canister/{self.cid}/call"
        self.post(f"management {method}", envelope(c), path=path, may_succeed=True)

    def valid(self) -> None:
        for c in self.valid_contents():
            path = {"call": f"/api/v3/canister/{self.cid}/call", "query": f"/api/v2/canister/{self.cid}/query",
                    "read_state": f"/api/v3/canister/{self.cid}/read_state"}[c["request_type"]]
            answer = timed_post(self.client, self.served.url + path, envelope(c, self.signer))
            assert answer.status == 200, answer


@pytest.fixture
def fuzz(served) -> Iterator[Fuzz]:  # type: ignore[no-untyped-def]
    f = Fuzz(served)
    try:
        yield f
    finally:
        f.client.close()


def test_fuzz_the_http_endpoints(fuzz: Fuzz) -> None:
    started = time.monotonic()
    families: dict[str, Callable[[], None]] = {
        "random bytes": fuzz.random_bytes, "malformed cbor": fuzz.malformed_cbor,
        "odd delegations": fuzz.odd_delegations, "huge integers": fuzz.huge_integers,
        "bad lengths": fuzz.bad_lengths, "mutated envelopes": fuzz.mutated_envelopes,
        "management arguments": fuzz.management_arguments,
    }
    plan = [name for name, n in ROUNDS.items() for _ in range(n)]
    fuzz.rng.shuffle(plan)
    for i, name in enumerate(plan):
        families[name]()
        if i % 100 == 0:
            fuzz.valid()  # valid requests keep working in between
    # the server is alive and a normal signed call executes
    fuzz.served.server.replica.tick(3)  # calls accepted asynchronously above run first
    before = counter_value(fuzz.served.server, fuzz.cid)
    c = content("call", fuzz.cid, "inc", no_args(), fuzz.signer.principal)
    answer = timed_post(fuzz.client, f"{fuzz.served.url}/api/v3/canister/{fuzz.cid}/call", envelope(c, fuzz.signer))
    assert answer.status == 200 and decode(answer.body)["status"] == "replied", answer
    assert counter_value(fuzz.served.server, fuzz.cid) == before + 1
    assert candid.decode(fuzz.served.server.replica.query_call(fuzz.cid, "get", no_args()))[0] == before + 1
    assert fuzz.count == sum(ROUNDS.values())
    assert time.monotonic() - started < 60
