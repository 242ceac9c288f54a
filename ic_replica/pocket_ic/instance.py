"""One PocketIC instance: a `Replica` per subnet, one shared clock, calls routed by canister id ranges.

Deterministic by default: time moves only on `tick` (1 ns per round, as on PocketIC) and `set_time`; with
auto progress a thread follows wall-clock time and runs rounds. Every operation takes the instance lock, so
requests to one instance are serialized (PocketIC serializes them too); instances are independent.

Each subnet is its own `Replica` (`SubnetReplica`) hosting its own canister ranges, with keys of its own, as on
the IC: the first subnet in the topology (the NNS when there is one) is the root subnet, whose key is the root key
`read/pub_key` and `/api/v2/status` report and whose id derives from it; every other subnet has its own BLS key
(its id derives from that key) and node key, and its certificates carry a delegation from the root key for its
canister ranges (`certification.SubnetKeys`), so they verify under the root key too.
Calls between canisters on different subnets work: before each round, requests for a canister hosted by
another subnet (management calls: for the canister they name) and the responses going back move to that
subnet's queue (`_exchange_messages`).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time as _time
from collections import deque
from collections.abc import Callable
from typing import Any

from ic_replica import http_outcalls, management
from ic_replica.candid import CandidError
from ic_replica.certification import NetworkKeys, SubnetKeys
from ic_replica.errors import CallRejected, ErrorCode, Reject, RejectCode, ReplicaError, reject_for
from ic_replica.messages import IngressStatus, Request, Response
from ic_replica.pocket_ic import rest, topology
from ic_replica.pocket_ic.rest import U64_MAX, U128_MAX, ApiError, CanisterCall, Effective
from ic_replica.pocket_ic.topology import SubnetPlan
from ic_replica.principal import MANAGEMENT, canister_id_from_index
from ic_replica.replica import Limits, Replica
from ic_replica.stable_memory import PAGE

MAX_AWAIT_ROUNDS = 100  # rounds `await_ingress_message` runs before giving up (as PocketIC)
BENCHMARKING_LIMITS = Limits(update=50_000_000_000_000, query=50_000_000_000_000, install=50_000_000_000_000,
                             inspect=200_000_000)
AUTO_PROGRESS_MIN_DELAY_S = 0.01
_log = logging.getLogger(__name__)
# Fields of InstanceConfig that ask for something this server does not do (present and not null).
_UNSUPPORTED = {"state_dir": "instances live in memory only (no state directory)",
                "icp_features": "no system canisters (registry, CMC, ICP ledger, II, SNS, ...) are deployed",
                "bitcoind_addr": "there is no bitcoin adapter", "dogecoind_addr": "there is no dogecoin adapter",
                "http_gateway_config": "create the HTTP gateway with POST /http_gateway instead"}


def _artificial_delay_ms(config: Any) -> int:
    """`AutoProgressConfig.artificial_delay_ms`: null or a u64 (PocketIC's JSON deserialization refuses others)."""
    if config is None:
        return 0
    if not isinstance(config, dict):
        raise ApiError("Failed to deserialize the JSON body: expected an AutoProgressConfig object")
    value = config.get("artificial_delay_ms")
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U64_MAX:
        raise ApiError("Failed to deserialize the JSON body: `artificial_delay_ms` must be null or a u64")
    return value


class SubnetReplica(Replica):
    """The replica of one subnet: it accepts requests for, and certifies (`/canister_ranges`), the canister
    ranges of its subnet, plus any canister it hosts outside them. Its lock is the instance's (one lock per
    instance: no lock-order inversions), and a round asked of it (`tick`, as the IC HTTP interface's
    synchronous calls and `await_call` do) is a round of the whole instance, so clocks stay equal and
    cross-subnet calls progress."""

    plan: SubnetPlan
    owner: Instance | None = None

    def tick(self, rounds: int = 1) -> None:
        if self.owner is None:
            self.own_tick(rounds)
        else:
            self.owner.tick(rounds)

    def own_tick(self, rounds: int = 1) -> None:
        super().tick(rounds)

    def canister_ranges(self) -> list[tuple[bytes, bytes]]:
        ranges = [(canister_id_from_index(lo).raw, canister_id_from_index(hi).raw) for lo, hi in self.plan.ranges]
        ranges += [(cid, cid) for cid in self.canisters if not self.plan.hosts(cid)]
        return sorted(ranges)

    def hosts(self, canister_id: bytes) -> bool:
        return self.plan.hosts(canister_id) or canister_id in self.canisters


class Subnet:
    def __init__(self, plan: SubnetPlan, replica: SubnetReplica) -> None:
        self.plan = plan
        self.replica = replica

    @property
    def subnet_id(self) -> bytes:
        return self.plan.subnet_id


class Instance:
    def __init__(self, instance_id: int, config: Any) -> None:
        if not isinstance(config, dict):
            raise ApiError("Failed to deserialize the JSON body: expected an InstanceConfig object")
        for key, what in _UNSUPPORTED.items():
            value = config.get(key)
            if value is None or (key == "icp_features" and isinstance(value, dict)
                                 and all(v is None for v in value.values())):
                continue
            raise ApiError(f"`{key}` is not supported by this server: {what}")
        self.instance_id = instance_id
        self.lock = threading.RLock()
        wanted = topology.requested(config.get("subnet_config_set"))
        self.keys = NetworkKeys.generate()
        # The first subnet (the NNS when there is one) is the root subnet: the root key is its key, its id derives
        # from it and its certificates carry no delegation. Every other subnet has keys (and an id) of its own
        # and certifies with a delegation from the root key.
        keys = [self.keys, *(SubnetKeys.for_subnet(self.keys, functools.partial(self._delegation_scope, k))
                             for k in range(1, len(wanted)))]
        self._seed = os.urandom(16)
        plans = topology.plan(wanted, self._seed, [k.subnet_id.raw for k in keys])
        now, auto = _time.time_ns(), None
        initial = config.get("initial_time")
        if isinstance(initial, dict) and "Timestamp" in initial:
            now = rest.nat_field(initial["Timestamp"], "nanos_since_epoch", U64_MAX)
        elif isinstance(initial, dict) and "AutoProgress" in initial:
            auto = initial["AutoProgress"] or {}
        self.subnets = [self._build_subnet(p, subnet_keys, now) for p, subnet_keys in zip(plans, keys, strict=True)]
        self.topology = topology.topology_json(plans)
        self.deleted = False
        self._progress: tuple[threading.Thread, threading.Event] | None = None
        self._pending_time: int | None = None  # set by `set_time`, not yet certified: the next round's time
        if auto is not None:
            self.auto_progress(auto)

    def _build_subnet(self, plan: SubnetPlan, keys: NetworkKeys, now: int) -> Subnet:
        plan.node_ids = [keys.node_id.raw]
        replica = SubnetReplica(limits=BENCHMARKING_LIMITS if plan.benchmarking else None, time_ns=now,
                                first_canister_index=plan.allocation[0])
        replica.plan, replica.lock, replica.owner = plan, self.lock, self
        replica.keys, replica.root_key_der, replica.subnet_id = keys, keys.root_key_der, keys.subnet_id.raw
        return Subnet(plan, replica)

    def _add_subnet_for(self, canister_id: bytes) -> Subnet:
        """A new subnet hosting `canister_id`, a `specified_id` no subnet hosts (PocketIC creates one): with its
        own keys and a delegation, on the instance's clock. A principal that is not a canister id goes to the
        default subnet, whose management canister rejects it."""
        index = topology.canister_index(canister_id)
        if index is None:
            return self.default_subnet()
        k = len(self.subnets)
        keys = SubnetKeys.for_subnet(self.keys, functools.partial(self._delegation_scope, k))
        taken = [r for s in self.subnets for r in s.plan.ranges]
        plan = topology.plan_for_canister(index, k, self._seed, keys.subnet_id.raw, taken)
        clock = self.subnets[0].replica
        subnet = self._build_subnet(plan, keys, clock.time_ns)
        subnet.replica.live_time = clock.live_time
        self.subnets.append(subnet)
        self.topology = topology.topology_json([s.plan for s in self.subnets])
        return subnet

    def _delegation_scope(self, index: int) -> tuple[list[tuple[bytes, bytes]], int]:
        """What subnet `index`'s delegation certifies: the canister ranges it hosts now, at its time."""
        replica = self.subnets[index].replica
        return replica.canister_ranges(), replica.time_ns

    # ------------------------------------------------------------ lookup and routing

    @property
    def root_key_der(self) -> bytes:
        return self.keys.root_key_der

    def subnet_by_id(self, subnet_id: bytes) -> Subnet | None:
        return next((s for s in self.subnets if s.subnet_id == subnet_id), None)

    def subnet_hosting(self, canister_id: bytes) -> Subnet | None:
        return next((s for s in self.subnets if s.plan.hosts(canister_id)), None)

    def default_subnet(self) -> Subnet:
        for kind in ("Application", "VerifiedApplication", "System"):
            for s in self.subnets:
                if s.plan.kind == kind:
                    return s
        return self.subnets[0]

    def _hosting_or_fail(self, canister_id: bytes) -> Subnet:
        subnet = self.subnet_hosting(canister_id)
        if subnet is None:
            raise ApiError(f"CanisterNotFound({rest.canister_debug(canister_id)})")
        return subnet

    def existing(self, canister_id: bytes) -> tuple[Subnet, Any]:
        subnet = self.subnet_hosting(canister_id)
        canister = subnet.replica.canisters.get(canister_id) if subnet else None
        if subnet is None or canister is None:
            raise ApiError(f"CanisterNotFound({rest.canister_debug(canister_id)})")
        return subnet, canister

    def route(self, call: CanisterCall, new_subnet: bool = False) -> tuple[Subnet, Effective]:
        """The subnet a call goes to, and the effective principal that names it (returned to the client in
        the message id, so `await_ingress_message` finds the subnet again). With `new_subnet` (a submitted
        call), a `provisional_create_canister_with_cycles` for a `specified_id` (or effective canister id) no
        subnet hosts gets a new subnet, as on PocketIC."""
        if call.canister_id != MANAGEMENT.raw:
            return self._hosting_or_fail(call.canister_id), Effective("CanisterId", call.canister_id)
        eff = call.effective
        if eff.kind == "SubnetId":
            subnet = self.subnet_by_id(eff.raw)
            if subnet is None:
                raise ApiError(f"SubnetNotFound({rest.text(eff.raw)})")
            return subnet, eff
        creating = new_subnet and call.method == "provisional_create_canister_with_cycles"
        if eff.kind == "CanisterId":
            if creating and self.subnet_hosting(eff.raw) is None:
                return self._add_subnet_for(eff.raw), eff
            return self._hosting_or_fail(eff.raw), eff
        if call.method in ("provisional_create_canister_with_cycles", "create_canister"):
            specified = self._specified_id(call)
            if specified is not None:
                subnet = self.subnet_hosting(specified)
                if subnet is None and creating:
                    subnet = self._add_subnet_for(specified)
                elif subnet is None:
                    raise ApiError(f"The `specified_id` {rest.text(specified)} is not in the canister ranges of "
                                   "any subnet of this instance (see read/topology)")
                return subnet, Effective("SubnetId", subnet.subnet_id)
            subnet = self.default_subnet()
            return subnet, Effective("SubnetId", subnet.subnet_id)
        target = self._management_target(call)
        if target is not None:
            return self._hosting_or_fail(target), Effective("CanisterId", target)
        subnet = self.default_subnet()
        return subnet, Effective("SubnetId", subnet.subnet_id)

    @staticmethod
    def _specified_id(call: CanisterCall) -> bytes | None:
        if call.method != "provisional_create_canister_with_cycles":
            return None
        try:
            args = management.decode_args(call.method, call.payload)
        except (management.ManagementError, CandidError):
            return None  # the management canister rejects it properly
        ids = args.get("specified_id") or []
        return ids[0].raw if ids else None

    @staticmethod
    def _management_target(call: CanisterCall) -> bytes | None:
        if call.method not in management.METHOD_NAMES:
            return None
        try:
            return management.target_of(management.decode_args(call.method, call.payload))
        except (management.ManagementError, CandidError):
            return None

    def _check_specified_on_subnet(self, call: CanisterCall, subnet: Subnet) -> None:
        specified = self._specified_id(call)
        if specified is not None and not subnet.plan.hosts(specified):
            raise ApiError(f"The `specified_id` {rest.text(specified)} is not hosted by subnet "
                           f"{rest.text(subnet.subnet_id)} (see read/topology for its canister ranges)")

    # ------------------------------------------------------------ clock and rounds

    def get_time(self) -> int:
        """PocketIC's time: the time `set_time` set for the next round (not certified yet), else the time of the
        last round (or of `set_certified_time`)."""
        with self.lock:
            if self._pending_time is not None:
                return self._pending_time
            return self.subnets[0].replica.get_time()

    def set_time(self, nanos: int, certified: bool = False) -> None:
        """PocketIC's `set_time`: the next round runs at exactly `nanos` (the one after at `nanos` + 1) and queries
        see the previous certified time until that round; with `certified` (`set_certified_time`) queries and
        certificates see it at once and the next round runs 1 ns later. The embedded `Replica.set_time` (the
        localnet's) is unchanged: this is the PocketIC server's view of time."""
        with self.lock:
            current = self.get_time()
            if nanos < current:
                raise ApiError(f"SettingTimeIntoPast(({current}, {nanos}))")
            if certified:
                self._pending_time = None
                for s in self.subnets:
                    s.replica.set_time(nanos)
            elif nanos > current:
                self._pending_time = nanos

    def _apply_pending_time(self) -> None:
        """Before a round: make the round `Replica._round_time` starts next run at the time `set_time` set."""
        if self._pending_time is None:
            return
        for s in self.subnets:
            s.replica.set_time(max(s.replica.time_ns, self._pending_time - 1))
        self._pending_time = None

    def tick(self, rounds: int = 1) -> None:
        """Rounds on every subnet; before each, canister-to-canister messages for another subnet move there."""
        with self.lock:
            for _ in range(rounds):
                self._apply_pending_time()
                self._exchange_messages()
                for s in self.subnets:
                    s.replica.own_tick()

    def _exchange_messages(self) -> None:
        """Cross-subnet calls: a request a canister sent to a canister hosted by another subnet (a management
        call: naming such a canister), and the response coming back, moves to that subnet's queue to run in
        its next round, as the IC's XNet streams deliver it. Ingress messages are routed at submission."""
        if len(self.subnets) < 2:
            return
        moves: list[tuple[Subnet, Request | Response]] = []
        for s in self.subnets:
            replica = s.replica
            with replica.lock:
                if not replica.queue:
                    continue
                kept: deque[Request | Response] = deque()
                for message in replica.queue:
                    target = self._foreign_home(s, message)
                    if target is None:
                        kept.append(message)
                    else:
                        moves.append((target, message))
                replica.queue.clear()
                replica.queue.extend(kept)
        for target, message in moves:
            with target.replica.lock:
                target.replica.queue.append(message)

    def _foreign_home(self, subnet: Subnet, message: Request | Response) -> Subnet | None:
        dst = message.dst
        if isinstance(message, Request) and message.callback_id is None:
            return None  # ingress: routed at submission
        if isinstance(message, Request) and dst == MANAGEMENT.raw:
            # a canister's management call goes to the subnet of the canister it names (create_canister,
            # raw_rand, ... name none and run on the caller's subnet, as on the IC)
            target = self._management_target(CanisterCall(message.src, dst, Effective("None"), message.method,
                                                           message.arg))
            if target is None or target in subnet.replica.canisters:
                return None
            home = self.subnet_hosting(target)
            return home if home is not None and home is not subnet else None
        if dst in subnet.replica.canisters:
            return None
        if isinstance(message, Response):  # back to the caller, wherever it lives
            return next((o for o in self.subnets if o is not subnet and dst in o.replica.canisters), None)
        home = self.subnet_hosting(dst)
        return home if home is not None and home is not subnet else None

    def auto_progress(self, config: Any) -> None:
        """Follow wall-clock time and run rounds in a thread, every `artificial_delay_ms` (at least 10 ms). The
        thread starts under the instance lock, so concurrent requests start at most one; a second request while
        it runs is refused as PocketIC refuses it."""
        delay = max(AUTO_PROGRESS_MIN_DELAY_S, _artificial_delay_ms(config) / 1000)
        with self.lock:
            if self.deleted:
                raise ApiError("Instance was deleted")
            if self._progress is not None:
                raise ApiError("Auto progress mode has already been enabled.")
            self._apply_pending_time()
            for s in self.subnets:
                s.replica.live_time = True
                s.replica.sync_clock()
                s.replica.outcalls.go_live()  # as PocketIC: in live mode the server makes canisters' outcalls
            stop = threading.Event()
            thread = threading.Thread(target=self._progress_loop, args=(stop, delay), daemon=True,
                                      name=f"pocket-ic-progress-{self.instance_id}")
            thread.start()
            self._progress = (thread, stop)

    def _progress_loop(self, stop: threading.Event, delay: float) -> None:
        while not stop.wait(delay):
            with self.lock:
                if stop.is_set():  # stopped while this thread waited for the lock: no round after the stop
                    return
                try:
                    self.tick()
                except Exception:  # noqa: BLE001 - a round never stops the instance
                    _log.exception("round failed in auto progress")

    def auto_progress_enabled(self) -> bool:
        return self._progress is not None

    def stop_progress(self) -> None:
        """Detach the progress thread under the lock, then wait for it outside the lock (it may be waiting for
        the lock to run one more round, which the stop event makes it skip)."""
        with self.lock:
            progress, self._progress = self._progress, None
            if progress is None:
                return
            thread, stop = progress
            stop.set()
            for s in self.subnets:
                s.replica.live_time = False
                s.replica.outcalls.close()  # back to outcalls answered by `mock_canister_http`
        if thread is not threading.current_thread():
            thread.join(timeout=10)

    # ------------------------------------------------------------ HTTPS outcalls

    def canister_http(self) -> list[dict[str, Any]]:
        """The outcalls waiting for an answer, as PocketIC's `read/get_canister_http` lists them."""
        with self.lock:
            return [{"subnet_id": {"subnet_id": rest.b64(s.subnet_id)}, "request_id": o.request_id,
                     "http_method": o.method, "url": o.url,
                     "headers": [{"name": n, "value": v} for n, v in o.headers], "body": rest.b64(o.body),
                     "max_response_bytes": o.asked_max_response_bytes}
                    for s in self.subnets for o in s.replica.outcalls.waiting()]

    def mock_canister_http(self, body: Any) -> None:
        """`update/mock_canister_http`: answer a pending outcall (and what the other replicas saw)."""
        if not isinstance(body, dict) or not isinstance(body.get("subnet_id"), dict):
            raise ApiError("Failed to deserialize the JSON body: missing field `subnet_id`")
        subnet_id = rest.principal_field(body["subnet_id"], "subnet_id")
        request_id = rest.nat_field(body, "request_id", rest.U64_MAX)
        others = body.get("additional_responses", [])
        if not isinstance(others, list) or len(others) > 64:
            raise ApiError("Failed to deserialize the JSON body: `additional_responses` must be a list")
        answer, extra = _http_response(body.get("response")), [_http_response(o) for o in others]
        with self.lock:
            subnet = self.subnet_by_id(subnet_id)
            if subnet is None:
                raise ApiError(f"Subnet {rest.text(subnet_id)} does not exist")
            try:
                subnet.replica.outcalls.mock(request_id, answer, extra)
            except KeyError:
                raise ApiError(f"Could not find a pending canister http request {request_id} on subnet "
                               f"{rest.text(subnet_id)}") from None

    # ------------------------------------------------------------ calls

    def _route_call(self, call: CanisterCall, new_subnet: bool = False) -> tuple[Subnet, Effective]:
        """`route`, with a canister outside every subnet's ranges rejected as not found (DestinationInvalid,
        IC0301) rather than failing the request, so clients see the reject an unknown canister gets."""
        if call.canister_id != MANAGEMENT.raw and self.subnet_hosting(call.canister_id) is None:
            raise CallRejected(reject_for(ErrorCode.CANISTER_NOT_FOUND,
                                          f"Canister {rest.text(call.canister_id)} not found."))
        return self.route(call, new_subnet)

    def query(self, call: CanisterCall) -> dict[str, Any]:
        with self.lock:
            try:
                subnet, eff = self._route_call(call)
            except CallRejected as exc:
                return rest.err(exc.reject, certified=False)
            try:
                reply = subnet.replica.query_call(call.canister_id, call.method, call.payload, call.sender,
                                                  effective_canister_id=eff.raw if eff.kind == "CanisterId" else None)
            except CallRejected as exc:
                return rest.err(exc.reject, certified=False)
            return rest.ok(reply)

    def submit(self, call: CanisterCall) -> dict[str, Any]:
        with self.lock:
            try:
                subnet, eff = self._route_call(call, new_subnet=True)
            except CallRejected as exc:
                return rest.err(exc.reject, certified=False)
            self._check_specified_on_subnet(call, subnet)
            try:
                message_id = subnet.replica.submit_call(
                    call.canister_id, call.method, call.payload, call.sender,
                    effective_canister_id=eff.raw if eff.kind == "CanisterId" else None)
            except CallRejected as exc:
                return rest.err(exc.reject, certified=False)
            return {"Ok": {"effective_principal": eff.to_json(), "message_id": rest.b64(message_id)}}

    def _subnet_of_message(self, effective: Effective, message_id: bytes) -> tuple[Subnet, IngressStatus]:
        candidates = self.subnets
        if effective.kind == "SubnetId":
            candidates = [s for s in self.subnets if s.subnet_id == effective.raw]
        elif effective.kind == "CanisterId":
            candidates = [s for s in self.subnets if s.plan.hosts(effective.raw)]
        for s in candidates:
            status = s.replica.ingress_status(message_id)
            if status is not None:
                return s, status
        raise ApiError(f"BadIngressMessage(\"no ingress message with id {message_id.hex()} "
                       f"(effective principal {effective.to_json()})\")")

    def await_message(self, effective: Effective, message_id: bytes) -> dict[str, Any]:
        """Run rounds until the message is final, at most `MAX_AWAIT_ROUNDS` (PocketIC's `AwaitIngressMessage`
        gives up after 100 rounds with `BadIngressMessage`)."""
        with self.lock:
            _, status = self._subnet_of_message(effective, message_id)
            for _ in range(MAX_AWAIT_ROUNDS):
                if status.final:
                    break
                self.tick()
            if not status.final:
                raise ApiError(f"BadIngressMessage(\"Failed to answer to ingress 0x{message_id.hex()} after "
                               f"{MAX_AWAIT_ROUNDS} rounds.\")")
            return self._result(status)

    def ingress_status(self, effective: Effective, message_id: bytes, caller: bytes | None) -> dict[str, Any] | None:
        with self.lock:
            try:
                _, status = self._subnet_of_message(effective, message_id)
            except ApiError:
                return None
            if caller is not None and caller != status.sender:
                raise ApiError(f"The user tries to access Request ID {message_id.hex()} signed by a different "
                               "user.", status=403)
            if not status.final:
                return None
            return self._result(status)

    @staticmethod
    def _result(status: IngressStatus) -> dict[str, Any]:
        if status.reject is not None:
            return rest.err(status.reject, certified=True)
        if status.reply is None:
            raise ApiError(f"IngressMessageTimeout: the reply of ingress message {status.message_id.hex()} "
                           "was already pruned from the ingress history")
        return rest.ok(status.reply)

    # ------------------------------------------------------------ canister state

    def get_subnet(self, canister_id: bytes) -> bytes | None:
        with self.lock:
            subnet = self.subnet_hosting(canister_id)
            if subnet is None or canister_id not in subnet.replica.canisters:
                return None
            return subnet.subnet_id

    def controllers(self, canister_id: bytes) -> list[bytes]:
        with self.lock:
            return list(self.existing(canister_id)[1].controllers)

    def cycles(self, canister_id: bytes) -> int:
        with self.lock:
            return int(self.existing(canister_id)[1].cycles)

    def add_cycles(self, canister_id: bytes, amount: int) -> int:
        """Add cycles, saturating at the u128 maximum (a balance is a nat128 for canisters)."""
        with self.lock:
            canister = self.existing(canister_id)[1]
            canister.cycles = min(U128_MAX, canister.cycles + amount)
            return int(canister.cycles)

    def stable_memory(self, canister_id: bytes) -> bytes:
        with self.lock:
            stable = self.existing(canister_id)[1].stable
            return stable.read(0, stable.size_bytes)

    def set_stable_memory(self, canister_id: bytes, load: Callable[[], bytes]) -> None:
        """Replace the stable memory with what `load` gives (called once the canister is known to exist: a
        gzip blob is only expanded then), sized to ceil(len / 64 KiB) pages (shrinking too), as PocketIC's
        `set_stable_memory`."""
        with self.lock:
            canister = self.existing(canister_id)[1]
            if canister.runtime is None:
                raise ApiError(f"CanisterIsEmpty({rest.canister_debug(canister_id)})")
            data = load()
            stable = canister.stable
            pages = (len(data) + PAGE - 1) // PAGE
            if pages > stable.max_pages:
                raise ApiError(f"the stable memory of {len(data)} bytes exceeds the canister's maximum")
            stable.clear()
            stable.pages = pages
            stable.write(0, data)

    def pub_key(self, subnet_id: bytes) -> bytes:
        if self.subnet_by_id(subnet_id) is None:
            raise ApiError(f"SubnetNotFound({rest.text(subnet_id)})")
        return self.root_key_der

    def close(self) -> None:
        """Delete the instance: no progress thread survives it (a concurrent `auto_progress` sees `deleted`)."""
        with self.lock:
            self.deleted = True
        self.stop_progress()
        with self.lock:
            for s in self.subnets:
                try:
                    s.replica.close()
                except (ReplicaError, OSError):
                    pass



def _http_response(value: Any) -> http_outcalls.HttpResult | Reject:
    """PocketIC's `CanisterHttpResponse`: `{"CanisterHttpReply": {status, headers, body}}` or
    `{"CanisterHttpReject": {reject_code, message}}`."""
    if isinstance(value, dict) and isinstance(value.get("CanisterHttpReply"), dict):
        reply = value["CanisterHttpReply"]
        headers = reply.get("headers")
        if not isinstance(headers, list) or not all(
                isinstance(h, dict) and isinstance(h.get("name"), str) and isinstance(h.get("value"), str)
                for h in headers):
            raise ApiError("Failed to deserialize the JSON body: `headers` must be a list of {name, value}")
        status = rest.nat_field(reply, "status", 65_535)
        return http_outcalls.HttpResult(status, [(h["name"], h["value"]) for h in headers],
                                        rest.unb64(reply.get("body"), "body"))
    if isinstance(value, dict) and isinstance(value.get("CanisterHttpReject"), dict):
        reject = value["CanisterHttpReject"]
        code, message = rest.nat_field(reject, "reject_code", rest.U64_MAX), reject.get("message")
        if not isinstance(message, str) or code not in {c.value for c in RejectCode}:
            raise ApiError("Failed to deserialize the JSON body: a reject needs a known `reject_code` and a "
                           "`message`")
        return Reject(RejectCode(code), message)
    raise ApiError("Failed to deserialize the JSON body: a response is CanisterHttpReply or CanisterHttpReject")
