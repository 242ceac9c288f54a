"""The embedded replica: one subnet's canisters, its message queue, its clock, and a PocketIC-like API.

Execution model: `submit_call` queues an ingress message; `tick()` runs one round (due timers and
heartbeats, then every message queued before the round began, in FIFO order, which gives per-pair FIFO
ordering); messages produced in a round run in the next one. `update_call` is submit + ticks until the
message is final. Queries run at once against the current state and never persist changes.

Ingress history, pruned so that a call costs the same however many came before it. Two structures:

- `ingress`: the full status of a message (reply or reject included), as `/request_status` reports it. A
  final status is dropped when its `ingress_expiry` has passed, or `INGRESS_HISTORY_ROUNDS` rounds after it
  became final, or earlier (oldest first) when the replies kept exceed `INGRESS_HISTORY_MAX_BYTES` -- like
  the IC, which turns terminal statuses into `done` when its ingress history is over capacity. On the
  deterministic clock (1 ns per round) the expiry never passes in practice, so the rounds rule is what
  bounds this map: at most the messages answered in the last `INGRESS_HISTORY_ROUNDS` rounds.
- `_replay`: request id -> (expiry, sender, effective canister id) for every *replayable* message (one whose
  id the caller chose: a signed HTTP request, or `submit_call(message_id=...)`) whose full status was
  dropped before its expiry. Such a message reads as `done` (no reply) until its expiry, as on the IC. This
  set is pruned by expiry only, never by rounds or size.

Why this keeps replay protection: a request is executed only if its id is in neither structure and its
`ingress_expiry` has not passed. A replayable id leaves `ingress` either because its expiry passed (then any
replay is refused as expired) or for rounds/size (then it enters `_replay` until its expiry has passed, and
the replay is recognised there). So from the first submission until its expiry, the id is always known.
Ids the replica makes up itself (`update_call` without `message_id`) hash a fresh nonce and can never be
submitted again, so they need no replay entry and are forgotten by rounds alone: memory stays flat however
many such calls run in little IC time. The replayable entries are bounded by what arrives within one expiry
window (5 min + 30 s of IC time). Pruning costs what it removes: answered messages wait in a deque in the
order they became final, replayable ids in a min-heap by expiry.

The clock may be set backwards (`set_time`). Ids forgotten because their expiry had passed could then be
within their expiry again; so a replayable message whose `ingress_expiry` is at or below the latest expiry
ever forgotten (`_forgotten_expiry`, the checkpoint's time after a restart) is refused as expired. With a
clock that only moves forward this never refuses anything the expiry check would accept.

Any exception while one message executes becomes a reject of that message (management canister: SYS_FATAL;
canister: CANISTER_ERROR, IC0521) and the round goes on: rounds never stop.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import logging
import threading
import time as _time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ic_replica import candid, http_outcalls, management
from ic_replica.canister import Callback, CallContext, Canister, Status, execute
from ic_replica.certification import NetworkKeys
from ic_replica.certified_canisters import CertifiedCanisters
from ic_replica.context import ExecutionContext, Kind, OutgoingCall, Trap
from ic_replica.errors import (
    CallRejected,
    ErrorCode,
    IngressExpired,
    Reject,
    RejectCode,
    ReplicaError,
    reject_for,
)
from ic_replica.faults import Fault, FaultKind, Faults
from ic_replica.messages import IngressState, IngressStatus, Request, Response
from ic_replica.principal import ANONYMOUS, MANAGEMENT, Principal, canister_id_from_index, canister_index
from ic_replica.runtime import ModuleCache, RollbackBuffer, shared_engine

# The first canister id handed out is the one a local dfx network hands out first.
DEFAULT_FIRST_CANISTER_INDEX = 0x8000000000100001  # bkyz2-fmaaa-aaaaa-qaaaq-cai, as on dfx
CANISTER_RANGE = (0x8000000000000000, 0x80000000FFFFFFFF)  # the canister ids this subnet hosts
MAX_INGRESS_ARG_BYTES = 2 * 1024 * 1024
DEFAULT_CYCLES = 100_000_000_000_000  # 100 T, like PocketIC's provisional default
MAX_TICKS_PER_CALL = 10_000
# How far ahead an ingress_expiry may be: 5 minutes, plus 30 s of clock skew (the IC's window). A message id
# is kept until its own expiry has passed, and an expired message is refused, so nothing executes twice.
INGRESS_EXPIRY_WINDOW_NS = (5 * 60 + 30) * 1_000_000_000
# A final status keeps its reply this many rounds (or until its expiry, or until the replies kept pass
# INGRESS_HISTORY_MAX_BYTES); then a replayable id reads `done` until its expiry and any other is forgotten.
INGRESS_HISTORY_ROUNDS = 10_000
INGRESS_HISTORY_MAX_BYTES = 256 * 1024 * 1024

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """Instruction limits per execution (the IC's defaults); tests may lower them."""

    update: int = 40_000_000_000
    query: int = 5_000_000_000
    install: int = 300_000_000_000
    inspect: int = 200_000_000


PrincipalLike = Principal | bytes | str


def raw_principal(p: PrincipalLike) -> bytes:
    if isinstance(p, Principal):
        return p.raw
    if isinstance(p, (bytes, bytearray)):
        return bytes(p)
    return Principal.from_text(p).raw


class Replica:
    """One replica instance. Thread-safe: every public method takes the instance lock."""

    def __init__(
        self,
        state_dir: Path | str | None = None,
        *,
        limits: Limits | None = None,
        time_ns: int | None = None,
        live_time: bool = False,
        first_canister_index: int = DEFAULT_FIRST_CANISTER_INDEX,
        module_cache_dir: Path | str | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.engine = shared_engine()
        cache_dir = Path(module_cache_dir) if module_cache_dir else (
            Path(state_dir) / "module-cache" if state_dir else None)
        self.modules = ModuleCache(self.engine, cache_dir)
        self.rollback_buffer = RollbackBuffer()
        self.lock = threading.RLock()
        self.canisters: dict[bytes, Canister] = {}
        self.certified_canisters = CertifiedCanisters()  # `/canister`'s hashes between certificates (state_tree)
        self.queue: deque[Request | Response] = deque()
        self.ingress: dict[bytes, IngressStatus] = {}
        self.time_ns = time_ns if time_ns is not None else _time.time_ns()
        self.live_time = live_time
        self.next_canister_index = first_canister_index
        self.keys = NetworkKeys.load_or_create(Path(state_dir) if state_dir else None)
        self.subnet_id = self.keys.subnet_id.raw  # the root subnet: its id derives from the root key
        self.root_key_der = self.keys.root_key_der
        self._ids = itertools.count(1)
        self._nonce = itertools.count()
        self.log_listeners: list[Callable[[bytes, bytes], None]] = []
        self.faults = Faults()  # injected failures of canister-to-canister calls (tests only)
        self.outcalls = http_outcalls.HttpOutcalls()  # canisters' HTTPS requests (manual until `go_live`)
        self.round = 0  # rounds executed by this instance
        self._expiries: list[tuple[int, bytes]] = []  # min-heap of (ingress_expiry, id) of replayable ids
        self._answered: deque[tuple[int, IngressStatus]] = deque()  # (round it became final, status), in order
        self._replay: dict[bytes, tuple[int, bytes, bytes]] = {}  # id -> (expiry, sender, effective): `done`
        self._replayable: set[bytes] = set()  # ids in `ingress` whose caller chose them (signed requests)
        self._history_bytes = 0  # reply / reject bytes of the final statuses in `ingress`
        self._forgotten_expiry = 0  # the latest expiry of a replayable id forgotten (see the module docstring)
        self.instructions_executed = 0  # every message's instructions, for benchmarks
        self.state_dir = Path(state_dir) if state_dir else None
        if self.state_dir is not None:
            from ic_replica import persistence

            persistence.load(self, self.state_dir)
            self._forgotten_expiry = self.time_ns - 1  # the checkpoint dropped what had expired by then

    # ------------------------------------------------------------ clock

    def get_time(self) -> int:
        return self.time_ns

    def set_time(self, time_ns: int) -> None:
        """Set the replica's time, forwards or backwards (the next certificate and `ic0.time` show it). A
        backward move keeps replay protection (see the module docstring); in live mode the clock catches up
        with wall time again at the next round or certificate."""
        if not 0 <= time_ns < 1 << 64:
            raise ReplicaError(f"time {time_ns} is not a nat64")
        with self.lock:
            self.time_ns = time_ns

    def advance_time(self, nanos: int) -> None:
        self.set_time(self.time_ns + nanos)

    def _round_time(self) -> None:
        now = _time.time_ns() if self.live_time else self.time_ns + 1
        self.time_ns = max(self.time_ns + 1, now)

    def sync_clock(self) -> None:
        """In live mode, catch the clock up with wall time (certificates must carry a fresh time)."""
        with self.lock:
            if self.live_time:
                self.time_ns = max(self.time_ns, _time.time_ns())

    def observed_time(self) -> int:
        """The time a request is checked against, read without the lock: the replica's time, caught up with
        the wall clock in live mode (what `sync_clock` would set)."""
        return max(self.time_ns, _time.time_ns()) if self.live_time else self.time_ns

    def has_work(self) -> bool:
        """Whether a round would do anything: queued messages, a due timer, or a heartbeat."""
        with self.lock:
            if self.queue or self.outcalls.has_answers():
                return True
            for c in self.canisters.values():
                if c.runtime is None or c.status is not Status.RUNNING:
                    continue
                if (c.global_timer and self.time_ns >= c.global_timer) or c.runtime.has_export("canister_heartbeat"):
                    return True
            return False

    # ------------------------------------------------------------ canister lookup

    def canister(self, canister_id: PrincipalLike) -> Canister:
        c = self.canisters.get(raw_principal(canister_id))
        if c is None:
            raise CallRejected(self._not_found(raw_principal(canister_id)))
        return c

    def canister_ranges(self) -> list[tuple[bytes, bytes]]:
        """The canister id ranges this subnet advertises (certified at `/subnet/<id>/canister_ranges` and
        `/canister_ranges/<id>`), sorted: `CANISTER_RANGE`, plus one single-id range for each canister created
        outside it with a `specified_id`, so that every canister it hosts is inside its advertised ranges."""
        lo, hi = CANISTER_RANGE
        ranges = [(canister_id_from_index(lo).raw, canister_id_from_index(hi).raw)]
        for cid in self.canisters:
            index = canister_index(Principal(cid))
            if index is None or not lo <= index <= hi:
                ranges.append((cid, cid))
        return sorted(ranges)

    def hosts(self, canister_id: bytes) -> bool:
        """Whether requests for this effective canister id are routed here: inside `CANISTER_RANGE` or an
        existing canister (one created with a `specified_id` elsewhere is advertised as its own range)."""
        index = canister_index(Principal(canister_id))
        return (index is not None and CANISTER_RANGE[0] <= index <= CANISTER_RANGE[1]) \
            or canister_id in self.canisters

    def canister_ids(self) -> list[Principal]:
        with self.lock:
            return [Principal(cid) for cid in self.canisters]

    @staticmethod
    def _not_found(cid: bytes) -> Reject:
        return reject_for(ErrorCode.CANISTER_NOT_FOUND, f"Canister {Principal(cid)} not found.")

    def new_canister(self, controllers: list[bytes], cycles: int, specified_id: bytes | None = None) -> Canister:
        if specified_id is not None:
            if specified_id in self.canisters:
                raise management.ManagementError(reject_for(
                    ErrorCode.CANISTER_ALREADY_INSTALLED,
                    f"Canister {Principal(specified_id)} is already installed."))
            cid = specified_id
        else:
            while canister_id_from_index(self.next_canister_index).raw in self.canisters:
                self.next_canister_index += 1
            cid = canister_id_from_index(self.next_canister_index).raw
            self.next_canister_index += 1
        canister = Canister(self, cid, list(controllers), cycles)
        self.canisters[cid] = canister
        return canister

    def on_canister_log(self, canister_id: bytes, message: bytes) -> None:
        for listener in self.log_listeners:
            listener(canister_id, message)

    # ------------------------------------------------------------ ingress

    def submit_call(self, canister_id: PrincipalLike, method: str, arg: bytes = b"",
                    sender: PrincipalLike = ANONYMOUS, *, message_id: bytes | None = None,
                    effective_canister_id: PrincipalLike | None = None,
                    ingress_expiry: int | None = None) -> bytes:
        """Queue an update call; returns its message id. Invalid calls raise `CallRejected` at once.

        A `message_id` already known is not queued again (the same signed request submitted twice runs once);
        it stays known until `ingress_expiry` (default: now + `INGRESS_EXPIRY_WINDOW_NS`), and a message
        submitted after its expiry raises `IngressExpired`.
        """
        with self.lock:
            if ingress_expiry is not None and ingress_expiry < self.time_ns:
                raise IngressExpired(f"ingress_expiry {ingress_expiry} has passed (replica time {self.time_ns})")
            if message_id is not None and (message_id in self.ingress or message_id in self._replay):
                return message_id  # the same signed request submitted twice is processed once
            if message_id is not None and ingress_expiry is not None and ingress_expiry <= self._forgotten_expiry:
                raise IngressExpired(f"ingress_expiry {ingress_expiry} is not after {self._forgotten_expiry}, the "
                                     "latest expiry of a request id already forgotten (the clock was set back): "
                                     "this request may have executed already")
            cid, src = raw_principal(canister_id), raw_principal(sender)
            if len(arg) > MAX_INGRESS_ARG_BYTES:
                raise CallRejected(Reject(RejectCode.SYS_FATAL,
                                          f"ingress message argument is {len(arg)} bytes, "
                                          f"more than the limit of {MAX_INGRESS_ARG_BYTES}",
                                          ErrorCode.CANISTER_CONTRACT_VIOLATION))
            if cid == MANAGEMENT.raw:
                management.check_ingress(self, src, method, arg, effective_canister_id)
            else:
                self._check_ingress(cid, method, arg, src)
            replayable = message_id is not None
            if message_id is None:
                message_id = hashlib.sha256(
                    b"replica-ingress" + src + cid + method.encode() + arg
                    + next(self._nonce).to_bytes(8, "big") + self.time_ns.to_bytes(8, "big")).digest()
            effective = raw_principal(effective_canister_id) if effective_canister_id is not None else cid
            expiry = ingress_expiry if ingress_expiry is not None else self.time_ns + INGRESS_EXPIRY_WINDOW_NS
            self.remember_ingress(IngressStatus(message_id, src, cid, method, IngressState.RECEIVED,
                                                updated_at=self.time_ns, effective_canister_id=effective,
                                                expiry=expiry), replayable=replayable)
            self.queue.append(Request(src, cid, method, bytes(arg), message_id=message_id))
            return message_id

    def _check_ingress(self, cid: bytes, method: str, arg: bytes, sender: bytes) -> None:
        canister = self.canisters.get(cid)
        if canister is None:
            raise CallRejected(self._not_found(cid))
        if canister.runtime is None:
            raise CallRejected(_no_module())
        if _export_for(canister, method) is None:
            raise CallRejected(reject_for(ErrorCode.CANISTER_METHOD_NOT_FOUND,
                                          f"Canister {Principal(cid)} has no update method '{method}'"))
        if canister.runtime.has_export("canister_inspect_message"):
            ctx = ExecutionContext(Kind.INSPECT, caller=sender, arg=arg, method_name=method)
            trap = execute(canister, "canister_inspect_message", ctx, self.limits.inspect, persist=False)
            if trap is not None or not ctx.accepted_message:
                why = f": {trap.message}" if trap else ""
                raise CallRejected(reject_for(ErrorCode.CANISTER_REJECTED_MESSAGE,
                                              f"Canister {Principal(cid)} rejected the message{why}"))

    def ingress_status(self, message_id: bytes) -> IngressStatus | None:
        """The message's status; `done` (no reply) once its reply was pruned, None once forgotten."""
        with self.lock:
            status = self.ingress.get(message_id)
            if status is not None:
                return status
            done = self._replay.get(message_id)
            if done is None:
                return None
            expiry, sender, effective = done
            return IngressStatus(message_id, sender, effective, "", IngressState.DONE,
                                 effective_canister_id=effective, expiry=expiry)

    def ingress_history(self) -> list[IngressStatus]:
        """Every status still known, `done` ones included (for checkpoints)."""
        with self.lock:
            done = [self.ingress_status(rid) for rid in self._replay]
            return list(self.ingress.values()) + [s for s in done if s is not None]

    def ingress_counts(self) -> dict[str, int]:
        """Sizes of the ingress structures: full statuses, replay (`done`) entries, expiry heap, answered
        queue, reply bytes kept (for tests and benchmarks)."""
        with self.lock:
            return {"statuses": len(self.ingress), "replay": len(self._replay), "expiry_heap": len(self._expiries),
                    "answered_queue": len(self._answered), "history_bytes": self._history_bytes}

    def await_call(self, message_id: bytes, max_ticks: int = MAX_TICKS_PER_CALL) -> bytes:
        """Run rounds until the message is answered; returns the reply or raises `CallRejected`. Waiting for an
        HTTPS outcall's answer happens outside the lock (other callers and rounds go on meanwhile)."""
        with self.lock:
            status = self.ingress_status(message_id)
            if status is None:
                raise ReplicaError(f"unknown message id {message_id.hex()}")
            if status.state is IngressState.DONE:
                raise ReplicaError(f"the reply of call {message_id.hex()} was pruned from the ingress history "
                                   f"(status done; replies are kept {INGRESS_HISTORY_ROUNDS} rounds)")
        for _ in range(max_ticks):
            with self.lock:
                if status.final:
                    break
                idle = not self.queue
            if idle:  # nothing to run but, perhaps, an HTTPS outcall on its way back
                self.outcalls.wait_live()
            with self.lock:
                if not status.final:
                    self.tick()
        with self.lock:
            if not status.final:
                raise ReplicaError(f"call {message_id.hex()} did not complete within {max_ticks} rounds")
            if status.reject is not None:
                raise CallRejected(status.reject)
            return status.reply or b""

    def inject_fault(self, kind: FaultKind | str, callee: PrincipalLike, method: str | None = None,
                     caller: PrincipalLike | None = None, times: int = 1) -> None:
        """Make the next `times` matching canister-to-canister calls fail, trap or lose their reply
        (see `faults.py`); embedded replica only."""
        with self.lock:
            self.faults.add(Fault(FaultKind(kind), raw_principal(callee), method,
                                  raw_principal(caller) if caller is not None else None, times))

    def update_call(self, canister_id: PrincipalLike, method: str, arg: bytes = b"",
                    sender: PrincipalLike = ANONYMOUS, **kwargs: object) -> bytes:
        """Submit an update call and run rounds until it completes."""
        return self.await_call(self.submit_call(canister_id, method, arg, sender, **kwargs))  # type: ignore[arg-type]

    # ------------------------------------------------------------ queries

    def query_call(self, canister_id: PrincipalLike, method: str, arg: bytes = b"",
                   sender: PrincipalLike = ANONYMOUS, *,
                   effective_canister_id: PrincipalLike | None = None) -> bytes:
        """Run a query against the current state; nothing it does persists."""
        with self.lock:
            cid, src = raw_principal(canister_id), raw_principal(sender)
            if cid == MANAGEMENT.raw:
                return management.query(self, src, method, arg, effective_canister_id)
            canister = self.canisters.get(cid)
            if canister is None:
                raise CallRejected(self._not_found(cid))
            if canister.runtime is None:
                raise CallRejected(_no_module())
            if canister.status is not Status.RUNNING:
                raise CallRejected(self._stopped_reject(canister))
            if canister.runtime.has_export(f"canister_query {method}"):
                target, kind = f"canister_query {method}", Kind.QUERY
            elif canister.runtime.has_export(f"canister_composite_query {method}"):
                target, kind = f"canister_composite_query {method}", Kind.COMPOSITE_QUERY
            else:
                raise CallRejected(reject_for(ErrorCode.CANISTER_METHOD_NOT_FOUND,
                                              f"Canister {Principal(cid)} has no query method '{method}'"))
            ctx = ExecutionContext(kind, caller=src, arg=arg, needs_to_respond=True,
                                   data_certificate=lambda: self.certify_data(cid))
            trap = execute(canister, target, ctx, self.limits.query, persist=False)
            if trap is None and ctx.calls:
                trap = Trap("composite queries that call other canisters are not supported by this replica",
                            ErrorCode.CANISTER_CONTRACT_VIOLATION)
            return _reply_or_raise(canister, ctx, trap)

    def certify_data(self, canister_id: bytes) -> bytes:
        """A certificate for `/canister/<id>/certified_data` and `/time` (what a query sees as its data
        certificate), signed by the network key."""
        from ic_replica import hash_tree, state_tree

        with self.lock:
            self.sync_clock()
            state = state_tree.build(self, set())
            paths = [[b"canister", canister_id, b"certified_data"], [b"time"]]
            return self.keys.certificate(hash_tree.witness(state, paths))

    # ------------------------------------------------------------ rounds

    def tick(self, rounds: int = 1) -> None:
        """Execute rounds: due timers and heartbeats, then the messages queued before each round."""
        with self.lock:
            for _ in range(rounds):
                self.round += 1
                self._round_time()
                http_outcalls.deliver(self)
                self._run_system_tasks()
                for _ in range(len(self.queue)):
                    self._execute_message(self.queue.popleft())
                try:
                    self._finish_stopping()
                except Exception:  # noqa: BLE001 - a round never stops
                    _log.exception("internal error while finishing stopping canisters")
                self._prune_ingress()

    def _execute_message(self, message: Request | Response) -> None:
        """Deliver one message; an internal error becomes a reject of that message, never a stopped round."""
        context_id = None  # for a response: the call context its callback belongs to
        if isinstance(message, Response):
            canister = self.canisters.get(message.dst)
            callback = canister.callbacks.get(message.callback_id) if canister is not None else None
            context_id = callback.call_context_id if callback is not None else None
        try:
            if isinstance(message, Request):
                self._deliver_request(message)
            else:
                self._deliver_response(message)
        except Exception as exc:  # noqa: BLE001 - whatever one message does, the round goes on
            _log.exception("internal error while executing %s", message)
            self._message_failed(message, exc, context_id)

    def _message_failed(self, message: Request | Response, exc: Exception, context_id: int | None) -> None:
        why = f"{type(exc).__name__}: {exc}"
        if isinstance(message, Request):
            origin: tuple = (("ingress", message.message_id) if message.is_ingress
                             else ("canister", message.src, message.callback_id))
            if message.dst == MANAGEMENT.raw:
                reject = Reject(RejectCode.SYS_FATAL,
                                f"Management canister failed to execute '{message.method}': {why}")
            else:
                reject = reject_for(ErrorCode.CANISTER_WASM_ENGINE_ERROR,
                                    f"Error from Canister {Principal(message.dst)}: the replica failed to execute "
                                    f"'{message.method}': {why}")
            self.respond(origin, reject=reject, refund=message.cycles)
            return
        canister = self.canisters.get(message.dst)  # a response: answer its call context with a reject
        cc = canister.call_contexts.get(context_id) if canister is not None and context_id is not None else None
        if canister is not None and cc is not None and cc.needs_to_respond:
            cc.needs_to_respond = False
            refund, cc.available_cycles = cc.available_cycles, 0
            self.respond(cc.origin, reject=reject_for(
                ErrorCode.CANISTER_WASM_ENGINE_ERROR,
                f"Error from Canister {Principal(message.dst)}: the replica failed to deliver a response: {why}"),
                refund=refund)
            self._close_if_done(canister, cc)

    def remember_ingress(self, status: IngressStatus, *, replayable: bool = True) -> None:
        """Record a message's status. `replayable`: its id was chosen by the caller (a signed request), so it
        must stay known until its expiry; a status restored from a checkpoint counts as replayable."""
        rid = status.message_id
        self._forget(rid)
        if status.state is IngressState.DONE:
            if replayable and status.expiry >= self.time_ns:
                self._replay[rid] = (status.expiry, status.sender, status.effective_canister_id)
                heapq.heappush(self._expiries, (status.expiry, rid))
            return
        self.ingress[rid] = status
        if replayable:
            self._replayable.add(rid)
            heapq.heappush(self._expiries, (status.expiry, rid))
        if status.final:
            self._answered_now(status)

    def _answered_now(self, status: IngressStatus) -> None:
        """A status in `ingress` just became final: queue it for pruning by rounds and size."""
        self._history_bytes += _status_bytes(status)
        self._answered.append((self.round, status))

    def _forget(self, rid: bytes) -> None:
        """Drop whatever is known of `rid` (a stale heap or deque entry is skipped when it comes up)."""
        status = self.ingress.pop(rid, None)
        if status is not None and status.final:
            self._history_bytes -= _status_bytes(status)
        self._replayable.discard(rid)
        self._replay.pop(rid, None)

    def _prune_ingress(self) -> None:
        """Prune the ingress history (see the module docstring); costs what it removes, not what it keeps.

        By expiry: a replayable id whose expiry has passed is forgotten (a status still running waits until it
        is answered). By rounds and size: an answered status older than INGRESS_HISTORY_ROUNDS rounds, or the
        oldest ones while the replies kept exceed INGRESS_HISTORY_MAX_BYTES, loses its reply: a replayable id
        reads `done` until its expiry, any other is forgotten."""
        now = self.time_ns
        while self._expiries and self._expiries[0][0] < now:
            expiry, rid = heapq.heappop(self._expiries)
            status = self.ingress.get(rid)
            if status is not None and status.expiry == expiry and rid in self._replayable:
                if status.final:  # else: forgotten once answered, by the rounds rule below
                    self._forget(rid)
                    self._forgotten_expiry = max(self._forgotten_expiry, expiry)
            elif rid in self._replay and self._replay[rid][0] == expiry:
                del self._replay[rid]
                self._forgotten_expiry = max(self._forgotten_expiry, expiry)
        horizon = self.round - INGRESS_HISTORY_ROUNDS
        while self._answered and (self._answered[0][0] <= horizon
                                  or self._history_bytes > INGRESS_HISTORY_MAX_BYTES):
            _, status = self._answered.popleft()
            rid = status.message_id
            if self.ingress.get(rid) is not status:
                continue  # already forgotten by expiry
            replayable = rid in self._replayable
            self._forget(rid)
            if not replayable:
                continue
            if status.expiry >= now:
                self._replay[rid] = (status.expiry, status.sender, status.effective_canister_id)  # heap entry kept
            else:
                self._forgotten_expiry = max(self._forgotten_expiry, status.expiry)

    def _run_system_tasks(self) -> None:
        for canister in list(self.canisters.values()):
            if canister.runtime is None or canister.status is not Status.RUNNING:
                continue
            try:
                if canister.global_timer and self.time_ns >= canister.global_timer:
                    canister.global_timer = 0
                    if canister.runtime.has_export("canister_global_timer"):
                        self._run_system_task(canister, "canister_global_timer")
                if canister.runtime is not None and canister.runtime.has_export("canister_heartbeat"):
                    self._run_system_task(canister, "canister_heartbeat")
            except Exception:  # noqa: BLE001 - one canister's system task never stops the round
                _log.exception("internal error in a system task of %s", Principal(canister.canister_id))

    def _run_system_task(self, canister: Canister, export: str) -> None:
        cc = self._new_call_context(canister, MANAGEMENT.raw, ("system",), needs_to_respond=False)
        ctx = ExecutionContext(Kind.SYSTEM_TASK, caller=MANAGEMENT.raw)
        trap = execute(canister, export, ctx, self.limits.update)
        self._after_execution(canister, cc, ctx, trap)

    def _new_call_context(self, canister: Canister, caller: bytes, origin: tuple, *, needs_to_respond: bool = True,
                          cycles: int = 0, deadline: int = 0) -> CallContext:
        cc = CallContext(next(self._ids), caller, origin, needs_to_respond, cycles, deadline=deadline)
        canister.call_contexts[cc.id] = cc
        return cc

    def _deliver_request(self, req: Request) -> None:
        if req.is_ingress:
            status = self.ingress[req.message_id]  # type: ignore[index]
            status.state, status.updated_at = IngressState.PROCESSING, self.time_ns
        origin: tuple = ("ingress", req.message_id) if req.is_ingress else ("canister", req.src, req.callback_id)
        fault = self.faults.take(req)  # calls to the management canister too (a refused snapshot load, ...)
        injected = self.faults.reject_before(fault, req) if fault is not None else None
        if injected is not None:
            self.respond(origin, reject=injected, refund=req.cycles)
            return
        if req.dst == MANAGEMENT.raw:
            management.handle(self, req)
            return
        canister = self.canisters.get(req.dst)
        if canister is None:
            self.respond(origin, reject=self._not_found(req.dst), refund=req.cycles)
            return
        if canister.status is not Status.RUNNING:
            self.respond(origin, reject=self._stopped_reject(canister), refund=req.cycles)
            return
        if canister.runtime is None:
            self.respond(origin, reject=_no_module(), refund=req.cycles)
            return
        found = _export_for(canister, req.method)
        if found is None:
            self.respond(origin, reject=reject_for(ErrorCode.CANISTER_METHOD_NOT_FOUND,
                                                   f"Canister {Principal(req.dst)} has no update method "
                                                   f"'{req.method}'"), refund=req.cycles)
            return
        export, kind = found
        if kind is Kind.COMPOSITE_QUERY:
            self.respond(origin, reject=reject_for(ErrorCode.CANISTER_CONTRACT_VIOLATION,
                                                   "Composite query cannot be called in replicated mode"),
                         refund=req.cycles)
            return
        cc = self._new_call_context(canister, req.src, origin, cycles=req.cycles, deadline=req.deadline)
        ctx = ExecutionContext(kind, caller=req.src, arg=req.arg, needs_to_respond=True,
                               cycles_available=req.cycles, deadline=req.deadline)
        trap = execute(canister, export, ctx, self.limits.update, persist=kind is Kind.UPDATE)
        self._after_execution(canister, cc, ctx, trap, persisted=kind is Kind.UPDATE)

    def _deliver_response(self, resp: Response) -> None:
        canister = self.canisters.get(resp.dst)
        if canister is None:
            return
        cb = canister.callbacks.pop(resp.callback_id, None)
        if cb is None:
            return
        canister.cycles += resp.refund
        cc = canister.call_contexts.get(cb.call_context_id)
        if cc is None:
            return
        cc.outstanding -= 1
        if cc.deleted or canister.runtime is None:
            self._close_if_done(canister, cc)
            return
        if resp.reject is None:
            ctx = ExecutionContext(Kind.REPLY, caller=cc.caller, arg=resp.reply or b"")
            closure = cb.call.on_reply
        else:
            ctx = ExecutionContext(Kind.REJECT, caller=cc.caller, reject_code=int(resp.reject.code),
                                   reject_message=resp.reject.message)
            closure = cb.call.on_reject
        ctx.needs_to_respond = cc.needs_to_respond
        ctx.cycles_available = cc.available_cycles
        ctx.cycles_refunded = resp.refund
        ctx.deadline = cc.deadline
        ctx.instructions = cc.instructions
        trap = execute(canister, closure, ctx, self.limits.update)
        if trap is not None and cb.call.on_cleanup is not None:
            cleanup = ExecutionContext(Kind.CLEANUP, caller=cc.caller, reject_code=ctx.reject_code)
            execute(canister, cb.call.on_cleanup, cleanup, self.limits.update)
        cc.instructions = ctx.instructions
        self._after_execution(canister, cc, ctx, trap)

    def _after_execution(self, canister: Canister, cc: CallContext, ctx: ExecutionContext, trap: Trap | None,
                         persisted: bool = True) -> None:
        """Apply an execution's externally visible effects: its response and the calls it made."""
        if trap is None:
            if persisted:
                canister.version += 1
            cc.available_cycles = ctx.cycles_available
            if ctx.response is not None:
                kind, payload = ctx.response
                cc.needs_to_respond = False
                refund, cc.available_cycles = cc.available_cycles, 0
                if kind == "reply":
                    self.respond(cc.origin, reply=payload, refund=refund)
                else:
                    self.respond(cc.origin, reject=Reject(RejectCode.CANISTER_REJECT, payload.decode()),
                                 refund=refund)
            for call in ctx.calls:
                self._send(canister, cc, call)
        if cc.needs_to_respond and cc.outstanding == 0:
            cc.needs_to_respond = False
            if trap is not None:
                reject = reject_for(trap.error_code, f"Error from Canister {Principal(canister.canister_id)}: "
                                                     f"{trap.message}")
            else:
                reject = reject_for(ErrorCode.CANISTER_DID_NOT_REPLY,
                                    f"Canister {Principal(canister.canister_id)} did not produce a response")
            refund, cc.available_cycles = cc.available_cycles, 0
            self.respond(cc.origin, reject=reject, refund=refund)
        self._close_if_done(canister, cc)

    @staticmethod
    def _close_if_done(canister: Canister, cc: CallContext) -> None:
        if cc.outstanding == 0 and (not cc.needs_to_respond or cc.deleted):
            canister.call_contexts.pop(cc.id, None)

    def _send(self, canister: Canister, cc: CallContext, call: OutgoingCall) -> None:
        cb = Callback(next(self._ids), cc.id, call)
        canister.callbacks[cb.id] = cb
        cc.outstanding += 1
        deadline = self.time_ns + call.timeout_seconds * 1_000_000_000 if call.timeout_seconds is not None else 0
        self.queue.append(Request(canister.canister_id, call.callee, call.method, bytes(call.data),
                                  cycles=call.cycles, callback_id=cb.id, deadline=deadline))

    def respond(self, origin: tuple, *, reply: bytes | None = None, reject: Reject | None = None,
                refund: int = 0) -> None:
        """Deliver a response to whoever made the call: an ingress status, or the calling canister."""
        if origin[0] == "ingress":
            status = self.ingress.get(origin[1])
            if status is not None and not status.final:
                status.state = IngressState.REPLIED if reject is None else IngressState.REJECTED
                status.reply, status.reject, status.updated_at = reply, reject, self.time_ns
                self._answered_now(status)
        elif origin[0] == "canister":
            lost = self.faults.replace_reply(origin[1], origin[2])
            if lost is not None:
                reply, reject = None, lost
            self.queue.append(Response(origin[1], origin[2], reply=reply, reject=reject, refund=refund))

    def _stopped_reject(self, canister: Canister) -> Reject:
        cid = Principal(canister.canister_id)
        if canister.status is Status.STOPPING:
            return reject_for(ErrorCode.CANISTER_STOPPING, f"Canister {cid} is stopping")
        return reject_for(ErrorCode.CANISTER_STOPPED, f"Canister {cid} is stopped and therefore does not have a "
                                                      "CallContextManager")

    def _finish_stopping(self) -> None:
        for canister in self.canisters.values():
            if canister.status is Status.STOPPING and canister.open_call_contexts() == 0:
                canister.status = Status.STOPPED
                canister.version += 1
                waiters, canister.stop_waiters = canister.stop_waiters, []
                for origin in waiters:
                    self.respond(origin, reply=candid.encode([], []))  # type: ignore[arg-type]

    # ------------------------------------------------------------ management conveniences

    def _management(self, method: str, types: list[candid.Type], values: list[object], sender: PrincipalLike,
                    result: list[candid.Type], effective: PrincipalLike | None = None) -> list[object]:
        reply = self.update_call(MANAGEMENT, method, candid.encode(types, values), sender,
                                 effective_canister_id=effective)
        return candid.decode(reply, result)

    def create_canister(self, controllers: list[PrincipalLike] | None = None, cycles: int = DEFAULT_CYCLES,
                        sender: PrincipalLike = ANONYMOUS, specified_id: PrincipalLike | None = None) -> Principal:
        """provisional_create_canister_with_cycles; the sender is the controller unless `controllers` is given."""
        settings = {"controllers": [[Principal(raw_principal(c)) for c in controllers]]} if controllers else {}
        args = {"amount": [cycles], "settings": [settings] if settings else [],
                "specified_id": [Principal(raw_principal(specified_id))] if specified_id else []}
        out = self._management("provisional_create_canister_with_cycles",
                               [management.PROVISIONAL_CREATE_ARGS], [args], sender,
                               [management.CREATE_RESULT], effective=specified_id)
        return out[0]["canister_id"]  # type: ignore[index,no-any-return]

    def install_code(self, canister_id: PrincipalLike, wasm: bytes, arg: bytes = b"", *,
                     mode: str = "install", sender: PrincipalLike = ANONYMOUS,
                     skip_pre_upgrade: bool | None = None, wasm_memory_persistence: str | None = None) -> None:
        """install_code in mode install / reinstall / upgrade (with the upgrade options)."""
        args = {"mode": management.install_mode(mode, skip_pre_upgrade, wasm_memory_persistence),
                "canister_id": Principal(raw_principal(canister_id)), "wasm_module": wasm,
                "arg": arg, "sender_canister_version": []}
        self._management("install_code", [management.INSTALL_CODE_ARGS], [args], sender, [], effective=canister_id)

    def upgrade_canister(self, canister_id: PrincipalLike, wasm: bytes, arg: bytes = b"", *,
                         sender: PrincipalLike = ANONYMOUS, skip_pre_upgrade: bool | None = None,
                         wasm_memory_persistence: str | None = "keep") -> None:
        self.install_code(canister_id, wasm, arg, mode="upgrade", sender=sender, skip_pre_upgrade=skip_pre_upgrade,
                          wasm_memory_persistence=wasm_memory_persistence)

    def reinstall_code(self, canister_id: PrincipalLike, wasm: bytes, arg: bytes = b"", *,
                       sender: PrincipalLike = ANONYMOUS) -> None:
        self.install_code(canister_id, wasm, arg, mode="reinstall", sender=sender)

    def _canister_op(self, method: str, canister_id: PrincipalLike, sender: PrincipalLike,
                     result: list[candid.Type] | None = None) -> list[object]:
        return self._management(method, [management.CANISTER_ID_ARGS],
                                [{"canister_id": Principal(raw_principal(canister_id))}], sender, result or [],
                                effective=canister_id)

    def canister_status(self, canister_id: PrincipalLike, sender: PrincipalLike = ANONYMOUS) -> dict[str, object]:
        out = self._canister_op("canister_status", canister_id, sender, [management.CANISTER_STATUS_RESULT])
        return out[0]  # type: ignore[return-value]

    def list_canister_snapshots(self, canister_id: PrincipalLike,
                                sender: PrincipalLike = ANONYMOUS) -> list[dict[str, object]]:
        out = self._canister_op("list_canister_snapshots", canister_id, sender, [candid.Vec(management.SNAPSHOT)])
        return out[0]  # type: ignore[return-value]

    def start_canister(self, canister_id: PrincipalLike, sender: PrincipalLike = ANONYMOUS) -> None:
        self._canister_op("start_canister", canister_id, sender)

    def stop_canister(self, canister_id: PrincipalLike, sender: PrincipalLike = ANONYMOUS) -> None:
        self._canister_op("stop_canister", canister_id, sender)

    def delete_canister(self, canister_id: PrincipalLike, sender: PrincipalLike = ANONYMOUS) -> None:
        self._canister_op("delete_canister", canister_id, sender)

    def uninstall_code(self, canister_id: PrincipalLike, sender: PrincipalLike = ANONYMOUS) -> None:
        self._canister_op("uninstall_code", canister_id, sender)

    def set_controllers(self, canister_id: PrincipalLike, controllers: list[PrincipalLike],
                        sender: PrincipalLike = ANONYMOUS) -> None:
        args = {"canister_id": Principal(raw_principal(canister_id)),
                "settings": {"controllers": [[Principal(raw_principal(c)) for c in controllers]]},
                "sender_canister_version": []}
        self._management("update_settings", [management.UPDATE_SETTINGS_ARGS], [args], sender, [],
                         effective=canister_id)

    def canister_logs(self, canister_id: PrincipalLike, sender: PrincipalLike = ANONYMOUS) -> list[dict[str, object]]:
        reply = self.query_call(MANAGEMENT, "fetch_canister_logs",
                                candid.encode([management.CANISTER_ID_ARGS],
                                              [{"canister_id": Principal(raw_principal(canister_id))}]),
                                sender, effective_canister_id=canister_id)
        return candid.decode(reply, [management.FETCH_LOGS_RESULT])[0]["canister_log_records"]  # type: ignore[no-any-return]

    # ------------------------------------------------------------ persistence

    def checkpoint(self) -> None:
        """Write every canister (code, heap, globals, stable memory, settings) to the state directory."""
        if self.state_dir is None:
            raise ReplicaError("this replica has no state directory")
        from ic_replica import persistence

        with self.lock:
            persistence.save(self, self.state_dir)

    def close(self) -> None:
        self.outcalls.close()
        if self.state_dir is not None:
            self.checkpoint()

    def __enter__(self) -> Replica:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _status_bytes(status: IngressStatus) -> int:
    """What a final status keeps besides its fixed fields: the reply or the reject message."""
    if status.reply is not None:
        return len(status.reply)
    return len(status.reject.message) if status.reject is not None else 0


def _no_module() -> Reject:
    return reject_for(ErrorCode.CANISTER_WASM_MODULE_NOT_FOUND,
                      "Attempted to execute a message, but the canister contains no Wasm module.")


def _export_for(canister: Canister, method: str) -> tuple[str, Kind] | None:
    runtime = canister.runtime
    if runtime is None:
        return None
    if runtime.has_export(f"canister_update {method}"):
        return f"canister_update {method}", Kind.UPDATE
    if runtime.has_export(f"canister_query {method}"):
        return f"canister_query {method}", Kind.REPLICATED_QUERY
    if runtime.has_export(f"canister_composite_query {method}"):
        return f"canister_composite_query {method}", Kind.COMPOSITE_QUERY
    return None


def _reply_or_raise(canister: Canister, ctx: ExecutionContext, trap: Trap | None) -> bytes:
    cid = Principal(canister.canister_id)
    if trap is not None:
        raise CallRejected(reject_for(trap.error_code, f"Error from Canister {cid}: {trap.message}"))
    if ctx.response is None:
        raise CallRejected(reject_for(ErrorCode.CANISTER_DID_NOT_REPLY, f"Canister {cid} did not produce a response"))
    kind, payload = ctx.response
    if kind == "reject":
        raise CallRejected(Reject(RejectCode.CANISTER_REJECT, payload.decode()))
    return payload


