"""The store's index: the registry's ICRC-3 blocks, applied in order to a SQLite database (one file, no server),
with a full-text index (FTS5, BM25 ranking) over each app's listing.

The indexer (`sync`) is the only writer. It reads every block past the last one it applied, checks them against
the registry's certified tip (`prometheus_sdk.icrc3`) and reads each strictly (`blocks`), then applies them and
moves its cursor in one transaction: a crash, or a tip or block that does not verify, leaves the index as it
was. Everything shown comes from these blocks: an app's listing fields are the metadata of the request that
verified its listed wasm (`name`, `description`, `listing:*`), as recorded on chain.

Readers (the web view, the MCP server, the REST API) open their own connections; SQLite's WAL mode lets them
read while the indexer writes. Every read is bounded by its page.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import cbor2

from prometheus_sdk import icrc3
from prometheus_sdk.principal import Principal
from prometheus_store import blocks
from prometheus_store.blocks import Block
from prometheus_store.tiers import BUILD_AUDIT, RoundState, Tier, tier_of

SCHEMA_VERSION = 3
MAX_QUERY_CHARS = 200  # a search query longer than this is cut (FTS cost grows with its terms)
MAX_QUERY_TERMS = 8
MIN_PREFIX = 3  # a word this long or longer also matches as a prefix; shorter words match whole
MAX_PAGE = 100
MAX_OFFSET = 1_000  # the web view's offset paging stops here (the REST API pages by cursor)
MAX_SIGNATURE_CHECKS = 50  # wasms whose new signed filings one update checks (the rest: the next update)
MAX_SIGNATURE_TRIES = 5  # updates that ask the registry for a filing's statement before giving up on it
LISTING_TEXT_LIMIT = 2_000  # characters kept of a listing field
DEFAULT_MAX_AGE_NS = 10 * 60 * 10**9  # a tip certificate older than this is refused (a replayed answer)
APPLY_BATCH = 2_000  # blocks applied per transaction

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE blocks (idx INTEGER PRIMARY KEY, btype TEXT NOT NULL, ts INTEGER NOT NULL, tx TEXT NOT NULL);
CREATE TABLE requests (request_id INTEGER PRIMARY KEY, namespace TEXT NOT NULL, wasm TEXT NOT NULL,
                       repo TEXT NOT NULL, commit_hash TEXT NOT NULL, requester TEXT NOT NULL,
                       metadata TEXT NOT NULL, ts INTEGER NOT NULL, block INTEGER NOT NULL);
CREATE INDEX requests_by_namespace ON requests (namespace, wasm, request_id);
CREATE INDEX requests_by_wasm ON requests (wasm, request_id);
CREATE TABLE filings (block INTEGER PRIMARY KEY, request_id INTEGER NOT NULL, wasm TEXT NOT NULL,
                      audit_type TEXT NOT NULL, bounty_id INTEGER NOT NULL, verifier TEXT NOT NULL,
                      attested INTEGER NOT NULL, report TEXT, metadata TEXT NOT NULL, envelope_sha256 TEXT,
                      ts INTEGER NOT NULL, signature TEXT, signature_tries INTEGER NOT NULL DEFAULT 0);
CREATE INDEX filings_by_request ON filings (request_id);
CREATE INDEX filings_unchecked ON filings (signature_tries, block) WHERE envelope_sha256 IS NOT NULL
                                                                     AND signature IS NULL;
CREATE TABLE outcomes (request_id INTEGER NOT NULL, audit_type TEXT NOT NULL, outcome TEXT NOT NULL,
                       attestations INTEGER NOT NULL, divergences INTEGER NOT NULL, ts INTEGER NOT NULL,
                       block INTEGER NOT NULL, PRIMARY KEY (request_id, audit_type));
CREATE TABLE bounties (bounty_id INTEGER PRIMARY KEY, request_id INTEGER NOT NULL, wasm TEXT NOT NULL,
                       audit_type TEXT NOT NULL, amount TEXT NOT NULL, creator TEXT NOT NULL, state TEXT NOT NULL,
                       ts INTEGER NOT NULL, block INTEGER NOT NULL);
CREATE INDEX bounties_by_request ON bounties (request_id);
CREATE TABLE versions (namespace TEXT NOT NULL, vkey TEXT NOT NULL, version TEXT NOT NULL, wasm TEXT NOT NULL,
                       request_id INTEGER NOT NULL, previous TEXT, publisher TEXT NOT NULL, deprecated TEXT,
                       ts INTEGER NOT NULL, block INTEGER NOT NULL, PRIMARY KEY (namespace, vkey));
CREATE TABLE listings (namespace TEXT PRIMARY KEY, name TEXT NOT NULL, description TEXT NOT NULL,
                       category TEXT NOT NULL, tags TEXT NOT NULL, tools TEXT NOT NULL, publisher TEXT NOT NULL,
                       requester TEXT NOT NULL, credentials TEXT NOT NULL, homepage TEXT NOT NULL,
                       wasm TEXT NOT NULL, version TEXT, deprecated TEXT, tier INTEGER NOT NULL,
                       verifiers INTEGER NOT NULL, repo TEXT NOT NULL, commit_hash TEXT NOT NULL,
                       request_id INTEGER NOT NULL, updated_ts INTEGER NOT NULL);
CREATE INDEX listings_by_update ON listings (updated_ts);
CREATE INDEX listings_by_tier ON listings (tier DESC, lower(name), namespace);
CREATE VIRTUAL TABLE listings_fts USING fts5(namespace, name, description, tools, tags, category, publisher,
                                             tokenize = 'porter unicode61');
"""
# BM25 column weights, in the order of listings_fts's columns: a match in the name counts most.
WEIGHTS = (5.0, 10.0, 2.0, 4.0, 4.0, 3.0, 1.0)
CREDENTIALS = ("none", "optional", "required")
INT64 = 1 << 63


class StoreError(Exception):
    """The index file is unusable (not an index, another schema, another registry)."""


@dataclass(frozen=True)
class SyncReport:
    applied: int  # blocks applied by this sync
    next_index: int  # the first block not yet applied
    tip_index: int | None  # the certified tip's index (None: empty log)
    namespaces: int  # listings changed
    signatures: int = 0  # signed filings checked


def _text(value: Any, limit: int = LISTING_TEXT_LIMIT) -> str:
    """A listing field as one line of printable text (control characters become spaces)."""
    if not isinstance(value, str):
        return ""
    return "".join(ch if ch.isprintable() else " " for ch in value[:limit]).strip()


def _words(value: Any) -> list[str]:
    """A listing field holding several words: a list, or text separated by commas (`[...]` brackets and quotes
    around the words are ignored: `prometheus submit` once sent a list's Python form)."""
    items = value if isinstance(value, list) else value.strip()[:LISTING_TEXT_LIMIT].strip("[]").split(",") \
        if isinstance(value, str) else []
    out: list[str] = []
    for item in items:
        word = _text(item, 64).strip("'\" ") if isinstance(item, str) else ""
        if word and word not in out:
            out.append(word)
    return out[:32]


def http_url(value: Any) -> str:
    """`value` if it is an http(s) URL with a host, else "": the only links the store keeps or renders."""
    text = _text(value, 2048)
    try:
        parsed = urlparse(text)
    except ValueError:
        return ""
    return text if parsed.scheme in ("http", "https") and parsed.hostname else ""


def _principal(value: bytes) -> str:
    try:
        return str(Principal(value))
    except Exception:  # the registry logs principals it received; a malformed one is shown as hex
        return value.hex()


def _version_key(version: tuple[int, int, int]) -> str:
    """Sorts as the version does, whatever the size of its numbers (each: its digit count, then its digits)."""
    return ".".join(f"{len(str(n)):03d}{n}" for n in version)


def _json(value: Any) -> str:
    return json.dumps(value, default=lambda b: b.hex() if isinstance(b, bytes) else str(b), sort_keys=True)


def fts_query(text: str) -> str | None:
    """A user's search text as an FTS5 query: each word quoted (never FTS syntax), words of `MIN_PREFIX` letters
    or more also as prefixes, any of them matching (BM25 ranks documents matching more and rarer ones higher).
    One-letter words are dropped. None when nothing searchable is left."""
    words = [w for w in re.findall(r"\w+", text[:MAX_QUERY_CHARS].lower()) if len(w) > 1][:MAX_QUERY_TERMS]
    return " OR ".join(f'"{w}"*' if len(w) >= MIN_PREFIX else f'"{w}"' for w in words) or None


class Index:
    """One registry's index in one SQLite file."""

    def __init__(self, path: Path | str, registry: str) -> None:
        self.path = Path(path)
        self.registry = registry
        self._write_lock = threading.Lock()
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a directory; --index names a file")
        try:
            with contextlib.closing(self._connect()) as db:
                self._open(db, registry)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a store index ({exc})") from exc

    def _open(self, db: sqlite3.Connection, registry: str) -> None:
        """Check an existing index before touching it; create the tables in a new (empty) file."""
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            db.execute("BEGIN IMMEDIATE")  # another process may be creating it too: look again, holding the lock
            if not db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'").fetchone():
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.executemany("INSERT INTO meta VALUES (?, ?)", [("schema", str(SCHEMA_VERSION)),
                                                                    ("registry", registry), ("next_index", "0")])
            db.execute("COMMIT")
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" not in tables:
            raise StoreError(f"{self.path} is a SQLite file, but not a store index: name another --index file")
        found = dict(db.execute("SELECT key, value FROM meta").fetchall())
        if found.get("schema") != str(SCHEMA_VERSION):
            raise StoreError(f"{self.path} was written by another version of the store (schema "
                             f"{found.get('schema')}): delete it to rebuild it from the chain")
        if found.get("registry") != registry:
            raise StoreError(f"{self.path} indexes registry {found.get('registry')}, not {registry}: "
                             "name another --index file")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    @contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        db = self._connect()
        try:
            yield db
        finally:
            db.close()

    # ------------------------------------------------------------------ writing

    def meta(self) -> dict[str, str]:
        with self.reader() as db:
            return dict(db.execute("SELECT key, value FROM meta").fetchall())

    def sync(self, client: Any, root_key: bytes, max_age_ns: int = DEFAULT_MAX_AGE_NS) -> SyncReport:
        """Apply every block up to the registry's certified tip. Raises `icrc3.ChainError`, changing nothing,
        when the tip or a block does not verify, or the tip is older than `max_age_ns` or than the last one
        trusted.

        The blocks are proven a window at a time from the tip down (`icrc3.verified_windows`) and read strictly
        into a temporary table on disk; once all of them are proven, they are applied oldest first in
        transactions of `APPLY_BATCH` blocks, each moving the cursor to a block already proven. Memory holds one
        window, whatever the log's length; an interrupted update resumes from the last batch applied."""
        with self._write_lock:
            meta = self.meta()
            next_index = int(meta["next_index"])
            last_hash = bytes.fromhex(meta["last_hash"]) if meta.get("last_hash") else None
            trusted_at = int(meta.get("certified_at_ns", "0"))
            tip = icrc3.tip_after(client, root_key, next_index, last_hash, max_age_ns, trusted_at)
            if tip is None:
                return SyncReport(0, 0, None, 0, self._check_signatures(client))
            applied, touched_total = 0, 0
            with contextlib.closing(self._connect()) as db:
                db.execute("PRAGMA temp_store = FILE")
                db.execute("CREATE TEMP TABLE staged (idx INTEGER PRIMARY KEY, hash BLOB NOT NULL, "
                           "block BLOB NOT NULL)")
                for window in icrc3.verified_windows(client, tip, next_index, last_hash):
                    db.executemany("INSERT INTO staged VALUES (?, ?, ?)",
                                   [(index, digest, _stage(blocks.parse(index, value)))
                                    for index, value, digest in window])
                cursor = next_index
                while True:  # every block is proven (the iteration ended): apply them, oldest first
                    batch = db.execute("SELECT idx, hash, block FROM staged WHERE idx >= ? ORDER BY idx LIMIT ?",
                                       (cursor, APPLY_BATCH)).fetchall()
                    db.execute("BEGIN IMMEDIATE")
                    try:
                        if db.execute("SELECT value FROM meta WHERE key = 'next_index'").fetchone()[0] != str(cursor):
                            db.execute("ROLLBACK")  # another process applied them meanwhile: it continues
                            break
                        touched: set[str] = set()
                        for index, _, staged in batch:
                            touched |= _apply(db, _unstage(index, staged))
                        for namespace in sorted(touched):
                            _refresh_listing(db, namespace)
                        if batch:
                            cursor = batch[-1][0] + 1
                            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [
                                ("next_index", str(cursor)), ("last_hash", bytes(batch[-1][1]).hex())])
                        if cursor == tip.index + 1:
                            trusted = db.execute("SELECT value FROM meta WHERE key = 'certified_at_ns'").fetchone()
                            db.execute("INSERT OR REPLACE INTO meta VALUES ('certified_at_ns', ?)",
                                       (str(max(tip.certified_at_ns, int(trusted[0]) if trusted else 0)),))
                        db.execute("COMMIT")
                    except BaseException:
                        db.execute("ROLLBACK")
                        raise
                    applied += len(batch)
                    touched_total += len(touched)
                    if cursor == tip.index + 1 or not batch:
                        break
            return SyncReport(applied, cursor, tip.index, touched_total, self._check_signatures(client))

    def _check_signatures(self, client: Any) -> int:
        """Check the signed filings not checked yet, those tried least first: their statements come from the
        registry's `get_provenance` and are verified here (`prometheus_sdk.provenance.filings`); a filing's
        statement is the one whose envelope hashes to the `envelope_sha256` its certified block names, so a
        reply cannot swap statements. A filing whose statement the registry does not return (it lags, or the
        reply was tampered with) is asked for again next time, `MAX_SIGNATURE_TRIES` times in all."""
        from prometheus_sdk.errors import SdkError
        from prometheus_sdk.provenance.filings import signature_state

        with self.reader() as db:
            pending = db.execute(
                "SELECT f.wasm, r.namespace, MIN(f.signature_tries) AS tries FROM filings f "
                "JOIN requests r ON r.request_id = f.request_id "
                "WHERE f.envelope_sha256 IS NOT NULL AND f.signature IS NULL "
                "GROUP BY f.wasm, r.namespace ORDER BY tries, MIN(f.block) LIMIT ?",
                (MAX_SIGNATURE_CHECKS,)).fetchall()
        checked: list[tuple[str, int]] = []
        retried: list[int] = []
        for wasm, namespace, _ in pending:
            with self.reader() as db:
                rows = db.execute(
                    "SELECT f.block, f.verifier, f.attested, f.envelope_sha256, f.signature_tries FROM filings f "
                    "JOIN requests r ON r.request_id = f.request_id WHERE f.wasm = ? AND r.namespace = ? "
                    "AND f.envelope_sha256 IS NOT NULL AND f.signature IS NULL LIMIT ?",
                    (wasm, namespace, MAX_PAGE)).fetchall()
            by_digest: dict[str, tuple[str, str, bool]] = {}
            try:
                found = client.get_provenance(bytes.fromhex(wasm), [namespace])
                for f in found[0]["filings"] if found else []:
                    if f["statement"]:
                        verifier, attested = str(Principal.of(f["verifier"])), bool(f["attested"])
                        state, digest = signature_state(f["statement"][0], wasm, attested, verifier)
                        if digest is not None:
                            by_digest[digest] = (state, verifier, attested)
            except (SdkError, ValueError, KeyError, TypeError):
                pass  # no usable answer: every filing of this wasm is tried again later
            for block, verifier, attested, envelope, tries in rows:
                match = by_digest.get(envelope)
                if match is None:
                    if tries + 1 >= MAX_SIGNATURE_TRIES:
                        checked.append((f"unchecked: the registry did not return this statement "
                                        f"({MAX_SIGNATURE_TRIES} tries)", block))
                    else:
                        retried.append(block)
                    continue
                state, filer, verdict = match
                if (filer, verdict) != (verifier, bool(attested)):
                    state = "invalid: the statement is another filing's"
                checked.append((state[:300], block))
        if checked or retried:
            with contextlib.closing(self._connect()) as db:
                db.execute("BEGIN IMMEDIATE")
                db.executemany("UPDATE filings SET signature = ? WHERE block = ?", checked)
                db.executemany("UPDATE filings SET signature_tries = signature_tries + 1 WHERE block = ?",
                               [(b,) for b in retried])
                db.execute("COMMIT")
        return len(checked)

    # ------------------------------------------------------------------ reading

    def status(self) -> dict[str, Any]:
        meta = self.meta()
        with self.reader() as db:
            listings = db.execute("SELECT COUNT(*) FROM listings").fetchone()[0]
        return {"registry": self.registry, "next_block": int(meta["next_index"]), "listings": listings,
                "certified_at_ns": int(meta["certified_at_ns"]) if "certified_at_ns" in meta else None}

    def search(self, query: str = "", *, verified_only: bool = True, min_tier: Tier | None = None,
               category: str | None = None, no_credentials: bool = False, limit: int = 20,
               offset: int = 0) -> list[dict[str, Any]]:
        """Listings matching `query` (all when empty), best first: BM25 relevance, then tier, then name.
        `verified_only` leaves out every listing below `verified` and every deprecated one."""
        floor = max(int(min_tier) if min_tier is not None else int(Tier.REJECTED),
                    int(Tier.VERIFIED) if verified_only else int(Tier.REJECTED))
        where: list[str] = ["l.tier >= ?"]
        params: list[Any] = [floor]
        if verified_only:
            where.append("l.deprecated IS NULL")
        if category:
            where.append("lower(l.category) = lower(?)")
            params.append(category[:64])
        if no_credentials:
            where.append("l.credentials = 'none'")
        limit, offset = max(1, min(limit, MAX_PAGE)), max(0, min(offset, MAX_OFFSET))
        match = fts_query(query)
        with self.reader() as db:
            if match is None:
                rows = db.execute(f"SELECT l.* FROM listings l WHERE {' AND '.join(where)} "
                                  "ORDER BY l.tier DESC, lower(l.name), l.namespace LIMIT ? OFFSET ?",
                                  (*params, limit, offset)).fetchall()
            else:
                weights = ", ".join(str(w) for w in WEIGHTS)
                rows = db.execute(f"SELECT l.*, bm25(listings_fts, {weights}) AS score FROM listings_fts "
                                  f"JOIN listings l ON l.rowid = listings_fts.rowid "
                                  f"WHERE listings_fts MATCH ? AND {' AND '.join(where)} "
                                  "ORDER BY score, l.tier DESC, lower(l.name) LIMIT ? OFFSET ?",
                                  (match, *params, limit, offset)).fetchall()
        return [listing_dict(r) for r in rows]

    def listing(self, namespace: str) -> dict[str, Any] | None:
        with self.reader() as db:
            row = db.execute("SELECT * FROM listings WHERE namespace = ?", (namespace,)).fetchone()
        return listing_dict(row) if row is not None else None

    def listings_page(self, after: str | None, limit: int, updated_since_ns: int | None = None,
                      query: str = "") -> tuple[list[dict[str, Any]], str | None]:
        """Listings in namespace order after the cursor `after` (REST paging); the next cursor or None. With a
        search, the page is among the best `MAX_PAGE * 10` matches."""
        limit = max(1, min(limit, MAX_PAGE))
        where: list[str] = ["namespace > ?"]
        params: list[Any] = [after or ""]
        if updated_since_ns is not None:
            where.append("updated_ts >= ?")
            params.append(max(0, min(updated_since_ns, INT64 - 1)))
        match = fts_query(query) if query else None
        if match is not None:
            where.append("rowid IN (SELECT rowid FROM listings_fts WHERE listings_fts MATCH ? ORDER BY rank LIMIT ?)")
            params += [match, MAX_PAGE * 10]
        with self.reader() as db:
            rows = db.execute(f"SELECT * FROM listings WHERE {' AND '.join(where)} ORDER BY namespace LIMIT ?",
                              (*params, limit + 1)).fetchall()
        items = [listing_dict(r) for r in rows[:limit]]
        return items, (items[-1]["namespace"] if len(rows) > limit else None)

    def versions(self, namespace: str) -> list[dict[str, Any]]:
        """The published versions, newest first (at most a page), each with its own wasm's round."""
        with self.reader() as db:
            rows = db.execute("SELECT * FROM versions WHERE namespace = ? ORDER BY vkey DESC LIMIT ?",
                              (namespace, MAX_PAGE)).fetchall()
            out = []
            for r in rows:
                state, request = round_state(db, namespace, r["wasm"])
                out.append({"version": r["version"], "wasm": r["wasm"], "previous": r["previous"],
                            "publisher": r["publisher"], "deprecated": r["deprecated"], "published_ns": r["ts"],
                            "block": r["block"], "tier": tier_of(state).label,
                            "verifiers": len(state.attesters.get(BUILD_AUDIT, ())) if state else 0,
                            "repo": request["repo"] if request is not None else "",
                            "commit_hash": request["commit_hash"] if request is not None else ""})
        return out

    def verification(self, wasm: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """The rounds filed for `wasm` (in `namespace`, or in any), newest first (at most 10), with evidence."""
        with self.reader() as db:
            params: tuple[Any, ...] = (wasm, namespace) if namespace else (wasm,)
            requests = db.execute("SELECT * FROM requests WHERE wasm = ?" + (" AND namespace = ?" if namespace else "")
                                  + " ORDER BY request_id DESC LIMIT 10", params).fetchall()
            out = []
            newest: dict[str, int] = {}
            for r in requests:
                if r["namespace"] not in newest:
                    newest[r["namespace"]] = db.execute(
                        "SELECT MAX(request_id) FROM requests WHERE namespace = ? AND wasm = ?",
                        (r["namespace"], wasm)).fetchone()[0]
                filings = db.execute("SELECT * FROM filings WHERE request_id = ? ORDER BY block LIMIT ?",
                                     (r["request_id"], MAX_PAGE)).fetchall()
                outcomes = db.execute("SELECT * FROM outcomes WHERE request_id = ? ORDER BY audit_type LIMIT ?",
                                      (r["request_id"], MAX_PAGE)).fetchall()
                bounties = db.execute("SELECT * FROM bounties WHERE request_id = ? ORDER BY bounty_id LIMIT ?",
                                      (r["request_id"], MAX_PAGE)).fetchall()
                state = _state_from(outcomes, filings)
                out.append({
                    "request_id": r["request_id"], "namespace": r["namespace"], "wasm": wasm, "repo": r["repo"],
                    "commit_hash": r["commit_hash"], "requester": r["requester"], "requested_ns": r["ts"],
                    "request_block": r["block"], "latest": r["request_id"] == newest[r["namespace"]],
                    "tier": tier_of(state).label,
                    "outcomes": [{"audit_type": o["audit_type"], "outcome": o["outcome"],
                                  "attestations": o["attestations"], "divergences": o["divergences"],
                                  "block": o["block"]} for o in outcomes],
                    "filings": [_filing_dict(f) for f in filings],
                    "bounties": [{"bounty_id": b["bounty_id"], "audit_type": b["audit_type"], "amount": b["amount"],
                                  "state": b["state"], "block": b["block"]} for b in bounties],
                })
        return out


def listing_dict(row: sqlite3.Row) -> dict[str, Any]:
    tier = Tier(row["tier"])
    return {"namespace": row["namespace"], "name": row["name"], "description": row["description"],
            "category": row["category"], "tags": [t for t in row["tags"].split(", ") if t],
            "tools": [t for t in row["tools"].split(", ") if t], "publisher": row["publisher"],
            "requester": row["requester"], "credentials": row["credentials"], "homepage": row["homepage"],
            "wasm": row["wasm"], "version": row["version"], "deprecated": row["deprecated"], "tier": tier.label,
            "verifiers": row["verifiers"], "repo": row["repo"], "commit_hash": row["commit_hash"],
            "updated_ns": row["updated_ts"]}


def _filing_dict(f: sqlite3.Row) -> dict[str, Any]:
    meta = json.loads(f["metadata"])
    return {"block": f["block"], "verifier": f["verifier"], "audit_type": f["audit_type"],
            "attested": bool(f["attested"]), "report": f["report"], "filed_ns": f["ts"],
            "signed": f["envelope_sha256"] is not None, "envelope_sha256": f["envelope_sha256"],
            "signature": ("unsigned" if f["envelope_sha256"] is None else f["signature"] or "not checked yet"),
            "toolchain": _text(meta.get("126:toolchain"), 200) or None,
            "found_hash": _text(meta.get("126:found_hash"), 64) or None, "bounty_id": f["bounty_id"]}


def _state_from(outcomes: Iterable[sqlite3.Row], filings: Iterable[sqlite3.Row]) -> RoundState:
    state = RoundState()
    for o in outcomes:
        state.outcomes[o["audit_type"]] = o["outcome"]
    for f in filings:
        target = state.attesters if f["attested"] else state.diverging
        target.setdefault(f["audit_type"], set()).add(f["verifier"])
    return state


def round_state(db: sqlite3.Connection, namespace: str, wasm: str) -> tuple[RoundState | None, sqlite3.Row | None]:
    """The latest round of `wasm` in `namespace`: its state and its request row (None, None when never requested)."""
    request = db.execute("SELECT * FROM requests WHERE namespace = ? AND wasm = ? ORDER BY request_id DESC LIMIT 1",
                         (namespace, wasm)).fetchone()
    if request is None:
        return None, None
    outcomes = db.execute("SELECT * FROM outcomes WHERE request_id = ?", (request["request_id"],)).fetchall()
    filings = db.execute("SELECT * FROM filings WHERE request_id = ?", (request["request_id"],)).fetchall()
    return _state_from(outcomes, filings), request


def _refresh_listing(db: sqlite3.Connection, namespace: str) -> None:
    """Rebuild one app's listing row (and its full-text entry) from the tables the blocks filled. The listed wasm
    is the newest published version that is not deprecated; else, when no version was ever published, the latest
    requested wasm; else (every version deprecated) the newest version, marked deprecated. Its listing fields are
    the metadata of that wasm's latest round."""
    current = db.execute("SELECT * FROM versions WHERE namespace = ? AND deprecated IS NULL ORDER BY vkey DESC "
                         "LIMIT 1", (namespace,)).fetchone()
    newest = current or db.execute("SELECT * FROM versions WHERE namespace = ? ORDER BY vkey DESC LIMIT 1",
                                   (namespace,)).fetchone()
    if newest is not None:
        wasm = newest["wasm"]
    else:
        latest = db.execute("SELECT wasm FROM requests WHERE namespace = ? ORDER BY request_id DESC LIMIT 1",
                            (namespace,)).fetchone()
        if latest is None:
            return
        wasm = latest["wasm"]
    state, request = round_state(db, namespace, wasm)
    if request is None:
        return
    meta = json.loads(request["metadata"])
    credentials = _text(meta.get("listing:credentials"), 16).lower()
    row = {
        "namespace": namespace, "name": _text(meta.get("name"), 64) or namespace,
        "description": _text(meta.get("description")), "category": _text(meta.get("listing:category"), 64),
        "tags": ", ".join(_words(meta.get("listing:tags"))), "tools": ", ".join(_words(meta.get("listing:tools"))),
        "publisher": _text(meta.get("listing:publisher"), 128), "requester": request["requester"],
        "credentials": credentials if credentials in CREDENTIALS else "unknown",
        "homepage": http_url(_text(meta.get("listing:homepage"), 512)), "wasm": wasm,
        "version": newest["version"] if newest is not None else None,
        "deprecated": newest["deprecated"] if newest is not None and current is None else None,
        "tier": int(tier_of(state)), "verifiers": len(state.attesters.get(BUILD_AUDIT, ())) if state else 0,
        "repo": request["repo"], "commit_hash": request["commit_hash"], "request_id": request["request_id"],
        "updated_ts": max(request["ts"], newest["ts"] if newest is not None else 0),
    }
    old = db.execute("SELECT rowid FROM listings WHERE namespace = ?", (namespace,)).fetchone()
    if old is not None:
        db.execute("DELETE FROM listings_fts WHERE rowid = ?", (old[0],))
        db.execute("DELETE FROM listings WHERE namespace = ?", (namespace,))
    cur = db.execute(f"INSERT INTO listings ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
                     tuple(row.values()))
    db.execute("INSERT INTO listings_fts (rowid, namespace, name, description, tools, tags, category, publisher) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (cur.lastrowid, namespace.replace(".", " ") + " " + namespace, row["name"], row["description"],
                row["tools"], row["tags"], row["category"], row["publisher"]))


# ---------------------------------------------------------------------- one handler per block type

def _int(value: int) -> int:
    """An id, count or time: SQLite holds signed 64-bit integers, and the registry counts from 0."""
    if not 0 <= value < INT64:
        raise icrc3.ChainError(f"a number too large for an id or a time: {value}")
    return value


def _namespace_of_request(db: sqlite3.Connection, request_id: int) -> set[str]:
    row = db.execute("SELECT namespace FROM requests WHERE request_id = ?", (request_id,)).fetchone()
    return {row[0]} if row is not None else set()


def _stage(block: Block) -> bytes:
    return bytes(cbor2.dumps([block.btype, block.ts, block.tx, block.known]))


def _unstage(index: int, data: bytes) -> Block:
    btype, ts, tx, known = cbor2.loads(data)
    if "version" in tx:
        tx["version"] = tuple(tx["version"])
    return Block(index, btype, ts, tx, known)


def _apply(db: sqlite3.Connection, block: Block) -> set[str]:
    """Record one block; returns the namespaces whose listing it may change."""
    db.execute("INSERT OR REPLACE INTO blocks VALUES (?, ?, ?, ?)",
               (block.index, block.btype[:64], _int(block.ts), _json(block.tx)))
    handler = _HANDLERS.get(block.btype)
    return handler(db, block) if handler is not None else set()


def _on_request(db: sqlite3.Connection, b: Block) -> set[str]:
    tx = b.tx
    db.execute("INSERT OR REPLACE INTO requests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (_int(tx["request_id"]), tx["namespace"][:253], tx["wasm_id"][:64], tx["repo"][:2048],
                tx["commit_hash"][:64], _principal(tx["requester"]), _json(tx["metadata"]), b.ts, b.index))
    return {tx["namespace"][:253]}


def _on_filing(db: sqlite3.Connection, b: Block, attested: bool) -> set[str]:
    tx = b.tx
    envelope = tx.get("envelope_sha256")
    db.execute("INSERT OR REPLACE INTO filings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 0)",
               (b.index, _int(tx["request_id"]), tx["wasm_id"][:64], tx["audit_type"][:64], _int(tx["bounty_id"]),
                _principal(tx["verifier"]), int(attested), _text(tx.get("report"), 4096) or None,
                _json(tx["metadata"]), envelope.hex() if envelope is not None else None, b.ts))
    return _namespace_of_request(db, tx["request_id"])


def _on_outcome(db: sqlite3.Connection, b: Block, outcome: str) -> set[str]:
    tx = b.tx
    db.execute("INSERT OR REPLACE INTO outcomes VALUES (?, ?, ?, ?, ?, ?, ?)",
               (_int(tx["request_id"]), tx["audit_type"][:64], outcome, _int(tx["attestations"]),
                _int(tx["divergences"]), b.ts, b.index))
    return _namespace_of_request(db, tx["request_id"])


def _on_bounty(db: sqlite3.Connection, b: Block) -> set[str]:
    tx = b.tx
    db.execute("INSERT OR REPLACE INTO bounties VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?)",
               (_int(tx["bounty_id"]), _int(tx["request_id"]), tx["wasm_id"][:64], tx["audit_type"][:64],
                str(tx["amount"]), _principal(tx["creator"]), b.ts, b.index))
    return set()


def _on_bounty_end(db: sqlite3.Connection, b: Block, state: str) -> set[str]:
    db.execute("UPDATE bounties SET state = ? WHERE bounty_id = ?", (state, _int(b.tx["bounty_id"])))
    return set()


def _on_version(db: sqlite3.Connection, b: Block) -> set[str]:
    tx = b.tx
    namespace, version = tx["namespace"][:253], tx["version"]
    db.execute("INSERT OR REPLACE INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
               (namespace, _version_key(version), ".".join(str(n) for n in version), tx["wasm_id"][:64],
                _int(tx["request_id"]), tx.get("previous", "")[:64] or None, _principal(tx["caller"]), b.ts,
                b.index))
    return {namespace}


def _on_deprecate(db: sqlite3.Connection, b: Block) -> set[str]:
    tx = b.tx
    namespace = tx["namespace"][:253]
    db.execute("UPDATE versions SET deprecated = ? WHERE namespace = ? AND vkey = ?",
               (_text(tx["reason"], 1024) or "deprecated", namespace, _version_key(tx["version"])))
    return {namespace}


_HANDLERS: dict[str, Any] = {
    "126request": _on_request,
    "126attest": lambda db, b: _on_filing(db, b, True),
    "126divergence": lambda db, b: _on_filing(db, b, False),
    "126verified": lambda db, b: _on_outcome(db, b, "Verified"),
    "126rejected": lambda db, b: _on_outcome(db, b, "Rejected"),
    "127bounty": _on_bounty,
    "127payout": lambda db, b: _on_bounty_end(db, b, "paid"),
    "127refund": lambda db, b: _on_bounty_end(db, b, "refunded"),
    "118version": _on_version,
    "118deprecate": _on_deprecate,
}
