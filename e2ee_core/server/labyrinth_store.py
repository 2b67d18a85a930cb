"""The Labyrinth mailbox's storage (issue #15): SQL over SQLite or PostgreSQL.

Per account: member keys, epochs with their per-member membership MACs and entropy messages,
the ORF's per-member server shares, virtual devices, mailbox records and attachment
references. Everything a client sends is opaque bytes here; the only secret the server holds
is its ORF share per member (a Ristretto255 scalar), deleted with the member. ORF outputs are
computed by :mod:`e2ee_core.server.labyrinth_api` and never reach this module.

Authorization is the caller's (the API checks the actor); this module enforces the protocol's
own rules in one transaction each: an epoch follows the current one (compare-and-set), its
members exist, every write stays within the account's quotas. SQLite runs with
``secure_delete`` so deleted shares and records are overwritten in the file.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Sequence
from typing import Any

from e2ee_core.server import consts
from e2ee_core.server.errors import NotFound
from e2ee_core.server.labyrinth_errors import AlreadyExists, EpochConflict, QuotaExceeded
from e2ee_core.server.labyrinth_wire import (
    MAX_EPOCH_ID,
    AttachmentReference,
    Cursor,
    EpochRecord,
    LoadQuery,
    MemberInfo,
    MemberKeys,
    OpenEpochRequest,
    RecordKey,
    RecordPage,
    StoredRecord,
    VirtualDevice,
)
from service_kit.database import Database, Transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS labyrinth_accounts (
    username TEXT PRIMARY KEY,
    current_epoch_id {bigint},
    current_sequence_id {bigint},
    epoch_count {bigint} NOT NULL,
    message_count {bigint} NOT NULL,
    message_bytes {bigint} NOT NULL,
    ref_count {bigint} NOT NULL
);
CREATE TABLE IF NOT EXISTS labyrinth_members (
    username TEXT NOT NULL,
    member TEXT NOT NULL,
    device_key_pub {blob} NOT NULL,
    storage_key_pub {blob} NOT NULL,
    storage_key_sig {blob} NOT NULL,
    auth_key_pub {blob} NOT NULL,
    auth_key_sig {blob} NOT NULL,
    PRIMARY KEY (username, member)
);
CREATE TABLE IF NOT EXISTS labyrinth_epochs (
    username TEXT NOT NULL,
    epoch_id {bigint} NOT NULL,
    sequence_id {bigint} NOT NULL,
    previous_epoch_id {bigint},
    enc_previous_sequence {blob},
    enc_previous_root {blob},
    head {blob},
    opener TEXT NOT NULL,
    opener_device_key_pub {blob} NOT NULL,
    opener_storage_key_pub {blob} NOT NULL,
    opener_storage_key_sig {blob} NOT NULL,
    opener_auth_key_pub {blob} NOT NULL,
    opener_auth_key_sig {blob} NOT NULL,
    created_at_ms {bigint} NOT NULL,
    PRIMARY KEY (username, epoch_id),
    UNIQUE (username, sequence_id)
);
CREATE TABLE IF NOT EXISTS labyrinth_epoch_members (
    username TEXT NOT NULL,
    epoch_id {bigint} NOT NULL,
    member TEXT NOT NULL,
    membership_mac {blob} NOT NULL,
    entropy_message {blob},
    PRIMARY KEY (username, epoch_id, member)
);
CREATE TABLE IF NOT EXISTS labyrinth_orf_shares (
    username TEXT NOT NULL,
    member TEXT NOT NULL,
    share {blob} NOT NULL,
    PRIMARY KEY (username, member)
);
CREATE TABLE IF NOT EXISTS labyrinth_vdevices (
    username TEXT NOT NULL,
    vdevice_id TEXT NOT NULL,
    bundle {blob} NOT NULL,
    created_by {bigint} NOT NULL,
    created_at_ms {bigint} NOT NULL,
    PRIMARY KEY (username, vdevice_id)
);
CREATE TABLE IF NOT EXISTS labyrinth_messages (
    username TEXT NOT NULL,
    inbox_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    ts {bigint} NOT NULL,
    epoch_id {bigint} NOT NULL,
    version {bigint} NOT NULL,
    blob {blob} NOT NULL,
    PRIMARY KEY (username, inbox_id, thread_id, message_id)
);
CREATE INDEX IF NOT EXISTS labyrinth_messages_time
    ON labyrinth_messages (username, ts, inbox_id, thread_id, message_id);
CREATE INDEX IF NOT EXISTS labyrinth_messages_thread
    ON labyrinth_messages (username, thread_id, ts, inbox_id, message_id);
CREATE INDEX IF NOT EXISTS labyrinth_messages_id
    ON labyrinth_messages (username, message_id);
CREATE TABLE IF NOT EXISTS labyrinth_attachment_refs (
    username TEXT NOT NULL,
    ref_index TEXT NOT NULL,
    reference {blob} NOT NULL,
    mac {blob} NOT NULL,
    PRIMARY KEY (username, ref_index)
)
"""

_MEMBER_COLUMNS = "device_key_pub, storage_key_pub, storage_key_sig, auth_key_pub, auth_key_sig"
_EPOCH_COLUMNS = ("e.epoch_id, e.sequence_id, e.previous_epoch_id, e.enc_previous_sequence, "
                  "e.enc_previous_root, e.head, e.opener, e.opener_device_key_pub, "
                  "e.opener_storage_key_pub, e.opener_storage_key_sig, e.opener_auth_key_pub, "
                  "e.opener_auth_key_sig, e.created_at_ms")
_RECORD_COLUMNS = "inbox_id, thread_id, message_id, ts, epoch_id, version, blob"
# Bound parameters per statement (SQLite's default limit is 32766).
_CHUNK = 500


def _opt(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def _keys(row: Sequence[Any]) -> MemberKeys:
    return MemberKeys(*(bytes(v) for v in row))


def _epoch(row: Sequence[Any], entropy: Any = None, mac: Any = None) -> EpochRecord:
    return EpochRecord(int(row[0]), int(row[1]), None if row[2] is None else int(row[2]),
                       _opt(row[3]), _opt(row[4]), _opt(row[5]), str(row[6]), _keys(row[7:12]),
                       int(row[12]), _opt(entropy), _opt(mac))


def _record(row: Sequence[Any]) -> StoredRecord:
    return StoredRecord(str(row[0]), str(row[1]), str(row[2]), int(row[3]), int(row[4]),
                        int(row[5]), bytes(row[6]))


class LabyrinthStore:
    """The mailbox tables in ``db`` (the delivery server's own database, or its own file)."""

    def __init__(self, db: Database, *,
                 max_messages: int = consts.LABYRINTH_MAX_MESSAGES_PER_ACCOUNT,
                 max_message_bytes: int = consts.LABYRINTH_MAX_MESSAGE_BYTES_PER_ACCOUNT,
                 max_epochs: int = consts.LABYRINTH_MAX_EPOCHS_PER_ACCOUNT,
                 max_vdevices: int = consts.LABYRINTH_MAX_VDEVICES_PER_ACCOUNT,
                 max_refs: int = consts.LABYRINTH_MAX_ATTACHMENT_REFS_PER_ACCOUNT) -> None:
        self.db = db
        self.max_messages = max_messages
        self.max_message_bytes = max_message_bytes
        self.max_epochs = max_epochs
        self.max_vdevices = max_vdevices
        self.max_refs = max_refs
        self._pg = db.dialect == "postgres"
        self._local = threading.local()
        self._prepare()
        db.create_schema(SCHEMA)

    # -- plumbing ------------------------------------------------------------------------------
    def _prepare(self) -> None:
        conn = self.db.connection()
        if getattr(self._local, "conn", None) is not conn:
            if not self._pg:
                conn.execute("PRAGMA secure_delete=ON")  # deleted shares are overwritten
            self._local.conn = conn

    def _tx(self, *, write: bool = True) -> Any:
        self._prepare()
        return self.db.transaction(write=write)

    def _account(self, tx: Transaction, username: str) -> Sequence[Any]:
        """The account's usage row, created on first use and locked (PostgreSQL) for the rest
        of the transaction: every quota check and epoch compare-and-set is serialised."""
        tx.execute("INSERT INTO labyrinth_accounts (username, epoch_count, message_count, "
                   "message_bytes, ref_count) VALUES (?, 0, 0, 0, 0) "
                   "ON CONFLICT (username) DO NOTHING", (username,))
        lock = " FOR UPDATE" if self._pg else ""
        row: Sequence[Any] = tx.fetchone(
            "SELECT current_epoch_id, current_sequence_id, epoch_count, message_count, "
            "message_bytes, ref_count FROM labyrinth_accounts WHERE username = ?" + lock,
            (username,))
        return row

    @staticmethod
    def _vdevice_exists(tx: Transaction, username: str, member: str) -> bool:
        return tx.fetchone("SELECT 1 FROM labyrinth_vdevices WHERE username = ? AND "
                           "vdevice_id = ?", (username, member[1:])) is not None

    # -- members -------------------------------------------------------------------------------
    def put_member_keys(self, username: str, member: str, keys: MemberKeys) -> None:
        """Set a member's public keys (a device's own, or a registered virtual device's)."""
        with self._tx() as tx:
            if member.startswith("v") and not self._vdevice_exists(tx, username, member):
                raise NotFound()
            tx.execute(
                f"INSERT INTO labyrinth_members (username, member, {_MEMBER_COLUMNS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?) ON CONFLICT (username, member) DO UPDATE SET "
                "device_key_pub = excluded.device_key_pub, storage_key_pub = "
                "excluded.storage_key_pub, storage_key_sig = excluded.storage_key_sig, "
                "auth_key_pub = excluded.auth_key_pub, auth_key_sig = excluded.auth_key_sig",
                (username, member, keys.device_key_pub, keys.storage_key_pub,
                 keys.storage_key_sig, keys.auth_key_pub, keys.auth_key_sig))

    def members(self, username: str) -> list[MemberInfo]:
        """Every member with keys, and its MAC in the current epoch (None if it has none)."""
        with self._tx(write=False) as tx:
            rows = tx.fetchall(
                "SELECT m.member, m.device_key_pub, m.storage_key_pub, m.storage_key_sig, "
                "m.auth_key_pub, m.auth_key_sig, "
                "em.membership_mac FROM labyrinth_members m "
                "LEFT JOIN labyrinth_accounts a ON a.username = m.username "
                "LEFT JOIN labyrinth_epoch_members em ON em.username = m.username AND "
                "em.epoch_id = a.current_epoch_id AND em.member = m.member "
                "WHERE m.username = ? ORDER BY m.member", (username,))
        return [MemberInfo(str(r[0]), _keys(r[1:6]), _opt(r[6])) for r in rows]

    def member_keys(self, username: str, member: str) -> MemberKeys | None:
        self._prepare()
        row = self.db.fetchone(f"SELECT {_MEMBER_COLUMNS} FROM labyrinth_members WHERE "
                               "username = ? AND member = ?", (username, member))
        return None if row is None else _keys(row)

    def remove_member(self, username: str, member: str) -> None:
        """Forget a member: its keys, ORF share, and MACs and entropy messages (device removal;
        a virtual device's deletion also removes its bundle)."""
        with self._tx() as tx:
            for table in ("labyrinth_orf_shares", "labyrinth_members",
                          "labyrinth_epoch_members"):
                tx.execute(f"DELETE FROM {table} WHERE username = ? AND member = ?",
                           (username, member))
            if member.startswith("v"):
                tx.execute("DELETE FROM labyrinth_vdevices WHERE username = ? AND "
                           "vdevice_id = ?", (username, member[1:]))

    # -- epochs --------------------------------------------------------------------------------
    def open_epoch(self, username: str, opener: str, req: OpenEpochRequest, *, now_ms: int,
                   is_member: Any) -> int:
        """Store a new epoch after the current one; return its server-assigned id.

        ``is_member(tx, member)`` says whether a member name is a current device or virtual
        device. The opener must have keys and be among the members.
        """
        with self._tx() as tx:
            current_id, current_seq, epoch_count = self._account(tx, username)[:3]
            if req.previous_epoch_id is None:
                if current_id is not None:
                    raise AlreadyExists("the account already has epochs")
            elif current_id is None or int(current_id) != req.previous_epoch_id \
                    or int(current_seq) + 1 != req.sequence_id:
                raise EpochConflict()
            if int(epoch_count) >= self.max_epochs:
                raise QuotaExceeded()
            if opener not in {m.member for m in req.members}:
                raise EpochConflict("the opener is not a member of its epoch")
            for m in req.members:
                if not is_member(tx, m.member):
                    raise NotFound("an epoch member is not a device of the account")
            keys = tx.fetchone(f"SELECT {_MEMBER_COLUMNS} FROM labyrinth_members WHERE "
                               "username = ? AND member = ?", (username, opener))
            if keys is None:
                raise NotFound("the opener has no Labyrinth keys")
            while True:
                epoch_id = secrets.randbelow(MAX_EPOCH_ID) + 1
                if tx.fetchone("SELECT 1 FROM labyrinth_epochs WHERE username = ? AND "
                               "epoch_id = ?", (username, epoch_id)) is None:
                    break
            tx.execute(
                "INSERT INTO labyrinth_epochs (username, epoch_id, sequence_id, "
                "previous_epoch_id, enc_previous_sequence, enc_previous_root, head, opener, "
                "opener_device_key_pub, opener_storage_key_pub, opener_storage_key_sig, "
                "opener_auth_key_pub, opener_auth_key_sig, created_at_ms) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (username, epoch_id, req.sequence_id, req.previous_epoch_id,
                 req.encrypted_previous_sequence_id, req.encrypted_previous_root_key, req.head,
                 opener, *(bytes(k) for k in keys), now_ms))
            tx.executemany(
                "INSERT INTO labyrinth_epoch_members (username, epoch_id, member, "
                "membership_mac, entropy_message) VALUES (?, ?, ?, ?, ?)",
                [(username, epoch_id, m.member, m.membership_mac, m.entropy_message)
                 for m in req.members])
            tx.execute("UPDATE labyrinth_accounts SET current_epoch_id = ?, "
                       "current_sequence_id = ?, epoch_count = epoch_count + 1 "
                       "WHERE username = ?", (epoch_id, req.sequence_id, username))
        return epoch_id

    def epochs(self, username: str, *, after_sequence: int | None, limit: int,
               member: str | None = None) -> list[EpochRecord]:
        """Epochs in sequence order (after ``after_sequence``), with ``member``'s entropy
        message and MAC in each when a member is named."""
        with self._tx(write=False) as tx:
            rows = tx.fetchall(
                f"SELECT {_EPOCH_COLUMNS}, em.entropy_message, em.membership_mac "
                "FROM labyrinth_epochs e LEFT JOIN labyrinth_epoch_members em ON "
                "em.username = e.username AND em.epoch_id = e.epoch_id AND em.member = ? "
                "WHERE e.username = ? AND e.sequence_id > ? ORDER BY e.sequence_id LIMIT ?",
                (member or "", username, -1 if after_sequence is None else after_sequence,
                 limit))
        return [_epoch(r[:13], r[13], r[14]) for r in rows]

    def epoch(self, username: str, epoch_id: int | None,
              member: str | None = None) -> EpochRecord:
        """One epoch (the current one for None); :class:`NotFound` if there is none."""
        with self._tx(write=False) as tx:
            if epoch_id is None:
                row = tx.fetchone("SELECT current_epoch_id FROM labyrinth_accounts WHERE "
                                  "username = ?", (username,))
                if row is None or row[0] is None:
                    raise NotFound()
                epoch_id = int(row[0])
            row = tx.fetchone(
                f"SELECT {_EPOCH_COLUMNS}, em.entropy_message, em.membership_mac "
                "FROM labyrinth_epochs e LEFT JOIN labyrinth_epoch_members em ON "
                "em.username = e.username AND em.epoch_id = e.epoch_id AND em.member = ? "
                "WHERE e.username = ? AND e.epoch_id = ?", (member or "", username, epoch_id))
        if row is None:
            raise NotFound()
        return _epoch(row[:13], row[13], row[14])

    def put_membership_mac(self, username: str, member: str, mac: bytes) -> None:
        """Add (or replace) a member's MAC in the current epoch (adding a device)."""
        with self._tx() as tx:
            current_id = self._account(tx, username)[0]
            if current_id is None:
                raise NotFound()
            tx.execute("INSERT INTO labyrinth_epoch_members (username, epoch_id, member, "
                       "membership_mac, entropy_message) VALUES (?, ?, ?, ?, NULL) "
                       "ON CONFLICT (username, epoch_id, member) DO UPDATE SET "
                       "membership_mac = excluded.membership_mac",
                       (username, int(current_id), member, mac))

    # -- ORF shares ----------------------------------------------------------------------------
    def init_share(self, username: str, member: str, share: bytes) -> None:
        """The account's first ORF share (refused once any member of the account has one)."""
        with self._tx() as tx:
            self._account(tx, username)
            if tx.fetchone("SELECT 1 FROM labyrinth_orf_shares WHERE username = ?",
                           (username,)) is not None:
                raise AlreadyExists()
            tx.execute("INSERT INTO labyrinth_orf_shares (username, member, share) VALUES "
                       "(?, ?, ?)", (username, member, share))

    def evolve_share(self, username: str, source: str, target: str, evolve: Any) -> None:
        """Store ``evolve(source's share)`` for ``target``, which must have none yet."""
        with self._tx() as tx:
            self._account(tx, username)
            row = tx.fetchone("SELECT share FROM labyrinth_orf_shares WHERE username = ? AND "
                              "member = ?", (username, source))
            if row is None:
                raise NotFound("the source member has no ORF share")
            if tx.fetchone("SELECT 1 FROM labyrinth_orf_shares WHERE username = ? AND "
                           "member = ?", (username, target)) is not None:
                raise AlreadyExists()
            tx.execute("INSERT INTO labyrinth_orf_shares (username, member, share) VALUES "
                       "(?, ?, ?)", (username, target, evolve(bytes(row[0]))))

    def sweep_removed_devices(self) -> int:
        """Delete the ORF shares of devices that no longer exist (the removal hook runs after
        the device's own transaction, so a crash between the two could leave one). Only for a
        store in the delivery server's own database (its ``devices`` table); returns how many."""
        with self._tx() as tx:
            gone = tx.execute(
                "DELETE FROM labyrinth_orf_shares WHERE substr(member, 1, 1) = 'd' AND NOT EXISTS "
                "(SELECT 1 FROM devices d WHERE d.username = labyrinth_orf_shares.username "
                "AND 'd' || d.device_id = labyrinth_orf_shares.member)")
            return max(0, int(gone.rowcount))

    def share(self, username: str, member: str) -> bytes | None:
        self._prepare()
        row = self.db.fetchone("SELECT share FROM labyrinth_orf_shares WHERE username = ? AND "
                               "member = ?", (username, member))
        return None if row is None else bytes(row[0])

    # -- virtual devices -----------------------------------------------------------------------
    def create_vdevice(self, username: str, vdevice_id: str, bundle: bytes, created_by: int,
                       *, now_ms: int) -> None:
        with self._tx() as tx:
            self._account(tx, username)
            if self._vdevice_exists(tx, username, "v" + vdevice_id):
                raise AlreadyExists()
            count = tx.fetchone("SELECT COUNT(*) FROM labyrinth_vdevices WHERE username = ?",
                                (username,))[0]
            if int(count) >= self.max_vdevices:
                raise QuotaExceeded()
            tx.execute("INSERT INTO labyrinth_vdevices (username, vdevice_id, bundle, "
                       "created_by, created_at_ms) VALUES (?, ?, ?, ?, ?)",
                       (username, vdevice_id, bundle, created_by, now_ms))

    def vdevice(self, username: str, vdevice_id: str) -> VirtualDevice:
        self._prepare()
        row = self.db.fetchone("SELECT bundle, created_by, created_at_ms FROM "
                               "labyrinth_vdevices WHERE username = ? AND vdevice_id = ?",
                               (username, vdevice_id))
        if row is None:
            raise NotFound()
        return VirtualDevice(vdevice_id, bytes(row[0]), int(row[1]), int(row[2]))

    def vdevice_ids(self, username: str) -> list[str]:
        self._prepare()
        rows = self.db.fetchall("SELECT vdevice_id FROM labyrinth_vdevices WHERE username = ? "
                                "ORDER BY vdevice_id", (username,))
        return [str(r[0]) for r in rows]

    def vdevice_exists(self, tx: Transaction, username: str, member: str) -> bool:
        return self._vdevice_exists(tx, username, member)

    # -- mailbox -------------------------------------------------------------------------------
    def save(self, username: str, records: Sequence[StoredRecord]) -> int:
        """Insert or replace records (by inbox, thread and message id), within quotas; every
        record's epoch must be one of the account's."""
        with self._tx() as tx:
            _, _, _, count, total, _ = self._account(tx, username)
            count, total = int(count), int(total)
            for epoch_id in {r.epoch_id for r in records}:
                if tx.fetchone("SELECT 1 FROM labyrinth_epochs WHERE username = ? AND "
                               "epoch_id = ?", (username, epoch_id)) is None:
                    raise NotFound("a record names an unknown epoch")
            latest: dict[tuple[str, str, str], StoredRecord] = {}
            for r in records:  # the last of duplicates wins, as a sequence of upserts would
                latest[(r.inbox_id, r.thread_id, r.message_id)] = r
            # Sizes of the rows being replaced, one statement per chunk of message ids.
            existing: dict[tuple[str, str, str], int] = {}
            ids = sorted({key[2] for key in latest})
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start:start + _CHUNK]
                rows = tx.fetchall(
                    "SELECT inbox_id, thread_id, message_id, length(blob) FROM "
                    f"labyrinth_messages WHERE username = ? AND message_id IN "
                    f"({','.join('?' * len(chunk))})", (username, *chunk))
                existing.update({(str(r[0]), str(r[1]), str(r[2])): int(r[3]) for r in rows})
            for key, r in latest.items():
                old = existing.get(key)
                if old is None:
                    count += 1
                else:
                    total -= old
                total += len(r.blob)
            if count > self.max_messages or total > self.max_message_bytes:
                raise QuotaExceeded()
            tx.executemany(
                f"INSERT INTO labyrinth_messages (username, {_RECORD_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (username, inbox_id, thread_id, "
                "message_id) DO UPDATE SET ts = excluded.ts, epoch_id = excluded.epoch_id, "
                "version = excluded.version, blob = excluded.blob",
                [(username, r.inbox_id, r.thread_id, r.message_id, r.timestamp, r.epoch_id,
                  r.version, r.blob) for r in latest.values()])
            tx.execute("UPDATE labyrinth_accounts SET message_count = ?, message_bytes = ? "
                       "WHERE username = ?", (count, total, username))
        return len(latest)

    def load(self, username: str, query: LoadQuery) -> RecordPage:
        """A page newest first: by (timestamp, inbox, thread, message id) descending."""
        where = ["username = ?"]
        params: list[Any] = [username]
        for column, value in (("inbox_id", query.inbox_id), ("thread_id", query.thread_id),
                              ("message_id", query.message_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if query.since is not None:
            where.append("ts >= ?")
            params.append(query.since)
        if query.until is not None:
            where.append("ts < ?")
            params.append(query.until)
        c = query.cursor
        if c is not None:
            where.append("(ts < ? OR (ts = ? AND (inbox_id < ? OR (inbox_id = ? AND "
                         "(thread_id < ? OR (thread_id = ? AND message_id < ?))))))")
            params += [c.timestamp, c.timestamp, c.inbox_id, c.inbox_id, c.thread_id,
                       c.thread_id, c.message_id]
        collate = ' COLLATE "C"' if self._pg else ""
        order = ", ".join(f"{col}{collate} DESC" if col != "ts" else "ts DESC"
                          for col in ("ts", "inbox_id", "thread_id", "message_id"))
        if self._pg:  # compare ids bytewise, as the order does
            where = [w.replace("_id < ?", '_id < ? COLLATE "C"') for w in where]
        sql = (f"SELECT {_RECORD_COLUMNS} FROM labyrinth_messages WHERE "
               + " AND ".join(where) + f" ORDER BY {order} LIMIT ?")
        params.append(query.limit + 1)
        with self._tx(write=False) as tx:
            rows = tx.fetchall(sql, params)
        records: list[StoredRecord] = []
        size = 0
        for row in rows[:query.limit]:
            record = _record(row)
            if records and size + len(record.blob) > consts.LABYRINTH_MAX_PAGE_BYTES:
                break
            size += len(record.blob)
            records.append(record)
        more = len(records) < len(rows)
        last = records[-1] if records else None
        cursor = (Cursor(last.timestamp, last.inbox_id, last.thread_id, last.message_id)
                  if more and last is not None else None)
        return RecordPage(tuple(records), cursor)

    def delete(self, username: str, keys: Sequence[RecordKey]) -> int:
        """Delete records by key; return how many existed."""
        deleted = 0
        with self._tx() as tx:
            self._account(tx, username)
            freed = 0
            for k in set(keys):
                row = tx.fetchone("SELECT length(blob) FROM labyrinth_messages WHERE "
                                  "username = ? AND inbox_id = ? AND thread_id = ? AND "
                                  "message_id = ?", (username, k.inbox_id, k.thread_id,
                                                     k.message_id))
                if row is None:
                    continue
                tx.execute("DELETE FROM labyrinth_messages WHERE username = ? AND "
                           "inbox_id = ? AND thread_id = ? AND message_id = ?",
                           (username, k.inbox_id, k.thread_id, k.message_id))
                deleted += 1
                freed += int(row[0])
            tx.execute("UPDATE labyrinth_accounts SET message_count = message_count - ?, "
                       "message_bytes = message_bytes - ? WHERE username = ?",
                       (deleted, freed, username))
        return deleted

    # -- attachment references -----------------------------------------------------------------
    def put_reference(self, username: str, index: str, ref: AttachmentReference) -> None:
        with self._tx() as tx:
            refs = int(self._account(tx, username)[5])
            updated = tx.execute("UPDATE labyrinth_attachment_refs SET reference = ?, mac = ? "
                                 "WHERE username = ? AND ref_index = ?",
                                 (ref.reference, ref.mac, username, index))
            if updated.rowcount == 1:
                return
            if refs >= self.max_refs:
                raise QuotaExceeded()
            tx.execute("INSERT INTO labyrinth_attachment_refs (username, ref_index, reference, "
                       "mac) VALUES (?, ?, ?, ?)", (username, index, ref.reference, ref.mac))
            tx.execute("UPDATE labyrinth_accounts SET ref_count = ref_count + 1 WHERE "
                       "username = ?", (username,))

    def reference(self, username: str, index: str) -> AttachmentReference:
        self._prepare()
        row = self.db.fetchone("SELECT reference, mac FROM labyrinth_attachment_refs WHERE "
                               "username = ? AND ref_index = ?", (username, index))
        if row is None:
            raise NotFound()
        return AttachmentReference(bytes(row[0]), bytes(row[1]))

    def delete_reference(self, username: str, index: str) -> None:
        with self._tx() as tx:
            self._account(tx, username)
            gone = tx.execute("DELETE FROM labyrinth_attachment_refs WHERE username = ? AND "
                              "ref_index = ?", (username, index))
            if gone.rowcount != 1:
                raise NotFound()
            tx.execute("UPDATE labyrinth_accounts SET ref_count = ref_count - 1 WHERE "
                       "username = ?", (username,))

