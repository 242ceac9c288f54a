"""The verifier worker (seed 004): poll, reserve with stake, rebuild in the sandbox, file, get paid.

`tick()` is one pass: resume journal jobs that are due, adopt locks of ours the journal does not know, then —
while job slots are free — page through `list_pending_verifications` (one entry per verification round, by
request id), pick bounties of our audit type nobody holds (open, or reserved and expired unused) in rounds we
have not worked on, and reserve them. Each job runs on its own thread (up to MAX_CONCURRENT_JOBS) through
the journal's states:

    reserving --reserve_bounty--> reserved --rebuild--> built --file--> filed
                                      \\--lock about to expire--> expired (nothing filed)

Every transition is committed to the journal before the call it announces, and every resumed step first
asks the canisters what already happened, so a killed worker neither files twice nor abandons a lock.
Transient failures (replica, repository or Docker unreachable) back off and retry; they never become a
verdict.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_build import sandbox, source
from prometheus_build.image import BuilderImage
from prometheus_sdk import SdkError
from prometheus_sdk.clients.audit_hub import AuditHubClient, AuditHubError, Lock
from prometheus_sdk.clients.mcp_registry import (
    Bounty,
    PendingVerification,
    RegistryClient,
    RegistryError,
    SignedStatement,
)
from prometheus_sdk.icrc16 import to_map
from prometheus_sdk.principal import Principal
from prometheus_sdk.provenance import envelopes, statements
from verifier_bot import rebuild
from verifier_bot.config import Config
from verifier_bot.journal import ACTIVE, Job, Journal
from verifier_bot.logs import JsonLog
from verifier_bot.metrics import Metrics

WORKER_VERSION = "prometheus-verifier/0.1.0"
MAX_LISTED_PACKAGES = 32  # more are summarized as one digest in the signed statement
PAGE = 50
LOCK_PAGE = 100  # the hub's largest page of get_locks
MAX_BACKOFF_S = 300.0
MAX_REPORT = 1024  # characters of a divergence report (the registry takes up to 4096 bytes)
MAX_CRASHES = 5  # unexpected errors on one job before it is given up as `failed`
RESERVATION_SETTLE_S = 300.0  # a reservation whose reply was lost may still land until its ingress expiry


@dataclass
class Chain:
    """The canisters as seen by one thread (agents are not shared across threads)."""
    registry: RegistryClient
    hub: AuditHubClient


def _variant(value: Mapping[str, Any]) -> str:
    """The case name of a decoded variant (a dict with exactly one key)."""
    return next(iter(value))


def _free(state: Mapping[str, Any], now: int) -> bool:
    """A bounty anyone may reserve: open, or reserved by a verifier whose reservation ran out unused (the hub
    cleans its lock up when we reserve: the registry reopens the bounty and the hub slashes that stake)."""
    name = _variant(state)
    return name == "Open" or (name == "Reserved" and state["Reserved"]["until"] <= now)


class StateDirBusy(RuntimeError):
    """Another worker already uses this state directory (journal and build containers would collide)."""


class Worker:
    def __init__(self, config: Config, connect: Callable[[], Any], docker_client: Callable[[], Any],
                 image: BuilderImage, journal: Journal, log: JsonLog | None = None,
                 metrics: Metrics | None = None, clock: Callable[[], int] = time.time_ns) -> None:
        self.config = config
        self.clock = clock  # ns since the epoch, compared with the chain's times (locks, bounty timeouts)
        self.image = image
        self.journal = journal
        self.log = log or JsonLog()
        self.metrics = metrics or Metrics()
        self._state_lock = self._lock_state_dir(config.state_dir)
        self._connect = connect
        self._docker_client = docker_client
        self._local = threading.local()
        self._executor = ThreadPoolExecutor(config.max_concurrent_jobs, thread_name_prefix="job")
        self._in_flight: dict[int, Future[None]] = {}
        self._guard = threading.Lock()
        self.stopping = threading.Event()
        self.last_contact: float | None = None  # the last time the canisters answered us
        self.last_error: str | None = None
        self.principal = str(self._chain_connection().principal)
        # Build containers carry this label: a restart removes its own leftovers and nobody else's.
        state_key = hashlib.sha256(str(config.state_dir.resolve()).encode()).hexdigest()[:12]
        self.owner = f"{self.principal}/{state_key}"

    @staticmethod
    def _lock_state_dir(state_dir: Path) -> int:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(state_dir / "worker.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StateDirBusy(f"another worker is running with state directory {state_dir}") from None
        return fd

    # ------------------------------------------------------------------ per-thread clients

    def _chain_connection(self) -> Any:
        if getattr(self._local, "connection", None) is None:
            self._local.connection = self._connect()
        return self._local.connection

    def chain(self) -> Chain:
        if getattr(self._local, "chain", None) is None:
            conn = self._chain_connection()
            self._local.chain = Chain(
                RegistryClient(conn, self.config.registry_id), AuditHubClient(conn, self.config.audit_hub_id))
        chain: Chain = self._local.chain
        return chain

    def docker(self) -> Any:
        if getattr(self._local, "docker", None) is None:
            try:
                self._local.docker = self._docker_client()
            except Exception as exc:  # daemon down: a transient failure, never a verdict
                raise rebuild.Transient(f"docker is unavailable: {exc}") from exc
        return self._local.docker

    # ------------------------------------------------------------------ the loop

    def run(self) -> None:
        """Poll until `stopping` is set; then let in-flight jobs finish (their journal rows survive a kill)."""
        self.start()
        while not self.stopping.is_set():
            self.tick()
            self.stopping.wait(self.config.poll_interval_s)
        self.log.info("stopping", in_flight=self.in_flight())
        self.drain()

    def run_once(self) -> list[Job]:
        """One pass, then wait for every job it started or resumed; returns the journal afterwards."""
        self.start()
        self.tick()
        self.drain()
        return self.journal.jobs()

    def start(self) -> None:
        try:
            removed = sandbox.remove_leftovers(self.docker(), self.owner)
        except Exception as exc:  # Docker down: builds will retry, the worker still starts
            self.log.warning("docker_unavailable", error=str(exc))
            removed = 0
        self.log.info("started", principal=self.principal, image=self.image.tag, version=WORKER_VERSION,
                      max_concurrent_jobs=self.config.max_concurrent_jobs, leftover_containers_removed=removed,
                      unfinished_jobs=len(self.journal.jobs(ACTIVE)))

    def drain(self) -> None:
        while True:
            with self._guard:
                futures = list(self._in_flight.values())
            if not futures:
                return
            for future in futures:
                future.result()

    def in_flight(self) -> int:
        with self._guard:
            return len(self._in_flight)

    def tick(self) -> None:
        """One pass. Nothing raised here may stop the loop: errors are logged and the next tick tries again."""
        try:
            self._resume_due()
            self._adopt_orphans()
            available = self._refresh_profile()
            # Jobs waiting out a backoff still hold locks: they count against the slots like running ones.
            free = self.config.max_concurrent_jobs - len(self.journal.jobs(ACTIVE))
            if free > 0 and not self.stopping.is_set():
                self.poll(free, available)
                self.metrics.last_poll.set(time.time())
            self.last_contact, self.last_error = time.time(), None
        except Exception as exc:  # the replica down or answering nonsense
            self.last_error = str(exc) if isinstance(exc, SdkError) else repr(exc)
            self.log.warning("poll_failed", error=self.last_error)

    def _resume_due(self) -> None:
        now = time.time()
        for job in self.journal.jobs(ACTIVE):
            if job.next_attempt <= now and self.in_flight() < self.config.max_concurrent_jobs:
                self._submit(job.bounty_id)

    def _submit(self, bounty_id: int) -> None:
        with self._guard:
            if bounty_id in self._in_flight:
                return
            self._in_flight[bounty_id] = self._executor.submit(self._advance, bounty_id)
            self.metrics.in_flight.set(len(self._in_flight))

    # ------------------------------------------------------------------ finding and reserving work

    def poll(self, slots: int, available_stake: int) -> int:
        """Reserve up to `slots` open bounties of our audit type; returns how many were reserved."""
        chain, reserved = self.chain(), 0
        after: int | None = None
        if not self._enough_stake(chain, available_stake):
            return 0
        while reserved < slots:
            page = chain.registry.list_pending_verifications({"after": [] if after is None else [after],
                                                              "limit": PAGE})
            for pending in page:
                if reserved >= slots or self.stopping.is_set():
                    break
                if pending["open_bounties"] and self.config.audit_type in pending["audit_types"]:
                    reserved += self._consider(chain, pending)
            if len(page) < PAGE:
                break
            after = int(page[-1]["request_id"])  # the cursor is the last round's request id
        return reserved

    def _enough_stake(self, chain: Chain, available: int) -> bool:
        """Reserving without the stake only fails at the hub; say so once per poll instead."""
        required = chain.hub.get_policy()["stake_per_reservation"]
        if available < required:
            self.log.warning("insufficient_stake", available=available, required=required,
                             audit_type=self.config.audit_type)
            return False
        return True

    def _consider(self, chain: Chain, pending: PendingVerification) -> int:
        request_id, wasm_id = int(pending["request_id"]), pending["wasm_id"]
        if (self.journal.known_round(request_id, wasm_id, self.config.audit_type)
                or self._filed_by_me(chain, wasm_id, request_id) is not None):
            return 0  # the registry takes one filing per verifier, round and audit: a second lock could only lose
        now = self.clock()
        headroom = int((self.config.build_timeout_s + self.config.file_margin_s + 60) * 1e9)
        for bounty in chain.registry.get_bounties_for_request(request_id):
            if bounty["audit_type"] != self.config.audit_type or not _free(bounty["state"], now):
                continue
            known = self.journal.get(bounty["bounty_id"])
            if known is not None and known.state != "lost":
                continue
            if bounty["timeout_date"] <= now + headroom:
                continue  # it could close before a build and a filing fit in
            lock = chain.hub.get_lock(bounty["bounty_id"])
            if lock and lock[0]["expires_at"] > now:
                continue  # somebody is reserving it right now
            return self._reserve(chain, bounty["bounty_id"], pending)
        return 0

    def _adopt_orphans(self) -> int:
        """Live locks of ours the journal does not know (it was lost, or the reply to `reserve_bounty` was and a
        retry found the bounty held by us) become jobs again: finished and filed, not left to be slashed."""
        chain, adopted, now = self.chain(), 0, self.clock()
        after: int | None = None
        while True:
            page = chain.hub.get_locks([] if after is None else [after], LOCK_PAGE)
            for lock in page:
                if (str(lock["claimant"]) != self.principal or lock["audit_type"] != self.config.audit_type
                        or _variant(lock["state"]) != "Held" or lock["expires_at"] <= now):
                    continue
                known = self.journal.get(lock["bounty_id"])
                if known is None or known.state == "lost":
                    adopted += self._adopt(chain, lock)
            if len(page) < LOCK_PAGE:
                return adopted
            after = int(page[-1]["lock_id"])

    def _adopt(self, chain: Chain, lock: Lock) -> int:
        bounty_id = int(lock["bounty_id"])
        found = chain.registry.icrc127_get_bounty(bounty_id)
        if not found or not self._reserved_by_me(found[0]):
            return 0  # the registry does not count it as our reservation: nothing to file on
        bounty = found[0]
        status = chain.registry.get_wasm_status(bounty["wasm_id"], [bounty["namespace"]])
        request = next((r["request"] for r in (status[0]["rounds"] if status else [])
                        if r["request"]["id"] == bounty["request_id"]), None)
        if request is None:
            return 0
        self.journal.begin(bounty_id, bounty["wasm_id"], request["repo"], request["commit_hash"],
                           self.config.audit_type, int(bounty["request_id"]))
        self.journal.update(bounty_id, state="reserved", expires_at=lock["expires_at"])
        self.log.warning("adopted_lock", bounty_id=bounty_id, wasm_id=bounty["wasm_id"],
                         request_id=bounty["request_id"])
        self._submit(bounty_id)
        return 1

    def _reserved_by_me(self, bounty: Bounty) -> dict[str, Any] | None:
        """The bounty's `Reserved` payload (claimant, until) when we hold it, else None."""
        state = bounty["state"]
        if _variant(state) == "Reserved" and str(state["Reserved"]["claimant"]) == self.principal:
            return dict(state["Reserved"])
        return None

    def _reserve(self, chain: Chain, bounty_id: int, pending: PendingVerification) -> int:
        if not self.journal.begin(bounty_id, pending["wasm_id"], pending["repo"], pending["commit_hash"],
                                  self.config.audit_type, int(pending["request_id"])):
            return 0
        try:
            lock: dict[str, Any] = dict(chain.hub.reserve_bounty(bounty_id, self.config.audit_type))
        except AuditHubError as refused:
            held = refused.detail if refused.kind == "AlreadyReserved" else None
            if not (held and str(held["claimant"]) == self.principal):
                # AlreadyReserved, AlreadyHolding, AlreadyFiled, BountyNotOpen, InsufficientStake, ...
                self.journal.update(bounty_id, state="lost", last_error=str(refused.error))
                self.log.info("reserve_refused", bounty_id=bounty_id, reason=refused.error)
                self.metrics.jobs.labels("lost").inc()
                return 0
            lock = {"expires_at": held["expires_at"], "stake": "(earlier attempt)"}  # our retry landed before
        except SdkError as exc:
            self.log.warning("reserve_unknown", bounty_id=bounty_id, error=str(exc))
            return 1  # the reservation may have landed; the job's first step asks the hub
        self.journal.update(bounty_id, state="reserved", expires_at=lock["expires_at"])
        self.log.info("reserved", bounty_id=bounty_id, wasm_id=pending["wasm_id"], repo=pending["repo"],
                      commit=pending["commit_hash"], stake=lock["stake"], expires_at=lock["expires_at"])
        self._submit(bounty_id)
        return 1

    # ------------------------------------------------------------------ one job

    def _advance(self, bounty_id: int) -> None:
        try:
            job = self.journal.get(bounty_id)
            while job is not None and job.state in ACTIVE:
                step = {"reserving": self._confirm_reservation, "reserved": self._build, "built": self._file}
                step[job.state](job)
                job = self.journal.get(bounty_id)
        except (rebuild.Transient, SdkError) as exc:
            self._retry_later(bounty_id, str(exc))
        except Exception as exc:  # a bug must not kill the worker nor produce a filing; retry, then give up
            self.log.error("job_crashed", bounty_id=bounty_id, error=repr(exc))
            job = self.journal.get(bounty_id)
            if job is not None and job.attempts + 1 >= MAX_CRASHES:
                self.journal.update(bounty_id, state="failed", attempts=job.attempts + 1, last_error=repr(exc))
                self.metrics.jobs.labels("failed").inc()
            else:
                self._retry_later(bounty_id, repr(exc))
        finally:
            with self._guard:
                self._in_flight.pop(bounty_id, None)
                self.metrics.in_flight.set(len(self._in_flight))

    def _retry_later(self, bounty_id: int, error: str) -> None:
        job = self.journal.get(bounty_id)
        attempts = (job.attempts if job else 0) + 1
        delay = min(MAX_BACKOFF_S, self.config.poll_interval_s * 2 ** min(attempts - 1, 10))
        self.journal.update(bounty_id, attempts=attempts, next_attempt=time.time() + delay, last_error=error)
        self.metrics.retries.inc()
        self.log.warning("job_retry", bounty_id=bounty_id, attempt=attempts, retry_in_s=round(delay, 1), error=error)

    def _confirm_reservation(self, job: Job) -> None:
        """After a crash or a lost reply: the hub's lock says whether the reservation happened."""
        lock = self.chain().hub.get_lock(job.bounty_id)
        mine = bool(lock) and str(lock[0]["claimant"]) == self.principal and lock[0]["expires_at"] > self.clock()
        if mine and _variant(lock[0]["state"]) == "Held":
            self.journal.update(job.bounty_id, state="reserved", expires_at=lock[0]["expires_at"])
        elif mine and _variant(lock[0]["state"]) == "Reserving":
            raise rebuild.Transient("the hub is still asking the registry to grant our reservation")
        elif time.time() - job.created < RESERVATION_SETTLE_S and not lock:
            raise rebuild.Transient("the reservation's outcome is not known yet")
        else:
            self.journal.update(job.bounty_id, state="lost", last_error="the reservation did not happen")
            self.metrics.jobs.labels("lost").inc()

    def _lock_usable(self, job: Job) -> bool:
        """The registry counts the bounty as reserved by us, the hub holds our lock, and the reservation, the
        lock and the bounty all outlive the filing margin; otherwise the job ends as expired (our reservation
        ran out) or lost (the bounty is someone else's or closed) and nothing is filed."""
        chain = self.chain()
        found = chain.registry.icrc127_get_bounty(job.bounty_id)
        deadline = self.clock() + int(self.config.file_margin_s * 1e9)
        reservation = self._reserved_by_me(found[0]) if found else None
        if reservation is None and not (found and _variant(found[0]["state"]) == "Open"):
            state = _variant(found[0]["state"]) if found else "gone"
            self.journal.update(job.bounty_id, state="lost", last_error=f"the bounty is no longer ours ({state})")
            self.metrics.jobs.labels("lost").inc()
            self.log.warning("bounty_closed", bounty_id=job.bounty_id, wasm_id=job.wasm_id, state=state)
            return False
        if reservation is not None:
            lock = chain.hub.get_lock(job.bounty_id)
            if (lock and str(lock[0]["claimant"]) == self.principal and _variant(lock[0]["state"]) == "Held"
                    and min(lock[0]["expires_at"], reservation["until"], found[0]["timeout_date"]) > deadline):
                return True
        self.journal.update(job.bounty_id, state="expired",
                            last_error="our reservation, the lock or the bounty expires before we could file")
        self.metrics.jobs.labels("expired").inc()
        self.log.warning("lock_expired", bounty_id=job.bounty_id, wasm_id=job.wasm_id)
        return False

    def _build(self, job: Job) -> None:
        if not self._lock_usable(job):
            return
        cfg = self.config
        limits = sandbox.Limits(memory_bytes=cfg.build_memory_mb << 20, cpus=cfg.build_cpus,
                                timeout_s=cfg.build_timeout_s)
        source_limits = source.Limits(max_total_bytes=cfg.max_source_mb << 20)
        self.log.info("build_started", bounty_id=job.bounty_id, repo=job.repo, commit=job.commit_hash)
        started = datetime.now(UTC)
        try:
            verdict = rebuild.verify(self.docker(), self.image, job.repo, job.commit_hash, job.wasm_id,
                                     cfg.work_dir / f"bounty-{job.bounty_id}", limits, source_limits,
                                     allow_local=cfg.repo_policy, owner=self.owner)
        except rebuild.SourceUnreachable as exc:
            if job.attempts + 1 < cfg.source_retries:
                raise
            # The requester keeps the repository unreachable: report it rather than wait to be slashed.
            verdict = rebuild.Verdict(False, None, rebuild.clean(
                f"source: the repository stayed unreachable for {job.attempts + 1} attempts: {exc}"), 0.0)
        if verdict.build_seconds:
            self.metrics.build_seconds.observe(verdict.build_seconds)
        # The registry checks 126:request_id, 126:repo, 126:commit_hash and the hashes against the round and
        # the wasm: an attestation's found hash is the wasm's, a divergence's is another or none.
        metadata: dict[str, Any] = {
            "bounty_id": job.bounty_id, "126:audit_type": job.audit_type, "126:expected_hash": job.wasm_id,
            "126:repo": job.repo, "126:commit_hash": job.commit_hash,
            "126:toolchain_digest": self.image.toolchain_digest,
            "126:image_digest": f"sha256:{self.image.rootfs_digest}",
            "126:build_ms": int(verdict.build_seconds * 1000), "126:worker_version": WORKER_VERSION}
        metadata.update(rebuild.attestation_metadata(verdict))  # the image, toolchain and packages actually used
        if job.request_id is not None:
            metadata["126:request_id"] = job.request_id
        if verdict.found_hash:
            metadata["126:found_hash"] = verdict.found_hash
        if verdict.skipped:
            metadata["126:skipped_entries"] = "; ".join(verdict.skipped)[:1000]
        signed = self._sign(job, verdict, started, datetime.now(UTC))
        self.journal.update(job.bounty_id, state="built", verdict="attest" if verdict.attested else "diverge",
                            found_hash=verdict.found_hash, report=verdict.report[:MAX_REPORT] or None,
                            metadata=metadata, signed=signed)
        self.log.info("build_finished", bounty_id=job.bounty_id, attested=verdict.attested,
                      found_hash=verdict.found_hash, reason=verdict.report, seconds=round(verdict.build_seconds, 2),
                      log_tail=verdict.log[-400:])

    def _sign(self, job: Job, verdict: rebuild.Verdict, started: datetime, finished: datetime) -> dict[str, str] | None:
        """The verdict as an in-toto statement in a DSSE envelope signed with our identity (docs/provenance.md):
        SLSA provenance for a match, a FAILED verification summary for a divergence. Signed once, after the
        build, and journaled: a retried filing sends the same envelope. None (filed unsigned, logged) if it
        cannot be signed: the verdict matters more than its signature."""
        try:
            return self._statement(job, verdict, started, finished)
        except Exception as exc:  # never lose a verdict (and the stake) over its signature
            self.log.error("signing_failed", bounty_id=job.bounty_id, wasm_id=job.wasm_id, error=str(exc))
            return None

    def _statement(self, job: Job, verdict: rebuild.Verdict, started: datetime, finished: datetime) -> dict[str, str]:
        name = re.sub(r"[^A-Za-z0-9._-]", "_", f"{verdict.canister or 'canister'}.wasm")[:64]
        if verdict.attested:
            image = verdict.image or self.image
            packages = sorted((p["name"], p["sha256"]) for p in verdict.packages if p.get("sha256"))
            if len(packages) <= MAX_LISTED_PACKAGES:
                dependencies = {f"package:{n[:64]}": d for n, d in packages}
            else:  # a statement stays small whatever the project: the package set as one digest
                listing = "\n".join(f"{n}@{d}" for n, d in packages).encode()
                dependencies = {"packages": hashlib.sha256(listing).hexdigest()}
            dependencies["toolchain"] = image.toolchain_digest
            build = statements.Build(job.repo, job.commit_hash, None, verdict.toolchain or "motoko",
                                     dependencies, image.rootfs_digest,
                                     {"canister": verdict.canister, "audit_type": job.audit_type})
            statement = statements.provenance(job.wasm_id, name, build, self.principal, started, finished,
                                              f"bounty/{job.bounty_id}")
        else:
            statement = statements.divergence(job.wasm_id, name, self.principal, finished,
                                              verdict.report[:MAX_REPORT] or "divergence", verdict.found_hash,
                                              job.repo, job.commit_hash)
        signed = envelopes.sign(self._chain_connection().identity, statement)
        return {"payload": signed.envelope.payload.hex(), "signature": signed.signature.hex(),
                "public_key": signed.public_key.hex()}

    def _file_signed(self, chain: Chain, job: Job, metadata: list[Any],
                     signed: list[SignedStatement]) -> int:
        if job.verdict == "attest":
            return chain.registry.icrc126_file_attestation({"wasm_id": job.wasm_id, "metadata": metadata,
                                                            "signed": signed})
        return chain.registry.icrc126_file_divergence({"wasm_id": job.wasm_id, "metadata": metadata,
                                                       "divergence_report": job.report or "divergence",
                                                       "signed": signed})

    def _filed_by_me(self, chain: Chain, wasm_id: str, request_id: int | None) -> dict[str, Any] | None:
        """Our filing in the round (any current round of the wasm when the round is unknown)."""
        for filing in chain.registry.get_audit_records(wasm_id):
            if (str(filing["verifier"]) == self.principal and filing["audit_type"] == self.config.audit_type
                    and request_id in (None, filing["request_id"])):
                return dict(filing)
        return None

    def _file(self, job: Job) -> None:
        chain = self.chain()
        if self._filed_by_me(chain, job.wasm_id, job.request_id) is not None:  # filed before a crash: never refile
            self._finish(job, "filed_earlier")
            return
        if not self._lock_usable(job):
            return
        metadata = to_map(job.metadata)
        signed: list[SignedStatement] = [{
            "payload_type": statements.PAYLOAD_TYPE, "payload": bytes.fromhex(job.signed["payload"]),
            "signature": bytes.fromhex(job.signed["signature"]),
            "public_key": bytes.fromhex(job.signed["public_key"])}] if job.signed else []
        try:
            try:
                block = self._file_signed(chain, job, metadata, signed)
            except RegistryError as refused:
                if not (signed and _variant(refused.error) == "QuotaExceeded"):
                    raise
                # The namespace's signed filings on this wasm are at the registry's limit: the verdict goes unsigned.
                self.log.warning("filed_unsigned", bounty_id=job.bounty_id, wasm_id=job.wasm_id, error=refused.error)
                block = self._file_signed(chain, job, metadata, [])
        except RegistryError as refused:
            error = refused.error
        else:
            self.journal.update(job.bounty_id, filing_index=block)
            self._finish(job, "filed", block=block)
            return
        if _variant(error) == "AuditHubUnavailable":
            raise rebuild.Transient(f"registry could not reach the audit hub: {error}")
        if self._filed_by_me(chain, job.wasm_id, job.request_id) is not None:
            self._finish(job, "filed_earlier")
            return
        self.journal.update(job.bounty_id, state="refused", last_error=str(error))
        self.metrics.jobs.labels("refused").inc()
        self.log.error("filing_refused", bounty_id=job.bounty_id, wasm_id=job.wasm_id, error=error)

    def _finish(self, job: Job, how: str, block: int | None = None) -> None:
        self.journal.update(job.bounty_id, state="filed")
        outcome = "attested" if job.verdict == "attest" else "diverged"
        self.metrics.jobs.labels(outcome).inc()
        self.log.info(outcome, bounty_id=job.bounty_id, wasm_id=job.wasm_id, how=how, block=block,
                      reason=job.report)

    # ------------------------------------------------------------------ operations

    def _refresh_profile(self) -> int:
        """Our stake and earnings from the hub, into the gauges; returns the stake free to reserve with."""

        profile = self.chain().hub.get_auditor_profile(Principal.from_text(self.principal))
        available = int(dict(profile["available"]).get(self.config.audit_type, 0))
        self.metrics.stake_available.set(available)
        self.metrics.stake_locked.set(dict(profile["staked"]).get(self.config.audit_type, 0))
        self.metrics.earnings.set(profile["earnings"])
        return available

    def health(self) -> tuple[bool, dict[str, Any]]:
        age = None if self.last_contact is None else time.time() - self.last_contact
        ok = age is not None and age < max(3 * self.config.poll_interval_s, 30) and not self.stopping.is_set()
        return ok, {"status": "ok" if ok else "unhealthy", "last_contact_age_s": None if age is None else round(age, 1),
                    "last_error": self.last_error, "in_flight": self.in_flight(), "stopping": self.stopping.is_set(),
                    "principal": self.principal, "image": self.image.tag}

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        if self._state_lock >= 0:
            os.close(self._state_lock)  # releases the flock
            self._state_lock = -1
