"""The SQLite :class:`~e2ee_core.state.stores.ProtocolStore`: the default persistent store.

Every access goes through :class:`e2ee_core.infra.database.Database` (WAL journal,
``synchronous=NORMAL``: a committed transaction survives ``kill -9``). ``atomic()`` opens one
``BEGIN IMMEDIATE`` transaction, so an encrypt or decrypt holds the write lock from its first
read to its commit: two processes sharing the file can never both use one message key, and a
process killed mid-way leaves the previous state intact. The database file is created 0600;
SQLite gives its -wal/-shm companions the same mode. Private keys are stored unencrypted in it:
protect the file (full-disk encryption, the OS keystore) as you would any key file.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from e2ee_core.errors import StoreError
from e2ee_core.infra.database import Cursor, Database, Transaction
from e2ee_core.infra.keyfiles import write_secret_file
from e2ee_core.protocol.keys import KemKeyPair, KeyPair
from e2ee_core.protocol.prekeys import KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord
from e2ee_core.protocol.session import SessionRecord
from e2ee_core.state.stores import Address, LocalIdentity

SCHEMA = """
CREATE TABLE IF NOT EXISTS e2ee_local (name TEXT PRIMARY KEY, value {bigint} NOT NULL);
CREATE TABLE IF NOT EXISTS e2ee_local_identity (
    id INTEGER PRIMARY KEY CHECK (id = 1), private_key {blob} NOT NULL,
    registration_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS e2ee_identities (
    user_id TEXT NOT NULL, device_id INTEGER NOT NULL, identity_key {blob} NOT NULL,
    PRIMARY KEY (user_id, device_id));
CREATE TABLE IF NOT EXISTS e2ee_pre_keys (id INTEGER PRIMARY KEY, private_key {blob} NOT NULL);
CREATE TABLE IF NOT EXISTS e2ee_signed_pre_keys (
    id INTEGER PRIMARY KEY, private_key {blob} NOT NULL, signature {blob} NOT NULL,
    created {bigint} NOT NULL);
CREATE TABLE IF NOT EXISTS e2ee_kyber_pre_keys (
    id INTEGER PRIMARY KEY, seed {blob} NOT NULL, signature {blob} NOT NULL,
    created {bigint} NOT NULL, last_resort INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS e2ee_sessions (
    user_id TEXT NOT NULL, device_id INTEGER NOT NULL, record {blob} NOT NULL,
    PRIMARY KEY (user_id, device_id))
"""


class SQLiteProtocolStore:
    """All five stores in one SQLite file (``path``) or an existing :class:`Database`."""

    def __init__(self, target: str | Path | Database) -> None:
        if isinstance(target, Database):
            self.db = target
        else:
            path = Path(target)
            if str(target) != ":memory:" and not path.exists():
                write_secret_file(path, b"")  # 0600 before SQLite writes a byte
            self.db = Database(str(target))
        self.db.create_schema(SCHEMA)
        self._local = threading.local()
        self._kyber_cache: dict[bytes, KemKeyPair] = {}
        # Last record read/written per address, with its bytes: a load whose bytes match
        # skips the JSON decode (another process writing the row changes the bytes).
        self._session_cache: dict[tuple[str, int], tuple[bytes, SessionRecord]] = {}

    def __repr__(self) -> str:
        return "SQLiteProtocolStore()"

    @contextmanager
    def atomic(self) -> Iterator[None]:
        if getattr(self._local, "tx", None) is not None:
            yield
            return
        with self.db.transaction() as tx:
            self._local.tx = tx
            try:
                yield
            finally:
                self._local.tx = None

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        tx: Transaction | None = getattr(self._local, "tx", None)
        if tx is not None:
            return tx.execute(sql, params)
        return self.db.execute(sql, params)

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._execute(sql, params).fetchone()

    # identity
    def get_local_identity(self) -> LocalIdentity | None:
        row = self._one("SELECT private_key, registration_id FROM e2ee_local_identity")
        if row is None:
            return None
        return LocalIdentity(KeyPair.from_private(bytes(row[0])), int(row[1]))

    def set_local_identity(self, identity: LocalIdentity) -> None:
        self._execute("DELETE FROM e2ee_local_identity")
        self._execute("INSERT INTO e2ee_local_identity VALUES (1, ?, ?)",
                      (identity.key_pair.private.raw, identity.registration_id))

    def get_identity(self, address: Address) -> bytes | None:
        row = self._one("SELECT identity_key FROM e2ee_identities WHERE user_id = ? "
                        "AND device_id = ?", (address[0], address[1]))
        return bytes(row[0]) if row is not None else None

    def save_identity(self, address: Address, identity_key: bytes) -> None:
        self._execute("INSERT INTO e2ee_identities VALUES (?, ?, ?) ON CONFLICT (user_id, "
                      "device_id) DO UPDATE SET identity_key = excluded.identity_key",
                      (address[0], address[1], bytes(identity_key)))

    # one-time prekeys
    def get_pre_key(self, key_id: int) -> PreKeyRecord | None:
        row = self._one("SELECT private_key FROM e2ee_pre_keys WHERE id = ?", (key_id,))
        return PreKeyRecord(key_id, KeyPair.from_private(bytes(row[0]))) if row else None

    def save_pre_keys(self, records: Sequence[PreKeyRecord]) -> None:
        with self.atomic():
            for r in records:
                self._execute("INSERT INTO e2ee_pre_keys VALUES (?, ?) ON CONFLICT (id) "
                              "DO UPDATE SET private_key = excluded.private_key",
                              (r.id, r.key_pair.private.raw))

    def remove_pre_key(self, key_id: int) -> None:
        self._execute("DELETE FROM e2ee_pre_keys WHERE id = ?", (key_id,))

    def pre_key_count(self) -> int:
        return int(self._one("SELECT COUNT(*) FROM e2ee_pre_keys")[0])

    # signed prekeys
    @staticmethod
    def _signed(row: Any) -> SignedPreKeyRecord:
        return SignedPreKeyRecord(int(row[0]), KeyPair.from_private(bytes(row[1])),
                                  bytes(row[2]), int(row[3]))

    def get_signed_pre_key(self, key_id: int) -> SignedPreKeyRecord | None:
        row = self._one("SELECT id, private_key, signature, created FROM e2ee_signed_pre_keys "
                        "WHERE id = ?", (key_id,))
        return self._signed(row) if row else None

    def save_signed_pre_key(self, record: SignedPreKeyRecord) -> None:
        self._execute("INSERT INTO e2ee_signed_pre_keys VALUES (?, ?, ?, ?) ON CONFLICT (id) "
                      "DO UPDATE SET private_key = excluded.private_key, "
                      "signature = excluded.signature, created = excluded.created",
                      (record.id, record.key_pair.private.raw, record.signature,
                       record.timestamp))

    def remove_signed_pre_key(self, key_id: int) -> None:
        self._execute("DELETE FROM e2ee_signed_pre_keys WHERE id = ?", (key_id,))

    def signed_pre_keys(self) -> list[SignedPreKeyRecord]:
        rows = self._execute("SELECT id, private_key, signature, created FROM "
                             "e2ee_signed_pre_keys ORDER BY created, id").fetchall()
        return [self._signed(r) for r in rows]

    # KEM prekeys
    def _kyber(self, row: Any) -> KyberPreKeyRecord:
        seed = bytes(row[1])
        pair = self._kyber_cache.get(seed)
        if pair is None:  # ML-KEM key expansion is the costly part; cache it per process
            pair = KemKeyPair.from_seed(seed)
            self._kyber_cache[seed] = pair
        return KyberPreKeyRecord(int(row[0]), pair, bytes(row[2]), int(row[3]), bool(row[4]))

    def get_kyber_pre_key(self, key_id: int) -> KyberPreKeyRecord | None:
        row = self._one("SELECT id, seed, signature, created, last_resort FROM "
                        "e2ee_kyber_pre_keys WHERE id = ?", (key_id,))
        return self._kyber(row) if row else None

    def save_kyber_pre_key(self, record: KyberPreKeyRecord) -> None:
        self._execute("INSERT INTO e2ee_kyber_pre_keys VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) "
                      "DO UPDATE SET seed = excluded.seed, signature = excluded.signature, "
                      "created = excluded.created, last_resort = excluded.last_resort",
                      (record.id, record.key_pair.seed, record.signature, record.timestamp,
                       int(record.last_resort)))

    def remove_kyber_pre_key(self, key_id: int) -> None:
        row = self._one("SELECT seed FROM e2ee_kyber_pre_keys WHERE id = ?", (key_id,))
        if row is not None:
            self._kyber_cache.pop(bytes(row[0]), None)
        self._execute("DELETE FROM e2ee_kyber_pre_keys WHERE id = ?", (key_id,))

    def kyber_pre_keys(self) -> list[KyberPreKeyRecord]:
        rows = self._execute("SELECT id, seed, signature, created, last_resort FROM "
                             "e2ee_kyber_pre_keys ORDER BY created, id").fetchall()
        return [self._kyber(r) for r in rows]

    # sessions
    def load_session(self, address: Address) -> SessionRecord | None:
        row = self._one("SELECT record FROM e2ee_sessions WHERE user_id = ? AND device_id = ?",
                        (address[0], address[1]))
        if row is None:
            return None
        data = bytes(row[0])
        key = (address[0], address[1])
        cached = self._session_cache.get(key)
        if cached is not None and cached[0] == data:
            return cached[1].clone()
        record = SessionRecord.from_bytes(data)
        self._session_cache[key] = (data, record.clone())
        return record

    def store_session(self, address: Address, record: SessionRecord) -> None:
        data = record.to_bytes()
        key = (address[0], address[1])
        self._session_cache.pop(key, None)
        self._execute("INSERT INTO e2ee_sessions VALUES (?, ?, ?) ON CONFLICT (user_id, "
                      "device_id) DO UPDATE SET record = excluded.record",
                      (address[0], address[1], data))
        self._session_cache[key] = (data, record)  # the store owns a stored record

    def delete_session(self, address: Address) -> None:
        self._session_cache.pop((address[0], address[1]), None)
        self._execute("DELETE FROM e2ee_sessions WHERE user_id = ? AND device_id = ?",
                      (address[0], address[1]))

    def session_addresses(self) -> list[Address]:
        rows = self._execute("SELECT user_id, device_id FROM e2ee_sessions "
                             "ORDER BY user_id, device_id").fetchall()
        return [Address(str(r[0]), int(r[1])) for r in rows]

    # counters
    def get_counter(self, name: str) -> int:
        row = self._one("SELECT value FROM e2ee_local WHERE name = ?", (name,))
        return int(row[0]) if row is not None else 0

    def set_counter(self, name: str, value: int) -> None:
        self._execute("INSERT INTO e2ee_local VALUES (?, ?) ON CONFLICT (name) "
                      "DO UPDATE SET value = excluded.value", (name, value))

    def close(self) -> None:
        self.db.close()


__all__ = ["SQLiteProtocolStore", "StoreError"]
