"""The auth_server canister's costs (docs/auth.md, docs/benchmarks.md): instructions per endpoint and per
`charge_user` (auth_server and ledger together, as the replica counts them), and latencies on the localnet as a
client sees them: every OAuth request over HTTP through the gateway, the user's approval and the server's
charge as signed SDK calls, and the whole sign-in (register, authorize, approve, token) plus a first charge.

    .venv/bin/python bench/auth_bench.py [-n ROUNDS] [--json]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ic_replica.http_server import IcHttpServer  # noqa: E402
from prometheus_build.recipe import build_all  # noqa: E402
from prometheus_sdk.agent import connect  # noqa: E402
from prometheus_sdk.clients.auth_server import AuthServerClient, encode_init  # noqa: E402
from prometheus_sdk.network import Network  # noqa: E402
from prometheus_sdk.principal import Principal  # noqa: E402
from testkit.backends import EmbeddedBackend  # noqa: E402
from testkit.http_helpers import LocalhostSubdomains  # noqa: E402
from testkit.protocol import GOV, IDENTITIES, PRINCIPALS  # noqa: E402
from testkit.typed import Typed  # noqa: E402

RESOURCE = "https://tools.example.com/mcp"
REDIRECT = "http://127.0.0.1:8765/callback"


def ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p90_ms": round(ordered[int(len(ordered) * 0.9) - 1] * 1000, 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", type=int, default=20, help="sign-ins measured (default 20)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    product = {r.name: r for r in build_all(ROOT / "canister_src", ROOT / "build" / "canisters",
                                            ROOT / "build" / "cache")}
    ic = EmbeddedBackend()
    server = IcHttpServer(ic.replica).start()
    replica = ic.replica
    cid = ic.create_canister(controllers=[GOV], sender=GOV)
    issuer = f"http://{cid}.localhost:{urlsplit(server.url).port}"
    ic.install_code(cid, product["auth_server"].wasm.read_bytes(), encode_init(
        {"governance": Principal.from_text(str(GOV)), "issuer": issuer, "key_name": "dfx_test_key"}), sender=GOV)
    ledger_id = ic.create_canister(controllers=[GOV], sender=GOV)
    ledger = Typed(ic, ledger_id, "ledger")
    ic.install_code(ledger_id, product["ledger"].wasm.read_bytes(), ledger.interface.encode_init({
        "name": "Bench USD", "symbol": "BUSD", "decimals": 6, "fee": 10_000,
        "minting_account": {"owner": PRINCIPALS["gov"], "subaccount": []},
        "initial_balances": [({"owner": PRINCIPALS["dev"], "subaccount": []}, 10**12)]}), sender=GOV)
    srv = Typed(ic, cid, "auth_server")
    srv("register_resource_server", {"principal": PRINCIPALS["verifier0"], "resource": RESOURCE, "name": "Bench",
                                     "payee": {"owner": PRINCIPALS["verifier1"], "subaccount": []},
                                     "ledgers": [ledger_id]}, sender=GOV)
    srv("set_spending_limit", {"resource": RESOURCE, "ledger": ledger_id, "max_per_charge": 1_000,
                               "max_total": 10**9}, sender=PRINCIPALS["dev"])
    ledger("icrc2_approve", {"from_subaccount": [], "spender": {"owner": cid, "subaccount": []}, "amount": 10**11,
                             "expected_allowance": [], "expires_at": [], "fee": [], "memo": [],
                             "created_at_time": []}, sender=PRINCIPALS["dev"])
    user = AuthServerClient(connect(Network("local", server.url), IDENTITIES["dev"]), str(cid))
    payer = AuthServerClient(connect(Network("local", server.url), IDENTITIES["verifier0"]), str(cid))
    http = httpx.Client(transport=LocalhostSubdomains(), timeout=30)

    steps: dict[str, list[float]] = {k: [] for k in ("register", "authorize", "approve", "token", "refresh",
                                                     "charge_user", "sign-in + first charge")}
    cost: dict[str, list[int]] = {k: [] for k in ("register", "authorize", "token", "refresh", "charge_user")}

    @contextmanager
    def step(name: str) -> Iterator[None]:
        before, start = replica.instructions_executed, time.perf_counter()
        yield
        steps[name].append(time.perf_counter() - start)
        if name in cost:
            cost[name].append(int(replica.instructions_executed - before))

    def sign_in_and_charge(i: int) -> None:
        with step("register"):
            client = http.post(f"{issuer}/register", json={
                "client_name": "bench", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"]}).json()
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        with step("authorize"):
            request = http.get(f"{issuer}/authorize", headers={"Accept": "application/json"}, params={
                "response_type": "code", "client_id": client["client_id"], "redirect_uri": REDIRECT,
                "code_challenge": challenge, "code_challenge_method": "S256", "resource": RESOURCE,
                "scope": "tools:call payments"}).json()
        with step("approve"):
            to = user.approve(request["request_id"])["redirect_to"]
        code = parse_qs(urlsplit(to).query)["code"][0]
        with step("token"):
            token = http.post(f"{issuer}/token", data={
                "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                "client_id": client["client_id"], "code_verifier": verifier}).json()
        assert "access_token" in token, token
        with step("charge_user"):
            payer.charge_user({"user": Principal.from_text(str(PRINCIPALS["dev"])),
                               "ledger": Principal.from_text(str(ledger_id)), "amount": 1_000,
                               "request_id": f"bench-{i}"})
        replica.advance_time(61 * 1_000_000_000)  # a grant gets tokens at most once a minute
        with step("refresh"):
            refreshed = http.post(f"{issuer}/token", data={
                "grant_type": "refresh_token", "refresh_token": token["refresh_token"],
                "client_id": client["client_id"]}).json()
        assert "access_token" in refreshed, refreshed
        replica.set_time(replica.time_ns - 61 * 1_000_000_000)  # back, for the signed calls' expiry

    http.get(f"{issuer}/.well-known/jwks.json")  # the key is fetched once, on first use
    for i in range(args.n):
        start = time.perf_counter()
        sign_in_and_charge(i)
        steps["sign-in + first charge"].append(time.perf_counter() - start - steps["refresh"][-1])
    server.stop()
    out = {
        "rounds": args.n,
        "instructions (median)": {k: int(statistics.median(v)) for k, v in cost.items()},
        "latency": {k: ms(v) for k, v in steps.items()},
    }
    print(json.dumps(out, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
