"""The origin's spent-token store: a token is accepted exactly once, across processes and hosts.

``mark_spent`` is one statement, ``INSERT ... ON CONFLICT DO NOTHING``, whose row count says
whether this call was first: the database's unique constraint does the arbitration, so no
read-then-write race exists.

Records carry the signing key's id. A key's records are purged only once no instance sharing the
store can still accept the key (two-phase retirement): an origin that finds a key missing from
a freshly fetched directory records *when* it first saw it missing, and the records go only
``SPENT_PURGE_DELAY`` seconds later (longer than any instance's directory cache may last). A
client can make an origin re-read the directory, never make it forget a spent token.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterable
from typing import Any, Protocol

from credentials import consts
from service_kit.database import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS spent_tokens (
    token_hash {blob} PRIMARY KEY,
    key_id {blob} NOT NULL,
    spent_at {bigint} NOT NULL
);
CREATE INDEX IF NOT EXISTS spent_tokens_key ON spent_tokens (key_id);
CREATE TABLE IF NOT EXISTS spent_withdrawn_keys (
    key_id {blob} PRIMARY KEY,
    missing_since {bigint} NOT NULL
)
"""


def spent_id(key_id: bytes, nonce: bytes) -> bytes:
    """The stored identifier of a token: a hash, so the table holds no token field itself."""
    return hashlib.sha256(b"spent-token\x00" + key_id + nonce).digest()


def create_schema_retrying(db: Database, schema: str, attempts: int = 5) -> None:
    """``CREATE ... IF NOT EXISTS`` can still collide when processes start at once on
    PostgreSQL (catalog unique violation); the loser retries and then finds the tables."""
    for attempt in range(attempts):
        try:
            db.create_schema(schema)
            return
        except Exception:
            if attempt == attempts - 1:
                raise
            time.sleep(0.1 * (attempt + 1))


class SpentTokenStore(Protocol):
    """Where an origin records spent tokens; ``mark_spent`` is atomic."""

    def mark_spent(self, key_id: bytes, nonce: bytes) -> bool:
        """Record the token; True if it was not spent before (exactly one caller wins)."""
        ...

    def note_directory(self, published_key_ids: Iterable[bytes], *,
                       now: int | None = None) -> int:
        """Record which keys a freshly fetched directory publishes; drop the records of keys
        withdrawn for at least ``SPENT_PURGE_DELAY`` seconds; return how many were dropped."""
        ...


class MemorySpentStore:
    """One-process store for tests and single-worker tools."""

    def __init__(self) -> None:
        self._spent: dict[bytes, bytes] = {}
        self._missing_since: dict[bytes, int] = {}
        self._lock = threading.Lock()

    def mark_spent(self, key_id: bytes, nonce: bytes) -> bool:
        """True the first time this (key, nonce) is seen."""
        ident = spent_id(key_id, nonce)
        with self._lock:
            if ident in self._spent:
                return False
            self._spent[ident] = key_id
            return True

    def note_directory(self, published_key_ids: Iterable[bytes], *,
                       now: int | None = None) -> int:
        """See :meth:`SpentTokenStore.note_directory`."""
        live = set(published_key_ids)
        if not live:
            return 0  # an empty directory is a fault, not a reason to forget every token
        now = int(time.time()) if now is None else now
        with self._lock:
            for key in live:
                self._missing_since.pop(key, None)
            for key in set(self._spent.values()) - live:
                self._missing_since.setdefault(key, now)
            expired = {k for k, since in self._missing_since.items()
                       if now - since >= consts.SPENT_PURGE_DELAY}
            dead = [k for k, v in self._spent.items() if v in expired]
            for k in dead:
                del self._spent[k]
            for key in expired:
                del self._missing_since[key]
        return len(dead)


class DatabaseSpentStore:
    """SQLite (default) or PostgreSQL (several origin instances) spent-token store."""

    def __init__(self, url: str, *, durable: bool = True) -> None:
        """``durable=False`` (PostgreSQL only) commits without waiting for the WAL flush:
        several times the throughput, but a PostgreSQL crash may forget the last fraction of a
        second of spent records, letting those tokens be spent once more."""
        self.db = Database(url)
        create_schema_retrying(self.db, SCHEMA)
        self._relaxed = not durable and self.db.dialect == "postgres"
        # Connections already switched, kept referenced so an id is never reused meanwhile.
        self._relaxed_conns: dict[int, Any] = {}

    def mark_spent(self, key_id: bytes, nonce: bytes) -> bool:
        """One ``INSERT ... ON CONFLICT DO NOTHING``; True when this call inserted the row."""
        if self._relaxed:
            conn = self.db.connection()
            if id(conn) not in self._relaxed_conns:
                conn.execute("SET synchronous_commit TO off")
                self._relaxed_conns[id(conn)] = conn
        cursor = self.db.execute(
            "INSERT INTO spent_tokens (token_hash, key_id, spent_at) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING", (spent_id(key_id, nonce), key_id, int(time.time())))
        return cursor.rowcount == 1

    def note_directory(self, published_key_ids: Iterable[bytes], *,
                       now: int | None = None) -> int:
        """See :meth:`SpentTokenStore.note_directory` (one transaction; several instances may
        run it at once: the first sighting of a withdrawal wins, later ones change nothing)."""
        live = sorted(set(published_key_ids))
        if not live:
            return 0  # an empty directory is a fault, not a reason to forget every token
        now = int(time.time()) if now is None else now
        marks = ", ".join("?" for _ in live)
        with self.db.transaction() as tx:
            tx.execute(f"DELETE FROM spent_withdrawn_keys WHERE key_id IN ({marks})", live)
            tx.execute("INSERT INTO spent_withdrawn_keys (key_id, missing_since) "
                       f"SELECT DISTINCT key_id, ? FROM spent_tokens WHERE key_id NOT IN "
                       f"({marks}) ON CONFLICT DO NOTHING", [now, *live])
            cutoff = now - consts.SPENT_PURGE_DELAY
            cursor = tx.execute(
                "DELETE FROM spent_tokens WHERE key_id IN (SELECT key_id FROM "
                "spent_withdrawn_keys WHERE missing_since <= ?)", (cutoff,))
            purged = max(0, cursor.rowcount)
            tx.execute("DELETE FROM spent_withdrawn_keys WHERE missing_since <= ?", (cutoff,))
        return purged

    def count(self) -> int:
        """How many spent records are kept."""
        row = self.db.fetchone("SELECT COUNT(*) FROM spent_tokens")
        return int(row[0])
