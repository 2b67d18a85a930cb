"""DirectoryStorage on SQLite (the default) or PostgreSQL, through
:class:`service_kit.database.Database` (the only module here that touches a database).

One epoch is one transaction: the epoch row is inserted first, so two directory instances that
race to publish the same epoch cannot both commit (the loser gets DirectoryError and nothing of
its epoch is kept). Node labels are stored as their 36-byte ``u32be(len) || label_val``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from e2ee_core.keytrans.errors import DirectoryError
from e2ee_core.keytrans.node_label import NodeLabel
from e2ee_core.keytrans.storage import EpochHead, TreeNode, ValueState
from service_kit.database import Database, Transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS keytrans_epochs (
    epoch {bigint} PRIMARY KEY, root_hash {blob} NOT NULL);
CREATE TABLE IF NOT EXISTS keytrans_nodes (
    label {blob} PRIMARY KEY, value {blob} NOT NULL, left_child {blob}, right_child {blob},
    epoch {bigint} NOT NULL, min_descendant_epoch {bigint} NOT NULL, azks_value {blob});
CREATE TABLE IF NOT EXISTS keytrans_states (
    akd_label {blob} NOT NULL, version {bigint} NOT NULL, epoch {bigint} NOT NULL,
    value {blob} NOT NULL, PRIMARY KEY (akd_label, version))
"""

_UPSERT_NODE = """
INSERT INTO keytrans_nodes
    (label, value, left_child, right_child, epoch, min_descendant_epoch, azks_value)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (label) DO UPDATE SET value = excluded.value, left_child = excluded.left_child,
    right_child = excluded.right_child, epoch = excluded.epoch,
    min_descendant_epoch = excluded.min_descendant_epoch, azks_value = excluded.azks_value
"""


def _label_key(label: NodeLabel | None) -> bytes | None:
    return None if label is None else label.to_bytes()


def _label(raw: Any) -> NodeLabel | None:
    if raw is None:
        return None
    data = bytes(raw)
    return NodeLabel(data[4:], int.from_bytes(data[:4], "big"))


class SqlDirectoryStorage:
    """DirectoryStorage in the ``keytrans_*`` tables of ``db`` (created if missing)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._local = threading.local()
        db.create_schema(SCHEMA)

    def _reader(self) -> Database | Transaction:
        tx: Transaction | None = getattr(self._local, "snapshot", None)
        return tx if tx is not None else self._db

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read transaction (nested calls share it): a WAL snapshot on SQLite,
        REPEATABLE READ on PostgreSQL (READ COMMITTED would show each statement new commits)."""
        if getattr(self._local, "snapshot", None) is not None:
            yield
            return
        with self._db.transaction(write=False) as tx:
            if self._db.dialect == "postgres":
                tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            self._local.snapshot = tx
            try:
                yield
            finally:
                self._local.snapshot = None

    def get_node(self, label: NodeLabel) -> TreeNode | None:
        row = self._reader().fetchone(
            "SELECT value, left_child, right_child, epoch, min_descendant_epoch, azks_value"
            " FROM keytrans_nodes WHERE label = ?", (label.to_bytes(),))
        if row is None:
            return None
        value, left, right, epoch, min_epoch, azks_value = row
        return TreeNode(label, bytes(value), _label(left), _label(right), int(epoch),
                        int(min_epoch), None if azks_value is None else bytes(azks_value))

    def get_states(self, akd_label: bytes) -> list[ValueState]:
        rows = self._reader().fetchall(
            "SELECT version, epoch, value FROM keytrans_states WHERE akd_label = ?"
            " ORDER BY version", (akd_label,))
        return [ValueState(int(v), int(e), bytes(value)) for v, e, value in rows]

    def latest_epoch(self) -> EpochHead | None:
        row = self._reader().fetchone(
            "SELECT epoch, root_hash FROM keytrans_epochs ORDER BY epoch DESC LIMIT 1")
        return None if row is None else EpochHead(int(row[0]), bytes(row[1]))

    def epoch_head(self, epoch: int) -> EpochHead | None:
        row = self._reader().fetchone(
            "SELECT epoch, root_hash FROM keytrans_epochs WHERE epoch = ?", (epoch,))
        return None if row is None else EpochHead(int(row[0]), bytes(row[1]))

    def commit_epoch(self, head: EpochHead, nodes: Iterable[TreeNode],
                     states: Mapping[bytes, ValueState]) -> None:
        with self._db.transaction() as tx:
            inserted = tx.execute(
                "INSERT INTO keytrans_epochs (epoch, root_hash) VALUES (?, ?)"
                " ON CONFLICT (epoch) DO NOTHING", (head.epoch, head.root_hash))
            if inserted.rowcount != 1:
                raise DirectoryError("another instance published this epoch first")
            tx.executemany(_UPSERT_NODE, [
                (n.label.to_bytes(), n.value, _label_key(n.left), _label_key(n.right), n.epoch,
                 n.min_descendant_epoch, n.azks_value) for n in nodes])
            tx.executemany(
                "INSERT INTO keytrans_states (akd_label, version, epoch, value)"
                " VALUES (?, ?, ?, ?)",
                [(label, s.version, s.epoch, s.value) for label, s in states.items()])
