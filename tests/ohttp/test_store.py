"""Gateway store: key lifecycle and the replay cache, in memory, SQLite and PostgreSQL."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from ohttp_relay import keys, ohttp
from ohttp_relay.keys import ACTIVE, GRACE, RETIRED, KeyRecord, allocate_key_id
from ohttp_relay.store import DatabaseStore, GatewayStore, MemoryStore


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], GatewayStore]:
    if request.param == "memory":
        store = MemoryStore()
        return lambda: store
    if request.param == "sqlite":
        path = str(tmp_path / "gw.db")
        return lambda: DatabaseStore(path)
    dsn = request.getfixturevalue("pg_dsn")
    first = DatabaseStore(dsn)
    with first.db.transaction() as tx:  # the module's database is shared between params
        tx.execute("DELETE FROM ohttp_keys")
        tx.execute("DELETE FROM ohttp_replay")
    return lambda: DatabaseStore(dsn)


def test_key_lifecycle(make_store: Callable[[], GatewayStore]) -> None:
    store = make_store()
    first = store.generate_key(1000)
    assert first.state == ACTIVE and first.key is not None
    rotated = store.rotate(2000, grace=500)
    assert rotated.key_id != first.key_id
    # a second handle (another process or gateway instance) sees the same keys
    records = {r.key_id: r for r in make_store().key_records()}
    assert records[first.key_id].state == GRACE
    assert records[first.key_id].decrypts_at(2499) and not records[first.key_id].decrypts_at(2500)
    assert records[rotated.key_id].state == ACTIVE
    loaded_key = records[first.key_id].key
    assert loaded_key is not None and first.key is not None
    assert loaded_key.private_key == first.key.private_key
    assert store.retire(2100) == []  # grace not over yet
    assert store.retire(2600) == [first.key_id]
    retired = {r.key_id: r for r in store.key_records()}[first.key_id]
    assert retired.state == RETIRED and retired.key is None and not retired.decrypts_at(2600)
    assert store.retire(2700, key_id=rotated.key_id) == [rotated.key_id]


def test_key_ids_never_collide(make_store: Callable[[], GatewayStore]) -> None:
    store = make_store()
    ids = {store.generate_key(1).key_id for _ in range(20)}
    assert len(ids) == 20
    store.retire(5, key_id=3)
    fresh = store.generate_key(6)
    assert fresh.key_id not in ids - {3}


def test_allocation_reuses_only_retired_ids() -> None:
    def record(key_id: int, state: str, retire_at: int | None = None) -> KeyRecord:
        return KeyRecord(key_id, ohttp.KEM_X25519, state, 0, retire_at, None)

    full = [record(i, ACTIVE) for i in range(256)]
    with pytest.raises(keys.StoreError):
        allocate_key_id(full)
    full[9] = record(9, RETIRED, 50)
    full[4] = record(4, RETIRED, 10)
    full[7] = record(7, GRACE, 5)
    assert allocate_key_id(full) == 4


def test_replay_cache(make_store: Callable[[], GatewayStore]) -> None:
    store = make_store()
    enc = os.urandom(32)
    assert store.remember_request(1, enc, now=100, expires_at=160)
    assert not make_store().remember_request(1, enc, now=150, expires_at=210)
    assert store.remember_request(2, enc, now=150, expires_at=210)  # per key id
    assert store.remember_request(1, enc, now=161, expires_at=221)  # expired entries go


def test_sqlite_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "gw.db"
    store = DatabaseStore(str(path))
    store.generate_key(1)
    for candidate in [path, *tmp_path.glob("keys/gw.db-*")]:
        assert stat.S_IMODE(candidate.stat().st_mode) == 0o600, candidate.name


def test_date_window() -> None:
    from ohttp_relay.errors import ReplayError
    from ohttp_relay.replay import ReplayPolicy, check_date, format_http_date

    policy = ReplayPolicy(window=60)
    check_date(format_http_date(1_000_000), 1_000_030, policy)
    check_date(None, 1_000_000, ReplayPolicy(window=60, require_date=False))  # when allowed
    with pytest.raises(ReplayError):
        check_date(None, 1_000_000, policy)  # no Date: refused by default
    for bad in (format_http_date(1_000_000), "yesterday", None):
        with pytest.raises(ReplayError):
            check_date(bad, 1_000_061, ReplayPolicy(window=60, require_date=True))
    check_date("yesterday", 0, ReplayPolicy(window=0))  # window 0 disables the check
    assert policy.remember_for == 121
