"""One small connection layer for every store: SQLite by default, PostgreSQL when shared.

A store is written once against :class:`Database`: ``?`` placeholders (translated to ``%s`` for
psycopg), ``{blob}``/``{serial}``/``{bigint}`` type tokens in DDL, and ``INSERT ... ON CONFLICT
DO NOTHING`` for exactly-once inserts (both engines support it). Connections are per thread and
per process, so a store built before the server starts its workers never shares a socket or
file handle.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

from service_kit.errors import DatabaseError

Dialect = Literal["sqlite", "postgres"]
Params = Sequence[Any]

_DDL_TOKENS: dict[Dialect, dict[str, str]] = {
    "sqlite": {"blob": "BLOB", "serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "bigint": "INTEGER"},
    "postgres": {"blob": "BYTEA", "serial": "BIGSERIAL PRIMARY KEY", "bigint": "BIGINT"},
}


# An arbitrary, fixed advisory-lock key for schema creation across every store of the project.
_SCHEMA_LOCK_ID = 0x6532_6565_7363_6831


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


class Transaction:
    """Statements run inside one transaction; ``?`` placeholders in every dialect."""

    def __init__(self, db: Database, conn: Any) -> None:
        self._db = db
        self._conn = conn

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        cursor: Cursor = self._conn.execute(self._db.translate(sql), tuple(params))
        return cursor

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        if self._db.dialect == "sqlite":
            self._conn.executemany(sql, rows)
        else:
            with self._conn.cursor() as cur:
                cur.executemany(self._db.translate(sql), rows)

    def fetchone(self, sql: str, params: Params = ()) -> Any:
        return self.execute(sql, params).fetchone()

    def fetchall(self, sql: str, params: Params = ()) -> list[Any]:
        return self.execute(sql, params).fetchall()


def _create_private(path: Path) -> None:
    """Create an SQLite file 0600 before SQLite writes a byte (stores hold keys, credentials'
    hashes and queues); SQLite gives its -wal and -shm files the database file's mode. An
    existing file is left as it is."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


_WRITER_LOCKS: dict[str, threading.RLock] = {}
_WRITER_LOCKS_GUARD = threading.Lock()


def _writer_lock(path: str | None) -> threading.RLock | None:
    """The mutex this process's threads take before ``BEGIN IMMEDIATE`` on a SQLite file.

    SQLite lets one writer in at a time; a connection that finds the file locked sleeps in
    SQLite's busy handler (1, 2, 5, 10 ... 100 ms) and retries, so with several threads
    writing, the lock was mostly free while they slept (the delivery server's profile: a fifth
    of its samples in ``BEGIN IMMEDIATE``). Queued on a mutex, the next thread starts as soon
    as the previous one commits. Other processes still meet the busy handler. Re-entrant: a
    thread holding it may open another write transaction on the same file."""
    if path is None or path == ":memory:":
        return None
    key = os.path.realpath(os.path.expanduser(path))
    with _WRITER_LOCKS_GUARD:
        lock = _WRITER_LOCKS.get(key)
        if lock is None:
            lock = _WRITER_LOCKS[key] = threading.RLock()
        return lock


class Database:
    """A SQLite file (``path`` or ``sqlite:///path``) or a PostgreSQL DSN."""

    def __init__(self, url: str) -> None:
        if not url:
            raise DatabaseError("empty database URL")
        self.url = url
        self.dialect: Dialect = "postgres" if is_postgres_url(url) else "sqlite"
        if self.dialect == "sqlite":
            path = url.removeprefix("sqlite:///").removeprefix("sqlite://")
            self.path: str | None = path
            if path != ":memory:":
                Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
                _create_private(Path(path).expanduser())
        else:
            self.path = None
        self._writer = _writer_lock(self.path) if self.dialect == "sqlite" else None
        self._local = threading.local()

    # -- connections -------------------------------------------------------------------------
    def _connect(self) -> Any:
        if self.dialect == "sqlite":
            assert self.path is not None
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL survives a killed process (not a power cut): commits are in the WAL.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA foreign_keys=ON")
            return conn
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - depends on the install extra
            raise DatabaseError("PostgreSQL needs the 'postgres' extra (psycopg)") from exc
        try:
            return psycopg.connect(self.url, autocommit=True)
        except psycopg.OperationalError as exc:
            raise DatabaseError("cannot connect to PostgreSQL") from exc

    def connection(self) -> Any:
        local = self._local
        conn = getattr(local, "conn", None)
        # psycopg marks a connection closed when the server went away (restart, failover,
        # terminated backend): the next statement of this thread connects afresh.
        if getattr(local, "pid", None) != os.getpid() or conn is None \
                or getattr(conn, "closed", False):
            local.conn = self._connect()
            local.pid = os.getpid()
        return local.conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            conn.close()
        self._local.conn = None

    # -- statements --------------------------------------------------------------------------
    def translate(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgres" else sql

    def ddl(self, script: str) -> str:
        return script.format(**_DDL_TOKENS[self.dialect])

    def create_schema(self, script: str) -> None:
        """Run ``;``-separated DDL (with ``{blob}``-style tokens) in one transaction."""
        statements = [s.strip() for s in self.ddl(script).split(";") if s.strip()]
        with self.transaction() as tx:
            if self.dialect == "postgres":
                # Several instances starting at once would race on CREATE ... IF NOT EXISTS
                # (the catalog's unique index fails one of them); serialise schema creation.
                tx.execute("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK_ID,))
            for statement in statements:
                tx.execute(statement)

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Transaction]:
        """One atomic transaction. SQLite write transactions take the lock up front; the
        threads of this process queue for it on a mutex (see :func:`_writer_lock`)."""
        conn = self.connection()
        if self.dialect == "sqlite":
            writer = self._writer if write and not conn.in_transaction else None
            if writer is not None:
                writer.acquire()
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield Transaction(self, conn)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                if writer is not None:
                    writer.release()
        else:
            try:
                with conn.transaction():
                    yield Transaction(self, conn)
            except Exception as exc:
                self._raise_if_lost(conn, exc)
                raise

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        """One statement in its own transaction (autocommit)."""
        conn = self.connection()
        try:
            cursor: Cursor = conn.execute(self.translate(sql), tuple(params))
        except Exception as exc:
            self._raise_if_lost(conn, exc)
            raise
        return cursor

    def _raise_if_lost(self, conn: Any, exc: Exception) -> None:
        """A statement failed because the connection is gone: forget it (the next statement
        reconnects) and raise :class:`DatabaseError`, which services answer with 503."""
        if self.dialect == "postgres" and getattr(conn, "closed", False):
            if getattr(self._local, "conn", None) is conn:
                self._local.conn = None
            raise DatabaseError("connection to PostgreSQL lost") from exc

    def fetchone(self, sql: str, params: Params = ()) -> Any:
        return self.execute(sql, params).fetchone()

    def fetchall(self, sql: str, params: Params = ()) -> list[Any]:
        return self.execute(sql, params).fetchall()

    def __repr__(self) -> str:  # never print a DSN: it may hold a password
        return f"Database(dialect={self.dialect!r})"
