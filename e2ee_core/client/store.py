"""The Messenger's local state: one SQLite database (a 0600 file, or ``:memory:``).

It holds, beside the Signal session tables of :class:`~e2ee_core.state.sqlite.SQLiteProtocolStore`
(same database, same transactions):

* ``client_meta``: server URL, account name, device id, the device's bearer credential;
* ``client_devices``: the device set (ids and identity keys) this device last accepted for each
  account it talks to, its own included: the reference that device-change notices diff against;
* ``client_contacts``: verified flag, the combined safety number at verification, and the
  ``changed`` flag that blocks sending to a verified contact;
* ``client_notices``: device added / removed / identity changed, for the user to see;
* ``client_messages``: every content received or sent, keyed by (conversation, message id), so a
  message is stored exactly once (the dedup key); visible ones carry their decoded content;
* ``client_reactions``, ``client_receipts`` (read), ``client_deliveries`` (delivered);
* ``client_blocked``: accounts this user blocked (their messages are refused unread);
* ``client_groups`` (encoded
  :class:`~e2ee_core.groups.GroupState`), ``client_group_pending`` (group content that arrived
  before its invitation), ``client_sender_keys``; ``client_timers``; ``client_envelopes``
  (ids of envelopes processed but not yet acknowledged: a redelivery is skipped);
* ``client_labyrinth`` (this device's Labyrinth keys, ORF state and load cursors),
  ``client_labyrinth_epochs`` (every epoch it reached: root key and signed head) and
  ``client_history_outbox`` (messages not yet saved to the mailbox; see
  :mod:`e2ee_core.client.history`).

All statements go through the one per-thread connection of the shared
:class:`~service_kit.database.Database`; :meth:`ClientStore.atomic` is the protocol store's
transaction, so a decrypt and the storing of its message commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from e2ee_core.client.errors import StateError
from e2ee_core.content import Content, ContentError
from e2ee_core.disappearing import StoredMessage, TimerState
from e2ee_core.groups.sender_keys import SenderKeyRecord
from e2ee_core.groups.store import SenderAddress
from e2ee_core.state.sqlite import SQLiteProtocolStore
from service_kit.database import Cursor, Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS client_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS client_devices (
    username TEXT NOT NULL, device_id INTEGER NOT NULL, identity_key {blob} NOT NULL,
    PRIMARY KEY (username, device_id));
CREATE TABLE IF NOT EXISTS client_contacts (
    username TEXT PRIMARY KEY, verified INTEGER NOT NULL DEFAULT 0,
    verified_number TEXT, changed INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS client_notices (
    id {serial}, at_ms {bigint} NOT NULL, kind TEXT NOT NULL, username TEXT NOT NULL,
    device_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS client_messages (
    seq {serial}, conversation TEXT NOT NULL, message_id {blob} NOT NULL,
    sender TEXT NOT NULL, sender_device INTEGER NOT NULL, outgoing INTEGER NOT NULL,
    visible INTEGER NOT NULL, content {blob}, received_at_ms {bigint} NOT NULL,
    read_at_ms {bigint}, expires_at_ms {bigint}, edited INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0, UNIQUE (conversation, message_id));
CREATE INDEX IF NOT EXISTS client_messages_expiry ON client_messages (expires_at_ms);
CREATE TABLE IF NOT EXISTS client_reactions (
    conversation TEXT NOT NULL, target_id {blob} NOT NULL, reactor TEXT NOT NULL,
    emoji TEXT NOT NULL, PRIMARY KEY (conversation, target_id, reactor));
CREATE TABLE IF NOT EXISTS client_receipts (
    conversation TEXT NOT NULL, message_id {blob} NOT NULL, reader TEXT NOT NULL,
    read_at_ms {bigint} NOT NULL, PRIMARY KEY (conversation, message_id, reader));
CREATE TABLE IF NOT EXISTS client_deliveries (
    conversation TEXT NOT NULL, message_id {blob} NOT NULL, recipient TEXT NOT NULL,
    delivered_at_ms {bigint} NOT NULL, PRIMARY KEY (conversation, message_id, recipient));
CREATE TABLE IF NOT EXISTS client_blocked (
    username TEXT PRIMARY KEY, blocked_at_ms {bigint} NOT NULL);
CREATE TABLE IF NOT EXISTS client_groups (group_id {blob} PRIMARY KEY, state {blob} NOT NULL);
CREATE TABLE IF NOT EXISTS client_group_pending (
    id {serial}, group_id {blob} NOT NULL, sender TEXT NOT NULL,
    sender_device INTEGER NOT NULL, content {blob} NOT NULL);
CREATE TABLE IF NOT EXISTS client_group_messages_pending (
    id {serial}, group_id {blob} NOT NULL, sender TEXT NOT NULL,
    sender_device INTEGER NOT NULL, payload {blob} NOT NULL);
CREATE TABLE IF NOT EXISTS client_sender_keys (
    sender TEXT NOT NULL, sender_device INTEGER NOT NULL, distribution_id {blob} NOT NULL,
    record {blob} NOT NULL, PRIMARY KEY (sender, sender_device, distribution_id));
CREATE TABLE IF NOT EXISTS client_timers (
    conversation TEXT PRIMARY KEY, seconds INTEGER, changed_at_ms {bigint} NOT NULL);
CREATE TABLE IF NOT EXISTS client_envelopes (id {bigint} PRIMARY KEY);
CREATE TABLE IF NOT EXISTS client_labyrinth (name TEXT PRIMARY KEY, value {blob} NOT NULL);
CREATE TABLE IF NOT EXISTS client_labyrinth_epochs (
    sequence_id {bigint} PRIMARY KEY, epoch_id {bigint} NOT NULL, root_key {blob} NOT NULL,
    head {blob} NOT NULL);
CREATE TABLE IF NOT EXISTS client_history_outbox (
    id {serial}, thread_id TEXT NOT NULL, message_id TEXT NOT NULL,
    timestamp {bigint} NOT NULL, payload {blob} NOT NULL)
"""


@dataclass(frozen=True)
class Notice:
    """Something the user should see about an account's devices.

    ``kind``: ``device_added``, ``device_removed`` or ``identity_changed`` (a device id now
    shows another identity key: the server or the contact's device is not what it was), or a
    key-transparency notice (``kt_unknown_device``, ``kt_key_changed``, ``kt_key_mismatch``,
    ``kt_proof_failed``, ``kt_rollback``, ``kt_forked_view``, ``kt_directory_key_changed``,
    ``kt_stale``:
    :mod:`e2ee_core.client.transparency`; device id 0 when it is about the directory).
    """

    id: int
    at_ms: int
    kind: str
    username: str
    device_id: int


@dataclass(frozen=True)
class ContactState:
    """Verification state of one contact: verified, the number verified, changed since."""

    verified: bool = False
    number: str | None = None
    changed: bool = False


@dataclass(frozen=True)
class MessageRow:
    """One visible row of ``client_messages`` (``content`` None once deleted for everyone)."""

    conversation: str
    message_id: bytes
    sender: str
    sender_device: int
    outgoing: bool
    content: bytes | None
    received_at_ms: int
    read_at_ms: int | None
    expires_at_ms: int | None
    edited: bool
    deleted: bool


@dataclass(frozen=True)
class PendingGroupContent:
    """Group content that arrived before its invitation."""

    sender: str
    sender_device: int
    content: bytes


@dataclass(frozen=True)
class ParkedGroupMessage:
    """A group message kept until its membership or its sender's key arrives."""

    id: int
    sender: str
    sender_device: int
    payload: bytes


_MESSAGE_COLUMNS = ("conversation, message_id, sender, sender_device, outgoing, content, "
                    "received_at_ms, read_at_ms, expires_at_ms, edited, deleted")


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _message_row(row: Any) -> MessageRow | None:
    if row is None:
        return None
    return MessageRow(str(row[0]), bytes(row[1]), str(row[2]), int(row[3]), bool(row[4]),
                      None if row[5] is None else bytes(row[5]), int(row[6]),
                      _optional_int(row[7]), _optional_int(row[8]), bool(row[9]),
                      bool(row[10]))


class ClientStore:
    """Typed access to the client tables of one database (see the module docstring)."""

    def __init__(self, target: str) -> None:
        self.protocol = SQLiteProtocolStore(target)  # creates the file 0600 first
        self.db: Database = self.protocol.db
        self.db.create_schema(SCHEMA)
        self.sender_keys = SqlSharedSenderKeyStore(self)

    def atomic(self) -> AbstractContextManager[None]:
        """One transaction (re-entrant): the Signal session store's."""
        return self.protocol.atomic()

    def savepoint(self) -> AbstractContextManager[None]:
        """A step undone alone if it raises, inside the enclosing transaction (or one)."""
        return self.protocol.savepoint()

    def write_behind(self) -> AbstractContextManager[None]:
        """One transaction whose session records are written once, at commit; all or nothing
        (see :meth:`~e2ee_core.state.sqlite.SQLiteProtocolStore.write_behind`)."""
        return self.protocol.write_behind()

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Cursor:
        return self.db.execute(sql, params)

    def close(self) -> None:
        self.db.close()

    # -- meta -------------------------------------------------------------------------------
    def get_meta(self, name: str) -> str | None:
        row = self.execute("SELECT value FROM client_meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def require_meta(self, name: str) -> str:
        value = self.get_meta(name)
        if value is None:
            raise StateError("no account in this state (register or link first)")
        return value

    def set_meta(self, name: str, value: str) -> None:
        self.execute("INSERT INTO client_meta VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
                     "SET value = excluded.value", (name, value))

    # -- device sets and contacts -----------------------------------------------------------
    def known_devices(self, username: str) -> dict[int, bytes]:
        rows = self.execute("SELECT device_id, identity_key FROM client_devices WHERE "
                            "username = ? ORDER BY device_id", (username,)).fetchall()
        return {int(r[0]): bytes(r[1]) for r in rows}

    def knows_account(self, username: str) -> bool:
        return self.execute("SELECT 1 FROM client_devices WHERE username = ? LIMIT 1",
                            (username,)).fetchone() is not None

    def put_device(self, username: str, device_id: int, identity_key: bytes) -> None:
        self.execute("INSERT INTO client_devices VALUES (?, ?, ?) ON CONFLICT (username, "
                     "device_id) DO UPDATE SET identity_key = excluded.identity_key",
                     (username, device_id, identity_key))

    def drop_device(self, username: str, device_id: int) -> None:
        self.execute("DELETE FROM client_devices WHERE username = ? AND device_id = ?",
                     (username, device_id))

    def contact(self, username: str) -> ContactState:
        row = self.execute("SELECT verified, verified_number, changed FROM client_contacts "
                           "WHERE username = ?", (username,)).fetchone()
        if row is None:
            return ContactState()
        return ContactState(bool(row[0]), None if row[1] is None else str(row[1]), bool(row[2]))

    def set_contact(self, username: str, *, verified: bool, number: str | None,
                    changed: bool) -> None:
        self.execute("INSERT INTO client_contacts VALUES (?, ?, ?, ?) ON CONFLICT (username) "
                     "DO UPDATE SET verified = excluded.verified, verified_number = "
                     "excluded.verified_number, changed = excluded.changed",
                     (username, int(verified), number, int(changed)))

    def mark_changed(self, username: str) -> bool:
        """Flag a verified contact as changed; returns whether the contact is verified."""
        state = self.contact(username)
        if state.verified:
            self.set_contact(username, verified=True, number=state.number, changed=True)
        return state.verified

    # -- notices ----------------------------------------------------------------------------
    def add_notice(self, at_ms: int, kind: str, username: str, device_id: int) -> None:
        self.execute("INSERT INTO client_notices (at_ms, kind, username, device_id) "
                     "VALUES (?, ?, ?, ?)", (at_ms, kind, username, device_id))

    def has_notice(self, kind: str, username: str, device_id: int) -> bool:
        return self.execute("SELECT 1 FROM client_notices WHERE kind = ? AND username = ? "
                            "AND device_id = ?", (kind, username, device_id)).fetchone() \
            is not None

    def notices(self, after_id: int = 0) -> list[Notice]:
        rows = self.execute("SELECT id, at_ms, kind, username, device_id FROM client_notices "
                            "WHERE id > ? ORDER BY id", (after_id,)).fetchall()
        return [Notice(int(r[0]), int(r[1]), str(r[2]), str(r[3]), int(r[4])) for r in rows]

    # -- envelopes --------------------------------------------------------------------------
    def envelope_seen(self, envelope_id: int) -> bool:
        return self.execute("SELECT 1 FROM client_envelopes WHERE id = ?",
                            (envelope_id,)).fetchone() is not None

    def mark_envelope(self, envelope_id: int) -> None:
        self.execute("INSERT INTO client_envelopes VALUES (?) ON CONFLICT DO NOTHING",
                     (envelope_id,))

    def forget_envelopes(self, ids: list[int]) -> None:
        """Acknowledged ids, forgotten in one transaction (a statement per chunk)."""
        with self.atomic():
            for i in range(0, len(ids), 500):  # SQLite's bound-parameter limit is 999 or more
                chunk = ids[i:i + 500]
                self.execute("DELETE FROM client_envelopes WHERE id IN "
                             f"({', '.join('?' * len(chunk))})", tuple(chunk))

    # -- messages ---------------------------------------------------------------------------
    def insert_message(self, conversation: str, content: Content, *, sender: str,
                       sender_device: int, outgoing: bool, visible: bool,
                       received_at_ms: int, read_at_ms: int | None,
                       expires_at_ms: int | None) -> bool:
        """Store once; returns False when (conversation, message id) is already there."""
        cur = self.execute(
            "INSERT INTO client_messages (conversation, message_id, sender, sender_device, "
            "outgoing, visible, content, received_at_ms, read_at_ms, expires_at_ms) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (conversation, message_id) DO NOTHING",
            (conversation, content.message_id, sender, sender_device, int(outgoing),
             int(visible), content.encode() if visible else None, received_at_ms, read_at_ms,
             expires_at_ms))
        return cur.rowcount == 1

    def message_row(self, conversation: str, message_id: bytes) -> MessageRow | None:
        return _message_row(self.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM client_messages "
            "WHERE conversation = ? AND message_id = ? AND visible = 1",
            (conversation, message_id)).fetchone())

    def message_rows(self, conversation: str | None = None) -> list[MessageRow]:
        where, params = ("AND conversation = ?", (conversation,)) if conversation else ("", ())
        rows = self.execute(f"SELECT {_MESSAGE_COLUMNS} FROM client_messages "
                            f"WHERE visible = 1 {where} ORDER BY seq", params).fetchall()
        return [r for r in map(_message_row, rows) if r is not None]

    def expired_rows(self, now_ms: int) -> list[MessageRow]:
        rows = self.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM client_messages WHERE visible = 1 "
            "AND expires_at_ms IS NOT NULL AND expires_at_ms <= ? ORDER BY expires_at_ms",
            (now_ms,)).fetchall()
        return [r for r in map(_message_row, rows) if r is not None]

    def next_expiry_ms(self) -> int | None:
        row = self.execute("SELECT MIN(expires_at_ms) FROM client_messages WHERE "
                           "visible = 1").fetchone()
        return None if row is None else _optional_int(row[0])

    def set_expiry(self, conversation: str, message_id: bytes, read_at_ms: int | None,
                   expires_at_ms: int | None) -> bool:
        """Set read time and expiry of a stored message; False when there is none."""
        cur = self.execute("UPDATE client_messages SET read_at_ms = ?, expires_at_ms = ? WHERE "
                           "conversation = ? AND message_id = ?",
                           (read_at_ms, expires_at_ms, conversation, message_id))
        return cur.rowcount > 0

    def hide_message(self, conversation: str, message_id: bytes) -> bool:
        """Drop a message's content and its reactions and receipts, keeping a tombstone (so a
        late duplicate is still recognised); False when it was not visible."""
        cur = self.execute(
            "UPDATE client_messages SET content = NULL, visible = 0, expires_at_ms = NULL "
            "WHERE conversation = ? AND message_id = ? AND visible = 1",
            (conversation, message_id))
        if cur.rowcount:
            self.execute("DELETE FROM client_reactions WHERE conversation = ? AND "
                         "target_id = ?", (conversation, message_id))
            self.execute("DELETE FROM client_receipts WHERE conversation = ? AND "
                         "message_id = ?", (conversation, message_id))
        return cur.rowcount == 1

    def mark_deleted(self, conversation: str, message_id: bytes) -> None:
        """A message deleted for everyone: shown as deleted, without content."""
        self.execute("UPDATE client_messages SET visible = 1, deleted = 1 WHERE "
                     "conversation = ? AND message_id = ?", (conversation, message_id))

    def replace_content(self, conversation: str, message_id: bytes, content: Content | None,
                        *, edited: bool = False, deleted: bool = False) -> None:
        self.execute("UPDATE client_messages SET content = ?, edited = edited + ?, "
                     "deleted = ? WHERE conversation = ? AND message_id = ?",
                     (None if content is None else content.encode(), int(edited),
                      int(deleted), conversation, message_id))

    def set_reaction(self, conversation: str, target: bytes, reactor: str,
                     emoji: str | None) -> None:
        if emoji is None:
            self.execute("DELETE FROM client_reactions WHERE conversation = ? AND "
                         "target_id = ? AND reactor = ?", (conversation, target, reactor))
        else:
            self.execute("INSERT INTO client_reactions VALUES (?, ?, ?, ?) ON CONFLICT "
                         "(conversation, target_id, reactor) DO UPDATE SET emoji = "
                         "excluded.emoji", (conversation, target, reactor, emoji))

    def reactions(self, conversation: str, target: bytes) -> dict[str, str]:
        rows = self.execute("SELECT reactor, emoji FROM client_reactions WHERE "
                            "conversation = ? AND target_id = ? ORDER BY reactor",
                            (conversation, target)).fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    def add_receipt(self, conversation: str, message_id: bytes, reader: str,
                    at_ms: int) -> None:
        self.execute("INSERT INTO client_receipts VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                     (conversation, message_id, reader, at_ms))

    def readers(self, conversation: str, message_id: bytes) -> dict[str, int]:
        rows = self.execute("SELECT reader, read_at_ms FROM client_receipts WHERE "
                            "conversation = ? AND message_id = ?",
                            (conversation, message_id)).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def add_delivery(self, conversation: str, message_id: bytes, recipient: str,
                     at_ms: int) -> None:
        self.execute("INSERT INTO client_deliveries VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                     (conversation, message_id, recipient, at_ms))

    def delivered_to(self, conversation: str, message_id: bytes) -> dict[str, int]:
        rows = self.execute("SELECT recipient, delivered_at_ms FROM client_deliveries WHERE "
                            "conversation = ? AND message_id = ?",
                            (conversation, message_id)).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    # -- block list -------------------------------------------------------------------------
    def block(self, username: str, at_ms: int) -> None:
        self.execute("INSERT INTO client_blocked VALUES (?, ?) ON CONFLICT DO NOTHING",
                     (username, at_ms))

    def unblock(self, username: str) -> None:
        self.execute("DELETE FROM client_blocked WHERE username = ?", (username,))

    def is_blocked(self, username: str) -> bool:
        return self.execute("SELECT 1 FROM client_blocked WHERE username = ?",
                            (username,)).fetchone() is not None

    def blocked(self) -> list[str]:
        return [str(r[0]) for r in self.execute(
            "SELECT username FROM client_blocked ORDER BY username").fetchall()]

    # -- timers -----------------------------------------------------------------------------
    def timers(self) -> dict[str, TimerState]:
        rows = self.execute("SELECT conversation, seconds, changed_at_ms FROM client_timers"
                            ).fetchall()
        return {str(r[0]): TimerState(None if r[1] is None else int(r[1]), int(r[2]))
                for r in rows}

    def save_timer(self, conversation: str, state: TimerState) -> None:
        self.execute("INSERT INTO client_timers VALUES (?, ?, ?) ON CONFLICT (conversation) "
                     "DO UPDATE SET seconds = excluded.seconds, changed_at_ms = "
                     "excluded.changed_at_ms", (conversation, state.seconds,
                                                state.changed_at_ms))

    # -- groups -----------------------------------------------------------------------------
    def group_states(self) -> list[bytes]:
        return [bytes(r[0]) for r in self.execute("SELECT state FROM client_groups").fetchall()]

    def save_group(self, group_id: bytes, state: bytes) -> None:
        self.execute("INSERT INTO client_groups VALUES (?, ?) ON CONFLICT (group_id) DO UPDATE "
                     "SET state = excluded.state", (group_id, state))

    def add_pending(self, group_id: bytes, sender: str, sender_device: int,
                    content: bytes, *, limit: int) -> bool:
        """Keep group content for a group not joined yet; False when ``limit`` items are kept."""
        row = self.execute("SELECT COUNT(*) FROM client_group_pending").fetchone()
        if int(row[0]) >= limit:
            return False
        self.execute("INSERT INTO client_group_pending (group_id, sender, sender_device, "
                     "content) VALUES (?, ?, ?, ?)", (group_id, sender, sender_device, content))
        return True

    def take_pending(self, group_id: bytes) -> list[PendingGroupContent]:
        rows = self.execute("SELECT sender, sender_device, content FROM client_group_pending "
                            "WHERE group_id = ? ORDER BY id", (group_id,)).fetchall()
        self.execute("DELETE FROM client_group_pending WHERE group_id = ?", (group_id,))
        return [PendingGroupContent(str(r[0]), int(r[1]), bytes(r[2])) for r in rows]

    def park_group_message(self, group_id: bytes, sender: str, sender_device: int,
                           payload: bytes, *, limit: int) -> bool:
        """Keep a group message this device cannot read yet (the group's membership or the
        sender's key has not arrived); False when ``limit`` are kept."""
        row = self.execute("SELECT COUNT(*) FROM client_group_messages_pending").fetchone()
        if int(row[0]) >= limit:
            return False
        self.execute("INSERT INTO client_group_messages_pending (group_id, sender, "
                     "sender_device, payload) VALUES (?, ?, ?, ?)",
                     (group_id, sender, sender_device, payload))
        return True

    def parked_group_messages(self, group_id: bytes) -> list[ParkedGroupMessage]:
        rows = self.execute("SELECT id, sender, sender_device, payload FROM "
                            "client_group_messages_pending WHERE group_id = ? ORDER BY id",
                            (group_id,)).fetchall()
        return [ParkedGroupMessage(int(r[0]), str(r[1]), int(r[2]), bytes(r[3])) for r in rows]

    def unpark_group_message(self, parked_id: int) -> None:
        self.execute("DELETE FROM client_group_messages_pending WHERE id = ?", (parked_id,))


    # -- Labyrinth (e2ee_core.client.history) ----------------------------------------------
    def labyrinth_get(self, name: str) -> bytes | None:
        row = self.execute("SELECT value FROM client_labyrinth WHERE name = ?",
                           (name,)).fetchone()
        return None if row is None else bytes(row[0])

    def labyrinth_set(self, name: str, value: bytes) -> None:
        self.execute("INSERT INTO client_labyrinth VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
                     "SET value = excluded.value", (name, value))

    def labyrinth_epochs(self) -> list[tuple[int, int, bytes, bytes]]:
        """(sequence id, epoch id, root key, head) of every epoch reached, oldest first."""
        rows = self.execute("SELECT sequence_id, epoch_id, root_key, head FROM "
                            "client_labyrinth_epochs ORDER BY sequence_id").fetchall()
        return [(int(r[0]), int(r[1]), bytes(r[2]), bytes(r[3])) for r in rows]

    def labyrinth_put_epochs(self, epochs: list[tuple[int, int, bytes, bytes]]) -> None:
        with self.atomic():
            for row in epochs:
                self.execute("INSERT INTO client_labyrinth_epochs VALUES (?, ?, ?, ?) ON "
                             "CONFLICT (sequence_id) DO UPDATE SET epoch_id = excluded.epoch_id, "
                             "root_key = excluded.root_key, head = excluded.head", row)

    def history_enqueue(self, rows: list[tuple[str, str, int, bytes]]) -> None:
        """Queue (thread id, message id, timestamp, payload) rows for the mailbox."""
        with self.atomic():
            for row in rows:
                self.execute("INSERT INTO client_history_outbox (thread_id, message_id, "
                             "timestamp, payload) VALUES (?, ?, ?, ?)", row)

    def history_replace(self, thread_id: str, message_id: str, timestamp: int,
                        payload: bytes) -> None:
        """Queue a message's record (an empty payload: its deletion) in place of any row queued
        for it before (the newest state is what the mailbox must end with)."""
        with self.atomic():
            self.execute("DELETE FROM client_history_outbox WHERE thread_id = ? AND "
                         "message_id = ?", (thread_id, message_id))
            self.execute("INSERT INTO client_history_outbox (thread_id, message_id, "
                         "timestamp, payload) VALUES (?, ?, ?, ?)",
                         (thread_id, message_id, timestamp, payload))

    def history_queued(self, limit: int) -> list[tuple[int, str, str, int, bytes]]:
        rows = self.execute("SELECT id, thread_id, message_id, timestamp, payload FROM "
                            "client_history_outbox ORDER BY id LIMIT ?", (limit,)).fetchall()
        return [(int(r[0]), str(r[1]), str(r[2]), int(r[3]), bytes(r[4])) for r in rows]

    def history_dequeue(self, ids: list[int]) -> None:
        with self.atomic():
            for queued_id in ids:
                self.execute("DELETE FROM client_history_outbox WHERE id = ?", (queued_id,))

    def history_queue_length(self) -> int:
        row = self.execute("SELECT COUNT(*) FROM client_history_outbox").fetchone()
        return int(row[0])


class SqlSharedSenderKeyStore:
    """A :class:`~e2ee_core.groups.SenderKeyStore` in the client database that joins the
    client's transactions (the stand-alone ``SqlSenderKeyStore`` opens its own, which SQLite
    cannot nest inside the session store's)."""

    def __init__(self, store: ClientStore) -> None:
        self._store = store

    def load_sender_key(self, sender: SenderAddress,
                        distribution_id: bytes) -> SenderKeyRecord | None:
        row = self._store.execute(
            "SELECT record FROM client_sender_keys WHERE sender = ? AND sender_device = ? AND "
            "distribution_id = ?", (sender.name, sender.device_id, distribution_id)).fetchone()
        return None if row is None else SenderKeyRecord.decode(bytes(row[0]))

    def store_sender_key(self, sender: SenderAddress, distribution_id: bytes,
                         record: SenderKeyRecord) -> None:
        self._store.execute(
            "INSERT INTO client_sender_keys VALUES (?, ?, ?, ?) ON CONFLICT (sender, "
            "sender_device, distribution_id) DO UPDATE SET record = excluded.record",
            (sender.name, sender.device_id, distribution_id, record.encode()))

    def delete_sender_key(self, sender: SenderAddress, distribution_id: bytes) -> None:
        self._store.execute("DELETE FROM client_sender_keys WHERE sender = ? AND "
                            "sender_device = ? AND distribution_id = ?",
                            (sender.name, sender.device_id, distribution_id))

    @contextmanager
    def atomic(self) -> Iterator[None]:
        with self._store.atomic():
            yield


class SqlMessageStore:
    """The :class:`~e2ee_core.disappearing.MessageStore` view of ``client_messages`` (visible
    messages), so :class:`~e2ee_core.disappearing.DisappearingMessages` can sweep and mark read.
    ``delete`` keeps a tombstone without content, so a late duplicate is still recognised."""

    def __init__(self, store: ClientStore, local: tuple[str, int]) -> None:
        self._store = store
        self._local = local

    @staticmethod
    def _stored(row: MessageRow | None) -> StoredMessage | None:
        if row is None or row.content is None:
            return None
        try:
            content = Content.decode(row.content)
        except ContentError:
            return None
        return StoredMessage(row.conversation, content, row.outgoing, row.received_at_ms,
                             row.read_at_ms, row.expires_at_ms)

    def put(self, message: StoredMessage) -> None:
        if not self._store.set_expiry(message.conversation_id, message.message_id,
                                      message.read_at_ms, message.expires_at_ms):
            self._store.insert_message(
                message.conversation_id, message.content, sender=self._local[0],
                sender_device=self._local[1], outgoing=message.outgoing, visible=True,
                received_at_ms=message.received_at_ms, read_at_ms=message.read_at_ms,
                expires_at_ms=message.expires_at_ms)

    def get(self, conversation_id: str, message_id: bytes) -> StoredMessage | None:
        return self._stored(self._store.message_row(conversation_id, message_id))

    def delete(self, conversation_id: str, message_id: bytes) -> bool:
        return self._store.hide_message(conversation_id, message_id)

    def expired(self, now_ms: int) -> list[StoredMessage]:
        out = [self._stored(r) for r in self._store.expired_rows(now_ms)]
        return [m for m in out if m is not None]

    def next_expiry_ms(self) -> int | None:
        return self._store.next_expiry_ms()

    def messages(self, conversation_id: str) -> list[StoredMessage]:
        out = [self._stored(r) for r in self._store.message_rows(conversation_id)]
        return [m for m in out if m is not None]
