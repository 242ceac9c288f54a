"""mcp_orchestrator on real canisters: it deploys and upgrades only versions the registry publishes as verified
for the namespace (not deprecated), installs the chunks it hashed itself, snapshots before an upgrade and
loads the snapshot back when the install fails; everything else is refused with a reason and changes nothing."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import pytest
import wasmtime

from ic_replica import candid
from ic_replica.principal import ANONYMOUS, Principal
from prometheus_sdk.icrc16 import to_map
from testkit.protocol import DEV, GOV, SPONSOR, STRANGER, VERIFIERS, Stack
from testkit.typed import Typed

NS = "com.example.counter"


def nat(n: int) -> bytes:
    return candid.encode([candid.NAT], [n])


def with_note(wasm: bytes, note: bytes) -> bytes:
    """The same module with a custom section appended: other bytes, other hash, the same code."""
    name = b"note"
    body = bytes([len(name)]) + name + note
    return wasm + bytes([0]) + candid.leb(len(body)) + body


@dataclass
class World:
    stack: Stack
    orch: Typed
    counter: bytes

    def publish(self, wasm: bytes, version: tuple[int, int, int], verdict: str = "attest",
                previous: str | None = None, **metadata: str) -> str:
        """Upload, request (with `metadata`), fund, have a verifier file `verdict`, and (when verified) publish
        `version` (to be installed over the module `previous`, when given)."""
        s = self.stack
        wasm_id = s.upload(wasm, NS, chunk_size=100_000)
        assert "ok" in s.registry("icrc126_verification_request", {
            "wasm_hash": bytes.fromhex(wasm_id), "repo": "https://example.com/counter.git", "commit_hash": "ab" * 20,
            "metadata": to_map({"canister_name": "counter", **metadata}), "namespace": [NS]}, sender=DEV)
        bounty = s.bounty(wasm_id)
        assert "ok" in s.reserve(VERIFIERS[0], bounty)
        file = s.attest if verdict == "attest" else s.diverge
        filed = file(VERIFIERS[0], wasm_id, bounty)
        assert "ok" in filed, filed
        if verdict == "attest":
            published = s.registry("icrc118_update_wasm", {
                "namespace": NS, "version": version, "wasm_hash": bytes.fromhex(wasm_id),
                "previous": [bytes.fromhex(previous)] if previous else []}, sender=DEV)
            assert "ok" in published, published
        return wasm_id

    def deploy(self, sender: Principal = DEV, version: tuple[int, int, int] | None = None, arg: bytes = b"") -> Any:
        return self.orch("deploy", {"namespace": NS, "version": [version] if version else [], "owner": [],
                                    "arg": arg or nat(5), "cycles": []}, sender=sender)

    def upgrade(self, cid: Principal, version: tuple[int, int, int] | None = None, sender: Principal = DEV,
                **flags: bool) -> Any:
        return self.orch("upgrade", {
            "canister_id": cid, "version": [version] if version else [], "arg": nat(0),
            "snapshot": [flags["snapshot"]] if "snapshot" in flags else [],
            "force_downgrade": [flags["force_downgrade"]] if "force_downgrade" in flags else [],
            "allow_deprecated": [flags["allow_deprecated"]] if "allow_deprecated" in flags else []}, sender=sender)

    def module_hash(self, cid: Principal) -> str:
        status = self.stack.ic.canister_status(cid, sender=self.orch.canister_id)
        return bytes(status["module_hash"][0]).hex()

    def block_types(self) -> list[str]:
        got = self.orch("icrc3_get_blocks", [{"start": 0, "length": 100}])
        return [dict(b["block"]["Map"])["btype"]["Text"] for b in got["blocks"]]

    def last_tx(self) -> dict[str, Any]:
        """The fields of the newest block."""
        length = self.orch("icrc3_get_blocks", [{"start": 0, "length": 0}])["log_length"]
        block = self.orch("icrc3_get_blocks", [{"start": length - 1, "length": 1}])["blocks"][0]["block"]["Map"]
        return dict(dict(block)["tx"]["Map"])


@pytest.fixture
def world(ic: Any, product: dict[str, Any], wasms: dict[str, bytes]) -> World:
    stack = Stack.deploy(ic, product)
    orch_id = ic.create_canister(controllers=[GOV], sender=GOV)
    orch = Typed(ic, orch_id, "mcp_orchestrator")
    ic.install_code(orch_id, product["mcp_orchestrator"].wasm.read_bytes(),
                    orch.interface.encode_init({"governance": GOV, "registry": stack.registry.canister_id}), sender=GOV)
    created = stack.registry("icrc118_create_canister_type", {"namespace": NS, "description": "counter"}, sender=DEV)
    assert "ok" in created
    stack.namespaces.add(NS)
    stack.stake(VERIFIERS[0])
    return World(stack, orch, wasms["counter"])


def test_deploys_a_verified_version_and_upgrades_it_keeping_state(world: World) -> None:
    v1 = world.publish(world.counter, (1, 0, 0))
    deployed = world.deploy()
    assert "ok" in deployed, deployed
    instance = deployed["ok"]
    cid = instance["canister_id"]
    assert instance["version"] == (1, 0, 0) and instance["wasm_id"] == v1 and instance["owner"] == DEV
    assert instance["state"] == {"Running": None}
    ic = world.stack.ic
    assert candid.decode(ic.update_call(cid, "inc", candid.encode([], [])))[0] == 6  # init arg 5, then inc
    assert world.module_hash(cid) == v1
    status = ic.canister_status(cid, sender=world.orch.canister_id)
    assert status["settings"]["controllers"] == [world.orch.canister_id]  # only the orchestrator installs code

    v2 = world.publish(with_note(world.counter, b"1.1.0"), (1, 1, 0))
    upgraded = world.upgrade(cid)  # no version named: the newest verified one
    assert "ok" in upgraded, upgraded
    assert upgraded["ok"]["version"] == (1, 1, 0) and world.module_hash(cid) == v2
    assert candid.decode(ic.query_call(cid, "get", candid.encode([], [])))[0] == 6  # the heap was kept
    assert world.block_types() == ["121deploy", "121upgrade_to", "121upgrade"]
    assert world.orch("list_instances", {"namespace": [NS], "after": [], "limit": 10})[0]["version"] == (1, 1, 0)


def test_refuses_what_is_not_a_verified_version(world: World) -> None:
    assert world.deploy() == {"err": {"VersionNotFound": None}}  # nothing published
    pending = world.stack.upload(with_note(world.counter, b"pending"), NS)
    # metadata that claims the wasm needs no verification (the reference orchestrator trusted it) changes nothing
    assert "ok" in world.stack.registry("icrc126_verification_request", {
        "wasm_hash": bytes.fromhex(pending), "repo": "https://example.com/counter.git", "commit_hash": "ab" * 20,
        "metadata": to_map({"deployment_type": "provisioned", "verified": "true"}), "namespace": [NS]}, sender=DEV)
    assert world.deploy() == {"err": {"VersionNotFound": None}}  # requested, not verified, so not publishable
    assert world.stack.registry("icrc118_update_wasm", {"namespace": NS, "version": (1, 0, 0),
                                                        "wasm_hash": bytes.fromhex(pending), "previous": []},
                                sender=DEV) == {"err": {"NotVerified": None}}
    rejected = world.publish(with_note(world.counter, b"rejected"), (9, 9, 9), verdict="diverge")
    assert world.stack.status(rejected, NS)["outcome"] == [{"Rejected": None}]
    assert world.deploy() == {"err": {"VersionNotFound": None}}

    world.publish(world.counter, (1, 0, 0))
    for who in (STRANGER, SPONSOR, ANONYMOUS):
        assert world.deploy(sender=who) == {"err": {"NotAuthorized": None}}
    assert world.deploy(version=(2, 0, 0)) == {"err": {"VersionNotFound": None}}
    assert "ok" in world.stack.registry("icrc118_deprecate", {"namespace": NS, "version": (1, 0, 0),
                                                               "reason": "a bug"}, sender=DEV)
    assert world.deploy() == {"err": {"VersionNotFound": None}}  # the only version is deprecated
    assert world.deploy(version=(1, 0, 0)) == {"err": {"Deprecated": "a bug"}}
    assert world.orch("list_instances", {"namespace": [], "after": [], "limit": 10}) == []
    assert world.block_types() == []


def test_upgrades_only_forward_by_the_owner_or_a_controller(world: World) -> None:
    world.publish(world.counter, (1, 0, 0))
    cid = world.deploy(sender=GOV)["ok"]["canister_id"]  # governance deploys; the instance is governance's
    world.publish(with_note(world.counter, b"1.1.0"), (1, 1, 0))
    assert world.upgrade(cid, sender=STRANGER) == {"err": {"NotAuthorized": None}}
    assert world.upgrade(cid, sender=ANONYMOUS) == {"err": {"NotAuthorized": None}}
    assert "ok" in world.upgrade(cid, (1, 1, 0), sender=DEV)  # a namespace controller
    assert world.upgrade(cid, (1, 0, 0)) == {"err": {"Downgrade": {"running": (1, 1, 0), "requested": (1, 0, 0)}}}
    assert world.upgrade(cid, (1, 1, 0)) == {"err": {"Downgrade": {"running": (1, 1, 0), "requested": (1, 1, 0)}}}
    assert "ok" in world.upgrade(cid, (1, 0, 0), force_downgrade=True)
    assert "ok" in world.stack.registry("icrc118_deprecate", {"namespace": NS, "version": (1, 1, 0),
                                                               "reason": "leaks"}, sender=DEV)
    assert world.upgrade(cid, (1, 1, 0)) == {"err": {"Deprecated": "leaks"}}
    assert world.upgrade(cid, (1, 1, 0), sender=GOV, allow_deprecated=True) == {"err": {"NotAuthorized": None}}
    assert "ok" in world.upgrade(cid, (1, 1, 0), allow_deprecated=True)  # a controller's override, recorded
    assert world.last_tx()["deprecated_override"] == {"Nat": 1}


def test_a_failed_upgrade_loads_the_snapshot_back(world: World) -> None:
    v1 = world.publish(world.counter, (1, 0, 0))
    cid = world.deploy()["ok"]["canister_id"]
    ic = world.stack.ic
    no_args = candid.encode([], [])
    ic.update_call(cid, "inc", no_args)
    ic.update_call(cid, "setFailPreUpgrade", candid.encode([candid.BOOL], [True]))  # its pre_upgrade will trap
    world.publish(with_note(world.counter, b"1.1.0"), (1, 1, 0))
    failed = world.upgrade(cid)
    assert "ManagementFailed" in failed["err"] and "the snapshot was loaded back" in failed["err"]["ManagementFailed"]
    assert world.module_hash(cid) == v1
    assert candid.decode(ic.query_call(cid, "get", no_args))[0] == 6
    assert candid.decode(ic.update_call(cid, "inc", no_args))[0] == 7  # running again
    instance = world.orch("get_instance", cid)[0]
    assert instance["version"] == (1, 0, 0) and instance["state"] == {"Running": None}
    assert world.block_types() == ["121deploy", "121upgrade_to", "121upgrade_reverted"]


def test_chunks_that_do_not_hash_to_the_version_are_never_installed(world: World, product: dict[str, Any],
                                                                     wasms: dict[str, bytes]) -> None:
    """A registry that claims a version is verified but serves other bytes: the orchestrator hashes what it
    would install and refuses."""
    ic = world.stack.ic
    liar = ic.create_canister(controllers=[GOV], sender=GOV)
    ic.install_code(liar, wasms["fake_registry"], candid.encode([], []), sender=GOV)
    claimed = hashlib.sha256(world.counter).hexdigest()
    tampered = bytearray(world.counter)
    tampered[-1] ^= 1
    version = candid.Record(((0, candid.NAT), (1, candid.NAT), (2, candid.NAT)))
    t = candid.Record.of(wasm_id=candid.TEXT, version=version, chunks=candid.Vec(candid.BLOB),
                         controllers=candid.Vec(candid.PRINCIPAL))
    ic.update_call(liar, "set", candid.encode([t], [{"wasm_id": claimed, "version": {0: 1, 1: 0, 2: 0},
                                                    "chunks": [bytes(tampered)], "controllers": [DEV]}]), sender=GOV)
    orch_id = ic.create_canister(controllers=[GOV], sender=GOV)
    orch = Typed(ic, orch_id, "mcp_orchestrator")
    ic.install_code(orch_id, product["mcp_orchestrator"].wasm.read_bytes(),
                    orch.interface.encode_init({"governance": GOV, "registry": liar}), sender=GOV)
    refused = orch("deploy", {"namespace": NS, "version": [], "owner": [], "arg": nat(1), "cycles": []}, sender=DEV)
    assert refused == {"err": {"HashMismatch": {"expected": claimed, "computed": hashlib.sha256(tampered).hexdigest()}}}
    assert orch("list_instances", {"namespace": [], "after": [], "limit": 10}) == []


def test_the_orchestrator_upgrades_itself_keeping_its_instances(world: World, product: dict[str, Any]) -> None:
    world.publish(world.counter, (1, 0, 0))
    cid = world.deploy()["ok"]["canister_id"]
    world.stack.ic.upgrade_canister(world.orch.canister_id, product["mcp_orchestrator"].wasm.read_bytes(),
                                    world.orch.interface.encode_init({"governance": GOV,
                                                                      "registry": world.stack.registry.canister_id}),
                                    sender=GOV)
    assert world.orch("get_instance", cid)[0]["version"] == (1, 0, 0)
    assert world.block_types() == ["121deploy"]


def test_two_upgrades_of_one_canister_in_one_round_do_not_interleave(world: World) -> None:
    world.publish(world.counter, (1, 0, 0))
    cid = world.deploy()["ok"]["canister_id"]
    world.publish(with_note(world.counter, b"1.1.0"), (1, 1, 0))
    world.publish(with_note(world.counter, b"1.2.0"), (1, 2, 0))
    ic = world.stack.ic

    def request(version: tuple[int, int, int]) -> dict[str, Any]:
        return {"canister_id": cid, "version": [version], "arg": nat(0), "snapshot": [], "force_downgrade": [],
                "allow_deprecated": []}

    first = world.orch.submit("upgrade", request((1, 1, 0)), sender=DEV)
    second = world.orch.submit("upgrade", request((1, 2, 0)), sender=DEV)
    results = [world.orch.decode("upgrade", ic.await_call(m)) for m in (first, second)]
    assert sorted(next(iter(r)) for r in results) == ["err", "ok"]
    assert {"err": {"Busy": None}} in results
    done = next(r["ok"] for r in results if "ok" in r)
    assert world.orch("get_instance", cid)[0]["version"] == done["version"]
    assert world.module_hash(cid) == done["wasm_id"]


def test_oversized_arguments_are_refused_before_anything_happens(world: World) -> None:
    world.publish(world.counter, (1, 0, 0))
    refused = world.deploy(arg=b"\x00" * (1_048_576 + 1))
    assert refused == {"err": {"InvalidArgument": "an init argument of at most 1 MiB"}}
    greedy = world.orch("deploy", {"namespace": NS, "version": [], "owner": [], "arg": nat(1),
                                   "cycles": [10**15]}, sender=DEV)
    assert greedy == {"err": {"InvalidArgument": "only governance gives an instance more than the default cycles"}}
    assert world.block_types() == []


def test_revert_loads_the_snapshot_taken_before_the_last_upgrade(world: World) -> None:
    v1 = world.publish(world.counter, (1, 0, 0))
    cid = world.deploy()["ok"]["canister_id"]
    ic = world.stack.ic
    no_args = candid.encode([], [])
    assert world.orch("revert", cid, sender=DEV) == {"err": {"InvalidArgument": "no snapshot to revert to"}}
    world.publish(with_note(world.counter, b"1.1.0"), (1, 1, 0))
    assert "ok" in world.upgrade(cid)
    ic.update_call(cid, "inc", no_args)  # 6 now; the snapshot taken before the upgrade holds 5
    assert world.orch("revert", cid, sender=STRANGER) == {"err": {"NotAuthorized": None}}
    reverted = world.orch("revert", cid, sender=DEV)
    assert reverted["ok"]["version"] == (1, 0, 0) and reverted["ok"]["wasm_id"] == v1
    assert world.module_hash(cid) == v1
    assert candid.decode(ic.query_call(cid, "get", no_args))[0] == 5  # the state before the upgrade
    assert world.block_types() == ["121deploy", "121upgrade_to", "121upgrade", "121revert_snapshot"]


def test_icrc120_upgrade_to_names_the_module_by_hash_and_maintenance_is_governance_only(world: World) -> None:
    world.publish(world.counter, (1, 0, 0))
    cid = world.deploy()["ok"]["canister_id"]
    v2 = world.publish(with_note(world.counter, b"1.1.0"), (1, 1, 0))

    def request(wasm_hash: bytes, mode: Any = None, parameters: list[Any] | None = None) -> dict[str, Any]:
        return {"canister_id": cid, "hash": wasm_hash, "args": nat(0),
                "mode": mode or {"upgrade": [{"skip_pre_upgrade": [], "wasm_memory_persistence": []}]},
                "stop": True, "snapshot": True, "restart": True, "timeout": 0,
                "parameters": [parameters] if parameters is not None else []}

    unknown = hashlib.sha256(b"not a version").digest()
    results = world.orch("icrc120_upgrade_to", [request(unknown), request(bytes.fromhex(v2), {"reinstall": None}),
                                                request(bytes.fromhex(v2), parameters=[("sys:x", {"Nat": 1})])],
                         sender=DEV)
    assert results == [{"Err": {"WasmUnavailable": None}},
                       {"Err": {"Generic": "only #upgrade: new instances come from deploy"}},
                       {"Err": {"Generic": "parameters: unsupported setting or value type: sys:x"}}]
    assert world.orch("icrc120_upgrade_to", [request(bytes.fromhex(v2))], sender=STRANGER) == [
        {"Err": {"Unauthorized": None}}]
    (done,) = world.orch("icrc120_upgrade_to", [request(bytes.fromhex(v2))], sender=DEV)
    assert "Ok" in done and world.module_hash(cid) == v2
    stop = [{"canister_id": cid, "timeout": 0}]
    assert world.orch("icrc120_stop_canister", stop, sender=DEV) == [{"Err": {"Unauthorized": None}}]
    assert "Ok" in world.orch("icrc120_stop_canister", stop, sender=GOV)[0]
    assert world.stack.ic.canister_status(cid, sender=world.orch.canister_id)["status"] == {"stopped": None}
    assert "Ok" in world.orch("icrc120_start_canister", stop, sender=GOV)[0]
    assert world.block_types() == ["121deploy", "121upgrade_to", "121upgrade", "121stop_canister", "121start_canister"]


def test_a_failed_health_check_loads_the_snapshot_back(world: World) -> None:
    """The version's request names a health check (`health_check` in its metadata): the orchestrator calls it
    after the upgrade and reverts when it does not answer ok."""
    v1 = world.publish(world.counter, (1, 0, 0))
    cid = world.deploy()["ok"]["canister_id"]
    ic = world.stack.ic
    ic.update_call(cid, "setFailHealth", candid.encode([candid.BOOL], [True]))
    v2 = world.publish(with_note(world.counter, b"1.1.0"), (1, 1, 0), health_check="health")
    failed = world.upgrade(cid)["err"]["ManagementFailed"]
    assert "the health check health answered err: told to fail" in failed and "the snapshot was loaded back" in failed
    assert world.module_hash(cid) == v1 and world.orch("get_instance", cid)[0]["version"] == (1, 0, 0)
    assert candid.decode(ic.query_call(cid, "get", candid.encode([], [])))[0] == 5
    ic.update_call(cid, "setFailHealth", candid.encode([candid.BOOL], [False]))
    assert world.upgrade(cid)["ok"]["wasm_id"] == v2  # healthy now
    assert world.block_types() == ["121deploy", "121upgrade_to", "121upgrade_reverted", "121upgrade_to", "121upgrade"]


def test_governance_funds_top_ups_that_happen_once_per_need(world: World) -> None:
    world.publish(world.counter, (1, 0, 0))
    cid = world.deploy()["ok"]["canister_id"]
    ic = world.stack.ic
    policy = [{"threshold": 3 * 10**12, "amount": 10**12}]  # a new instance has 2 T
    assert world.orch("set_top_up", cid, policy, sender=DEV) == {"err": {"NotAuthorized": None}}
    assert world.orch("set_top_up", cid, [{"threshold": 1, "amount": 0}], sender=GOV) == {
        "err": {"InvalidArgument": "an amount of 1..10 T cycles"}}
    assert world.orch("set_top_up", cid, policy, sender=GOV) == {"ok": None}
    page = {"after": [], "limit": 10}
    calls = [world.orch.submit("top_up_instances", page, sender=STRANGER) for _ in range(2)]  # in one round
    results = [world.orch.decode("top_up_instances", ic.await_call(m)) for m in calls]
    assert sorted(sum(r["added"] for r in result) for result in results) == [0, 10**12]  # once, not twice
    before = ic.canister_status(cid, sender=world.orch.canister_id)["cycles"]
    assert 3 * 10**12 - 10**10 < before <= 3 * 10**12
    (again,) = world.orch("top_up_instances", page, sender=STRANGER)
    assert again["added"] == 0  # above the threshold now
    assert world.block_types() == ["121deploy", "121top_up_policy", "121top_up"]


def _replying(text: bytes) -> bytes:
    """A module whose `health` query replies `text`, byte for byte (Candid or not)."""
    data = "".join(f"\\{b:02x}" for b in text)
    return wasmtime.wat2wasm(f"""(module
      (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
      (import "ic0" "msg_reply" (func $reply))
      (memory {len(text) // 65536 + 1})
      (data (i32.const 0) "{data}")
      (func (export "canister_query health") (call $append (i32.const 0) (i32.const {len(text)})) (call $reply)))""")


def _err_reply(text: str) -> bytes:
    return candid.encode([candid.Variant.of(ok=candid.NULL, err=candid.TEXT)], [{"err": text}])


def test_bad_health_answers_are_reverted_and_their_text_is_bounded(world: World) -> None:
    v1 = world.publish(_replying(b"v1"), (1, 0, 0))
    cid = world.deploy(arg=b"")["ok"]["canister_id"]
    world.publish(_replying(b"not candid at all"), (1, 1, 0), health_check="health")
    failed = world.upgrade(cid)["err"]["ManagementFailed"]
    assert "did not answer ok" in failed and "the snapshot was loaded back" in failed
    assert world.orch("get_instance", cid)[0]["state"] == {"Running": None} and world.module_hash(cid) == v1
    world.publish(_replying(_err_reply("x" * 900)), (1, 2, 0), health_check="health")
    failed = world.upgrade(cid)["err"]["ManagementFailed"]
    assert len(failed) < 400 and "answered err: xxx" in failed  # the callee's text is cut
    last = world.orch("icrc3_get_blocks", [{"start": 2, "length": 1}])["blocks"][0]["block"]["Map"]
    assert len(dict(dict(last)["tx"]["Map"])["reason"]["Text"]) < 400
    world.publish(_replying(_err_reply("x" * 100_000)), (1, 3, 0), health_check="health")
    assert world.upgrade(cid)["err"]["ManagementFailed"] == (
        "the health check health did not answer ok; the snapshot was loaded back")  # too long to read at all


def test_revert_to_a_deprecated_version_needs_a_controller(world: World) -> None:
    world.publish(world.counter, (1, 0, 0))
    cid = world.orch("deploy", {"namespace": NS, "version": [], "owner": [STRANGER], "arg": nat(5), "cycles": []},
                     sender=DEV)["ok"]["canister_id"]
    world.publish(with_note(world.counter, b"1.1.0"), (1, 1, 0))
    assert "ok" in world.upgrade(cid, sender=STRANGER)  # the owner upgrades
    assert "ok" in world.stack.registry("icrc118_deprecate", {"namespace": NS, "version": (1, 0, 0),
                                                               "reason": "a hole"}, sender=DEV)
    assert world.orch("revert", cid, sender=STRANGER) == {"err": {"Deprecated": "a hole"}}
    assert world.orch("get_instance", cid)[0]["state"] == {"Running": None}
    assert "ok" in world.orch("revert", cid, sender=DEV)  # a namespace controller's override, recorded
    assert world.last_tx()["deprecated_override"] == {"Nat": 1}


def test_failed_deploys_leave_no_instance_and_their_canister_is_reused(world: World) -> None:
    world.publish(world.counter, (1, 0, 0))
    ic = world.stack.ic
    created_before = len(ic.canister_ids()) if hasattr(ic, "canister_ids") else None
    for _ in range(3):  # the init argument is not a Nat: init traps, nothing is installed
        assert "ManagementFailed" in world.deploy(arg=b"not candid")["err"]
    assert world.orch("list_instances", {"namespace": [], "after": [], "limit": 10}) == []
    if created_before is not None:
        assert len(ic.canister_ids()) == created_before + 1  # one canister, reused by each attempt
    good = world.deploy()["ok"]
    assert candid.decode(ic.update_call(good["canister_id"], "inc", candid.encode([], [])))[0] == 6
    if created_before is not None:
        assert len(ic.canister_ids()) == created_before + 1
    assert world.block_types() == ["121deploy_failed"] * 3 + ["121deploy"]


def test_icrc120_refuses_to_leave_a_health_checked_version_stopped(world: World) -> None:
    world.publish(world.counter, (1, 0, 0))
    cid = world.deploy()["ok"]["canister_id"]
    v2 = world.publish(with_note(world.counter, b"1.1.0"), (1, 1, 0), health_check="health")
    request = {"canister_id": cid, "hash": bytes.fromhex(v2), "args": nat(0),
               "mode": {"upgrade": []}, "stop": True, "snapshot": True, "restart": False, "timeout": 0,
               "parameters": []}
    assert world.orch("icrc120_upgrade_to", [request], sender=DEV) == [{"Err": {"Generic": (
        "this version has a health check: the canister must be restarted after the upgrade")}}]
    assert world.orch("get_instance", cid)[0]["state"] == {"Running": None}


def test_maintenance_and_an_upgrade_in_one_round_do_not_interleave(world: World) -> None:
    world.publish(world.counter, (1, 0, 0))
    cid = world.deploy()["ok"]["canister_id"]
    world.publish(with_note(world.counter, b"1.1.0"), (1, 1, 0))
    ic = world.stack.ic
    stop = world.orch.submit("icrc120_stop_canister", [{"canister_id": cid, "timeout": 0}], sender=GOV)
    upgrade = world.orch.submit("upgrade", {"canister_id": cid, "version": [], "arg": nat(0), "snapshot": [],
                                            "force_downgrade": [], "allow_deprecated": []}, sender=DEV)
    stopped = world.orch.decode("icrc120_stop_canister", ic.await_call(stop))
    upgraded = world.orch.decode("upgrade", ic.await_call(upgrade))
    assert "Ok" in stopped[0] and upgraded == {"err": {"Busy": None}}
    assert ic.canister_status(cid, sender=world.orch.canister_id)["status"] == {"stopped": None}


def test_recover_is_for_governance_and_failed_instances_only(world: World) -> None:
    world.publish(world.counter, (1, 0, 0))
    cid = world.deploy()["ok"]["canister_id"]
    assert world.orch("recover", cid, sender=DEV) == {"err": {"NotAuthorized": None}}
    assert world.orch("recover", cid, sender=ANONYMOUS) == {"err": {"NotAuthorized": None}}
    assert world.orch("recover", cid, sender=GOV) == {"err": {"InvalidArgument": "only a failed instance is recovered"}}
    assert world.orch("get_instance", cid)[0]["state"] == {"Running": None}


def test_upgrades_follow_the_previous_links_of_icrc118(world: World, wasms: dict[str, bytes]) -> None:
    """2.0.0 must be installed over 1.1.0 (its `previous`): from 1.0.0 the orchestrator installs 1.1.0 and then
    2.0.0, in one upgrade, keeping the state; a step that fails loads the snapshot taken before the first."""
    v1 = world.publish(world.counter, (1, 0, 0))
    cid = world.deploy()["ok"]["canister_id"]
    ic = world.stack.ic
    no_args = candid.encode([], [])
    v11 = world.publish(with_note(world.counter, b"1.1.0"), (1, 1, 0))
    refused = world.stack.registry("icrc118_update_wasm", {
        "namespace": NS, "version": (1, 0, 1), "wasm_hash": bytes.fromhex(v11), "previous": [bytes.fromhex(v11)]},
        sender=DEV)
    assert refused == {"err": {"InvalidArgument":
                               "previous must be the wasm of a lower published version of this namespace"}}
    v2 = world.publish(with_note(world.counter, b"2.0.0"), (2, 0, 0), previous=v11)
    path = world.stack.registry("icrc118_get_upgrade_path", {
        "namespace": NS, "current_version": bytes.fromhex(v1), "target_version": bytes.fromhex(v2)})
    assert [(p["version"], p["previous"]) for p in path] == [((1, 1, 0), []), ((2, 0, 0), [v11])]
    assert [p["version"] for p in world.stack.registry("icrc118_get_upgrade_path", {
        "namespace": NS, "current_version": bytes.fromhex(v11), "target_version": bytes.fromhex(v2)})] == [(2, 0, 0)]
    assert world.stack.registry("icrc118_get_upgrade_path", {
        "namespace": NS, "current_version": bytes.fromhex(v2), "target_version": bytes.fromhex(v1)}) == []

    # A deprecated step refuses the whole path before anything changes.
    assert "ok" in world.stack.registry("icrc118_deprecate", {"namespace": NS, "version": (1, 1, 0),
                                                               "reason": "a leak"}, sender=DEV)
    before = world.block_types()
    assert world.upgrade(cid, (2, 0, 0)) == {"err": {"Deprecated": "a leak"}}
    assert world.block_types() == before and world.module_hash(cid) == v1

    ic.update_call(cid, "inc", no_args)  # 6
    done = world.upgrade(cid, (2, 0, 0), allow_deprecated=True)  # a controller's override, recorded
    assert done["ok"]["version"] == (2, 0, 0) and world.module_hash(cid) == v2, done
    assert candid.decode(ic.query_call(cid, "get", no_args))[0] == 6
    tx = world.last_tx()
    assert tx["path"] == {"Array": [{"Array": [{"Nat": 1}, {"Nat": 1}, {"Nat": 0}]},
                                    {"Array": [{"Nat": 2}, {"Nat": 0}, {"Nat": 0}]}]}
    assert tx["deprecated_override"] == {"Nat": 1}

    # 3.0.0 over 2.1.0 over 2.0.0: 3.0.0's module cannot take 2.1.0's state, so the second step fails and the
    # snapshot taken before the first puts back 2.0.0 with its state.
    v21 = world.publish(with_note(world.counter, b"2.1.0"), (2, 1, 0), previous=v2)
    world.publish(wasms["incompatible"], (3, 0, 0), previous=v21)
    failed = world.upgrade(cid)["err"]["ManagementFailed"]
    assert failed.startswith("install of 3.0.0:") and "the snapshot was loaded back" in failed, failed
    assert world.module_hash(cid) == v2 and world.orch("get_instance", cid)[0]["version"] == (2, 0, 0)
    assert candid.decode(ic.update_call(cid, "inc", no_args))[0] == 7  # running, state kept


def test_icrc120_snapshots_are_taken_loaded_and_cleaned_by_the_owner(world: World) -> None:
    v1 = world.publish(world.counter, (1, 0, 0))
    cid = world.orch("deploy", {"namespace": NS, "version": [], "owner": [SPONSOR], "arg": nat(5), "cycles": []},
                     sender=DEV)["ok"]["canister_id"]
    ic = world.stack.ic
    no_args = candid.encode([], [])
    create = [{"canister_id": cid, "restart": True}]
    assert world.orch("icrc120_create_snapshot", create, sender=STRANGER) == [{"Err": {"Unauthorized": None}}]
    assert world.orch("icrc120_create_snapshot", create, sender=ANONYMOUS) == [{"Err": {"Unauthorized": None}}]
    assert world.orch("icrc120_create_snapshot", [{"canister_id": STRANGER, "restart": True}], sender=SPONSOR) == [
        {"Err": {"NotFound": None}}]
    assert "Ok" in world.orch("icrc120_create_snapshot", create, sender=SPONSOR)[0]  # the owner
    (snap,) = world.orch("list_snapshots", cid)
    assert snap["version"] == (1, 0, 0) and snap["wasm_id"] == v1 and snap["before_upgrade"] is False
    assert ic.canister_status(cid, sender=world.orch.canister_id)["status"] == {"running": None}
    for _ in range(3):
        ic.update_call(cid, "inc", no_args)  # 8

    revert = [{"canister_id": cid, "snapshot_id": snap["snapshot_id"], "restart": True}]
    assert world.orch("icrc120_revert_snapshot", revert, sender=STRANGER) == [{"Err": {"Unauthorized": None}}]
    unknown = [{"canister_id": cid, "snapshot_id": b"\x00" * 16, "restart": True}]
    assert world.orch("icrc120_revert_snapshot", unknown, sender=SPONSOR) == [{"Err": {"NotFound": None}}]
    assert "Ok" in world.orch("icrc120_revert_snapshot", revert, sender=SPONSOR)[0]
    assert candid.decode(ic.update_call(cid, "inc", no_args))[0] == 6  # 5 again, then inc

    assert "Ok" in world.orch("icrc120_create_snapshot", create * 2, sender=DEV)[0]  # a namespace controller
    assert len(world.orch("list_snapshots", cid)) == 3
    assert world.orch("icrc120_create_snapshot", create, sender=DEV) == [
        {"Err": {"Generic": "at most 3 snapshots per instance: clean one first"}}]
    clean = [{"canister_id": cid, "snapshot_id": snap["snapshot_id"]}]
    assert world.orch("icrc120_clean_snapshot", clean, sender=STRANGER) == [{"Err": {"Unauthorized": None}}]
    assert "Ok" in world.orch("icrc120_clean_snapshot", clean, sender=SPONSOR)[0]
    assert world.orch("icrc120_clean_snapshot", clean, sender=SPONSOR) == [{"Err": {"NotFound": None}}]
    on_chain = ic.list_canister_snapshots(cid, sender=world.orch.canister_id)
    listed = world.orch("list_snapshots", cid)
    assert sorted(bytes(s["id"]) for s in on_chain) == sorted(bytes(s["snapshot_id"]) for s in listed)
    assert len(on_chain) == 2
    assert world.block_types()[1:] == ["121create_snapshot", "121revert_snapshot", "121create_snapshot",
                                       "121create_snapshot", "121clean_snapshot"]


def test_a_snapshot_and_an_upgrade_in_one_round_do_not_interleave(world: World) -> None:
    world.publish(world.counter, (1, 0, 0))
    cid = world.deploy()["ok"]["canister_id"]
    world.publish(with_note(world.counter, b"1.1.0"), (1, 1, 0))
    ic = world.stack.ic
    upgrade = world.orch.submit("upgrade", {"canister_id": cid, "version": [], "arg": nat(0), "snapshot": [],
                                            "force_downgrade": [], "allow_deprecated": []}, sender=DEV)
    snap = world.orch.submit("icrc120_create_snapshot", [{"canister_id": cid, "restart": True}], sender=DEV)
    config = world.orch.submit("icrc120_config_canister", [{"canister_id": cid, "configs": [
        ("sys:freezing_threshold", {"Nat": 1000})]}], sender=DEV)
    upgraded = world.orch.decode("upgrade", ic.await_call(upgrade))
    snapped = world.orch.decode("icrc120_create_snapshot", ic.await_call(snap))
    configured = world.orch.decode("icrc120_config_canister", ic.await_call(config))
    assert "ok" in upgraded
    assert snapped == [{"Err": {"Generic": "another operation on this canister is in progress"}}]
    assert configured == [{"Err": {"Generic": "another operation on this canister is in progress"}}]
    assert world.orch("list_snapshots", cid)[0]["before_upgrade"] is True  # only the upgrade's
    assert world.orch("get_instance", cid)[0]["state"] == {"Running": None}


def test_icrc120_config_changes_settings_but_never_the_controllers(world: World) -> None:
    world.publish(world.counter, (1, 0, 0))
    cid = world.orch("deploy", {"namespace": NS, "version": [], "owner": [SPONSOR], "arg": nat(5), "cycles": []},
                     sender=DEV)["ok"]["canister_id"]
    ic = world.stack.ic

    def config(sender: Principal, *configs: tuple[str, Any]) -> Any:
        return world.orch("icrc120_config_canister", [{"canister_id": cid, "configs": list(configs)}], sender=sender)

    assert config(STRANGER, ("sys:freezing_threshold", {"Nat": 1})) == [{"Err": {"Unauthorized": None}}]
    assert config(SPONSOR, ("sys:controllers", {"Array": [{"Blob": SPONSOR.raw}]})) == [
        {"Err": {"InvalidConfig": "sys:controllers cannot be set: the orchestrator stays the only controller"}}]
    assert config(SPONSOR, ("sys:compute_allocation", {"Nat": 10})) == [
        {"Err": {"InvalidConfig": "only governance sets sys:compute_allocation"}}]
    assert config(SPONSOR, ("sys:freezing_threshold", {"Text": "1"})) == [
        {"Err": {"InvalidConfig": "unsupported setting or value type: sys:freezing_threshold"}}]
    assert config(SPONSOR, ("sys:freezing_threshold", {"Nat": 2**64})) == [
        {"Err": {"InvalidConfig": "sys:freezing_threshold is at most 2^64-1"}}]
    assert config(SPONSOR) == [{"Err": {"InvalidConfig": "1 to 10 settings"}}]
    assert "Ok" in config(SPONSOR, ("sys:freezing_threshold", {"Nat": 7_000_000}),
                          ("sys:log_visibility", {"Text": "public"}))[0]
    assert "Ok" in config(GOV, ("sys:compute_allocation", {"Nat": 1}))[0]
    settings = ic.canister_status(cid, sender=world.orch.canister_id)["settings"]
    assert settings["freezing_threshold"] == 7_000_000 and settings["compute_allocation"] == 1
    assert settings["log_visibility"] == {"public": None}
    assert settings["controllers"] == [world.orch.canister_id]
    assert world.last_tx()["configs"] == {"Map": [("sys:compute_allocation", {"Nat": 1})]}

    # ICRC-120 `parameters` of an upgrade go through the same checks, before anything changes.
    v2 = world.publish(with_note(world.counter, b"1.1.0"), (1, 1, 0))
    req = {"canister_id": cid, "hash": bytes.fromhex(v2), "args": nat(0),
           "mode": {"upgrade": [{"skip_pre_upgrade": [], "wasm_memory_persistence": []}]},
           "stop": True, "snapshot": True, "restart": True, "timeout": 60_000_000_000}
    assert world.orch("icrc120_upgrade_to", [{**req, "parameters": [[("sys:controllers", {"Array": []})]]}],
                      sender=SPONSOR) == [{"Err": {"Generic": "parameters: sys:controllers cannot be set: "
                                                              "the orchestrator stays the only controller"}}]
    assert world.module_hash(cid) != v2
    (done,) = world.orch("icrc120_upgrade_to", [{**req, "parameters": [[("sys:wasm_memory_limit", {"Nat": 2**31})]]}],
                         sender=SPONSOR)
    assert "Ok" in done and world.module_hash(cid) == v2
    assert ic.canister_status(cid, sender=world.orch.canister_id)["settings"]["wasm_memory_limit"] == 2**31


def test_icrc120_events_page_by_canister_type_and_time(world: World) -> None:
    world.publish(world.counter, (1, 0, 0))
    a = world.deploy()["ok"]["canister_id"]
    b = world.deploy()["ok"]["canister_id"]
    world.publish(with_note(world.counter, b"1.1.0"), (1, 1, 0))
    assert "ok" in world.upgrade(a)
    stop = [{"canister_id": b, "timeout": 0}]
    assert "Ok" in world.orch("icrc120_stop_canister", stop, sender=GOV)[0]
    assert "Ok" in world.orch("icrc120_start_canister", stop, sender=GOV)[0]

    def events(**filter: Any) -> list[Any]:
        take = filter.pop("take", None)
        prev = filter.pop("prev", None)
        f = {"canister": [], "event_types": [], "start_time": [], "end_time": []}
        f.update({k: [v] for k, v in filter.items()})
        return world.orch("icrc120_get_events", {"filter": [f], "prev": [prev] if prev is not None else [],
                                                 "take": [take] if take is not None else []})

    everything = world.orch("icrc120_get_events", {"filter": [], "prev": [], "take": []})
    assert [(e["canister_id"], next(iter(e["event_type"]))) for e in everything] == [
        (a, "upgrade_finished"), (b, "upgrade_finished"), (a, "upgrade_initiated"), (a, "upgrade_finished"),
        (b, "canister_stopped"), (b, "canister_started")]
    assert [e["id"] for e in everything] == list(range(6))
    details = dict(everything[3]["details"]["Map"])
    assert details["btype"] == {"Text": "121upgrade"} and dict(details["tx"]["Map"])["to"] == {
        "Array": [{"Nat": 1}, {"Nat": 1}, {"Nat": 0}]}
    assert [e["id"] for e in events(canister=b)] == [1, 4, 5]
    assert [e["id"] for e in events(event_types=[{"upgrade_finished": None}, {"canister_started": None},
                                                 {"upgrade_finished": None}])] == [0, 1, 3, 5]
    assert [e["id"] for e in events(canister=a, event_types=[{"upgrade_finished": None}])] == [0, 3]
    assert [e["id"] for e in events(canister=a, event_types=[{"canister_stopped": None}])] == []
    assert [e["id"] for e in events(take=2)] == [0, 1]
    assert [e["id"] for e in events(take=2, prev=(1).to_bytes(1, "big"))] == [2, 3]
    assert [e["id"] for e in events(prev=(4).to_bytes(8, "big"))] == [5]
    t3 = everything[3]["timestamp"]
    assert [e["id"] for e in events(start_time=t3)] == [e["id"] for e in everything if e["timestamp"] >= t3]
    assert [e["id"] for e in events(end_time=everything[0]["timestamp"])] == [
        e["id"] for e in everything if e["timestamp"] <= everything[0]["timestamp"]]
    assert world.orch("icrc120_get_events", {"filter": [], "prev": [b"\x01" * 17], "take": []}) == []
    assert len(world.orch("icrc120_get_events", {"filter": [], "prev": [], "take": [10**30]})) == 6
    assert world.orch("icrc120_metadata") == [("icrc120:canister_type", {"Text": "orchestrator"})]


def _upgrade_request(cid: Principal, snapshot: bool = True) -> dict[str, Any]:
    return {"canister_id": cid, "version": [], "arg": nat(0), "snapshot": [snapshot], "force_downgrade": [],
            "allow_deprecated": []}


def _status(world: World, cid: Principal) -> str:
    return next(iter(world.stack.ic.canister_status(cid, sender=world.orch.canister_id)["status"]))


@pytest.mark.embedded_only
def test_a_registry_that_does_not_answer_fails_an_upgrade_cleanly(world: World) -> None:
    """A registry reject (stopped for its own upgrade, out of cycles) before anything changed, or between the
    snapshot and the install, is an error that undoes what was done: the instance is Running, the canister
    running the module it ran before, never `#Failed` and stopped."""
    v1 = world.publish(world.counter, (1, 0, 0))
    cid = world.deploy()["ok"]["canister_id"]
    world.publish(with_note(world.counter, b"1.1.0"), (1, 1, 0))
    ic = world.stack.ic
    registry, orch = world.stack.registry.canister_id, world.orch.canister_id
    for method in ("icrc118_get_canister_type", "icrc118_get_wasms", "get_wasm_status", "icrc118_get_upgrade_path"):
        ic.inject_fault("reject", registry, method, caller=orch)
        refused = world.orch("upgrade", _upgrade_request(cid), sender=DEV)
        assert "RegistryUnavailable" in refused["err"], (method, refused)
        assert world.orch("get_instance", cid)[0]["state"] == {"Running": None} and _status(world, cid) == "running"
    assert world.module_hash(cid) == v1 and "121upgrade_to" not in world.block_types()

    for snapshot in (True, False):  # chunks are fetched after the canister was stopped (and snapshotted)
        ic.inject_fault("reject", registry, "icrc118_get_wasm_chunk", caller=orch)
        failed = world.orch("upgrade", _upgrade_request(cid, snapshot), sender=DEV)["err"]["ManagementFailed"]
        assert "the registry did not answer" in failed, failed
        undone = "the snapshot was loaded back" if snapshot else "no snapshot was taken: the canister runs 1.0.0"
        assert undone in failed
        assert world.orch("get_instance", cid)[0]["state"] == {"Running": None} and _status(world, cid) == "running"
        assert world.module_hash(cid) == v1
    assert candid.decode(ic.update_call(cid, "inc", candid.encode([], [])))[0] == 6


@pytest.mark.embedded_only
def test_recover_restarts_an_instance_whose_module_is_the_recorded_one(world: World) -> None:
    """The snapshot cannot be loaded back (the management canister refuses): the instance is `#Failed`;
    governance's `recover` sees the canister runs the recorded module and restarts it, state intact (an older
    snapshot is not loaded over newer state)."""
    v1 = world.publish(world.counter, (1, 0, 0))
    cid = world.deploy()["ok"]["canister_id"]
    ic = world.stack.ic
    no_args = candid.encode([], [])
    ic.update_call(cid, "setFailPreUpgrade", candid.encode([candid.BOOL], [True]))
    world.publish(with_note(world.counter, b"1.1.0"), (1, 1, 0))
    ic.inject_fault("reject", Principal.management(), "load_canister_snapshot", caller=world.orch.canister_id)
    failed = world.upgrade(cid)["err"]["ManagementFailed"]
    assert "loading the snapshot failed" in failed, failed
    assert "Failed" in world.orch("get_instance", cid)[0]["state"]
    assert world.orch("recover", cid, sender=DEV) == {"err": {"NotAuthorized": None}}
    recovered = world.orch("recover", cid, sender=GOV)["ok"][0]
    assert recovered["state"] == {"Running": None} and recovered["version"] == (1, 0, 0)
    assert world.module_hash(cid) == v1 and _status(world, cid) == "running"
    assert candid.decode(ic.update_call(cid, "inc", no_args))[0] == 6
    assert world.orch("recover", cid, sender=GOV) == {"err": {"InvalidArgument": "only a failed instance is recovered"}}


def test_a_canister_governance_stopped_stays_stopped_until_governance_starts_it(world: World) -> None:
    world.publish(world.counter, (1, 0, 0))
    cid = world.orch("deploy", {"namespace": NS, "version": [], "owner": [SPONSOR], "arg": nat(5), "cycles": []},
                     sender=DEV)["ok"]["canister_id"]
    world.publish(with_note(world.counter, b"1.1.0"), (1, 1, 0))
    stop = [{"canister_id": cid, "timeout": 0}]
    assert "Ok" in world.orch("icrc120_stop_canister", stop, sender=GOV)[0]
    held = "governance stopped this canister; only governance starts it"
    assert world.orch("icrc120_create_snapshot", [{"canister_id": cid, "restart": True}], sender=SPONSOR) == [
        {"Err": {"Generic": held}}]
    assert world.upgrade(cid, sender=SPONSOR) == {"err": {"StoppedByGovernance": None}}
    assert world.upgrade(cid, sender=DEV) == {"err": {"StoppedByGovernance": None}}
    assert _status(world, cid) == "stopped"
    assert "Ok" in world.orch("icrc120_start_canister", stop, sender=GOV)[0]
    assert "ok" in world.upgrade(cid, sender=SPONSOR)


def test_upgrade_to_parameters_are_recorded_and_stay_when_the_upgrade_is_undone(world: World) -> None:
    world.publish(world.counter, (1, 0, 0))
    cid = world.deploy()["ok"]["canister_id"]
    ic = world.stack.ic
    ic.update_call(cid, "setFailPreUpgrade", candid.encode([candid.BOOL], [True]))  # the install will fail
    v2 = world.publish(with_note(world.counter, b"1.1.0"), (1, 1, 0))
    req = {"canister_id": cid, "hash": bytes.fromhex(v2), "args": nat(0),
           "mode": {"upgrade": [{"skip_pre_upgrade": [], "wasm_memory_persistence": []}]},
           "stop": True, "snapshot": True, "restart": True, "timeout": 0,
           "parameters": [[("sys:freezing_threshold", {"Nat": 12_345_678})]]}
    (result,) = world.orch("icrc120_upgrade_to", [req], sender=DEV)
    assert "the snapshot was loaded back" in result["Err"]["Generic"]
    assert ic.canister_status(cid, sender=world.orch.canister_id)["settings"]["freezing_threshold"] == 12_345_678
    assert world.block_types() == ["121deploy", "121config_canister", "121upgrade_to", "121upgrade_reverted"]
    configured = world.orch("icrc120_get_events", {"filter": [{"canister": [cid], "start_time": [], "end_time": [],
                                                               "event_types": [[{"configuration_changed": None}]]}],
                                                   "prev": [], "take": []})
    assert dict(dict(configured[0]["details"]["Map"])["tx"]["Map"])["configs"] == {
        "Map": [("sys:freezing_threshold", {"Nat": 12_345_678})]}


def test_upgrade_to_by_hash_takes_the_highest_usable_version_of_that_module(world: World) -> None:
    """One module published as 1.1.0 (then deprecated) and as 2.0.0: naming it by hash means 2.0.0."""
    world.publish(world.counter, (1, 0, 0))
    cid = world.deploy()["ok"]["canister_id"]
    x = world.publish(with_note(world.counter, b"x"), (1, 1, 0))
    assert "ok" in world.stack.registry("icrc118_deprecate", {"namespace": NS, "version": (1, 1, 0),
                                                               "reason": "wrong label"}, sender=DEV)
    assert "ok" in world.stack.registry("icrc118_update_wasm", {"namespace": NS, "version": (2, 0, 0),
                                                                 "wasm_hash": bytes.fromhex(x), "previous": []},
                                        sender=DEV)
    req = {"canister_id": cid, "hash": bytes.fromhex(x), "args": nat(0), "mode": {"upgrade": []}, "stop": True,
           "snapshot": True, "restart": True, "timeout": 0, "parameters": []}
    assert "Ok" in world.orch("icrc120_upgrade_to", [req], sender=DEV)[0]
    assert world.orch("get_instance", cid)[0]["version"] == (2, 0, 0)


@pytest.mark.embedded_only
def test_the_previous_release_upgrades_in_place(world: World, product: dict[str, Any], tmp_path: Any) -> None:
    """The release before upgrade paths and the event index (its stable registry reference had fewer methods)
    upgrades in place: instances kept, its blocks indexed as ICRC-120 events, and upgrades through it work."""
    from testkit.releases import ORCHESTRATOR_RELEASE, released_product

    old = released_product(ORCHESTRATOR_RELEASE, tmp_path, ["mcp_orchestrator"])["mcp_orchestrator"].wasm.read_bytes()
    ic = world.stack.ic
    orch_id = ic.create_canister(controllers=[GOV], sender=GOV)
    orch = Typed(ic, orch_id, "mcp_orchestrator")
    init = orch.interface.encode_init({"governance": GOV, "registry": world.stack.registry.canister_id})
    ic.install_code(orch_id, old, init, sender=GOV)
    world.publish(world.counter, (1, 0, 0))
    cid = orch("deploy", {"namespace": NS, "version": [], "owner": [], "arg": nat(5), "cycles": []},
               sender=DEV)["ok"]["canister_id"]
    elsewhere = ic.create_canister(controllers=[GOV], sender=GOV)
    moved = orch.interface.encode_init({"governance": GOV, "registry": elsewhere})  # an upgrade arg rebinds nothing
    ic.upgrade_canister(orch_id, product["mcp_orchestrator"].wasm.read_bytes(), moved, sender=GOV)
    assert orch("get_instance", cid)[0]["version"] == (1, 0, 0)
    (deployed,) = orch("icrc120_get_events", {"filter": [], "prev": [], "take": []})
    assert deployed["canister_id"] == cid and deployed["event_type"] == {"upgrade_finished": None}
    v1 = hashlib.sha256(world.counter).hexdigest()
    v2 = world.publish(with_note(world.counter, b"1.1.0"), (1, 1, 0), previous=v1)
    upgraded = orch("upgrade", _upgrade_request(cid), sender=DEV)
    assert upgraded["ok"]["wasm_id"] == v2, upgraded
    events = orch("icrc120_get_events", {"filter": [], "prev": [], "take": []})
    assert [next(iter(e["event_type"])) for e in events] == [
        "upgrade_finished", "upgrade_initiated", "upgrade_finished"]


def test_an_upgrade_over_its_icrc120_timeout_is_undone(world: World) -> None:
    v1 = world.publish(world.counter, (1, 0, 0))
    cid = world.deploy()["ok"]["canister_id"]
    v2 = world.publish(with_note(world.counter, b"1.1.0"), (1, 1, 0))
    req = {"canister_id": cid, "hash": bytes.fromhex(v2), "args": nat(0), "mode": {"upgrade": []}, "stop": True,
           "snapshot": True, "restart": True, "timeout": 1, "parameters": []}  # 1 ns: no upgrade is that fast
    (late,) = world.orch("icrc120_upgrade_to", [req], sender=DEV)
    why = late["Err"]["Generic"]
    assert "over its timeout of 1 ns" in why and "the snapshot was loaded back" in why
    assert world.module_hash(cid) == v1 and world.orch("get_instance", cid)[0]["version"] == (1, 0, 0)
    assert "Ok" in world.orch("icrc120_upgrade_to", [{**req, "timeout": 600 * 10**9}], sender=DEV)[0]
    assert world.module_hash(cid) == v2


def test_a_timeout_without_a_snapshot_is_refused_before_anything_changes(world: World) -> None:
    world.publish(world.counter, (1, 0, 0))
    cid = world.deploy()["ok"]["canister_id"]
    v2 = world.publish(with_note(world.counter, b"1.1.0"), (1, 1, 0))
    req = {"canister_id": cid, "hash": bytes.fromhex(v2), "args": nat(0), "mode": {"upgrade": []}, "stop": True,
           "snapshot": False, "restart": True, "timeout": 10**9, "parameters": []}
    assert world.orch("icrc120_upgrade_to", [req], sender=DEV) == [
        {"Err": {"Generic": "a timeout needs a snapshot: without one an overdue upgrade could not be undone"}}]
    assert world.orch("get_instance", cid)[0]["state"] == {"Running": None}


def test_its_log_tip_is_certified_after_every_block(world: World, product: dict[str, Any]) -> None:
    """The orchestrator certifies its ICRC-3 tip itself (the shared log leaves certification to each canister):
    after each event, and after an upgrade of the orchestrator, the certificate names the newest block."""
    from ic_replica.certification import BLS_DER_PREFIX
    from prometheus_sdk import icrc3

    class Reader:  # what the SDK's tip reader asks of a client
        canister_id = world.orch.canister_id

        def icrc3_get_tip_certificate(self) -> Any:
            return world.orch("icrc3_get_tip_certificate")

    root_key = BLS_DER_PREFIX + world.stack.ic.root_public_key
    assert icrc3.certified_tip(Reader(), root_key) is None  # no block yet
    world.publish(world.counter, (1, 0, 0))
    cid = world.deploy()["ok"]["canister_id"]
    world.publish(with_note(world.counter, b"1.1.0"), (1, 1, 0))
    assert "ok" in world.upgrade(cid)
    blocks = world.orch("icrc3_get_blocks", [{"start": 0, "length": 100}])["blocks"]
    tip = icrc3.certified_tip(Reader(), root_key)
    assert tip is not None and tip.index == len(blocks) - 1 == 2
    assert tip.hash == icrc3.value_hash(blocks[-1]["block"])
    arg = world.orch.interface.encode_init({"governance": GOV, "registry": world.stack.registry.canister_id})
    world.stack.ic.upgrade_canister(world.orch.canister_id, product["mcp_orchestrator"].wasm.read_bytes(), arg,
                                    sender=GOV)
    again = icrc3.certified_tip(Reader(), root_key)
    assert again is not None and (again.index, again.hash) == (tip.index, tip.hash)
