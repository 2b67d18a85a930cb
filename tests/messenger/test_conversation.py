"""Two accounts with three devices each converse through the real server on the service stack:
every device stores every message meant for its account exactly once; a 409 for a skipped
device is reconciled and retried; a device linked later reads nothing earlier; a removed device
gets nothing new; the server's database and logs hold no plaintext."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from e2ee_core.client import DeviceRemoved, Messenger
from service_kit.logging_filter import find_leaks
from tests.messenger.conftest import InProcess
from tests.messenger.support import Account, drain, seen_once
from tests.support import LiveServer


def secret_text(label: str) -> str:
    return f"{label} {secrets.token_hex(8)}"


def converse(url: str, state_dir: Path) -> tuple[list[str], Account, Account]:
    alice = Account(url, 3, state_dir=state_dir)           # SQLite state files
    bob = Account(url, 3)                                   # in-memory state
    everyone = [*alice.devices, *bob.devices]
    plaintexts: list[str] = []
    sent: dict[bytes, tuple[str, str]] = {}                 # id -> (from account, to account)
    script = [(alice, 0, bob), (bob, 1, alice), (alice, 2, bob), (bob, 2, alice),
              (alice, 1, bob), (bob, 0, alice)]
    for sender, index, recipient in script:
        text = secret_text(f"from {sender.name}")
        plaintexts.append(text)
        content = sender.devices[index].send_text(recipient.name, text)
        sent[content.message_id] = (sender.name, recipient.name)
        drain(everyone, rounds=1)

    # Every device holds all six messages, each once, filed under the other account.
    for account, other in ((alice, bob), (bob, alice)):
        for device in account.devices:
            counts = seen_once(device)
            assert set(counts) == set(sent) and set(counts.values()) == {1}
            for message in device.messages():
                assert message.conversation == other.name
                assert message.outgoing == (sent[message.message_id][0] == account.name)
            assert sorted(m.text or "" for m in device.messages()) == sorted(plaintexts)

    # Bob links a fourth device; Alice's phone has not heard of it and sends: the server
    # refuses (409 missing), the phone fetches the new bundle, notes the change, retries.
    b4 = bob.add_device()
    phone = alice.devices[0]
    refused_before = phone.mismatches
    late = secret_text("after linking")
    plaintexts.append(late)
    late_content = phone.send_text(bob.name, late)
    assert phone.mismatches == refused_before + 1
    assert ("device_added", bob.name, b4.device_id) in [
        (n.kind, n.username, n.device_id) for n in phone.notices()]
    got = b4.receive()
    assert [m.text for m in got] == [late]                  # nothing from before it existed
    assert set(seen_once(b4)) == {late_content.message_id}
    drain([*alice.devices, *bob.devices])
    for device in [*alice.devices, *bob.devices]:
        assert seen_once(device)[late_content.message_id] == 1

    # Bob removes his third device. Alice's laptop still lists it: 409 (extra), retried.
    removed = bob.devices[2]
    bob.devices[0].remove_device(removed.device_id)
    laptop = alice.devices[1]
    after = secret_text("after removal")
    plaintexts.append(after)
    refused_before = laptop.mismatches
    content = laptop.send_text(bob.name, after)
    assert laptop.mismatches == refused_before + 1
    assert ("device_removed", bob.name, removed.device_id) in [
        (n.kind, n.username, n.device_id) for n in laptop.notices()]
    with pytest.raises(DeviceRemoved):
        removed.receive()
    assert content.message_id not in seen_once(removed)
    remaining = [*alice.devices, bob.devices[0], bob.devices[1], b4]
    drain(remaining)
    for device in remaining:
        assert seen_once(device)[content.message_id] == 1
        assert set(seen_once(device).values()) == {1}
    return plaintexts, alice, bob


def assert_no_plaintext(plaintexts: list[str], blobs: list[bytes], logs: str) -> None:
    assert find_leaks(logs.splitlines(), plaintexts) == []
    for blob in blobs:
        for text in plaintexts:
            assert text.encode() not in blob


def test_two_accounts_three_devices_sqlite(stack_server: Callable[..., LiveServer],
                                           tmp_path: Path) -> None:
    db = tmp_path / "server.db"
    server = stack_server(str(db))
    plaintexts, alice, _bob = converse(server.url, tmp_path)
    # Sanity: the client's own state does hold the plaintexts, so the search below can fail.
    client_db = (tmp_path / f"{alice.name}-1.db").read_bytes() + (
        tmp_path / f"{alice.name}-1.db-wal").read_bytes()
    assert plaintexts[0].encode() in client_db
    raw = [p.read_bytes() for p in tmp_path.glob("server.db*")]
    with sqlite3.connect(db) as conn:                      # and every stored value
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                raw += [v if isinstance(v, bytes) else str(v).encode() for v in row]
    server.stop()
    assert_no_plaintext(plaintexts, raw, server.logs())


@pytest.mark.postgres
def test_two_accounts_three_devices_postgres(stack_server: Callable[..., LiveServer],
                                             pg_dsn: str, tmp_path: Path) -> None:
    import psycopg

    server = stack_server(pg_dsn)
    plaintexts, _alice, _bob = converse(server.url, tmp_path)
    values: list[bytes] = []
    with psycopg.connect(pg_dsn) as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                              ).fetchall()
        assert tables
        for (table,) in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"').fetchall():
                values += [bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode()
                           for v in row]
    server.stop()
    assert_no_plaintext(plaintexts, values, server.logs())


def test_resume_from_saved_state(inproc: InProcess, tmp_path: Path) -> None:
    alice = Account(inproc.url, 1, state_dir=tmp_path, session=inproc.session)
    bob = Account(inproc.url, 1, session=inproc.session)
    bob.devices[0].send_text(alice.name, "before restart")
    alice.devices[0].close()
    reopened = Messenger.open(tmp_path / f"{alice.name}-1.db", session=inproc.session)
    assert [m.text for m in reopened.receive()] == ["before restart"]
    reopened.send_text(bob.name, "after restart")
    assert [m.text for m in bob.devices[0].receive()] == ["after restart"]
    assert (tmp_path / f"{alice.name}-1.db").stat().st_mode & 0o777 == 0o600
