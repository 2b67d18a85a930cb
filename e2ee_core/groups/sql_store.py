"""The persistent :class:`~e2ee_core.groups.store.SenderKeyStore`: SQLite (default) or PostgreSQL.

A thin adapter over :class:`service_kit.database.Database`; the protocol stays in
:mod:`.group_cipher`. Rows hold :meth:`SenderKeyRecord.encode` bytes (chain keys and our own
signing key: protect the database as a key file). :meth:`SqlSenderKeyStore.atomic` opens one
transaction (SQLite: ``BEGIN IMMEDIATE``, so the write lock is held from the first read), and the
group cipher runs every load-modify-store inside it: a process killed mid-way leaves the previous
record, and two processes sharing the database never use one message key twice. The table can
live in the same database as the session stores (pass their :class:`Database`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from e2ee_core.groups.sender_keys import SenderKeyRecord
from e2ee_core.groups.store import SenderAddress
from service_kit.database import Cursor, Database, Transaction
from service_kit.keyfiles import write_secret_file

__all__ = ["SqlSenderKeyStore"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS e2ee_sender_keys (
    owner TEXT NOT NULL, sender_name TEXT NOT NULL, sender_device INTEGER NOT NULL,
    distribution_id {blob} NOT NULL, record {blob} NOT NULL,
    PRIMARY KEY (owner, sender_name, sender_device, distribution_id))
"""


class SqlSenderKeyStore:
    """Sender-key records in a SQLite file (``path``), a ``postgresql://`` DSN, or an existing
    :class:`Database`. ``owner`` names the local device whose records these are, so several
    local devices (or test peers) can share one database; one device needs no owner."""

    def __init__(self, target: str | Path | Database, *, owner: str = "") -> None:
        self.owner = owner
        if isinstance(target, Database):
            self.db = target
        else:
            url = str(target)
            if (not url.startswith(("postgresql://", "postgres://")) and url != ":memory:"
                    and not Path(url).exists()):
                write_secret_file(Path(url), b"")  # 0600 before SQLite writes a byte
            self.db = Database(url)
        self.db.create_schema(SCHEMA)
        self._local = threading.local()

    def __repr__(self) -> str:
        return "SqlSenderKeyStore()"

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """One transaction for everything inside (re-entrant within a thread)."""
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

    def load_sender_key(self, sender: SenderAddress,
                        distribution_id: bytes) -> SenderKeyRecord | None:
        sql = ("SELECT record FROM e2ee_sender_keys WHERE owner = ? AND sender_name = ? "
               "AND sender_device = ? AND distribution_id = ?")
        if self.db.dialect == "postgres" and getattr(self._local, "tx", None) is not None:
            sql += " FOR UPDATE"  # READ COMMITTED: lock the row until this transaction ends
        row = self._execute(sql, (self.owner, sender.name, sender.device_id,
                                  bytes(distribution_id))).fetchone()
        return None if row is None else SenderKeyRecord.decode(bytes(row[0]))

    def store_sender_key(self, sender: SenderAddress, distribution_id: bytes,
                         record: SenderKeyRecord) -> None:
        self._execute(
            "INSERT INTO e2ee_sender_keys VALUES (?, ?, ?, ?, ?) ON CONFLICT (owner, "
            "sender_name, sender_device, distribution_id) DO UPDATE SET record = excluded.record",
            (self.owner, sender.name, sender.device_id, bytes(distribution_id),
             record.encode()))

    def delete_sender_key(self, sender: SenderAddress, distribution_id: bytes) -> None:
        self._execute(
            "DELETE FROM e2ee_sender_keys WHERE owner = ? AND sender_name = ? "
            "AND sender_device = ? AND distribution_id = ?",
            (self.owner, sender.name, sender.device_id, bytes(distribution_id)))
