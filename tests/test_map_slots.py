"""`canister_src/lib/MapSlots.mo` against the toolchain's mo:core, through a probe canister on the embedded
replica: an emptied map given one slot (what a complete upload's chunk map keeps, instead of 31 slots) reads as
empty to every read, and an insert into it traps and leaves it as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ic_replica.errors import CallRejected
from ic_replica.principal import Principal
from ic_replica.replica import Replica
from prometheus_sdk import candid, did
from testkit.lib_probe import build_probe

PROBE = Path(__file__).resolve().parent.parent / "testkit" / "map_slots_probe.mo"


class Probe:
    def __init__(self) -> None:
        wasm, interface = build_probe("map_slots_probe", PROBE, ["MapSlots.mo"])
        self.interface = did.parse(interface)
        self.replica = Replica()
        self.canister: Principal = self.replica.create_canister()
        self.replica.install_code(self.canister, wasm, b"DIDL\x00\x00")

    def __call__(self, method: str, *args: Any) -> Any:
        m = self.interface.methods[method]
        send = self.replica.query_call if m.is_query else self.replica.update_call
        values = candid.decode(send(self.canister, method, candid.encode(m.args, list(args))), m.rets)
        return values[0] if values else None


@pytest.fixture(scope="module")
def probe() -> Probe:
    return Probe()


@pytest.mark.parametrize("entries", [1, 31, 32, 500])  # one leaf, a full leaf, a split, several levels
def test_an_emptied_map_with_one_slot_reads_as_empty(probe: Probe, entries: int) -> None:
    got = probe("emptied", entries)
    assert got["spareBefore"] and not got["spareAfter"]  # mo:core's emptied map kept its slots; now one
    assert got["isEmpty"] and got["size"] == 0  # after a take and a remove on it
    assert got["got"] == [] and got["taken"] == []
    assert got["entries"] == got["keys"] == got["from"] == 0


def test_an_insert_traps_and_changes_nothing(probe: Probe) -> None:
    before = probe("keptView")
    assert before == {"size": 0, "got": [], "entries": 0, "spare": False}
    for key in (0, 1, 7):
        with pytest.raises(CallRejected, match="Array index out of bounds"):
            probe("insert", key)
        assert probe("keptView") == before
