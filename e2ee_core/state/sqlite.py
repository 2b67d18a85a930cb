"""The SQLite :class:`~e2ee_core.state.stores.ProtocolStore`: the default persistent store.

Every access goes through :class:`service_kit.database.Database` (WAL journal,
``synchronous=NORMAL``: a committed transaction survives ``kill -9``). ``atomic()`` opens one
``BEGIN IMMEDIATE`` transaction, so an encrypt or decrypt holds the write lock from its first
read to its commit: two processes sharing the file can never both use one message key, and a
process killed mid-way leaves the previous state intact. The database file is created 0600;
SQLite gives its -wal/-shm companions the same mode. Private keys are stored unencrypted in it:
protect the file (full-disk encryption, the OS keystore) as you would any key file.

Read cache: inside ``atomic()`` the session records and remote identities read or written are
kept in memory, per thread (each thread has its own connection) and shared by every store on
the same :class:`Database`. Right after ``BEGIN IMMEDIATE`` the store reads ``PRAGMA
data_version``, which changes exactly when *another* connection (another process, thread or
``Database``) committed to the file; then the cache is dropped. So an encrypt or decrypt whose
session nobody else touched costs ``BEGIN IMMEDIATE``, ``PRAGMA data_version``, one UPSERT and
``COMMIT``, and one that lost the race re-reads under the write lock, as before. A rolled-back
transaction that wrote drops the cache too; records are lent to the caller, not copied, and
one not stored back by the end of the transaction leaves the cache. Outside ``atomic()`` a read
is answered from the cache only when ``PRAGMA data_version`` still shows no other writer, else
from the file. The ``e2ee_*`` tables must only be written through a store.

Write-behind: ``write_behind()`` is an ``atomic()`` block whose session records are written
once, at its commit, however many times a step stores them (a device draining a backlog from
one peer advances one record per message: serialising and upserting it each time was a fifth
of the batch). The price is that a step cannot be undone alone: inside it ``savepoint()``
issues no SQL savepoint, and a step whose block raises dooms the whole transaction; its end
then rolls everything back and raises :class:`~e2ee_core.errors.BatchAborted` (or the
escaping exception itself), for the caller to redo the work one savepoint per step. A record
loaded inside it and changed must be stored back (``Device`` always does) or the block must
raise.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any

from e2ee_core.errors import BatchAborted, StoreError
from e2ee_core.protocol.keys import KemKeyPair, KeyPair
from e2ee_core.protocol.prekeys import KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord
from e2ee_core.protocol.session import SessionRecord
from e2ee_core.state.stores import Address, LocalIdentity
from service_kit.database import Cursor, Database, Transaction
from service_kit.keyfiles import write_secret_file

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
CREATE TABLE IF NOT EXISTS e2ee_kyber_base_keys (
    kyber_id INTEGER NOT NULL, signed_id INTEGER NOT NULL, base_key {blob} NOT NULL,
    PRIMARY KEY (kyber_id, signed_id, base_key));
CREATE TABLE IF NOT EXISTS e2ee_sessions (
    user_id TEXT NOT NULL, device_id INTEGER NOT NULL, record {blob} NOT NULL,
    PRIMARY KEY (user_id, device_id))
"""

_Key = tuple[str, int]
_MISSING: Any = object()
_CACHE_MAX = 4096  # cached addresses per thread; past it the cache starts over (bounds memory)

_SELECT_BOTH = ("SELECT (SELECT record FROM e2ee_sessions WHERE user_id = ? AND device_id = ?), "
                "(SELECT identity_key FROM e2ee_identities WHERE user_id = ? AND device_id = ?)")
_UPSERT_SESSION = ("INSERT INTO e2ee_sessions VALUES (?, ?, ?) ON CONFLICT (user_id, device_id) "
                   "DO UPDATE SET record = excluded.record")


class _ThreadState:
    """Per thread (so per connection) and per :class:`Database`: transaction and read cache."""

    __slots__ = ("cache_conn", "conn", "cursor", "deferred", "depth", "dirty", "doomed",
                 "identities", "lent", "owned", "sessions", "trusted", "tx", "tx_cm", "version",
                 "wrote")

    def __init__(self) -> None:
        self.depth = 0  # nesting of atomic() blocks
        self.conn: Any = None  # the sqlite3 connection while inside an atomic() block
        self.tx: Transaction | None = None  # other dialects: the open transaction
        self.tx_cm: AbstractContextManager[Transaction] | None = None
        self.owned = False  # this store issued the BEGIN (and will COMMIT)
        self.trusted = False  # the cache may answer reads in the current transaction
        self.wrote = False  # the current transaction changed cached rows
        self.lent: set[_Key] = set()  # cached records handed out (not copied) in this transaction
        self.cache_conn: Any = None  # the connection the cache below belongs to
        self.cursor: Any = None  # a cursor on it for the per-operation statements (no new one each)
        self.version: int | None = None  # PRAGMA data_version the cache is valid for
        self.sessions: dict[_Key, SessionRecord | None] = {}  # None: no row
        self.identities: dict[_Key, bytes | None] = {}
        self.deferred = False  # write_behind(): session records written at commit
        self.dirty: dict[_Key, SessionRecord] = {}  # stored, not yet written (write-behind)
        self.doomed = False  # a step of the write-behind transaction failed

    def invalidate(self) -> None:
        self.sessions.clear()
        self.identities.clear()
        self.version = None


class _PerThread(threading.local):
    def __init__(self) -> None:
        self.state = _ThreadState()  # one plain object: attribute reads on it are cheaper


_STATES: weakref.WeakKeyDictionary[Database, _PerThread] = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()


def _per_thread(db: Database) -> _PerThread:
    """One state per Database, so two stores sharing it also share cache and transaction."""
    with _STATES_LOCK:
        local = _STATES.get(db)
        if local is None:
            local = _STATES[db] = _PerThread()
        return local


class _Atomic(AbstractContextManager[None]):
    __slots__ = ("_store",)

    def __init__(self, store: SQLiteProtocolStore) -> None:
        self._store = store

    def __enter__(self) -> None:
        self._store._begin()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._store._end(exc_type, exc, tb)


class _WriteBehind(_Atomic):
    __slots__ = ()

    def __enter__(self) -> None:
        store = self._store
        st = store._local.state
        outer = st.depth == 0
        store._begin()
        if outer and st.owned and st.trusted:
            st.deferred = True  # else (nested, joined, PostgreSQL): a plain atomic()


class _Savepoint(AbstractContextManager[None]):
    __slots__ = ("_name", "_outer", "_store")

    def __init__(self, store: SQLiteProtocolStore) -> None:
        self._store = store
        self._outer = False
        self._name = ""

    def __enter__(self) -> None:
        store = self._store
        st = store._local.state
        self._outer = st.depth == 0
        store._begin()
        if not self._outer and not st.deferred:  # write-behind: a failure dooms it all
            self._name = f"e2ee_sp{st.depth}"
            store._execute(f"SAVEPOINT {self._name}")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        store = self._store
        if not self._outer and self._name:
            st = store._local.state
            if exc_type is not None:
                store._execute(f"ROLLBACK TO {self._name}")
                st.invalidate()  # the cache may hold what was just undone
            store._execute(f"RELEASE {self._name}")
        store._end(exc_type, exc, tb)


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
        self._sqlite = self.db.dialect == "sqlite"
        self._local = _per_thread(self.db)
        self._kyber_cache: dict[bytes, KemKeyPair] = {}

    def __repr__(self) -> str:
        return "SQLiteProtocolStore()"

    # -- transactions ------------------------------------------------------------------------
    def atomic(self) -> AbstractContextManager[None]:
        return _Atomic(self)

    def savepoint(self) -> AbstractContextManager[None]:
        """A step that is undone alone if it raises (SQL ``SAVEPOINT``), the enclosing
        ``atomic()`` going on; outside ``atomic()`` it is one. A batch of messages then commits
        once while a failing message leaves no trace in it. Inside ``write_behind()`` it is a
        nested block whose failure dooms the transaction (see the module docstring)."""
        return _Savepoint(self)

    def write_behind(self) -> AbstractContextManager[None]:
        """``atomic()`` with session records written once, at commit; all or nothing: a step
        that fails inside it rolls the whole block back (:class:`BatchAborted` at its end if
        the caller caught the step's error). Nested in another transaction, a plain
        ``atomic()``."""
        return _WriteBehind(self)

    def _flush(self, st: _ThreadState) -> None:
        """Write the records stored behind (write-behind), once each."""
        if st.dirty:
            rows = [(key[0], key[1], record.to_bytes()) for key, record in st.dirty.items()]
            st.dirty.clear()
            st.cursor.executemany(_UPSERT_SESSION, rows)

    def _begin(self) -> None:
        st = self._local.state
        if st.depth:
            st.depth += 1
            return
        if not self._sqlite:
            cm = self.db.transaction()
            st.tx = cm.__enter__()
            st.tx_cm = cm
            st.depth = 1
            return
        conn = self.db.connection()
        if conn is not st.cache_conn:  # first use, a fork or a reopened connection
            st.invalidate()
            st.cache_conn = conn
            st.cursor = conn.cursor()
        if conn.in_transaction:
            # Someone else's transaction on this connection (e.g. Database.transaction()):
            # join it, but it may write our tables or roll back, so the cache stays out.
            st.owned = st.trusted = False
        else:
            cursor = st.cursor
            cursor.execute("BEGIN IMMEDIATE")
            try:
                version = cursor.execute("PRAGMA data_version").fetchone()[0]
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            if version != st.version:  # another connection committed: forget what we knew
                st.invalidate()
                st.version = version
            st.owned = st.trusted = True
        st.wrote = False
        st.conn = conn
        st.depth = 1

    def _end(self, exc_type: type[BaseException] | None, exc: BaseException | None,
             tb: TracebackType | None) -> None:
        st = self._local.state
        st.depth -= 1
        if st.depth:
            if exc_type is not None and st.deferred:
                st.doomed = True  # its writes cannot be undone alone
            return
        if not self._sqlite:
            cm, st.tx, st.tx_cm = st.tx_cm, None, None
            assert cm is not None
            cm.__exit__(exc_type, exc, tb)
            return
        deferred, doomed = st.deferred, st.doomed
        st.deferred = st.doomed = False
        if deferred and exc_type is None:
            try:
                if doomed:
                    raise BatchAborted("a step of the batch failed: it was rolled back whole")
                self._flush(st)
            except BaseException as failure:
                st.dirty.clear()
                st.wrote = True  # the cache may hold what is undone
                self._end_sqlite(type(failure), failure, None)
                raise
        st.dirty.clear()
        self._end_sqlite(exc_type, exc, tb)

    def _end_sqlite(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                    tb: TracebackType | None) -> None:
        st = self._local.state
        conn, st.conn = st.conn, None
        owned, wrote = st.owned, st.wrote
        st.owned = st.trusted = st.wrote = False
        if st.lent:  # handed out and not stored back: the caller may have changed them
            for key in st.lent:
                st.sessions.pop(key, None)
            st.lent.clear()
        if not owned:
            st.invalidate()
            return
        if exc_type is None:
            try:
                st.cursor.execute("COMMIT")
            except BaseException:
                st.invalidate()
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return
        if wrote:
            st.invalidate()
        if conn.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
            conn.execute("ROLLBACK")

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        st = self._local.state
        if st.conn is not None:
            cursor: Cursor = st.conn.execute(sql, params)
            return cursor
        if st.tx is not None:
            return st.tx.execute(sql, params)
        return self.db.execute(sql, params)

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._execute(sql, params).fetchone()

    def _cache_current_outside(self, st: _ThreadState) -> bool:
        """Outside atomic(): may a cached entry answer a read (``has_session`` and the like)?

        Only if no other connection committed since the cache was last validated; the answer
        is then as fresh as a read would have been a moment earlier, which is all a read
        outside a transaction promises. Entries are never filled here.
        """
        if st.depth or st.version is None or not self._sqlite:
            return False
        conn = self.db.connection()
        if conn is not st.cache_conn or conn.in_transaction:
            return False
        return bool(st.cursor.execute("PRAGMA data_version").fetchone()[0] == st.version)

    def _fetch(self, key: _Key) -> None:
        """Read a session and an identity in one statement into the cache (trusted only)."""
        row = self._one(_SELECT_BOTH, (key[0], key[1], key[0], key[1]))
        st = self._local.state
        if len(st.sessions) >= _CACHE_MAX or len(st.identities) >= _CACHE_MAX:
            self._flush(st)  # records stored behind live in the cache until written
            st.sessions.clear()
            st.identities.clear()
        if key not in st.sessions:
            st.sessions[key] = (SessionRecord.from_bytes(bytes(row[0]))
                                if row[0] is not None else None)
        if key not in st.identities:
            st.identities[key] = bytes(row[1]) if row[1] is not None else None

    # identity
    def get_local_identity(self) -> LocalIdentity | None:
        row = self._one("SELECT private_key, registration_id FROM e2ee_local_identity")
        if row is None:
            return None
        return LocalIdentity(KeyPair.from_private(bytes(row[0])), int(row[1]))

    def set_local_identity(self, identity: LocalIdentity) -> None:
        with self.atomic():
            self._execute("DELETE FROM e2ee_local_identity")
            self._execute("INSERT INTO e2ee_local_identity VALUES (1, ?, ?)",
                          (identity.key_pair.private.raw, identity.registration_id))

    def get_identity(self, address: Address) -> bytes | None:
        key = (address[0], address[1])
        st = self._local.state
        if st.trusted:
            known = st.identities.get(key, _MISSING)
            if known is _MISSING:
                self._fetch(key)
                known = st.identities[key]
            return known  # type: ignore[no-any-return]
        if self._cache_current_outside(st):
            known = st.identities.get(key, _MISSING)
            if known is not _MISSING:
                return known  # type: ignore[no-any-return]
        row = self._one("SELECT identity_key FROM e2ee_identities WHERE user_id = ? "
                        "AND device_id = ?", key)
        return bytes(row[0]) if row is not None else None

    def save_identity(self, address: Address, identity_key: bytes) -> None:
        key = (address[0], address[1])
        with self.atomic():
            st = self._local.state
            st.wrote = True
            self._execute("INSERT INTO e2ee_identities VALUES (?, ?, ?) ON CONFLICT (user_id, "
                          "device_id) DO UPDATE SET identity_key = excluded.identity_key",
                          (key[0], key[1], bytes(identity_key)))
            if st.trusted:
                st.identities[key] = bytes(identity_key)

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
        with self.atomic():
            row = self._one("SELECT seed FROM e2ee_kyber_pre_keys WHERE id = ?", (key_id,))
            if row is not None:
                self._kyber_cache.pop(bytes(row[0]), None)
            self._execute("DELETE FROM e2ee_kyber_pre_keys WHERE id = ?", (key_id,))
            self._execute("DELETE FROM e2ee_kyber_base_keys WHERE kyber_id = ?", (key_id,))

    def kyber_pre_keys(self) -> list[KyberPreKeyRecord]:
        rows = self._execute("SELECT id, seed, signature, created, last_resort FROM "
                             "e2ee_kyber_pre_keys ORDER BY created, id").fetchall()
        return [self._kyber(r) for r in rows]

    def mark_kyber_pre_key_used(self, key_id: int, signed_pre_key_id: int,
                                base_key: bytes) -> bool:
        cursor = self._execute("INSERT INTO e2ee_kyber_base_keys VALUES (?, ?, ?) "
                               "ON CONFLICT DO NOTHING",
                               (key_id, signed_pre_key_id, bytes(base_key)))
        return cursor.rowcount == 1

    # sessions
    def load_session(self, address: Address) -> SessionRecord | None:
        key = (address[0], address[1])
        st = self._local.state
        if st.trusted and key not in st.lent:
            record = st.sessions.get(key, _MISSING)
            if record is _MISSING:
                self._fetch(key)
                record = st.sessions[key]
            if record is not None:
                # Lent, not copied: unless it is stored back in this transaction, the cache
                # forgets it at the end (so a caller's unsaved changes never reach the cache).
                st.lent.add(key)
            return record  # type: ignore[no-any-return]
        if self._cache_current_outside(st):
            record = st.sessions.get(key, _MISSING)
            if record is not _MISSING:
                return record.clone() if record is not None else None
        row = self._one("SELECT record FROM e2ee_sessions WHERE user_id = ? AND device_id = ?",
                        key)
        return SessionRecord.from_bytes(bytes(row[0])) if row is not None else None

    def store_session(self, address: Address, record: SessionRecord) -> None:
        key = (address[0], address[1])
        st = self._local.state
        if st.deferred:  # write-behind: written once, at commit
            st.wrote = True
            st.sessions[key] = st.dirty[key] = record
            st.lent.discard(key)
            return
        if not st.depth:
            with self.atomic():
                self.store_session(address, record)
            return
        data = record.to_bytes()
        st.wrote = True
        if st.conn is not None:
            st.cursor.execute(_UPSERT_SESSION, (key[0], key[1], data))
        else:
            self._execute(_UPSERT_SESSION, (key[0], key[1], data))
        if st.trusted:
            st.sessions[key] = record  # the store owns a stored record
            st.lent.discard(key)

    def delete_session(self, address: Address) -> None:
        key = (address[0], address[1])
        with self.atomic():
            st = self._local.state
            st.wrote = True
            st.dirty.pop(key, None)
            self._execute("DELETE FROM e2ee_sessions WHERE user_id = ? AND device_id = ?", key)
            if st.trusted:
                st.sessions[key] = None

    def session_addresses(self) -> list[Address]:
        st = self._local.state
        if st.deferred:
            self._flush(st)  # the sessions stored behind count
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
