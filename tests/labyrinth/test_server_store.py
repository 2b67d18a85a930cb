"""LabyrinthStore under concurrency and across restarts, on SQLite and PostgreSQL: one epoch wins
a race, counters stay exact under concurrent saves, a removed device's stale ORF share is swept
at start-up."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from e2ee_core.server.app import create_app
from e2ee_core.server.client import ServerClient
from e2ee_core.server.labyrinth_api import labyrinth_of
from e2ee_core.server.labyrinth_client import LabyrinthClient
from e2ee_core.server.labyrinth_errors import EpochConflict, QuotaExceeded
from e2ee_core.server.labyrinth_store import LabyrinthStore
from e2ee_core.server.labyrinth_wire import (
    EpochMemberUpload,
    LoadQuery,
    MemberKeys,
    OpenEpochRequest,
    StoredRecord,
)
from service_kit.database import Database
from tests.server.support import FAST_ARGON2, PASSWORD, device_keys, in_process_session, unique_name


@pytest.fixture
def store(db_url: str) -> Iterator[LabyrinthStore]:
    yield LabyrinthStore(Database(db_url))


def _keys() -> MemberKeys:
    return MemberKeys(os.urandom(32), os.urandom(32), os.urandom(64), os.urandom(32),
                      os.urandom(64))


def _first_epoch(store: LabyrinthStore, name: str) -> int:
    store.put_member_keys(name, "d1", _keys())
    return store.open_epoch(name, "d1", OpenEpochRequest(0, None, None, None, (
        EpochMemberUpload("d1", os.urandom(32)),)), now_ms=0, is_member=lambda tx, m: True)


def _race(workers: int, job: Callable[[int], Any]) -> list[Any]:
    barrier = threading.Barrier(workers)
    results: list[Any] = [None] * workers

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = job(index)
        except Exception as exc:  # collected and checked by the caller
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_one_of_concurrent_epoch_openings_wins(store: LabyrinthStore) -> None:
    name = unique_name()
    first = _first_epoch(store, name)

    def open_next(index: int) -> int:
        return store.open_epoch(name, "d1", OpenEpochRequest(
            1, first, os.urandom(55), os.urandom(76),
            (EpochMemberUpload("d1", os.urandom(32), os.urandom(81)),), bytes([index])),
            now_ms=index, is_member=lambda tx, m: True)

    results = _race(6, open_next)
    winners = [r for r in results if isinstance(r, int)]
    assert len(winners) == 1, results
    assert all(isinstance(r, EpochConflict) for r in results if not isinstance(r, int))
    listed = store.epochs(name, after_sequence=None, limit=10)
    assert [e.sequence_id for e in listed] == [0, 1] and listed[1].epoch_id == winners[0]


def test_concurrent_saves_keep_the_quota_exact(store: LabyrinthStore) -> None:
    name = unique_name()
    epoch_id = _first_epoch(store, name)
    store.max_messages = 50

    def save(index: int) -> int:
        return store.save(name, [StoredRecord("inbox", "t", f"m{index}-{k}", k, epoch_id, 3,
                                              b"blob") for k in range(10)])

    results = _race(8, save)
    saved = [r for r in results if isinstance(r, int)]
    assert len(saved) == 5, results  # 5 x 10 fit, the other 3 batches are refused whole
    assert all(isinstance(r, QuotaExceeded) for r in results if not isinstance(r, int))
    page = store.load(name, LoadQuery(limit=1000))
    assert len(page.records) == 50
    with pytest.raises(QuotaExceeded):
        store.save(name, [StoredRecord("inbox", "t", "one-more", 1, epoch_id, 3, b"x")])


def test_a_stale_share_of_a_removed_device_is_swept_at_start(db_url: str) -> None:
    config = {"db": db_url, **FAST_ARGON2}
    app = create_app(config)
    session = in_process_session(app)
    first = ServerClient("http://e2ee.test", session=session)
    name = unique_name()
    first.register(name, PASSWORD, device_keys(0, 0))
    second = ServerClient("http://e2ee.test", session=session)
    second.add_device(name, PASSWORD, device_keys(0, 0))
    lab = LabyrinthClient(first)
    lab.orf_init()
    store = labyrinth_of(app).store
    store.evolve_share(name, "d1", "d2", lambda share: share)
    # As if the server stopped between the device's removal and the removal hook:
    labyrinth_of(app).delivery.device_removed_hooks.clear()
    first.remove_device(2)
    assert store.share(name, "d2") is not None
    for extension in ("e2ee_wakeups",):
        listener = app.extensions.get(extension)
        if listener is not None:
            listener.stop()
    restarted = create_app(config)
    assert labyrinth_of(restarted).store.share(name, "d2") is None
    assert labyrinth_of(restarted).store.share(name, "d1") is not None
    listener = restarted.extensions.get("e2ee_wakeups")
    if listener is not None:
        listener.stop()
