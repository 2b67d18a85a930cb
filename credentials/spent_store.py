"""The origin's spent-token store: a token is accepted exactly once, across processes and hosts.

``mark_spent`` is one statement, ``INSERT ... ON CONFLICT DO NOTHING``, whose row count says
whether this call was first: the database's unique constraint does the arbitration, so no
read-then-write race exists. Records carry the signing key's id and are purged when that key
leaves the issuer directory (a token of a retired key can no longer verify anyway).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterable
from typing import Any, Protocol

from service_kit.database import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS spent_tokens (
    token_hash {blob} PRIMARY KEY,
    key_id {blob} NOT NULL,
    spent_at {bigint} NOT NULL
);
CREATE INDEX IF NOT EXISTS spent_tokens_key ON spent_tokens (key_id)
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

    def purge(self, live_key_ids: Iterable[bytes]) -> int:
        """Drop records of keys no longer live; return how many were dropped."""
        ...


class MemorySpentStore:
    """One-process store for tests and single-worker tools."""

    def __init__(self) -> None:
        self._spent: dict[bytes, bytes] = {}
        self._lock = threading.Lock()

    def mark_spent(self, key_id: bytes, nonce: bytes) -> bool:
        """True the first time this (key, nonce) is seen."""
        ident = spent_id(key_id, nonce)
        with self._lock:
            if ident in self._spent:
                return False
            self._spent[ident] = key_id
            return True

    def purge(self, live_key_ids: Iterable[bytes]) -> int:
        """Drop records of keys not in ``live_key_ids`` (never all of them)."""
        live = set(live_key_ids)
        if not live:
            return 0  # an empty directory is a fault, not a reason to forget every token
        with self._lock:
            dead = [k for k, v in self._spent.items() if v not in live]
            for k in dead:
                del self._spent[k]
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

    def purge(self, live_key_ids: Iterable[bytes]) -> int:
        """Delete records of keys no longer published (never all of them)."""
        live = sorted(set(live_key_ids))
        if not live:
            return 0  # an empty directory is a fault, not a reason to forget every token
        marks = ", ".join("?" for _ in live)
        cursor = self.db.execute(f"DELETE FROM spent_tokens WHERE key_id NOT IN ({marks})",
                                 live)
        return max(0, cursor.rowcount)

    def count(self) -> int:
        """How many spent records are kept."""
        row = self.db.fetchone("SELECT COUNT(*) FROM spent_tokens")
        return int(row[0])
