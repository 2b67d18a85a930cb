"""The delivery server publishes every device change into its key-transparency directory before
the request returns, serves lookup proofs with bundles and device lists, and the /v1/kt/
endpoints (issue #16). On the in-memory store, SQLite and PostgreSQL; two server instances on
one database (the workers of one server) publishing at once."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from e2ee_core.keytrans.history import HistoryParams, key_history_verify
from e2ee_core.keytrans.lookup import lookup_verify
from e2ee_core.keytrans.proofs import AppendOnlyProof
from e2ee_core.keytrans.tree import audit_verify
from e2ee_core.server.app import create_app
from e2ee_core.server.cli import _parser
from e2ee_core.server.client import ServerClient
from e2ee_core.server.errors import (
    AuthenticationFailed,
    ConfigurationError,
    InvalidRequest,
    NotFound,
)
from e2ee_core.server.kt_wire import KtHead, decode_device_list, device_list_label
from e2ee_core.server.store import SqlStore
from e2ee_core.server.transparency import KeyTransparency
from service_kit.database import Database
from tests.server.support import PASSWORD, device_keys, unique_name
from tests.transparency.conftest import URL, Server, make_server


def client(server: Server) -> ServerClient:
    return ServerClient(URL, session=server.session)


def published(server: Server, username: str) -> dict[int, bytes]:
    return server.kt.published_devices(username)


def stored(server: Server, username: str) -> dict[int, bytes]:
    return {d.device_id: d.identity_key for d in server.store.list_devices(username)}


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_server(request: pytest.FixtureRequest, tmp_path: Path) -> Server:
    if request.param == "memory":
        return make_server("memory:")
    if request.param == "sqlite":
        return make_server(str(tmp_path / "server.db"))
    return make_server(request.getfixturevalue("pg_dsn"))


def test_every_device_change_is_published_before_the_request_returns(
        any_server: Server) -> None:
    server = any_server
    name = unique_name()
    first = client(server)
    first.register(name, PASSWORD, device_keys(1, 1))
    assert published(server, name) == stored(server, name) and len(stored(server, name)) == 1
    second = client(server)
    second.add_device(name, PASSWORD, device_keys(1, 1))
    assert published(server, name) == stored(server, name) and len(stored(server, name)) == 2
    first.remove_device(2)
    assert published(server, name) == stored(server, name) == {
        1: stored(server, name)[1]}
    # The history holds all three lists; the newest has device 1 only.
    head, proof = server.kt.history(name)
    versions = key_history_verify(server.kt.vrf_public_key, head.root_hash, head.epoch,
                                  device_list_label(name), proof)
    assert [sorted(decode_device_list(v.value)) for v in versions] == [[1], [1, 2], [1]]


def test_bundles_and_device_lists_carry_a_lookup_proof_of_what_they_show(
        any_server: Server) -> None:
    server = any_server
    name = unique_name()
    alice = client(server)
    alice.register(name, PASSWORD, device_keys(2, 2))
    client(server).add_device(name, PASSWORD, device_keys(2, 2))
    head = alice.kt_head()
    for bundles, lookup in (alice.fetch_bundles_proved(name),
                            alice.fetch_bundles_proved(name, 2)):
        assert lookup is not None and lookup.epoch == head.epoch
        result = lookup_verify(head.vrf_public_key, lookup.root_hash, lookup.epoch,
                               device_list_label(name), lookup.proof)
        listed = decode_device_list(result.value)
        assert bundles and all(listed[b.device_id] == b.identity_key for b in bundles)
    devices, lookup = alice.list_devices_proved(name)
    assert lookup is not None
    result = lookup_verify(head.vrf_public_key, lookup.root_hash, lookup.epoch,
                           device_list_label(name), lookup.proof)
    assert decode_device_list(result.value) == {d.device_id: d.identity_key for d in devices}
    assert len(lookup.proof) <= 2048  # the bound for a lookup proof


def test_endpoints(any_server: Server) -> None:
    server = any_server
    name = unique_name()
    alice = client(server)
    alice.register(name, PASSWORD, device_keys(1, 1))
    raw = server.session.get(URL + "/v1/kt/head").json()
    assert set(raw) == {"epoch", "root_hash", "vrf_public_key"}  # H2's auditor reads these
    head = KtHead.from_json(raw)
    assert head.vrf_public_key == server.kt.vrf_public_key
    assert alice.kt_epoch(head.epoch).root_hash == head.root_hash
    assert alice.kt_epoch(0).epoch == 0
    with pytest.raises(NotFound):
        alice.kt_epoch(head.epoch + 1)
    # Append-only proofs verify with the auditor's check, from any start.
    start = max(0, head.epoch - 3)
    proof = AppendOnlyProof.from_bytes(alice.kt_append_only(start, head.epoch))
    audit_verify([alice.kt_epoch(e).root_hash for e in range(start, head.epoch + 1)], proof)
    response = server.session.get(URL + f"/v1/kt/append-only?start={start}&end={head.epoch}")
    assert response.headers["Content-Type"] == "application/x-protobuf"
    for query in ("start=1&end=1", "start=2&end=1", f"start=0&end={head.epoch + 1}",
                  "start=0&end=65", "start=-1&end=1", "start=x&end=1", "end=1",
                  "start=1%2E0&end=2", "start=" + "9" * 30 + "&end=1"):
        answer = server.session.get(URL + "/v1/kt/append-only?" + query)
        assert answer.status_code == 400, query
        assert answer.headers["Content-Type"] == "application/problem+json"
    with pytest.raises(InvalidRequest):
        alice.kt_append_only(0, 10_000)
    # History: a device credential, like device lists; 404 for an unknown account.
    with pytest.raises(AuthenticationFailed):
        client(server).kt_history(name)
    epoch, history = alice.kt_history(name)
    assert epoch.epoch == head.epoch
    assert len(key_history_verify(head.vrf_public_key, epoch.root_hash, epoch.epoch,
                                  device_list_label(name), history)) == 1
    with pytest.raises(NotFound):
        alice.kt_history(unique_name())
    epoch, newest = alice.kt_history(name, 1)
    assert len(key_history_verify(head.vrf_public_key, epoch.root_hash, epoch.epoch,
                                  device_list_label(name), newest,
                                  params=HistoryParams.most_recent_n(1))) == 1
    auth = {"Authorization": "Bearer " + alice.credential.credential}  # type: ignore[union-attr]
    for bad in ("0", "4097", "x", "-1", ""):
        answer = server.session.get(URL + f"/v1/kt/history/{name}?most_recent={bad}",
                                    headers=auth)
        assert answer.status_code == 400, bad
    assert server.session.get(URL + "/v1/kt/history/NOT_A_NAME",
                              headers={"Authorization": "Bearer x"}).status_code in (400, 401)


def test_two_instances_on_one_database_publish_every_change(db_url: str) -> None:
    """Two server processes' worth of apps on one database, eight threads changing devices at
    once: every change is published before its request returns, epochs never fork."""
    servers = [make_server(db_url), make_server(db_url)]
    names = [unique_name() for _ in range(8)]
    failures: list[BaseException] = []

    def work(i: int) -> None:
        server = servers[i % 2]
        try:
            client(server).register(names[i], PASSWORD, device_keys(1, 1))
            assert published(server, names[i]) == stored(server, names[i])
            client(servers[(i + 1) % 2]).add_device(names[i], PASSWORD, device_keys(1, 1))
            assert published(server, names[i]) == stored(server, names[i])
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    for name in names:
        assert sorted(published(servers[0], name)) == [1, 2]
    heads = [s.kt.head() for s in servers]
    assert heads[0] == heads[1]
    # One chain of epochs: every step is append-only (no epoch published twice).
    latest = heads[0].epoch
    start = max(0, latest - 20)
    audit_verify([servers[1].kt.epoch(e).root_hash for e in range(start, latest + 1)],
                 AppendOnlyProof.from_bytes(servers[0].kt.append_only(start, latest)))


def test_the_timer_publishes_quiet_epochs_once_for_all_instances(db_url: str) -> None:
    one, two = make_server(db_url), make_server(db_url)
    start = one.kt.head()
    one.kt.tick()  # nothing happened since it started: an empty epoch, the same root
    after = one.kt.head()
    assert after.epoch == start.epoch + 1 and after.root_hash == start.root_hash
    two.kt.tick()  # the other instance saw the epoch move since its start: nothing
    assert two.kt.head().epoch == after.epoch
    two.kt.tick()  # now quiet for a whole interval
    assert one.kt.head().epoch == after.epoch + 1


def test_the_timer_thread_advances_epochs(tmp_path: Path) -> None:
    server = make_server(str(tmp_path / "s.db"), kt_epoch_seconds=0.05)
    first = server.kt.head().epoch
    assert server.kt._timer is None  # started by the first request
    server.session.get(URL + "/v1/health")
    done = threading.Event()
    for _ in range(1200):  # a guard against a dead timer (a minute), not a time check
        if server.kt.head().epoch >= first + 2:
            done.set()
            break
        time.sleep(0.05)
    server.kt.close()
    assert done.is_set(), "the epoch timer published nothing"


def test_settings_and_cli() -> None:
    with pytest.raises(ConfigurationError):
        create_app({"db": "memory:", "kt_epoch_seconds": 0})
    args = _parser().parse_args(["serve", "--kt-epoch-seconds", "5"])
    assert args.kt_epoch_seconds == 5.0
    help_text = subprocess.run([sys.executable, "-m", "e2ee_core.server.cli", "serve", "--help"],
                               capture_output=True, text=True, check=True).stdout
    assert "--kt-epoch-seconds" in help_text and "kt_epoch_seconds" in help_text


def test_the_vrf_key_survives_a_restart_and_is_never_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    db = str(tmp_path / "s.db")
    first = make_server(db)
    name = unique_name()
    client(first).register(name, PASSWORD, device_keys(1, 1))
    secret = bytes(Database(db).fetchone("SELECT value FROM kt_keys")[0])
    second = make_server(db)
    assert second.kt.vrf_public_key == first.kt.vrf_public_key
    assert second.kt.head() == first.kt.head()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert secret.hex() not in text and "event=kt_epoch_published" in text


def test_an_account_from_before_key_transparency_is_published_on_first_lookup(
        tmp_path: Path) -> None:
    db = str(tmp_path / "old.db")
    old = SqlStore(Database(db))
    name = unique_name()
    keys = device_keys(1, 1)
    old.create_account(name, "x", keys, b"h" * 32, now_ms=0)
    old.db.execute("DELETE FROM kt_pending")  # as if written before the outbox existed
    server = make_server(db)
    assert published(server, name) == {}
    lookup = server.kt.lookup(name)
    head = server.kt.head()
    result = lookup_verify(head.vrf_public_key, lookup.root_hash, lookup.epoch,
                           device_list_label(name), lookup.proof)
    assert decode_device_list(result.value) == {1: keys.identity_key}
    with pytest.raises(NotFound):
        server.kt.lookup(unique_name())


def test_a_publisher_that_loses_the_race_retries(tmp_path: Path) -> None:
    """The directory refuses a second publisher of one epoch; the loser reloads and its change
    is published in the next epoch."""
    db = str(tmp_path / "s.db")
    server = make_server(db)
    name = unique_name()
    client(server).register(name, PASSWORD, device_keys(1, 1))
    kt: KeyTransparency = server.kt
    rival = KeyTransparency(server.store, db=Database(db))
    original = kt.directory.publish
    calls: list[int] = []

    def publish_after_rival(updates: Any) -> Any:
        if not calls:  # the rival commits this epoch first
            rival.publish_pending(force=True)
        calls.append(len(updates))
        return original(updates)

    kt.directory.publish = publish_after_rival  # type: ignore[method-assign]
    client(server).add_device(name, PASSWORD, device_keys(1, 1))
    assert len(calls) >= 2 or published(server, name) == stored(server, name)
    assert published(server, name) == stored(server, name)


def test_lookup_proofs_are_reused_within_an_epoch_only(any_server: Server) -> None:
    server = any_server
    name = unique_name()
    client(server).register(name, PASSWORD, device_keys(1, 1))
    first = server.kt.lookup(name)
    again = server.kt.lookup(name)
    assert again is first  # served from the cache
    _, fresh = server.kt.directory.lookup(device_list_label(name))
    assert fresh.to_bytes() == first.proof  # what the directory would make now
    server.kt.publish_pending(force=True)
    later = server.kt.lookup(name)
    head = server.kt.head()
    assert later.epoch == head.epoch == first.epoch + 1 and later is not first
    lookup_verify(head.vrf_public_key, later.root_hash, later.epoch, device_list_label(name),
                  later.proof)
