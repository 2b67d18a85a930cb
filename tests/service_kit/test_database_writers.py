"""SQLite write transactions of one process queue on a mutex (service_kit.database)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from service_kit import database
from service_kit.database import Database


def test_one_mutex_per_file_however_it_is_named(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    by_path = database._writer_lock(str(tmp_path / "a.db"))
    assert by_path is not None
    assert database._writer_lock("a.db") is by_path
    assert database._writer_lock(str(tmp_path / "." / "a.db")) is by_path
    assert database._writer_lock(str(tmp_path / "b.db")) is not by_path
    assert database._writer_lock(":memory:") is None


def test_a_writer_holds_the_mutex_and_the_others_wait_on_it(tmp_path: Path) -> None:
    """While one thread is inside a write transaction, another thread's write transaction
    waits on the mutex (not in SQLite's sleeping busy handler); reads do not take it; every
    increment of 6 threads x 40 read-modify-write transactions lands."""
    path = str(tmp_path / "w.db")
    first, second = Database(path), Database(path)
    first.create_schema("CREATE TABLE n (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
    first.execute("INSERT INTO n VALUES (1, 0)")
    lock = database._writer_lock(path)
    assert lock is not None
    inside = threading.Event()
    release = threading.Event()
    seen: list[bool] = []

    def holder() -> None:
        with first.transaction() as tx:
            tx.execute("UPDATE n SET v = v + 1")
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    assert inside.wait(10)
    seen.append(lock.acquire(blocking=False))  # held by the writer
    with second.transaction(write=False) as tx:  # a read goes on
        assert tx.fetchone("SELECT v FROM n")[0] == 0
    release.set()
    thread.join(10)
    assert seen == [False]
    assert lock.acquire(blocking=False)  # free again
    lock.release()

    def add(db_path: str) -> None:
        db = Database(db_path)
        for _ in range(40):
            with db.transaction() as tx:
                value = tx.fetchone("SELECT v FROM n")[0]
                tx.execute("UPDATE n SET v = ?", (value + 1,))
        db.close()

    workers = [threading.Thread(target=add, args=(path if i % 2 else os.path.relpath(path),))
               for i in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert first.fetchone("SELECT v FROM n")[0] == 1 + 6 * 40


def test_a_failed_transaction_releases_the_mutex(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "f.db"))
    db.create_schema("CREATE TABLE t (x INTEGER)")
    with pytest.raises(RuntimeError), db.transaction() as tx:
        tx.execute("INSERT INTO t VALUES (1)")
        raise RuntimeError("undo")
    lock = database._writer_lock(str(tmp_path / "f.db"))
    assert lock is not None and lock.acquire(blocking=False)
    lock.release()
    assert db.fetchone("SELECT count(*) FROM t")[0] == 0
