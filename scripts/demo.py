"""The embedded replica end to end: build canisters with the reproducible recipe, install them, call them,
call between them, trap and roll back, upgrade keeping state, restart from the state directory, then serve
the IC HTTP interface and call through the SDK with verified certificates.

Run with `make demo`. (The full Prometheus lifecycle demo — submit, verify, publish — replaces this once the
canisters and CLI exist.)
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from icp_identity.identity import Identity  # type: ignore[import-not-found]  # noqa: E402

from ic_replica import candid  # noqa: E402
from ic_replica.errors import CallRejected  # noqa: E402
from ic_replica.http_server import IcHttpServer  # noqa: E402
from ic_replica.principal import Principal  # noqa: E402
from ic_replica.replica import Replica  # noqa: E402
from prometheus_build.recipe import build_all  # noqa: E402
from prometheus_sdk import Network, connect  # noqa: E402
from prometheus_sdk.canister import CanisterClient  # noqa: E402

DEVELOPER = Principal(b"\x0a" * 29)
NAT = candid.NAT


def say(text: str) -> None:
    print(f"  {text}")


def main() -> int:
    print("1. Build the test canisters with the reproducible recipe")
    results = build_all(ROOT / "tests" / "canisters", ROOT / "build" / "test_canisters", ROOT / "build" / "cache")
    for r in results:
        say(f"{r.name:13} sha256 {r.sha256}  ({'cached' if r.cached else f'{r.seconds:.1f}s'})")
    wasm = {r.name: r.wasm.read_bytes() for r in results}
    state = Path(tempfile.mkdtemp(prefix="prometheus-demo-"))
    try:
        print(f"2. Start an embedded replica with state in {state}")
        with Replica(state) as ic:
            counter = ic.create_canister(controllers=[DEVELOPER], sender=DEVELOPER)
            ic.install_code(counter, wasm["counter"], candid.encode([NAT], [41]), sender=DEVELOPER)
            relay = ic.create_canister(controllers=[DEVELOPER], sender=DEVELOPER)
            ic.install_code(relay, wasm["relay"], candid.encode([], []), sender=DEVELOPER)
            say(f"counter {counter}, relay {relay}")
            value = candid.decode(ic.update_call(counter, "inc", candid.encode([], [])))[0]
            say(f"update  counter.inc() -> {value}")
            doubled = candid.decode(ic.update_call(relay, "selfCall", candid.encode([NAT], [20])))[0]
            say(f"inter-canister relay.selfCall(20) -> {doubled}")
            try:
                ic.update_call(counter, "incThenTrap", candid.encode([], []))
            except CallRejected as exc:
                say(f"trap    {exc.reject}")
            say(f"query   counter.get() -> {candid.decode(ic.query_call(counter, 'get', candid.encode([], [])))[0]}"
                " (the trap rolled back)")
            ic.upgrade_canister(counter, wasm["counter"], candid.encode([NAT], [0]), sender=DEVELOPER)
            say(f"upgrade kept the heap: counter.get() -> "
                f"{candid.decode(ic.query_call(counter, 'get', candid.encode([], [])))[0]}")
        print("3. Restart the replica from its state directory")
        with Replica(state) as ic:
            say(f"canisters back: {', '.join(str(c) for c in ic.canister_ids())}")
            say(f"counter.get() -> {candid.decode(ic.query_call(counter, 'get', candid.encode([], [])))[0]}")
            status = ic.canister_status(counter, sender=DEVELOPER)
            say(f"module hash {status['module_hash'][0].hex()}, controllers "  # type: ignore[index]
                f"{[str(p) for p in status['settings']['controllers']]}")  # type: ignore[index]
            print("4. Serve the IC HTTP interface and call through the SDK (certificates verified)")
            server = IcHttpServer(ic).start()
            try:
                conn = connect(Network("local", server.url), Identity())
                client = CanisterClient.from_did(conn, str(counter), ROOT / "build" / "test_canisters" / "counter.did")
                say(f"{server.url}: signed update counter.inc() -> {client.inc()}, query counter.get() -> "
                    f"{client.get()}, caller {client.whoami()}")
            finally:
                server.stop()
    finally:
        shutil.rmtree(state, ignore_errors=True)
    print("Done.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
