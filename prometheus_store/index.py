"""The store's index: the registry's ICRC-3 blocks, applied in order to a SQLite database (one file, no server),
with a full-text index (FTS5, BM25 ranking) over each app's listing.

The indexer (`sync`) is the only writer. It reads every block past the last one it applied, checks them against
the registry's certified tip (`prometheus_sdk.icrc3`), and applies them and moves its cursor in one transaction:
a crash or a tip that does not verify leaves the index as it was. Everything shown comes from these blocks: the
apps' listing fields are the request metadata recorded on chain (`name`, `description`, `listing:*`).

Readers (the web view, the MCP server, the REST API) open their own connections; SQLite's WAL mode lets them
read while the indexer writes.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_sdk import icrc3
from prometheus_sdk.principal import Principal
from prometheus_store.tiers import BUILD_AUDIT, RoundState, Tier, tier_of

SCHEMA_VERSION = 1
MAX_QUERY_CHARS = 200  # a search query longer than this is cut (FTS cost grows with its terms)
MAX_QUERY_TERMS = 12
MAX_PAGE = 100
LISTING_TEXT_LIMIT = 2_000  # characters kept of a listing field

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (idx INTEGER PRIMARY KEY, btype TEXT NOT NULL, ts INTEGER NOT NULL,
                                   tx TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (request_id INTEGER PRIMARY KEY, namespace TEXT NOT NULL, wasm TEXT NOT NULL,
                                     repo TEXT NOT NULL, commit_hash TEXT NOT NULL, requester TEXT NOT NULL,
                                     metadata TEXT NOT NULL, ts INTEGER NOT NULL, block INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS requests_by_wasm ON requests (namespace, wasm, request_id);
CREATE TABLE IF NOT EXISTS filings (block INTEGER PRIMARY KEY, request_id INTEGER NOT NULL, wasm TEXT NOT NULL,
                                    audit_type TEXT NOT NULL, bounty_id INTEGER NOT NULL, verifier TEXT NOT NULL,
                                    attested INTEGER NOT NULL, report TEXT, metadata TEXT NOT NULL,
                                    envelope_sha256 TEXT, ts INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS filings_by_request ON filings (request_id);
CREATE TABLE IF NOT EXISTS outcomes (request_id INTEGER NOT NULL, audit_type TEXT NOT NULL, outcome TEXT NOT NULL,
                                     attestations INTEGER NOT NULL, divergences INTEGER NOT NULL,
                                     ts INTEGER NOT NULL, block INTEGER NOT NULL,
                                     PRIMARY KEY (request_id, audit_type));
CREATE TABLE IF NOT EXISTS bounties (bounty_id INTEGER PRIMARY KEY, request_id INTEGER NOT NULL, wasm TEXT NOT NULL,
                                     audit_type TEXT NOT NULL, amount TEXT NOT NULL, creator TEXT NOT NULL,
                                     state TEXT NOT NULL, ts INTEGER NOT NULL, block INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS bounties_by_request ON bounties (request_id);
CREATE TABLE IF NOT EXISTS versions (namespace TEXT NOT NULL, major INTEGER NOT NULL, minor INTEGER NOT NULL,
                                     patch INTEGER NOT NULL, wasm TEXT NOT NULL, request_id INTEGER NOT NULL,
                                     previous TEXT, publisher TEXT NOT NULL, deprecated TEXT, ts INTEGER NOT NULL,
                                     block INTEGER NOT NULL, PRIMARY KEY (namespace, major, minor, patch));
CREATE TABLE IF NOT EXISTS listings (namespace TEXT PRIMARY KEY, name TEXT NOT NULL, description TEXT NOT NULL,
                                     category TEXT NOT NULL, tags TEXT NOT NULL, tools TEXT NOT NULL,
                                     publisher TEXT NOT NULL, credentials TEXT NOT NULL, homepage TEXT NOT NULL,
                                     wasm TEXT NOT NULL, version TEXT, tier INTEGER NOT NULL,
                                     verifiers INTEGER NOT NULL, repo TEXT NOT NULL, commit_hash TEXT NOT NULL,
                                     updated_ts INTEGER NOT NULL, updated_block INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS listings_by_update ON listings (updated_ts);
CREATE INDEX IF NOT EXISTS listings_by_tier ON listings (tier DESC, lower(name), namespace);
CREATE VIRTUAL TABLE IF NOT EXISTS listings_fts USING fts5(namespace, name, description, tools, tags, category,
                                                          publisher, tokenize = 'porter unicode61');
"""
# BM25 column weights, in the order of listings_fts's columns: a match in the name counts most.
WEIGHTS = (5.0, 10.0, 2.0, 4.0, 4.0, 3.0, 1.0)
CREDENTIALS = ("none", "optional", "required")


class StoreError(Exception):
    """The index file is unusable (another schema, another registry)."""


@dataclass(frozen=True)
class SyncReport:
    applied: int  # blocks applied by this sync
    next_index: int  # the first block not yet applied
    tip_index: int | None  # the certified tip's index (None: empty log)
    namespaces: int  # listings changed


def _text(value: Any, limit: int = LISTING_TEXT_LIMIT) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _words(value: Any) -> list[str]:
    """A listing field holding several words: a list, a JSON list, or text separated by commas."""
    if isinstance(value, list):
        items = [v for v in value if isinstance(v, str)]
    elif isinstance(value, str):
        stripped = value.strip()
        items = []
        if stripped.startswith("["):
            try:
                parsed = json.loads(stripped)
                items = [v for v in parsed if isinstance(v, str)] if isinstance(parsed, list) else []
            except ValueError:
                items = []
        if not items:
            items = stripped.strip("[]").replace("'", "").split(",")
    else:
        items = []
    out: list[str] = []
    for item in items:
        word = item.strip()[:64]
        if word and word not in out:
            out.append(word)
    return out[:32]


def _int(value: Any) -> int | None:
    """An id, count or time from a block, if SQLite can hold it (a signed 64-bit integer)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 63 else None


def _principal(value: Any) -> str:
    return str(Principal(bytes(value))) if isinstance(value, bytes) else ""


def _json(value: Any) -> str:
    return json.dumps(value, default=lambda b: b.hex() if isinstance(b, bytes) else str(b), sort_keys=True)


def fts_query(text: str) -> str | None:
    """A user's search text as an FTS5 query: each word as a quoted prefix term, any of them matching (BM25 ranks
    documents that match more of them, and rarer ones, higher). None when nothing searchable is left."""
    words = re.findall(r"[\w]+", text[:MAX_QUERY_CHARS].lower())[:MAX_QUERY_TERMS]
    return " OR ".join(f'"{w}"*' for w in words) or None


class Index:
    """One registry's index in one SQLite file."""

    def __init__(self, path: Path | str, registry: str) -> None:
        self.path = Path(path)
        self.registry = registry
        self._write_lock = threading.Lock()
        with self._connect() as db:
            db.executescript(SCHEMA)
            found = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if not found:
                db.executemany("INSERT INTO meta VALUES (?, ?)", [("schema", str(SCHEMA_VERSION)),
                                                                    ("registry", registry), ("next_index", "0")])
            elif found.get("schema") != str(SCHEMA_VERSION):
                raise StoreError(f"{self.path} was written by another version of the store (schema "
                                  f"{found.get('schema')}); delete it to rebuild it from the chain")
            elif found.get("registry") != registry:
                raise StoreError(f"{self.path} indexes registry {found.get('registry')}, not {registry}; "
                                  "use another --index file")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
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

    def cursor(self) -> tuple[int, bytes | None]:
        with self.reader() as db:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        last = meta.get("last_hash")
        return int(meta["next_index"]), bytes.fromhex(last) if last else None

    def sync(self, client: Any, root_key: bytes, max_age_ns: int = 1 << 80) -> SyncReport:
        """Apply every block up to the registry's certified tip (raises `icrc3.ChainError` without changing
        anything when the tip or a block does not verify)."""
        with self._write_lock:
            next_index, last_hash = self.cursor()
            found, tip = icrc3.verified_blocks(client, root_key, next_index, last_hash, max_age_ns)
            if not found:
                return SyncReport(0, next_index, tip.index if tip else None, 0)
            db = self._connect()
            try:
                db.execute("BEGIN IMMEDIATE")
                touched: set[str] = set()
                for index, value in found:
                    touched |= self._apply(db, index, icrc3.plain(value))
                for namespace in sorted(touched):
                    self._refresh_listing(db, namespace)
                assert tip is not None
                db.execute("UPDATE meta SET value = ? WHERE key = 'next_index'", (str(tip.index + 1),))
                db.execute("INSERT OR REPLACE INTO meta VALUES ('last_hash', ?)", (tip.hash.hex(),))
                db.execute("INSERT OR REPLACE INTO meta VALUES ('certified_at_ns', ?)", (str(tip.certified_at_ns),))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            finally:
                db.close()
            return SyncReport(len(found), tip.index + 1, tip.index, len(touched))

    def _apply(self, db: sqlite3.Connection, index: int, block: Any) -> set[str]:
        """Record one block; returns the namespaces whose listing it may change."""
        if not isinstance(block, dict):
            return set()
        btype, ts, tx = block.get("btype"), _int(block.get("ts")), block.get("tx")
        if not isinstance(btype, str) or ts is None or not isinstance(tx, dict):
            return set()
        db.execute("INSERT OR REPLACE INTO blocks VALUES (?, ?, ?, ?)", (index, btype, ts, _json(tx)))
        handler = _HANDLERS.get(btype)
        if handler is None:
            return set()
        db.execute("SAVEPOINT block")
        try:  # a block missing a field its type needs is kept as a block, and derives nothing
            touched: set[str] = handler(db, index, ts, tx)
        except sqlite3.IntegrityError:
            db.execute("ROLLBACK TO block")
            touched = set()
        db.execute("RELEASE block")
        return touched

    def _refresh_listing(self, db: sqlite3.Connection, namespace: str) -> None:
        """Rebuild one app's listing row (and its full-text entry) from the tables the blocks filled."""
        latest = db.execute("SELECT * FROM requests WHERE namespace = ? ORDER BY request_id DESC LIMIT 1",
                            (namespace,)).fetchone()
        if latest is None:
            return
        meta = json.loads(latest["metadata"])
        version = db.execute("SELECT * FROM versions WHERE namespace = ? AND deprecated IS NULL "
                             "ORDER BY major DESC, minor DESC, patch DESC LIMIT 1", (namespace,)).fetchone()
        wasm = version["wasm"] if version is not None else latest["wasm"]
        state, request = round_state(db, namespace, wasm)
        tier = tier_of(state)
        credentials = _text(meta.get("listing:credentials")).strip().lower()
        row = {
            "namespace": namespace, "name": _text(meta.get("name"), 64) or namespace,
            "description": _text(meta.get("description")), "category": _text(meta.get("listing:category"), 64),
            "tags": ", ".join(_words(meta.get("listing:tags"))), "tools": ", ".join(_words(meta.get("listing:tools"))),
            "publisher": _text(meta.get("listing:publisher"), 128) or latest["requester"],
            "credentials": credentials if credentials in CREDENTIALS else "unknown",
            "homepage": _text(meta.get("listing:homepage"), 512), "wasm": wasm,
            "version": (f"{version['major']}.{version['minor']}.{version['patch']}" if version is not None else None),
            "tier": int(tier), "verifiers": len(state.attesters.get(BUILD_AUDIT, ())) if state else 0,
            "repo": request["repo"] if request is not None else latest["repo"],
            "commit_hash": request["commit_hash"] if request is not None else latest["commit_hash"],
            "updated_ts": max(latest["ts"], version["ts"] if version is not None else 0),
            "updated_block": db.execute("SELECT MAX(idx) FROM blocks").fetchone()[0],
        }
        old = db.execute("SELECT rowid FROM listings WHERE namespace = ?", (namespace,)).fetchone()
        if old is not None:
            db.execute("DELETE FROM listings_fts WHERE rowid = ?", (old[0],))
            db.execute("DELETE FROM listings WHERE namespace = ?", (namespace,))
        columns = ", ".join(row)
        cur = db.execute(f"INSERT INTO listings ({columns}) VALUES ({', '.join('?' for _ in row)})",
                         tuple(row.values()))
        db.execute("INSERT INTO listings_fts (rowid, namespace, name, description, tools, tags, category, publisher) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (cur.lastrowid, namespace.replace(".", " ") + " " + namespace, row["name"], row["description"],
                    row["tools"], row["tags"], row["category"], row["publisher"]))

    # ------------------------------------------------------------------ reading

    def status(self) -> dict[str, Any]:
        with self.reader() as db:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            listings = db.execute("SELECT COUNT(*) FROM listings").fetchone()[0]
        return {"registry": self.registry, "next_block": int(meta["next_index"]), "listings": listings,
                "certified_at_ns": int(meta["certified_at_ns"]) if "certified_at_ns" in meta else None}

    def search(self, query: str = "", *, verified_only: bool = True, min_tier: Tier | None = None,
               category: str | None = None, no_credentials: bool = False, limit: int = 20,
               offset: int = 0) -> list[dict[str, Any]]:
        """Listings matching `query` (all when empty), best first: BM25 relevance, then tier, then name."""
        floor = max(int(min_tier) if min_tier is not None else int(Tier.REJECTED),
                    int(Tier.VERIFIED) if verified_only else int(Tier.REJECTED))
        where: list[str] = ["l.tier >= ?"]
        params: list[Any] = [floor]
        if category:
            where.append("lower(l.category) = lower(?)")
            params.append(category[:64])
        if no_credentials:
            where.append("l.credentials = 'none'")
        limit, offset = max(1, min(limit, MAX_PAGE)), max(0, offset)
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
        """Listings in namespace order after the cursor `after` (REST paging); the next cursor or None."""
        limit = max(1, min(limit, MAX_PAGE))
        where: list[str] = ["namespace > ?"]
        params: list[Any] = [after or ""]
        if updated_since_ns is not None:
            where.append("updated_ts >= ?")
            params.append(max(0, min(updated_since_ns, (1 << 63) - 1)))
        match = fts_query(query) if query else None
        if match is not None:
            where.append("rowid IN (SELECT rowid FROM listings_fts WHERE listings_fts MATCH ?)")
            params.append(match)
        with self.reader() as db:
            rows = db.execute(f"SELECT * FROM listings WHERE {' AND '.join(where)} ORDER BY namespace LIMIT ?",
                              (*params, limit + 1)).fetchall()
        items = [listing_dict(r) for r in rows[:limit]]
        return items, (items[-1]["namespace"] if len(rows) > limit else None)

    def versions(self, namespace: str) -> list[dict[str, Any]]:
        with self.reader() as db:
            rows = db.execute("SELECT * FROM versions WHERE namespace = ? ORDER BY major DESC, minor DESC, patch DESC "
                              "LIMIT ?", (namespace, MAX_PAGE)).fetchall()
            out = []
            for r in rows:
                state, _ = round_state(db, namespace, r["wasm"])
                out.append({"version": f"{r['major']}.{r['minor']}.{r['patch']}", "wasm": r["wasm"],
                            "previous": r["previous"], "publisher": r["publisher"], "deprecated": r["deprecated"],
                            "published_ns": r["ts"], "block": r["block"], "tier": tier_of(state).label})
        return out

    def verification(self, wasm: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every round filed for `wasm` (in `namespace`, or in any), newest first, with its evidence."""
        with self.reader() as db:
            params: tuple[Any, ...] = (wasm, namespace) if namespace else (wasm,)
            requests = db.execute("SELECT * FROM requests WHERE wasm = ?" + (" AND namespace = ?" if namespace else "")
                                  + " ORDER BY request_id DESC LIMIT ?", (*params, MAX_PAGE)).fetchall()
            out = []
            for r in requests:
                latest = db.execute("SELECT MAX(request_id) FROM requests WHERE namespace = ? AND wasm = ?",
                                    (r["namespace"], wasm)).fetchone()[0]
                filings = db.execute("SELECT * FROM filings WHERE request_id = ? ORDER BY block LIMIT ?",
                                     (r["request_id"], MAX_PAGE)).fetchall()
                outcomes = db.execute("SELECT * FROM outcomes WHERE request_id = ? ORDER BY audit_type",
                                      (r["request_id"],)).fetchall()
                bounties = db.execute("SELECT * FROM bounties WHERE request_id = ? ORDER BY bounty_id LIMIT ?",
                                      (r["request_id"], MAX_PAGE)).fetchall()
                state = _state_from(outcomes, filings)
                out.append({
                    "request_id": r["request_id"], "namespace": r["namespace"], "wasm": wasm, "repo": r["repo"],
                    "commit_hash": r["commit_hash"], "requester": r["requester"], "requested_ns": r["ts"],
                    "request_block": r["block"], "latest": r["request_id"] == latest, "tier": tier_of(state).label,
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
            "credentials": row["credentials"], "homepage": row["homepage"], "wasm": row["wasm"],
            "version": row["version"], "tier": tier.label, "verifiers": row["verifiers"], "repo": row["repo"],
            "commit_hash": row["commit_hash"], "updated_ns": row["updated_ts"], "updated_block": row["updated_block"]}


def _filing_dict(f: sqlite3.Row) -> dict[str, Any]:
    meta = json.loads(f["metadata"])
    return {"block": f["block"], "verifier": f["verifier"], "audit_type": f["audit_type"],
            "attested": bool(f["attested"]), "report": f["report"], "filed_ns": f["ts"],
            "signed": f["envelope_sha256"] is not None, "envelope_sha256": f["envelope_sha256"],
            "toolchain": meta.get("126:toolchain") if isinstance(meta.get("126:toolchain"), str) else None,
            "found_hash": meta.get("126:found_hash") if isinstance(meta.get("126:found_hash"), str) else None,
            "bounty_id": f["bounty_id"]}


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


# ---------------------------------------------------------------------- one handler per block type

def _namespace_of_request(db: sqlite3.Connection, request_id: Any) -> set[str]:
    row = db.execute("SELECT namespace FROM requests WHERE request_id = ?", (request_id,)).fetchone()
    return {row[0]} if row is not None else set()


def _on_request(db: sqlite3.Connection, index: int, ts: int, tx: dict[str, Any]) -> set[str]:
    namespace, metadata = _text(tx.get("namespace"), 253), tx.get("metadata")
    db.execute("INSERT OR REPLACE INTO requests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (_int(tx.get("request_id")), namespace, _text(tx.get("wasm_id"), 64), _text(tx.get("repo")),
                _text(tx.get("commit_hash"), 64), _principal(tx.get("requester")),
                _json(metadata if isinstance(metadata, dict) else {}), ts, index))
    return {namespace}


def _on_filing(db: sqlite3.Connection, index: int, ts: int, tx: dict[str, Any], attested: bool) -> set[str]:
    envelope = tx.get("envelope_sha256")
    metadata = tx.get("metadata")
    db.execute("INSERT OR REPLACE INTO filings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (index, _int(tx.get("request_id")), _text(tx.get("wasm_id"), 64), _text(tx.get("audit_type"), 64),
                _int(tx.get("bounty_id")), _principal(tx.get("verifier")), int(attested),
                _text(tx.get("report"), 4096) or None, _json(metadata if isinstance(metadata, dict) else {}),
                envelope.hex() if isinstance(envelope, bytes) else None, ts))
    return _namespace_of_request(db, _int(tx.get("request_id")))


def _on_outcome(db: sqlite3.Connection, index: int, ts: int, tx: dict[str, Any], outcome: str) -> set[str]:
    db.execute("INSERT OR REPLACE INTO outcomes VALUES (?, ?, ?, ?, ?, ?, ?)",
               (_int(tx.get("request_id")), _text(tx.get("audit_type"), 64), outcome,
                _int(tx.get("attestations")) or 0, _int(tx.get("divergences")) or 0, ts, index))
    return _namespace_of_request(db, _int(tx.get("request_id")))


def _on_bounty(db: sqlite3.Connection, index: int, ts: int, tx: dict[str, Any]) -> set[str]:
    db.execute("INSERT OR REPLACE INTO bounties VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?)",
               (_int(tx.get("bounty_id")), _int(tx.get("request_id")), _text(tx.get("wasm_id"), 64),
                _text(tx.get("audit_type"), 64), str(tx.get("amount", 0))[:80], _principal(tx.get("creator")), ts,
                index))
    return set()


def _on_bounty_end(db: sqlite3.Connection, tx: dict[str, Any], state: str) -> set[str]:
    db.execute("UPDATE bounties SET state = ? WHERE bounty_id = ?", (state, _int(tx.get("bounty_id"))))
    return set()


def _on_version(db: sqlite3.Connection, index: int, ts: int, tx: dict[str, Any]) -> set[str]:
    namespace, version = _text(tx.get("namespace"), 253), tx.get("version")
    if not (isinstance(version, list) and len(version) == 3 and all(_int(v) is not None for v in version)):
        return set()
    db.execute("INSERT OR REPLACE INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
               (namespace, *version, _text(tx.get("wasm_id"), 64), _int(tx.get("request_id")),
                _text(tx.get("previous"), 64) or None, _principal(tx.get("caller")), ts, index))
    return {namespace}


def _on_deprecate(db: sqlite3.Connection, index: int, ts: int, tx: dict[str, Any]) -> set[str]:
    namespace, version = _text(tx.get("namespace"), 253), tx.get("version")
    if not (isinstance(version, list) and len(version) == 3 and all(_int(v) is not None for v in version)):
        return set()
    db.execute("UPDATE versions SET deprecated = ? WHERE namespace = ? AND major = ? AND minor = ? AND patch = ?",
               (_text(tx.get("reason"), 1024) or "deprecated", namespace, *version))
    return {namespace}


_HANDLERS: dict[str, Any] = {
    "126request": _on_request,
    "126attest": lambda db, i, ts, tx: _on_filing(db, i, ts, tx, True),
    "126divergence": lambda db, i, ts, tx: _on_filing(db, i, ts, tx, False),
    "126verified": lambda db, i, ts, tx: _on_outcome(db, i, ts, tx, "Verified"),
    "126rejected": lambda db, i, ts, tx: _on_outcome(db, i, ts, tx, "Rejected"),
    "127bounty": _on_bounty,
    "127payout": lambda db, i, ts, tx: _on_bounty_end(db, tx, "paid"),
    "127refund": lambda db, i, ts, tx: _on_bounty_end(db, tx, "refunded"),
    "118version": _on_version,
    "118deprecate": _on_deprecate,
}
