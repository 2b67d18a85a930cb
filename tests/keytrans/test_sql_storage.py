"""The directory on SQLite and PostgreSQL: the AKD replay gives AKD's epoch hash, proofs
verify, a reopened database continues where it stopped, and two instances racing for one
epoch cannot both commit."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from e2ee_core.keytrans.directory import Directory
from e2ee_core.keytrans.errors import DirectoryError
from e2ee_core.keytrans.history import key_history_verify
from e2ee_core.keytrans.lookup import lookup_verify
from e2ee_core.keytrans.node_label import NodeLabel
from e2ee_core.keytrans.sql_storage import SqlDirectoryStorage
from e2ee_core.keytrans.storage import EpochHead, TreeNode, ValueState
from e2ee_core.keytrans.tree import audit_verify
from service_kit.database import Database
from tests.conftest import VECTORS_DIR

V: dict[str, Any] = json.loads((VECTORS_DIR / "akd_whatsapp_v1.json").read_text())["vectors"][0]
SECRET = bytes.fromhex(V["vrf_secret_key"])


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "kt.sqlite")
    else:
        yield request.getfixturevalue("pg_dsn")


@pytest.fixture
def open_directory(database_url: str) -> Iterator[Callable[[], Directory]]:
    databases: list[Database] = []

    def make() -> Directory:
        db = Database(database_url)
        databases.append(db)
        return Directory(SqlDirectoryStorage(db), SECRET)

    yield make
    for db in databases:
        if db.dialect == "postgres":
            db.execute("DROP TABLE IF EXISTS keytrans_epochs, keytrans_nodes, keytrans_states")
        db.close()


def test_akd_replay_on_sql_gives_akds_epoch_hash_and_verifiable_proofs(
        open_directory: Callable[[], Directory]) -> None:
    directory = open_directory()
    for epoch in range(1, 17):
        directory.publish({str(n).encode(): f"{n},{epoch}".encode()
                           for n in (1, 2, 4, 8, 16) if epoch % n == 0})
    reopened = open_directory()  # a second connection to the same database continues
    for epoch in range(17, V["epoch"] + 1):
        reopened.publish({str(n).encode(): f"{n},{epoch}".encode()
                          for n in (1, 2, 4, 8, 16) if epoch % n == 0})
    head = reopened.current()
    assert (head.epoch, head.root_hash.hex()) == (V["epoch"], V["epoch_hash"])
    label = bytes.fromhex(V["label"])
    _, lookup = reopened.lookup(label)
    assert lookup.to_bytes().hex() == V["lookup_proof"]
    assert lookup_verify(reopened.vrf_public_key, head.root_hash, head.epoch, label,
                         lookup).value == b"16,48"
    _, history = reopened.key_history(label)
    assert history.to_bytes().hex() == V["history_proof_complete"]
    assert len(key_history_verify(reopened.vrf_public_key, head.root_hash, head.epoch, label,
                                  history)) == 3
    audit_verify([reopened.epoch_hash(e) for e in range(40, 50)],
                 reopened.append_only_proof(40, 49))


class StaleLatestEpoch:
    """The real SQL storage, except that latest_epoch answers what was read before another
    instance committed: the window between a publisher's read and its commit."""

    def __init__(self, inner: SqlDirectoryStorage, head: EpochHead) -> None:
        self._inner = inner
        self._head = head

    def get_node(self, label: NodeLabel) -> TreeNode | None:
        return self._inner.get_node(label)

    def get_states(self, akd_label: bytes) -> list[ValueState]:
        return self._inner.get_states(akd_label)

    def latest_epoch(self) -> EpochHead | None:
        return self._head

    def epoch_head(self, epoch: int) -> EpochHead | None:
        return self._inner.epoch_head(epoch)

    def commit_epoch(self, head: EpochHead, nodes: Iterable[TreeNode],
                     states: Mapping[bytes, ValueState]) -> None:
        self._inner.commit_epoch(head, nodes, states)

    def snapshot(self) -> AbstractContextManager[None]:
        return self._inner.snapshot()


def test_racing_instances_cannot_both_publish_an_epoch(
        open_directory: Callable[[], Directory], database_url: str) -> None:
    first = open_directory()
    first.publish({b"alice": b"a1"})
    stale = first.current()  # the second instance reads epoch 1 as the latest ...
    first.publish({b"alice": b"a2"})  # ... then the first commits epoch 2
    db = Database(database_url)
    second = Directory(StaleLatestEpoch(SqlDirectoryStorage(db), stale), SECRET)
    with pytest.raises(DirectoryError):
        second.publish({b"alice": b"evil"})
    db.close()
    head, proof = first.lookup(b"alice")
    assert head.epoch == 2
    assert lookup_verify(first.vrf_public_key, head.root_hash, 2, b"alice", proof).value == b"a2"


def test_a_snapshot_does_not_see_an_epoch_committed_meanwhile(
        open_directory: Callable[[], Directory], database_url: str) -> None:
    """A proof is made from one epoch even while another instance publishes the next."""
    publisher = open_directory()
    publisher.publish({b"alice": b"a1"})
    db = Database(database_url)
    storage = SqlDirectoryStorage(db)
    reader = Directory(storage, SECRET)
    with storage.snapshot():
        head, proof = reader.lookup(b"alice")  # nested: shares the outer snapshot
        publisher.publish({b"alice": b"a2", b"bob": b"b1"})
        assert storage.latest_epoch() == head
        assert reader.lookup(b"alice") == (head, proof)
    assert lookup_verify(reader.vrf_public_key, head.root_hash, head.epoch, b"alice",
                         proof).value == b"a1"
    assert reader.current().epoch == 2
    db.close()
