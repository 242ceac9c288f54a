"""The worker's crash journal: one SQLite row per reserved bounty, written before every step that matters.

A job moves `reserving -> reserved -> built -> filed`, or ends `expired` (the lock or the bounty ran out
before we could file: nothing is filed), `lost` (someone else holds the bounty, or it closed), `refused`
(the registry would not take our filing) or `failed` (the worker itself kept crashing on it). The row is
committed before the call it announces, so a worker killed at any point finds on restart what it may have
done and checks the canisters before doing it again: it never files twice and never walks away from a
bounty it reserved.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ACTIVE = ("reserving", "reserved", "built")
FINAL = ("filed", "expired", "lost", "refused", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    bounty_id    INTEGER PRIMARY KEY,
    wasm_id      TEXT NOT NULL,
    repo         TEXT NOT NULL,
    commit_hash  TEXT NOT NULL,
    audit_type   TEXT NOT NULL,
    state        TEXT NOT NULL,
    expires_at   INTEGER,          -- lock expiry, ns since the epoch (IC time)
    verdict      TEXT,             -- attest | diverge, once built
    found_hash   TEXT,
    report       TEXT,
    metadata     TEXT,             -- JSON of what we file besides the report
    filing_index INTEGER,          -- the registry's ICRC-3 block of our filing
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    last_error   TEXT,
    created      REAL NOT NULL,
    updated      REAL NOT NULL,
    request_id   INTEGER,          -- the verification round (a wasm has one per namespace and correction)
    signed       TEXT              -- JSON: the signed statement filed with the verdict (hex parts)
);
"""


@dataclass(frozen=True)
class Job:
    bounty_id: int
    wasm_id: str
    repo: str
    commit_hash: str
    audit_type: str
    state: str
    expires_at: int | None
    verdict: str | None
    found_hash: str | None
    report: str | None
    metadata: dict[str, Any]
    filing_index: int | None
    attempts: int
    next_attempt: float
    last_error: str | None
    created: float
    request_id: int | None = None
    signed: dict[str, str] | None = None  # the statement filed with the verdict: payload, signature, public_key (hex)


class Journal:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        if "request_id" not in columns:  # a journal written before rounds were per namespace
            self._db.execute("ALTER TABLE jobs ADD COLUMN request_id INTEGER")
        if "signed" not in columns:  # a journal written before verdicts were signed
            self._db.execute("ALTER TABLE jobs ADD COLUMN signed TEXT")

    def close(self) -> None:
        self._db.close()

    def _row(self, row: tuple[Any, ...]) -> Job:
        (bounty_id, wasm_id, repo, commit_hash, audit_type, state, expires_at, verdict, found_hash, report,
         metadata, filing_index, attempts, next_attempt, last_error, created, request_id, signed) = row
        return Job(bounty_id, wasm_id, repo, commit_hash, audit_type, state, expires_at, verdict, found_hash, report,
                   json.loads(metadata) if metadata else {}, filing_index, attempts, next_attempt, last_error, created,
                   request_id, json.loads(signed) if signed else None)

    _COLUMNS = ("bounty_id, wasm_id, repo, commit_hash, audit_type, state, expires_at, verdict, found_hash, report, "
                "metadata, filing_index, attempts, next_attempt, last_error, created, request_id, signed")

    def get(self, bounty_id: int) -> Job | None:
        with self._lock:
            row = self._db.execute(f"SELECT {self._COLUMNS} FROM jobs WHERE bounty_id = ?", (bounty_id,)).fetchone()
        return self._row(row) if row else None

    def jobs(self, states: tuple[str, ...] | None = None) -> list[Job]:
        query = f"SELECT {self._COLUMNS} FROM jobs"
        args: tuple[str, ...] = ()
        if states:
            query += f" WHERE state IN ({','.join('?' * len(states))})"
            args = states
        with self._lock:
            rows = self._db.execute(query + " ORDER BY bounty_id", args).fetchall()
        return [self._row(r) for r in rows]

    def known_round(self, request_id: int, wasm_id: str, audit_type: str) -> bool:
        """True once we reserved any bounty of this verification round and audit type: the registry takes one
        filing per verifier in each. (A row journaled before rounds were recorded counts for its wasm.)"""
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM jobs WHERE audit_type = ? AND state != 'lost' AND "
                "(request_id = ? OR (request_id IS NULL AND wasm_id = ?))",
                (audit_type, request_id, wasm_id)).fetchone()
        return row is not None

    def begin(self, bounty_id: int, wasm_id: str, repo: str, commit_hash: str, audit_type: str,
              request_id: int | None = None) -> bool:
        """Record the intent to reserve, before the reservation call. A bounty we lost earlier may be tried
        again; any other existing row wins (returns False and changes nothing)."""
        now = time.time()
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO jobs (bounty_id, wasm_id, repo, commit_hash, audit_type, state, created, updated, "
                "request_id) VALUES (?, ?, ?, ?, ?, 'reserving', ?, ?, ?) "
                "ON CONFLICT(bounty_id) DO UPDATE SET state = 'reserving', attempts = 0, next_attempt = 0, "
                "last_error = NULL, created = excluded.created, updated = excluded.updated, "
                "request_id = excluded.request_id, signed = NULL WHERE jobs.state = 'lost'",
                (bounty_id, wasm_id, repo, commit_hash, audit_type, now, now, request_id))
            return cursor.rowcount == 1

    def update(self, bounty_id: int, **fields: Any) -> None:
        allowed = {"state", "expires_at", "verdict", "found_hash", "report", "metadata", "filing_index", "attempts",
                   "next_attempt", "last_error", "signed"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown journal fields {unknown}")
        for column in ("metadata", "signed"):
            if column in fields:
                fields[column] = json.dumps(fields[column], sort_keys=True)
        fields["updated"] = time.time()
        assignments = ", ".join(f"{k} = ?" for k in fields)
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {assignments} WHERE bounty_id = ?", (*fields.values(), bounty_id))
