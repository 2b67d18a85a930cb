"""The delivery server's storage: an interface and its SQL implementation (SQLite, PostgreSQL).

The store keeps accounts, devices and their public keys, per-device envelope queues, the
contact graph needed to announce device changes, and attachment blobs. Contents (envelope
ciphertexts, attachment blobs, public keys) are opaque bytes to it. Every method that changes
more than one row runs in one transaction, so a failed request never leaves partial state.

Concurrency: SQLite write transactions take the database lock up front (``BEGIN IMMEDIATE``),
which serialises them. On PostgreSQL, sends take a share lock on the account rows involved and
device changes an exclusive one, so a send can never be checked against one device set and
stored against another; one-time prekeys are claimed with ``FOR UPDATE SKIP LOCKED`` and a
``DELETE`` whose row count proves that this transaction, and no other, consumed the key.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from e2ee_core.server import consts, wakeups
from e2ee_core.server.errors import (
    AccountExists,
    MismatchedDevices,
    NotFound,
    QueueFull,
    RateLimited,
    ServerError,
    TooManyDevices,
    TooManyPreKeys,
)
from e2ee_core.server.wire import (
    Acknowledgement,
    DeviceInfo,
    DeviceKeys,
    Envelope,
    EnvelopeKind,
    OutgoingEnvelope,
    PreKey,
    PreKeyBundle,
    PreKeyCount,
    PreKeyUpload,
    SignedPreKey,
)
from service_kit.database import Database, Transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    next_device_id {bigint} NOT NULL,
    created_at_ms {bigint} NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    username TEXT NOT NULL REFERENCES accounts (username),
    device_id {bigint} NOT NULL,
    credential_hash {blob} NOT NULL,
    registration_id {bigint} NOT NULL,
    identity_key {blob} NOT NULL,
    signed_prekey_id {bigint} NOT NULL,
    signed_prekey {blob} NOT NULL,
    signed_prekey_signature {blob} NOT NULL,
    last_resort_kem_id {bigint} NOT NULL,
    last_resort_kem {blob} NOT NULL,
    last_resort_kem_signature {blob} NOT NULL,
    created_at_ms {bigint} NOT NULL,
    PRIMARY KEY (username, device_id)
);
CREATE TABLE IF NOT EXISTS one_time_prekeys (
    username TEXT NOT NULL,
    device_id {bigint} NOT NULL,
    key_id {bigint} NOT NULL,
    public_key {blob} NOT NULL,
    PRIMARY KEY (username, device_id, key_id)
);
CREATE TABLE IF NOT EXISTS kem_prekeys (
    username TEXT NOT NULL,
    device_id {bigint} NOT NULL,
    key_id {bigint} NOT NULL,
    public_key {blob} NOT NULL,
    signature {blob} NOT NULL,
    PRIMARY KEY (username, device_id, key_id)
);
CREATE TABLE IF NOT EXISTS envelopes (
    id {serial},
    username TEXT NOT NULL,
    device_id {bigint} NOT NULL,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    source_device {bigint} NOT NULL,
    content {blob},
    server_timestamp_ms {bigint} NOT NULL,
    expires_at_ms {bigint} NOT NULL
);
CREATE INDEX IF NOT EXISTS envelopes_queue ON envelopes (username, device_id, id);
CREATE INDEX IF NOT EXISTS envelopes_expiry ON envelopes (expires_at_ms);
CREATE TABLE IF NOT EXISTS contacts (
    username TEXT NOT NULL,
    contact TEXT NOT NULL,
    PRIMARY KEY (username, contact)
);
CREATE TABLE IF NOT EXISTS attachments (
    id TEXT PRIMARY KEY,
    size {bigint} NOT NULL,
    data {blob} NOT NULL,
    created_at_ms {bigint} NOT NULL,
    expires_at_ms {bigint} NOT NULL
);
CREATE INDEX IF NOT EXISTS attachments_expiry ON attachments (expires_at_ms);
CREATE TABLE IF NOT EXISTS removed_devices (
    username TEXT NOT NULL,
    device_id {bigint} NOT NULL,
    credential_hash {blob} NOT NULL,
    removed_at_ms {bigint} NOT NULL,
    PRIMARY KEY (username, device_id)
);
CREATE TABLE IF NOT EXISTS queue_bounds (
    username TEXT NOT NULL,
    device_id {bigint} NOT NULL,
    bytes {bigint} NOT NULL,
    PRIMARY KEY (username, device_id)
);
CREATE TABLE IF NOT EXISTS event_counts (
    key TEXT PRIMARY KEY,
    window_start_ms {bigint} NOT NULL,
    count {bigint} NOT NULL
);
CREATE TABLE IF NOT EXISTS kt_pending (
    id {serial},
    username TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS kt_pending_username ON kt_pending (username)
"""

_ENVELOPE_COLUMNS = "id, kind, source, source_device, server_timestamp_ms, expires_at_ms, content"
# Bound the number of bound parameters per statement (SQLite's default limit is 32766).
_CHUNK = 500

# PostgreSQL: statements that do in one round trip what SQLite does in several (the profile of
# the PostgreSQL push path: the server threads waited on psycopg round trips).
_PG_LOCK_WITH_DEVICES = (
    "SELECT a.username, d.device_id FROM accounts a LEFT JOIN devices d "
    "ON d.username = a.username "
    "WHERE a.username = ANY(?::text[]) ORDER BY a.username FOR SHARE OF a")
# After the accounts (always in that order: no deadlock), the queue bounds of their devices,
# in key order, held until commit: a send computes each new bound from the current one.
_PG_LOCK_BOUNDS = (
    "SELECT username, device_id, bytes FROM queue_bounds WHERE username = ANY(?::text[]) "
    "ORDER BY username, device_id FOR UPDATE")
_PG_QUEUE_BYTES = (
    "SELECT t.u, t.d, COALESCE((SELECT SUM(LENGTH(e.content)) FROM envelopes e "
    "WHERE e.username = t.u AND e.device_id = t.d), 0) "
    "FROM unnest(?::text[], ?::bigint[]) AS t(u, d)")
_PG_SUBMIT = (
    # The ids are drawn first (in message order) so that the statement can return them in
    # that order (RETURNING's order is not defined).
    "WITH m AS MATERIALIZED (SELECT nextval(pg_get_serial_sequence('envelopes', 'id')) AS id, "
    "u, d, c, s, sd, x, n FROM unnest(?::text[], ?::bigint[], ?::bytea[], ?::text[], "
    "?::bigint[], ?::bigint[]) WITH ORDINALITY AS t(u, d, c, s, sd, x, n)), "
    "queued AS (INSERT INTO envelopes (id, username, device_id, kind, source, source_device, "
    "content, server_timestamp_ms, expires_at_ms) SELECT m.id, m.u, m.d, 'message', m.s, m.sd, "
    "m.c, ?, m.x FROM m ORDER BY m.n RETURNING 1), "
    "contacts_added AS (INSERT INTO contacts (username, contact) "
    "SELECT * FROM unnest(?::text[], ?::text[]) ON CONFLICT (username, contact) DO NOTHING), "
    "bounded AS (UPDATE queue_bounds b SET bytes = t.v "
    "FROM unnest(?::text[], ?::bigint[], ?::bigint[]) AS t(u, d, v) "
    "WHERE b.username = t.u AND b.device_id = t.d) "
    "SELECT (SELECT array_agg(id ORDER BY n) FROM m), pg_notify(?, ?), "
    "(SELECT count(*) FROM queued)")
# Several keys' counts in one statement (SqlStore._count_in, for each key at once).
_PG_COUNT_MANY = (
    "INSERT INTO event_counts (key, window_start_ms, count) "
    "SELECT k, ?, a FROM unnest(?::text[], ?::bigint[]) AS t(k, a) "
    "ON CONFLICT (key) DO UPDATE SET "
    "count = CASE WHEN ? - event_counts.window_start_ms >= ? THEN EXCLUDED.count "
    "ELSE event_counts.count + EXCLUDED.count END, "
    "window_start_ms = CASE WHEN ? - event_counts.window_start_ms >= ? "
    "THEN ? ELSE event_counts.window_start_ms END RETURNING key, count")
# Contacts are inserted in key order here as in _PG_SUBMIT, so that an acknowledgement batch
# and a send batch inserting the same contacts take their index locks in one order.
_PG_ACKNOWLEDGE = (
    "WITH acked AS (SELECT * FROM unnest(?::text[], ?::bigint[], ?::bigint[], ?::boolean[]) "
    "AS a(u, d, i, accepted)), "
    "gone AS (DELETE FROM envelopes e USING acked a WHERE e.username = a.u AND "
    "e.device_id = a.d AND e.id = a.i RETURNING e.username, e.source, e.kind, a.accepted), "
    "contacts_added AS (INSERT INTO contacts (username, contact) SELECT DISTINCT username, "
    "source FROM gone WHERE accepted AND kind = 'message' AND source <> username "
    "ORDER BY 1, 2 ON CONFLICT (username, contact) DO NOTHING) "
    "SELECT count(*) FROM gone")


@dataclass(frozen=True)
class EventLimit:
    """At most ``limit`` events under ``key`` per window of ``window_ms``."""

    key: str
    window_ms: int
    limit: int

    def refusal(self) -> RateLimited:
        """What a send over the limit gets: retry once the window is over."""
        return RateLimited(retry_after=max(1, self.window_ms // 1000))


@dataclass(frozen=True)
class Submission:
    """One send of a batch (:meth:`Store.submit_batch`): a message from ``sender`` to the
    ``recipients`` (one account, or a group message's members), one envelope per device."""

    sender: str
    sender_device: int
    recipients: tuple[str, ...]
    messages: tuple[OutgoingEnvelope, ...]
    expires_at_ms: int
    limit: EventLimit | None = None


@dataclass(frozen=True)
class PurgeCounts:
    """Rows removed by :meth:`Store.purge_expired`."""

    envelopes: int
    attachments: int
    waiting: int = 0  # envelopes still queued afterwards (every device): the queues' depth


class Store(Protocol):
    """What the delivery server needs from storage. Times are integer milliseconds."""

    def create_account(self, username: str, password_hash: str, device: DeviceKeys,
                       credential_hash: bytes, *, now_ms: int) -> int:
        """Create an account with its first device; return the device id (1).

        Raises :class:`AccountExists` if the name is taken.
        """
        ...

    def password_hash(self, username: str) -> str | None:
        """The account's stored password hash, or None if there is no such account."""
        ...

    def set_password_hash(self, username: str, password_hash: str) -> None:
        """Replace the stored hash (used to upgrade hashing parameters on login)."""
        ...

    def add_device(self, username: str, device: DeviceKeys, credential_hash: bytes,
                   *, now_ms: int, expires_at_ms: int) -> int:
        """Add a device, queue a ``device_added`` notice to the account's other devices and to
        every device of its contacts; return the new, never reused, device id."""
        ...

    def remove_device(self, username: str, device_id: int, *, now_ms: int,
                      expires_at_ms: int) -> None:
        """Delete a device with its keys and queue, and queue ``device_removed`` notices."""
        ...

    def credential_hash(self, username: str, device_id: int) -> bytes | None:
        """The stored hash of a device's credential, or None if there is no such device."""
        ...

    def removed_credential_hash(self, username: str, device_id: int) -> bytes | None:
        """The credential hash a removed device had (kept so that the server can tell that
        device, and only it, that it was removed), or None."""
        ...

    def list_devices(self, username: str) -> list[DeviceInfo]:
        """The account's current devices (raises :class:`NotFound` for an unknown account)."""
        ...

    def upload_prekeys(self, username: str, device_id: int, upload: PreKeyUpload) -> None:
        """Add (or replace by id) one-time prekeys; rotate signed prekeys if given."""
        ...

    def prekey_count(self, username: str, device_id: int) -> PreKeyCount:
        """How many one-time EC and KEM prekeys the device has left on the server."""
        ...

    def take_bundles(self, username: str, device_id: int | None = None, *,
                     consume: bool = True) -> list[PreKeyBundle]:
        """One bundle per device (or for one device), consuming one-time prekeys atomically;
        with ``consume=False`` none is handed out (signed and last-resort keys only)."""
        ...

    def submit(self, sender: str, sender_device: int, recipient: str,
               messages: Sequence[OutgoingEnvelope], *, now_ms: int,
               expires_at_ms: int, max_queued_bytes: int | None = None) -> list[int]:
        """Queue one envelope per destination device after checking the device set, and that
        no destination queue would hold more than ``max_queued_bytes`` (:class:`QueueFull`).
        Returns the stored envelopes' ids, in the order of ``messages``.

        Raises :class:`MismatchedDevices` unless ``messages`` cover exactly the recipient's
        devices and the sender's other devices; :class:`NotFound` for an unknown recipient.
        """
        ...

    def submit_multi(self, sender: str, sender_device: int, recipients: Sequence[str],
                     messages: Sequence[OutgoingEnvelope], *, now_ms: int,
                     expires_at_ms: int, max_queued_bytes: int | None = None,
                     limit: EventLimit | None = None) -> list[int]:
        """:meth:`submit` to several accounts at once (a group message), all or nothing:
        ``messages`` must cover exactly every device of every recipient and the sender's other
        devices (those once), else :class:`MismatchedDevices` lists every difference.
        ``limit``: the send is counted under its key in the same transaction (a refused send
        too), and refused with :class:`RateLimited` (nothing queued) once over the limit."""
        ...

    def submit_batch(self, submissions: Sequence[Submission], *, now_ms: int,
                     max_queued_bytes: int | None = None) -> list[list[int] | ServerError]:
        """Several sends (of any senders) in one transaction, each checked and queued as
        :meth:`submit_multi` would, in order: one's refusal (the :class:`ServerError` in its
        place) does not touch the others. Any other failure rolls the whole batch back and
        raises (the caller may then submit them one by one)."""
        ...

    def fetch(self, username: str, device_id: int, now_ms: int,
              limit: int, after_id: int = 0) -> list[Envelope]:
        """Up to ``limit`` unexpired envelopes of the device's queue, oldest first; only those
        with an id above ``after_id`` when it is given."""
        ...

    def acknowledge(self, username: str, device_id: int, ids: Iterable[int],
                    refused: Iterable[int] = ()) -> int:
        """Delete the given envelopes from the device's own queue; return how many existed.
        The senders of the accepted (not ``refused``) messages become contacts of
        ``username``: they hear of its device changes from now on."""
        ...

    def acknowledge_many(self, acks: Sequence[Acknowledgement]) -> int:
        """Several devices' :meth:`acknowledge` in one transaction (the push channel gathers
        them); the total deleted."""
        ...

    def put_attachment(self, data: bytes, now_ms: int, expires_at_ms: int) -> str:
        """Store an opaque blob under a fresh unguessable id."""
        ...

    def get_attachment(self, attachment_id: str, now_ms: int) -> bytes | None:
        """The blob, or None if unknown or expired."""
        ...

    def purge_expired(self, now_ms: int) -> PurgeCounts:
        """Delete expired envelopes and attachments."""
        ...

    def event_count(self, key: str, now_ms: int, window_ms: int) -> tuple[int, int]:
        """Events counted under ``key`` in its current window, and when the window began.
        Counters (wrong passwords, bundle fetches) are shared by every server process."""
        ...

    def count_event(self, key: str, now_ms: int, window_ms: int, amount: int = 1) -> int:
        """Count ``amount`` (a new window when the last one is over); the new count."""
        ...

    def clear_events(self, key: str) -> None:
        """Forget ``key``'s count (a right password clears the account's failures)."""
        ...


class SqlStore:
    """:class:`Store` over :class:`~service_kit.database.Database` (SQLite or PostgreSQL)."""

    def __init__(self, db: Database, *, max_devices: int = consts.MAX_DEVICES_PER_ACCOUNT,
                 max_stored_prekeys: int = consts.MAX_STORED_PREKEYS) -> None:
        self.db = db
        self.max_devices = max_devices
        self.max_stored_prekeys = max_stored_prekeys
        self._local = threading.local()
        self._pg = db.dialect == "postgres"
        self._prepare()
        db.create_schema(SCHEMA)

    # -- plumbing -------------------------------------------------------------------------------
    def _prepare(self) -> Any:
        """Per-connection settings, applied once to each thread's connection."""
        conn = self.db.connection()
        if getattr(self._local, "conn", None) is not conn:
            if not self._pg:
                # Deleted envelopes are overwritten in the file, not left in free pages.
                conn.execute("PRAGMA secure_delete=ON")
            self._local.conn = conn
        return conn

    def _tx(self, *, write: bool = True) -> Any:
        self._prepare()
        return self.db.transaction(write=write)

    def _lock_accounts(self, tx: Transaction, usernames: Iterable[str], *,
                       exclusive: bool) -> set[str]:
        """Lock the account rows (PostgreSQL; SQLite already holds the write lock); return the
        names that exist."""
        names = sorted(set(usernames))
        marks = ",".join("?" * len(names))
        suffix = (" FOR UPDATE" if exclusive else " FOR SHARE") if self._pg else ""
        rows = tx.fetchall(
            f"SELECT username FROM accounts WHERE username IN ({marks}) ORDER BY username"
            + suffix, names)
        return {r[0] for r in rows}

    @staticmethod
    def _device_ids(tx: Transaction, username: str) -> list[int]:
        rows = tx.fetchall("SELECT device_id FROM devices WHERE username = ? ORDER BY device_id",
                           (username,))
        return [int(r[0]) for r in rows]

    def _insert_prekeys(self, tx: Transaction, username: str, device_id: int,
                        one_time: Sequence[PreKey], kem: Sequence[SignedPreKey]) -> None:
        if one_time:
            tx.executemany(
                ("INSERT INTO one_time_prekeys (username, device_id, key_id, "
                       "public_key) VALUES (?, ?, ?, ?) ON CONFLICT (username, device_id, key_id)"
                       " DO UPDATE SET public_key = excluded.public_key"),
                [(username, device_id, k.key_id, k.public_key) for k in one_time])
        if kem:
            tx.executemany(
                ("INSERT INTO kem_prekeys (username, device_id, key_id, "
                       "public_key, signature) VALUES (?, ?, ?, ?, ?) ON CONFLICT (username, "
                       "device_id, key_id) DO UPDATE SET public_key = excluded.public_key, "
                       "signature = excluded.signature"),
                [(username, device_id, k.key_id, k.public_key, k.signature) for k in kem])
        counts = self._count(tx, username, device_id)
        if max(counts.one_time_prekeys, counts.kem_prekeys) > self.max_stored_prekeys:
            raise TooManyPreKeys()

    def _insert_device(self, tx: Transaction, username: str, device_id: int,
                       device: DeviceKeys, credential_hash: bytes, *, now_ms: int) -> None:
        tx.execute(
            "INSERT INTO devices (username, device_id, credential_hash, registration_id, "
            "identity_key, signed_prekey_id, signed_prekey, signed_prekey_signature, "
            "last_resort_kem_id, last_resort_kem, last_resort_kem_signature, created_at_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (username, device_id, credential_hash, device.registration_id, device.identity_key,
             device.signed_prekey.key_id, device.signed_prekey.public_key,
             device.signed_prekey.signature, device.last_resort_kem_prekey.key_id,
             device.last_resort_kem_prekey.public_key, device.last_resort_kem_prekey.signature,
             now_ms))
        self._insert_prekeys(tx, username, device_id, device.one_time_prekeys,
                             device.kem_prekeys)
        tx.execute("INSERT INTO queue_bounds (username, device_id, bytes) VALUES (?, ?, 0) "
                   "ON CONFLICT (username, device_id) DO NOTHING", (username, device_id))

    def _announce(self, tx: Transaction, username: str, device_id: int, kind: EnvelopeKind,
                  *, now_ms: int, expires_at_ms: int) -> None:
        """Queue a notice about ``username``'s device to its other devices and its contacts."""
        rows = tx.fetchall(
            "SELECT username, device_id FROM devices WHERE (username = ? AND device_id <> ?) "
            "OR username IN (SELECT contact FROM contacts WHERE username = ?)",
            (username, device_id, username))
        if rows:
            tx.executemany(
                ("INSERT INTO envelopes (username, device_id, kind, source, "
                       "source_device, content, server_timestamp_ms, expires_at_ms) "
                       "VALUES (?, ?, ?, ?, ?, NULL, ?, ?)"),
                [(r[0], r[1], kind, username, device_id, now_ms, expires_at_ms) for r in rows])

    @staticmethod
    def _kt_pending(tx: Transaction, username: str) -> None:
        """Key transparency's outbox: the account's device list is to be published (in the
        transaction of the change; see e2ee_core.server.transparency)."""
        tx.execute("INSERT INTO kt_pending (username) VALUES (?)", (username,))

    @staticmethod
    def _count(tx: Transaction, username: str, device_id: int) -> PreKeyCount:
        ec = tx.fetchone("SELECT COUNT(*) FROM one_time_prekeys WHERE username = ? AND "
                         "device_id = ?", (username, device_id))
        kem = tx.fetchone("SELECT COUNT(*) FROM kem_prekeys WHERE username = ? AND "
                          "device_id = ?", (username, device_id))
        return PreKeyCount(int(ec[0]), int(kem[0]))

    def _claim(self, tx: Transaction, table: str, columns: str, username: str,
               device_id: int) -> Any:
        """Remove and return the lowest-id one-time key of a device (None when none is left).

        PostgreSQL: skip keys other transactions are claiming; if every remaining key is being
        claimed, wait for those transactions (``FOR UPDATE``) rather than serve no key while
        one may still be free after a rollback.
        """
        where = f"FROM {table} WHERE username = ? AND device_id = ?"
        lock = " FOR UPDATE SKIP LOCKED" if self._pg else ""
        while True:
            row = tx.fetchone(f"SELECT key_id, {columns} {where} ORDER BY key_id LIMIT 1{lock}",
                              (username, device_id))
            if row is None:
                if not self._pg or not tx.fetchone(f"SELECT COUNT(*) {where}",
                                                   (username, device_id))[0]:
                    return None
                lock = " FOR UPDATE"
                continue
            deleted = tx.execute(f"DELETE {where} AND key_id = ?", (username, device_id, row[0]))
            if deleted.rowcount == 1:  # this transaction, and no other, took the key
                return row

    # -- accounts and devices -------------------------------------------------------------------
    def create_account(self, username: str, password_hash: str, device: DeviceKeys,
                       credential_hash: bytes, *, now_ms: int) -> int:
        with self._tx() as tx:
            created = tx.execute(
                "INSERT INTO accounts (username, password_hash, next_device_id, created_at_ms) "
                "VALUES (?, ?, 2, ?) ON CONFLICT (username) DO NOTHING",
                (username, password_hash, now_ms))
            if created.rowcount != 1:
                raise AccountExists()
            self._insert_device(tx, username, 1, device, credential_hash, now_ms=now_ms)
            self._kt_pending(tx, username)
        return 1

    def password_hash(self, username: str) -> str | None:
        self._prepare()
        row = self.db.fetchone("SELECT password_hash FROM accounts WHERE username = ?",
                               (username,))
        return None if row is None else str(row[0])

    def set_password_hash(self, username: str, password_hash: str) -> None:
        self._prepare()
        self.db.execute("UPDATE accounts SET password_hash = ? WHERE username = ?",
                        (password_hash, username))

    def add_device(self, username: str, device: DeviceKeys, credential_hash: bytes,
                   *, now_ms: int, expires_at_ms: int) -> int:
        with self._tx() as tx:
            if not self._lock_accounts(tx, [username], exclusive=True):
                raise NotFound()
            if len(self._device_ids(tx, username)) >= self.max_devices:
                raise TooManyDevices()
            row = tx.fetchone("SELECT next_device_id FROM accounts WHERE username = ?",
                              (username,))
            device_id = int(row[0])
            if device_id > consts.MAX_DEVICE_ID:
                raise TooManyDevices()
            tx.execute("UPDATE accounts SET next_device_id = ? WHERE username = ?",
                       (device_id + 1, username))
            self._insert_device(tx, username, device_id, device, credential_hash, now_ms=now_ms)
            self._announce(tx, username, device_id, "device_added", now_ms=now_ms,
                           expires_at_ms=expires_at_ms)
            self._kt_pending(tx, username)
        return device_id

    def remove_device(self, username: str, device_id: int, *, now_ms: int,
                      expires_at_ms: int) -> None:
        with self._tx() as tx:
            self._lock_accounts(tx, [username], exclusive=True)
            row = tx.execute("SELECT credential_hash FROM devices WHERE username = ? AND "
                             "device_id = ?", (username, device_id)).fetchone()
            if row is None:
                raise NotFound()
            tx.execute("DELETE FROM devices WHERE username = ? AND device_id = ?",
                       (username, device_id))
            tx.execute("INSERT INTO removed_devices (username, device_id, credential_hash, "
                       "removed_at_ms) VALUES (?, ?, ?, ?) ON CONFLICT (username, device_id) "
                       "DO NOTHING", (username, device_id, bytes(row[0]), now_ms))
            for table in ("one_time_prekeys", "kem_prekeys", "envelopes", "queue_bounds"):
                tx.execute(f"DELETE FROM {table} WHERE username = ? AND device_id = ?",
                           (username, device_id))
            self._announce(tx, username, device_id, "device_removed", now_ms=now_ms,
                           expires_at_ms=expires_at_ms)
            self._kt_pending(tx, username)

    def credential_hash(self, username: str, device_id: int) -> bytes | None:
        self._prepare()
        row = self.db.fetchone("SELECT credential_hash FROM devices WHERE username = ? AND "
                               "device_id = ?", (username, device_id))
        return None if row is None else bytes(row[0])

    def removed_credential_hash(self, username: str, device_id: int) -> bytes | None:
        self._prepare()
        row = self.db.fetchone("SELECT credential_hash FROM removed_devices WHERE username = ? "
                               "AND device_id = ?", (username, device_id))
        return None if row is None else bytes(row[0])

    def list_devices(self, username: str) -> list[DeviceInfo]:
        with self._tx(write=False) as tx:
            if not self._lock_accounts(tx, [username], exclusive=False):
                raise NotFound()
            rows = tx.fetchall(
                "SELECT device_id, registration_id, identity_key, created_at_ms FROM devices "
                "WHERE username = ? ORDER BY device_id", (username,))
        return [DeviceInfo(int(r[0]), int(r[1]), bytes(r[2]), int(r[3])) for r in rows]

    # -- keys -----------------------------------------------------------------------------------
    def upload_prekeys(self, username: str, device_id: int, upload: PreKeyUpload) -> None:
        with self._tx() as tx:
            self._insert_prekeys(tx, username, device_id, upload.one_time_prekeys,
                                 upload.kem_prekeys)
            spk = upload.signed_prekey
            if spk is not None:
                tx.execute("UPDATE devices SET signed_prekey_id = ?, signed_prekey = ?, "
                           "signed_prekey_signature = ? WHERE username = ? AND device_id = ?",
                           (spk.key_id, spk.public_key, spk.signature, username, device_id))
            lr = upload.last_resort_kem_prekey
            if lr is not None:
                tx.execute("UPDATE devices SET last_resort_kem_id = ?, last_resort_kem = ?, "
                           "last_resort_kem_signature = ? WHERE username = ? AND device_id = ?",
                           (lr.key_id, lr.public_key, lr.signature, username, device_id))

    def prekey_count(self, username: str, device_id: int) -> PreKeyCount:
        with self._tx(write=False) as tx:
            return self._count(tx, username, device_id)

    def take_bundles(self, username: str, device_id: int | None = None, *,
                     consume: bool = True) -> list[PreKeyBundle]:
        with self._tx() as tx:
            if not self._lock_accounts(tx, [username], exclusive=False):
                raise NotFound()
            sql = ("SELECT device_id, registration_id, identity_key, signed_prekey_id, "
                   "signed_prekey, signed_prekey_signature, last_resort_kem_id, "
                   "last_resort_kem, last_resort_kem_signature FROM devices WHERE username = ?")
            params: tuple[Any, ...] = (username,)
            if device_id is not None:
                sql += " AND device_id = ?"
                params += (device_id,)
            rows = tx.fetchall(sql + " ORDER BY device_id", params)
            if device_id is not None and not rows:
                raise NotFound()
            bundles = []
            for r in rows:
                dev = int(r[0])
                otk = (self._claim(tx, "one_time_prekeys", "public_key", username, dev)
                       if consume else None)
                kem = (self._claim(tx, "kem_prekeys", "public_key, signature", username, dev)
                       if consume else None)
                kem_key = (SignedPreKey(int(r[6]), bytes(r[7]), bytes(r[8])) if kem is None
                           else SignedPreKey(int(kem[0]), bytes(kem[1]), bytes(kem[2])))
                bundles.append(PreKeyBundle(
                    username=username, device_id=dev, registration_id=int(r[1]),
                    identity_key=bytes(r[2]),
                    signed_prekey=SignedPreKey(int(r[3]), bytes(r[4]), bytes(r[5])),
                    kem_prekey=kem_key, kem_prekey_last_resort=kem is None,
                    one_time_prekey=None if otk is None else PreKey(int(otk[0]), bytes(otk[1])),
                ))
        return bundles

    # -- envelopes ------------------------------------------------------------------------------
    def submit(self, sender: str, sender_device: int, recipient: str,
               messages: Sequence[OutgoingEnvelope], *, now_ms: int,
               expires_at_ms: int, max_queued_bytes: int | None = None) -> list[int]:
        return self.submit_multi(sender, sender_device, [recipient], messages, now_ms=now_ms,
                                 expires_at_ms=expires_at_ms,
                                 max_queued_bytes=max_queued_bytes)

    def submit_multi(self, sender: str, sender_device: int, recipients: Sequence[str],
                     messages: Sequence[OutgoingEnvelope], *, now_ms: int,
                     expires_at_ms: int, max_queued_bytes: int | None = None,
                     limit: EventLimit | None = None) -> list[int]:
        [result] = self.submit_batch([Submission(sender, sender_device, tuple(recipients),
                                                 tuple(messages), expires_at_ms, limit)],
                                     now_ms=now_ms, max_queued_bytes=max_queued_bytes)
        if isinstance(result, ServerError):
            raise result
        return result

    def submit_batch(self, submissions: Sequence[Submission], *, now_ms: int,
                     max_queued_bytes: int | None = None) -> list[list[int] | ServerError]:
        """Round trips per batch, not per send: the accounts of every send are locked at once
        (in name order: no deadlock between batches) with their devices, then the devices'
        queue bounds (:meth:`_queue_view`); each send limit is counted once for all its sends;
        each send is checked in order against that view (which its predecessors' envelopes
        update); the accepted sends' envelopes and the new bounds are written together."""
        accounts = sorted({a for sub in submissions for a in (sub.sender, *sub.recipients)})
        results: list[list[int] | ServerError] = []
        with self._tx() as tx:
            existing, devices = self._lock_with_devices(tx, accounts)
            queued, bounded = self._queue_view(tx, accounts, devices, submissions,
                                               max_queued_bytes)
            before = dict(queued)
            counts = self._count_sends(tx, submissions, now_ms)
            accepted: list[int] = []
            for n, (sub, count) in enumerate(zip(submissions, counts, strict=True)):
                try:
                    self._check(sub, count, existing=existing, devices=devices, queued=queued,
                                max_queued_bytes=max_queued_bytes)
                except (NotFound, MismatchedDevices, QueueFull, RateLimited) as exc:
                    results.append(exc)  # committed without envelopes: refused sends count
                    continue
                results.append([])
                if sub.messages:
                    accepted.append(n)
            bounds = {d: queued[d] for d in sorted(bounded)
                      if bounded[d] or queued[d] != before[d]}
            written = self._write_envelopes(tx, [submissions[n] for n in accepted],
                                            now_ms=now_ms, bounds=bounds)
            for n, ids in zip(accepted, written, strict=True):
                results[n] = ids
        return results

    def _queue_view(self, tx: Transaction, accounts: list[str],
                    devices: dict[str, set[tuple[str, int]]], submissions: Sequence[Submission],
                    max_queued_bytes: int | None
                    ) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], bool]]:
        """What the quota check works on: per device, an upper bound of the bytes queued for
        it, exact where the check could fail on the bound.

        ``queue_bounds`` holds, per device, a number never below the bytes of its queue: every
        accepted send adds its bytes in its own transaction, and acknowledgements, expiry and
        removals (which only shrink a queue) leave it alone, so a send costs no pass over the
        queue (a ``SUM`` over 50,000 queued envelopes took 10 ms). Where the bound plus what
        this batch brings would exceed the quota, or a device has no bound yet (devices older
        than the table), the queue is summed once and the bound reset to it. Returns the view
        and, for every device that has a bound to write, whether it was summed."""
        bounds = self._lock_bounds(tx, accounts)
        bounded = dict.fromkeys(bounds, False)
        if max_queued_bytes is None:
            return bounds, bounded
        known = set().union(*devices.values()) if devices else set()
        incoming: dict[tuple[str, int], int] = {}
        for sub in submissions:
            for m in sub.messages:
                key = (m.username, m.device_id)
                incoming[key] = incoming.get(key, 0) + len(m.content)
        recount = sorted(d for d, size in incoming.items() if d in known and (
            d not in bounds or bounds[d] + size > max_queued_bytes))
        if recount:
            bounds.update(self._queue_bytes(tx, recount))
            bounded.update(dict.fromkeys(recount, True))
        return bounds, bounded

    def _lock_with_devices(self, tx: Transaction, accounts: list[str]
                           ) -> tuple[set[str], dict[str, set[tuple[str, int]]]]:
        """Lock the accounts (shared); return those that exist and their devices."""
        devices: dict[str, set[tuple[str, int]]] = {}
        if self._pg:  # one round trip for both
            existing: set[str] = set()
            for r in tx.fetchall(_PG_LOCK_WITH_DEVICES, (accounts,)):
                existing.add(str(r[0]))
                if r[1] is not None:
                    devices.setdefault(str(r[0]), set()).add((str(r[0]), int(r[1])))
            return existing, devices
        existing = self._lock_accounts(tx, accounts, exclusive=False)
        for start in range(0, len(accounts), _CHUNK):
            chunk = accounts[start:start + _CHUNK]
            for r in tx.fetchall("SELECT username, device_id FROM devices WHERE username IN "
                                 f"({','.join('?' * len(chunk))})", tuple(chunk)):
                devices.setdefault(str(r[0]), set()).add((str(r[0]), int(r[1])))
        return existing, devices

    def _lock_bounds(self, tx: Transaction, accounts: list[str]) -> dict[tuple[str, int], int]:
        """The queue bounds of the accounts' devices (PostgreSQL: locked, in key order)."""
        if self._pg:
            rows = tx.fetchall(_PG_LOCK_BOUNDS, (accounts,))
        else:
            rows = []
            for start in range(0, len(accounts), _CHUNK):
                chunk = accounts[start:start + _CHUNK]
                rows += tx.fetchall("SELECT username, device_id, bytes FROM queue_bounds WHERE "
                                    f"username IN ({','.join('?' * len(chunk))})", tuple(chunk))
        return {(str(r[0]), int(r[1])): int(r[2]) for r in rows}

    def _queue_bytes(self, tx: Transaction, devices: list[tuple[str, int]]
                     ) -> dict[tuple[str, int], int]:
        """The exact bytes queued for these devices (in key order), their bound rows created
        and (PostgreSQL) locked first, so that the sum sees every send that raised them."""
        tx.executemany("INSERT INTO queue_bounds (username, device_id, bytes) VALUES (?, ?, 0) "
                       "ON CONFLICT (username, device_id) DO NOTHING", devices)
        users, ids = [u for u, _ in devices], [d for _, d in devices]
        if self._pg:
            tx.fetchall("SELECT 1 FROM queue_bounds WHERE (username, device_id) IN "
                        "(SELECT * FROM unnest(?::text[], ?::bigint[])) "
                        "ORDER BY username, device_id FOR UPDATE", (users, ids))
            return {(str(r[0]), int(r[1])): int(r[2])
                    for r in tx.fetchall(_PG_QUEUE_BYTES, (users, ids))}
        return {(u, d): int(tx.fetchone(
            "SELECT COALESCE(SUM(LENGTH(content)), 0) FROM envelopes WHERE username = ? AND "
            "device_id = ?", (u, d))[0]) for u, d in devices}

    def _count_sends(self, tx: Transaction, submissions: Sequence[Submission],
                     now_ms: int) -> list[int]:
        """Count every send under its limit's key; return the count each send brings its key
        to, as if counted one after the other (0 for a send without a limit)."""
        totals: dict[tuple[str, int], int] = {}
        for sub in submissions:
            if sub.limit is not None:
                key = (sub.limit.key, sub.limit.window_ms)
                totals[key] = totals.get(key, 0) + 1
        if not totals:
            return [0] * len(submissions)
        final = self._count_many(tx, totals, now_ms)
        seen: dict[tuple[str, int], int] = {}
        out = []
        for sub in submissions:
            if sub.limit is None:
                out.append(0)
                continue
            key = (sub.limit.key, sub.limit.window_ms)
            seen[key] = seen.get(key, 0) + 1
            out.append(final[key] - totals[key] + seen[key])
        return out

    def _count_many(self, tx: Transaction, amounts: dict[tuple[str, int], int],
                    now_ms: int) -> dict[tuple[str, int], int]:
        """:meth:`_count_in` for several keys (in key order); PostgreSQL: one statement per
        window length (one in practice)."""
        if not self._pg:
            return {key: self._count_in(tx, key[0], now_ms, key[1], amount)
                    for key, amount in sorted(amounts.items())}
        out: dict[tuple[str, int], int] = {}
        for window in sorted({w for _, w in amounts}):
            keys = sorted(k for k, w in amounts if w == window)
            for row in tx.fetchall(_PG_COUNT_MANY, (
                    now_ms, keys, [amounts[(k, window)] for k in keys],
                    now_ms, window, now_ms, window, now_ms)):
                out[(str(row[0]), window)] = int(row[1])
        return out

    @staticmethod
    def _check(sub: Submission, count: int, *, existing: set[str],
               devices: dict[str, set[tuple[str, int]]], queued: dict[tuple[str, int], int],
               max_queued_bytes: int | None) -> None:
        """Refuse the send (raise) or account for its envelopes in ``queued``."""
        if sub.limit is not None and count > sub.limit.limit:
            raise sub.limit.refusal()
        if any(r not in existing for r in sub.recipients):
            raise NotFound()
        expected = set().union(*(devices.get(a, set())
                                 for a in {sub.sender, *sub.recipients}))
        expected.discard((sub.sender, sub.sender_device))
        got = {(m.username, m.device_id) for m in sub.messages}
        if got != expected:
            raise MismatchedDevices(sorted(expected - got), sorted(got - expected))
        if max_queued_bytes is not None:
            for m in sub.messages:
                if queued.get((m.username, m.device_id), 0) + len(m.content) > \
                        max_queued_bytes:
                    raise QueueFull(retry_after=60)
        for m in sub.messages:
            key = (m.username, m.device_id)
            queued[key] = queued.get(key, 0) + len(m.content)

    def _write_envelopes(self, tx: Transaction, submissions: Sequence[Submission], *,
                         now_ms: int, bounds: dict[tuple[str, int], int]) -> list[list[int]]:
        """Queue the sends' envelopes and return their ids (per send, in the order of its
        messages); the recipients become the senders' contacts (they hear of a sender's
        device changes from now on; not the other way round: a stranger's envelope must not
        make it hear of the recipient's devices, see acknowledge). ``bounds``: the devices'
        new queue bounds (see :meth:`_queue_view`)."""
        contacts = sorted({(sub.sender, r) for sub in submissions for r in sub.recipients
                           if r != sub.sender})
        if not submissions:
            if bounds:  # summed for a refused send: kept, so the next one need not sum
                tx.executemany("UPDATE queue_bounds SET bytes = ? WHERE username = ? AND "
                               "device_id = ?", [(v, u, d) for (u, d), v in bounds.items()])
            return []
        if self._pg:
            # Every envelope, every contact and the wake-up of other server processes' push
            # connections (delivered at commit) in one statement: one round trip. The
            # payload names this process, whose own connections get the envelopes handed
            # over (PushHub.deliver) rather than woken to read them.
            messages = [(sub, m) for sub in submissions for m in sub.messages]
            row = tx.fetchone(_PG_SUBMIT, (
                [m.username for _, m in messages], [m.device_id for _, m in messages],
                [m.content for _, m in messages], [sub.sender for sub, _ in messages],
                [sub.sender_device for sub, _ in messages],
                [sub.expires_at_ms for sub, _ in messages], now_ms,
                [a for a, _ in contacts], [b for _, b in contacts],
                [u for u, _ in bounds], [d for _, d in bounds], list(bounds.values()),
                wakeups.CHANNEL,
                wakeups.payload(((m.username, m.device_id) for _, m in messages),
                                origin=wakeups.origin())))
            flat = iter(int(i) for i in row[0])
            return [[next(flat) for _ in sub.messages] for sub in submissions]
        written = [[int(tx.fetchone(  # one by one: each returns its own id
            "INSERT INTO envelopes (username, device_id, kind, source, source_device, content, "
            "server_timestamp_ms, expires_at_ms) VALUES (?, ?, 'message', ?, ?, ?, ?, ?) "
            "RETURNING id", (m.username, m.device_id, sub.sender, sub.sender_device, m.content,
                             now_ms, sub.expires_at_ms))[0]) for m in sub.messages]
            for sub in submissions]
        if contacts:
            tx.executemany("INSERT INTO contacts (username, contact) VALUES (?, ?) "
                           "ON CONFLICT (username, contact) DO NOTHING", contacts)
        if bounds:
            tx.executemany("UPDATE queue_bounds SET bytes = ? WHERE username = ? AND "
                           "device_id = ?", [(v, u, d) for (u, d), v in bounds.items()])
        return written

    def fetch(self, username: str, device_id: int, now_ms: int,
              limit: int, after_id: int = 0) -> list[Envelope]:
        self._prepare()
        rows = self.db.fetchall(
            f"SELECT {_ENVELOPE_COLUMNS} FROM envelopes WHERE username = ? AND device_id = ? "
            "AND id > ? AND expires_at_ms > ? ORDER BY id LIMIT ?",
            (username, device_id, after_id, now_ms, limit))
        return [Envelope(int(r[0]), r[1], str(r[2]), int(r[3]), int(r[4]), int(r[5]),
                         None if r[6] is None else bytes(r[6])) for r in rows]

    def acknowledge(self, username: str, device_id: int, ids: Iterable[int],
                    refused: Iterable[int] = ()) -> int:
        return self.acknowledge_many([Acknowledgement(username, device_id, tuple(ids),
                                                      tuple(refused))])

    def acknowledge_many(self, acks: Sequence[Acknowledgement]) -> int:
        deleted = 0
        with self._tx() as tx:
            if self._pg:
                return self._acknowledge_all_pg(tx, acks)
            for ack in acks:
                deleted += self._acknowledge_in(tx, ack.username, ack.device_id, ack.ids,
                                                ack.refused)
        return deleted

    @staticmethod
    def _acknowledge_all_pg(tx: Transaction, acks: Sequence[Acknowledgement]) -> int:
        """Every acknowledgement of the batch in one statement (one round trip, not three per
        connection: the profile of the PostgreSQL push path showed the server waiting on them)."""
        users: list[str] = []
        devices: list[int] = []
        ids: list[int] = []
        accepted: list[bool] = []
        for ack in acks:
            refused = set(ack.refused)
            for envelope_id in sorted(set(ack.ids)):
                users.append(ack.username)
                devices.append(ack.device_id)
                ids.append(envelope_id)
                accepted.append(envelope_id not in refused)
        if not ids:
            return 0
        row = tx.fetchone(_PG_ACKNOWLEDGE, (users, devices, ids, accepted))
        return int(row[0])

    @staticmethod
    def _acknowledge_in(tx: Transaction, username: str, device_id: int,
                        ids: Iterable[int], refused: Iterable[int]) -> int:
        wanted = sorted(set(ids))
        no = set(refused)
        deleted = 0
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start:start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            accepted = [c for c in chunk if c not in no]
            if accepted:
                amarks = ",".join("?" * len(accepted))
                senders = tx.fetchall(
                    f"SELECT DISTINCT source FROM envelopes WHERE username = ? AND "
                    f"device_id = ? AND kind = 'message' AND source <> ? AND "
                    f"id IN ({amarks})", (username, device_id, username, *accepted))
                if senders:
                    tx.executemany(
                        "INSERT INTO contacts (username, contact) VALUES (?, ?) "
                        "ON CONFLICT (username, contact) DO NOTHING",
                        [(username, str(r[0])) for r in senders])
            cur = tx.execute(f"DELETE FROM envelopes WHERE username = ? AND device_id = ? "
                             f"AND id IN ({marks})", (username, device_id, *chunk))
            deleted += max(cur.rowcount, 0)
        return deleted

    # -- attachments and expiry -----------------------------------------------------------------
    def put_attachment(self, data: bytes, now_ms: int, expires_at_ms: int) -> str:
        attachment_id = secrets.token_hex(consts.ATTACHMENT_ID_BYTES)
        with self._tx() as tx:
            tx.execute("INSERT INTO attachments (id, size, data, created_at_ms, expires_at_ms) "
                       "VALUES (?, ?, ?, ?, ?)",
                       (attachment_id, len(data), data, now_ms, expires_at_ms))
        return attachment_id

    def get_attachment(self, attachment_id: str, now_ms: int) -> bytes | None:
        self._prepare()
        row = self.db.fetchone("SELECT data FROM attachments WHERE id = ? AND expires_at_ms > ?",
                               (attachment_id, now_ms))
        return None if row is None else bytes(row[0])

    def event_count(self, key: str, now_ms: int, window_ms: int) -> tuple[int, int]:
        self._prepare()
        row = self.db.fetchone("SELECT count, window_start_ms FROM event_counts WHERE key = ?",
                               (key,))
        if row is None or now_ms - int(row[1]) >= window_ms:
            return 0, now_ms
        return int(row[0]), int(row[1])

    def count_event(self, key: str, now_ms: int, window_ms: int, amount: int = 1) -> int:
        with self._tx() as tx:
            return self._count_in(tx, key, now_ms, window_ms, amount)

    @staticmethod
    def _count_in(tx: Transaction, key: str, now_ms: int, window_ms: int, amount: int) -> int:
        # One upsert, atomic on both engines (several server processes share the count).
        row = tx.execute(
            "INSERT INTO event_counts (key, window_start_ms, count) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET "
            "count = CASE WHEN ? - event_counts.window_start_ms >= ? THEN ? "
            "ELSE event_counts.count + ? END, "
            "window_start_ms = CASE WHEN ? - event_counts.window_start_ms >= ? "
            "THEN ? ELSE event_counts.window_start_ms END RETURNING count",
            (key, now_ms, amount, now_ms, window_ms, amount, amount, now_ms, window_ms,
             now_ms)).fetchone()
        return int(row[0])

    def clear_events(self, key: str) -> None:
        self._prepare()
        self.db.execute("DELETE FROM event_counts WHERE key = ?", (key,))

    def purge_expired(self, now_ms: int) -> PurgeCounts:
        with self._tx() as tx:
            env = tx.execute("DELETE FROM envelopes WHERE expires_at_ms <= ?", (now_ms,))
            att = tx.execute("DELETE FROM attachments WHERE expires_at_ms <= ?", (now_ms,))
            waiting = int(tx.execute("SELECT COUNT(*) FROM envelopes").fetchone()[0])
        return PurgeCounts(max(env.rowcount, 0), max(att.rowcount, 0), waiting)

