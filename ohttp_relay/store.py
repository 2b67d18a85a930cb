"""The gateway store: key records and the replay cache.

:class:`GatewayStore` is the interface; :class:`MemoryStore` serves tests and single-process
use; :class:`DatabaseStore` persists in SQLite (default) or PostgreSQL (several gateway
instances sharing keys and one replay cache). An SQLite file is created mode 0600 because it
holds private keys.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from ohttp_relay.errors import StoreError
from ohttp_relay.keys import (
    ACTIVE,
    GRACE,
    RETIRED,
    KeyRecord,
    allocate_key_id,
    decode_symmetric,
    encode_symmetric,
)
from ohttp_relay.ohttp import DEFAULT_SYMMETRIC, KEM_X25519, GatewayKey, SymmetricSuite
from service_kit.database import Database


class GatewayStore(Protocol):
    """Persistence the gateway needs. Every method is atomic."""

    def key_records(self) -> list[KeyRecord]:
        """Every key record, in key-id order."""
        ...

    def generate_key(self, now: int, kem_id: int = KEM_X25519,
                     symmetric: Sequence[SymmetricSuite] = DEFAULT_SYMMETRIC) -> KeyRecord:
        """Create and store a new active key under a free key id."""
        ...

    def rotate(self, now: int, grace: int, kem_id: int = KEM_X25519,
               symmetric: Sequence[SymmetricSuite] = DEFAULT_SYMMETRIC) -> KeyRecord:
        """New active key; every other active key moves to grace until ``now + grace``."""
        ...

    def retire(self, now: int, key_id: int | None = None) -> list[int]:
        """Erase one key (``key_id``) or every grace key whose grace has ended."""
        ...

    def remember_request(self, key_id: int, enc: bytes, now: int, expires_at: int) -> bool:
        """Record a seen request; ``False`` if it was already recorded and unexpired."""
        ...


def _record(row: Sequence[Any]) -> KeyRecord:
    key_id, kem_id, symmetric, private, state, created_at, retire_at = row
    key = None
    if private is not None and state != RETIRED:
        key = GatewayKey.from_private_key(key_id, kem_id, bytes(private),
                                          decode_symmetric(bytes(symmetric)))
    return KeyRecord(key_id, kem_id, state, int(created_at),
                     None if retire_at is None else int(retire_at), key)


class MemoryStore:
    """In-memory :class:`GatewayStore` (one process; lost on exit)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[int, KeyRecord] = {}
        self._seen: dict[tuple[int, bytes], int] = {}

    def key_records(self) -> list[KeyRecord]:
        with self._lock:
            return [self._keys[k] for k in sorted(self._keys)]

    def _new(self, now: int, kem_id: int, symmetric: Sequence[SymmetricSuite]) -> KeyRecord:
        key_id = allocate_key_id(self._keys.values())
        key = GatewayKey.generate(key_id, kem_id, symmetric)
        record = KeyRecord(key_id, kem_id, ACTIVE, now, None, key)
        self._keys[key_id] = record
        return record

    def generate_key(self, now: int, kem_id: int = KEM_X25519,
                     symmetric: Sequence[SymmetricSuite] = DEFAULT_SYMMETRIC) -> KeyRecord:
        with self._lock:
            return self._new(now, kem_id, symmetric)

    def rotate(self, now: int, grace: int, kem_id: int = KEM_X25519,
               symmetric: Sequence[SymmetricSuite] = DEFAULT_SYMMETRIC) -> KeyRecord:
        with self._lock:
            for key_id, rec in list(self._keys.items()):
                if rec.state == ACTIVE:
                    self._keys[key_id] = KeyRecord(rec.key_id, rec.kem_id, GRACE,
                                                   rec.created_at, now + grace, rec.key)
            return self._new(now, kem_id, symmetric)

    def retire(self, now: int, key_id: int | None = None) -> list[int]:
        with self._lock:
            done = []
            for kid, rec in list(self._keys.items()):
                due = (kid == key_id if key_id is not None else
                       rec.state == GRACE and rec.retire_at is not None and rec.retire_at <= now)
                if due and rec.state != RETIRED:
                    self._keys[kid] = KeyRecord(kid, rec.kem_id, RETIRED, rec.created_at, now,
                                                None)
                    done.append(kid)
            return done

    def remember_request(self, key_id: int, enc: bytes, now: int, expires_at: int) -> bool:
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen = {k: v for k, v in self._seen.items() if v > now}
            expiry = self._seen.get((key_id, enc))
            if expiry is not None and expiry > now:
                return False
            self._seen[(key_id, enc)] = expires_at
            return True


_SCHEMA = """
CREATE TABLE IF NOT EXISTS ohttp_keys (
    key_id INTEGER PRIMARY KEY,
    kem_id INTEGER NOT NULL,
    suites {blob} NOT NULL,
    private_key {blob},
    state TEXT NOT NULL,
    created_at {bigint} NOT NULL,
    retire_at {bigint}
);
CREATE TABLE IF NOT EXISTS ohttp_replay (
    key_id INTEGER NOT NULL,
    enc {blob} NOT NULL,
    expires_at {bigint} NOT NULL,
    PRIMARY KEY (key_id, enc)
);
CREATE INDEX IF NOT EXISTS ohttp_replay_expiry ON ohttp_replay (expires_at)
"""

_COLUMNS = "key_id, kem_id, suites, private_key, state, created_at, retire_at"


def _secure_sqlite_file(path: str) -> None:
    """Create the SQLite file (and its WAL/SHM companions) mode 0600: it holds private keys."""
    if path == ":memory:":
        return
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
    for suffix in ("", "-wal", "-shm"):
        companion = Path(str(target) + suffix)
        if companion.exists():
            os.chmod(companion, 0o600)


class DatabaseStore:
    """:class:`GatewayStore` over :class:`service_kit.database.Database`."""

    def __init__(self, url: str) -> None:
        self.db = Database(url)
        if self.db.dialect == "sqlite" and self.db.path is not None:
            _secure_sqlite_file(self.db.path)
        self.db.create_schema(_SCHEMA)
        # SQLite gives its -wal/-shm files the database file's mode; make sure anyway.
        if self.db.dialect == "sqlite" and self.db.path is not None:
            _secure_sqlite_file(self.db.path)
        self._inserts = 0

    def _rows(self, tx: Any) -> list[KeyRecord]:
        rows = tx.fetchall(f"SELECT {_COLUMNS} FROM ohttp_keys ORDER BY key_id")
        return [_record(row) for row in rows]

    def key_records(self) -> list[KeyRecord]:
        with self.db.transaction(write=False) as tx:
            return self._rows(tx)

    def _insert_new(self, tx: Any, now: int, kem_id: int,
                    symmetric: Sequence[SymmetricSuite]) -> KeyRecord:
        key_id = allocate_key_id(self._rows(tx))
        key = GatewayKey.generate(key_id, kem_id, symmetric)
        tx.execute("DELETE FROM ohttp_keys WHERE key_id = ? AND state = ?", (key_id, RETIRED))
        tx.execute(f"INSERT INTO ohttp_keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (key_id, kem_id, encode_symmetric(symmetric), key.private_key, ACTIVE, now,
                    None))
        return KeyRecord(key_id, kem_id, ACTIVE, now, None, key)

    def _locked(self, tx: Any) -> None:
        if self.db.dialect == "postgres":  # serialise key changes across gateway instances
            tx.execute("LOCK TABLE ohttp_keys IN EXCLUSIVE MODE")

    def generate_key(self, now: int, kem_id: int = KEM_X25519,
                     symmetric: Sequence[SymmetricSuite] = DEFAULT_SYMMETRIC) -> KeyRecord:
        with self.db.transaction() as tx:
            self._locked(tx)
            return self._insert_new(tx, now, kem_id, symmetric)

    def ensure_key(self, now: int) -> None:
        """Generate a first key when the store holds no usable key (first start-up)."""
        with self.db.transaction() as tx:
            self._locked(tx)
            if not any(r.state == ACTIVE for r in self._rows(tx)):
                self._insert_new(tx, now, KEM_X25519, DEFAULT_SYMMETRIC)

    def rotate(self, now: int, grace: int, kem_id: int = KEM_X25519,
               symmetric: Sequence[SymmetricSuite] = DEFAULT_SYMMETRIC) -> KeyRecord:
        with self.db.transaction() as tx:
            self._locked(tx)
            tx.execute("UPDATE ohttp_keys SET state = ?, retire_at = ? WHERE state = ?",
                       (GRACE, now + grace, ACTIVE))
            return self._insert_new(tx, now, kem_id, symmetric)

    def retire(self, now: int, key_id: int | None = None) -> list[int]:
        with self.db.transaction() as tx:
            self._locked(tx)
            if key_id is not None:
                rows = tx.fetchall("SELECT key_id FROM ohttp_keys WHERE key_id = ? AND state <> ?",
                                   (key_id, RETIRED))
            else:
                rows = tx.fetchall("SELECT key_id FROM ohttp_keys WHERE state = ? AND "
                                   "retire_at <= ?", (GRACE, now))
            ids = [int(r[0]) for r in rows]
            for kid in ids:
                tx.execute("UPDATE ohttp_keys SET state = ?, private_key = NULL, retire_at = ? "
                           "WHERE key_id = ?", (RETIRED, now, kid))
            return ids

    def remember_request(self, key_id: int, enc: bytes, now: int, expires_at: int) -> bool:
        # One atomic statement: insert, or take over an expired entry; a live entry wins and
        # nothing changes (rowcount 0), which is the replay signal.
        try:
            self._inserts += 1
            if self._inserts % 256 == 1:
                self.db.execute("DELETE FROM ohttp_replay WHERE expires_at <= ?", (now,))
            cursor = self.db.execute(
                "INSERT INTO ohttp_replay (key_id, enc, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key_id, enc) DO UPDATE SET expires_at = excluded.expires_at "
                "WHERE ohttp_replay.expires_at <= ?", (key_id, enc, expires_at, now))
            return cursor.rowcount == 1
        except Exception as exc:
            raise StoreError("replay cache unavailable") from exc
