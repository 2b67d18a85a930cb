"""The server's database and logs hold none of the plaintexts (issue #15): records sealed with
e2ee_core.labyrinth.mailbox from known plaintexts are saved and loaded through the API, epochs
and the ORF are used, and then the SQLite files (database and WAL) or every PostgreSQL row of
the mailbox, and every captured log record, are searched for the plaintexts, the epoch root
key, the message keys, the entropy, the ORF's input and output."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2ee_core.labyrinth import epochs, mailbox, orf
from e2ee_core.labyrinth.primitives import mac
from e2ee_core.server.app import create_app
from e2ee_core.server.client import ServerClient
from e2ee_core.server.labyrinth_client import LabyrinthClient
from e2ee_core.server.labyrinth_wire import EpochMemberUpload, LoadQuery, MemberKeys, StoredRecord
from service_kit.logging_filter import LogCapture, capture_logs, secret_forms
from tests.server.support import (
    FAST_ARGON2,
    PASSWORD,
    device_keys,
    in_process_session,
    unique_name,
)

BASE = "http://e2ee.test"


def _secrets_and_traffic(db: str) -> tuple[list[bytes], list[bytes], object]:
    """Drive the API like two devices would; return every secret that must never reach the
    server's storage or logs, the record blobs (which must be there: the search is real), and
    the app."""
    app = create_app({"db": db, **FAST_ARGON2})
    session = in_process_session(app)
    first = ServerClient(BASE, session=session)
    name = unique_name()
    first.register(name, PASSWORD, device_keys(0, 0))
    second = ServerClient(BASE, session=session)
    second.add_device(name, PASSWORD, device_keys(0, 0))
    a, b = LabyrinthClient(first), LabyrinthClient(second)
    for lab in (a, b):
        lab.put_member_keys(MemberKeys(os.urandom(32), os.urandom(32), os.urandom(64),
                                       os.urandom(32), os.urandom(64)))
    root = epochs.first_epoch_root()
    epoch = epochs.Epoch(0, a.open_epoch(0, [EpochMemberUpload("d1", os.urandom(32)),
                                             EpochMemberUpload("d2", os.urandom(32))]), root)
    # A second epoch, opened as the core does it: its entropy and root must stay client-side.
    entropy = os.urandom(32)
    nxt = epochs.next_epoch(epoch, entropy)
    previous = epochs.seal_previous_epoch(nxt, epoch)
    second_id = a.open_epoch(1, [EpochMemberUpload("d1", os.urandom(32), os.urandom(81))],
                             previous_epoch_id=epoch.epoch_id,
                             encrypted_previous_sequence_id=previous.encrypted_sequence_id,
                             encrypted_previous_root_key=previous.encrypted_root_key)
    epoch2 = nxt.with_id(second_id)
    plaintexts = [f"PLAINTEXT-{secrets.token_hex(12)}-{k}".encode() for k in range(40)]
    records = []
    for k, text in enumerate(plaintexts):
        current = epoch if k % 2 else epoch2
        records.append(mailbox.seal(current, inbox_id="inbox", thread_id=f"thread-{k % 4}",
                                    message_id=f"m{k}", timestamp=1000 + k, message=text))
    a.save([StoredRecord(r.inbox_id, r.thread_id, r.message_id, r.timestamp, r.epoch_id,
                         r.version, r.blob) for r in records])
    loaded = list(b.iter_records(LoadQuery(limit=9)))
    assert len(loaded) == 40
    by_epoch = {epoch.epoch_id: epoch, epoch2.epoch_id: epoch2}
    opened = sorted(mailbox.open_record(by_epoch[r.epoch_id], mailbox.MailboxRecord(
        r.inbox_id, r.thread_id, r.message_id, r.timestamp, r.epoch_id, r.version, r.blob))
        for r in loaded)
    assert opened == sorted(plaintexts)
    # The ORF: the input and the unblinded hash stay on the client, the output leaves the server
    # only in the answer.
    a.orf_init()
    client = orf.client_init()
    orf_input = f"ATTACHMENT-{secrets.token_hex(12)}".encode()
    outputs = a.orf_evaluate([orf.client_map(client, b"client_domain", orf_input)])
    unblinded = orf.hash_to_curve(mac(orf_input, b"client_domain"))
    message_keys = {mailbox.message_key(e, f"thread-{k}") for e in (epoch, epoch2)
                    for k in range(4)}
    secret_values = [*plaintexts, root, nxt.root_key, nxt.distribution_psk, entropy,
                     *message_keys, orf_input, unblinded, *outputs, PASSWORD.encode()]
    return secret_values, [r.blob for r in records], app


def _assert_absent(haystack: bytes, needles: list[bytes]) -> None:
    """Neither raw nor in any spelling a log or row could use (hex, base64, base64url)."""
    for needle in needles:
        assert needle not in haystack, "a secret reached the server's storage"
        for form in secret_forms(needle):
            assert form.encode() not in haystack, "a secret reached the server's storage"


@pytest.fixture
def captured() -> Iterator[LogCapture]:
    """Every log record of the server, before any redaction (what it would log unfiltered)."""
    with capture_logs(redacting=False) as logs:
        yield logs


def _assert_logs_clean(logs: LogCapture, needles: list[bytes]) -> None:
    assert any("event=labyrinth_" in line for line in logs.lines)  # the server did log
    assert logs.leaks(needles) == []


def test_sqlite_files_and_logs_hold_no_secret(tmp_path: Path, captured: LogCapture) -> None:
    db = tmp_path / "server.db"
    secret_values, blobs, _app = _secrets_and_traffic(str(db))
    files = sorted(tmp_path.glob("server.db*"))
    assert db in files
    stored = b"".join(path.read_bytes() for path in files)
    assert all(blob in stored for blob in blobs)  # the mailbox is in these files
    _assert_absent(stored, secret_values)
    _assert_logs_clean(captured, secret_values)


@pytest.mark.postgres
def test_postgres_rows_and_logs_hold_no_secret(pg_dsn: str, captured: LogCapture) -> None:
    import psycopg

    secret_values, blobs, app = _secrets_and_traffic(pg_dsn)
    try:
        with psycopg.connect(pg_dsn) as conn:
            tables = [r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
            assert "labyrinth_messages" in tables
            dump = b"".join(
                str(row).encode("utf-8", "backslashreplace") + b"".join(
                    bytes(v) for v in row if isinstance(v, (bytes, memoryview)))
                for table in tables for row in conn.execute(f'SELECT * FROM "{table}"'))
    finally:
        listener = app.extensions.get("e2ee_wakeups")  # type: ignore[attr-defined]
        if listener is not None:
            listener.stop()
    assert all(blob in dump for blob in blobs)
    _assert_absent(dump, secret_values)
    _assert_logs_clean(captured, secret_values)
