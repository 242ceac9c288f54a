"""A replica restarted on its state directory has every canister back: ids, heap, stable memory,
controllers, status."""

from __future__ import annotations

from pathlib import Path

from ic_replica import candid
from ic_replica.principal import Principal
from ic_replica.replica import Replica
from testkit.backends import TEST_LIMITS
from tests.conftest import ALICE, BOB, decode1, nat_arg, no_args


def test_restart_restores_every_canister(tmp_path: Path, wasms: dict[str, bytes]) -> None:
    state = tmp_path / "state"
    with Replica(state, limits=TEST_LIMITS) as r:
        a = r.create_canister(controllers=[ALICE], sender=ALICE)
        r.install_code(a, wasms["counter"], nat_arg(5), sender=ALICE)
        r.update_call(a, "inc", no_args())
        r.update_call(a, "grow", nat_arg(1))
        r.update_call(a, "stableWrite", candid.encode([candid.NAT64, candid.BLOB], [123, b"durable"]))
        b = r.create_canister(controllers=[BOB], sender=BOB)
        r.stop_canister(b, sender=BOB)
        t = r.get_time()
    with Replica(state, limits=TEST_LIMITS) as r2:
        assert set(r2.canister_ids()) == {a, b}
        assert decode1(r2.query_call(a, "get", no_args())) == 6
        assert decode1(r2.query_call(a, "ballastSize", no_args())) == 16
        assert decode1(r2.query_call(a, "stableRead", candid.encode([candid.NAT64, candid.NAT], [123, 7]))) \
            == b"durable"
        assert r2.canister_status(a, sender=ALICE)["settings"]["controllers"] == [ALICE]
        assert r2.canister_status(b, sender=BOB)["status"] == {"stopped": None}
        assert decode1(r2.update_call(a, "inc", no_args())) == 7
        assert r2.get_time() >= t
        c = r2.create_canister(sender=ALICE)
        assert c not in (a, b)  # ids are never reused
        assert isinstance(c, Principal)
    with Replica(state, limits=TEST_LIMITS) as r3:
        assert decode1(r3.query_call(a, "get", no_args())) == 7
