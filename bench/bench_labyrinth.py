"""Labyrinth (issue #15): mailbox save/load throughput, a 10,000-message restore over HTTP, and
opening an epoch for a 16-device account.

1. Save and load, messages/s (100-byte messages, batches of 100): the Labyrinth core
   (``mailbox.seal``: HKDF message key, PADMÉ, AES-GCM-Extended; ``open_record``) plus the
   server store's SQLite writes and reads (``LabyrinthStore.save``/``load``), against a
   baseline, in the same run with alternating rounds, of plain AES-256-GCM (random 96-bit nonce)
   plus the same store calls. Goal: ratio >= 0.5x. Also with the thread's messageKey derived
   once per (epoch, thread) instead of per record (the same bytes; what a client saving or
   loading many messages of a thread can do).
2. A new device restoring 10,000 messages over HTTP: paged ``GET /v1/labyrinth/messages``
   (1,000 a page) through ``LabyrinthClient`` against the real served server (service_kit.serving,
   1 worker, SQLite), decrypting every record. Goal: <= 3 s. The baseline in the same run is
   the same pages fetched without decrypting (so the decryption's share shows).
3. Opening an epoch for 16 devices: ``GET /v1/labyrinth/members``, the core's ``open_epoch``
   (16 membership MACs and XEdDSA signatures checked, 16 HPKE entropy messages, new MACs), and
   ``POST /v1/labyrinth/epochs``; each round opens the next epoch of the chain. Reported:
   the median and worst time, and the core's share.

    .venv/bin/python -m bench labyrinth [--rounds N] [--restore N] [--epochs N] [--pg DSN]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench.harness import Case, compare, header
from e2ee_core.labyrinth import epochs, hpke, mailbox, primitives
from e2ee_core.labyrinth.consts import SIGNATURE_USE_EPOCH_STORAGE_AUTH_KEY as AUTH_USE
from e2ee_core.labyrinth.consts import SIGNATURE_USE_EPOCH_STORAGE_KEY as STORAGE_USE
from e2ee_core.server.client import ServerClient
from e2ee_core.server.labyrinth_client import LabyrinthClient
from e2ee_core.server.labyrinth_store import LabyrinthStore
from e2ee_core.server.labyrinth_wire import (
    Cursor,
    EpochMemberUpload,
    LoadQuery,
    MemberKeys,
    StoredRecord,
)
from service_kit.database import Database
from tests.server.support import FAST_ARGON2, PASSWORD, device_keys
from tests.support import LiveServer, start_live_server

BATCH = 100
LOAD_RECORDS = 5000
MESSAGE = b"m" * 100


def _records(make: Callable[[int], bytes], start: int, epoch_id: int) -> list[StoredRecord]:
    out = []
    for k in range(start, start + BATCH):
        blob = make(k)
        out.append(StoredRecord("inbox", f"thread-{k % 20}", f"m{k:09d}", 10**12 + k, epoch_id,
                                3, blob))
    return out


def save_load(rounds: int, tmp: Path) -> None:
    store = LabyrinthStore(Database(str(tmp / "saveload.db")), max_messages=10**9,
                           max_message_bytes=2**50)
    from e2ee_core.server.labyrinth_wire import OpenEpochRequest

    def account(name: str) -> int:
        store.put_member_keys(name, "d1", MemberKeys(*(os.urandom(32),) * 3,
                                                     os.urandom(32), os.urandom(64)))
        return store.open_epoch(name, "d1", OpenEpochRequest(0, None, None, None, (
            EpochMemberUpload("d1", os.urandom(32)),)), now_ms=0, is_member=lambda tx, m: True)

    # One epoch per account (the records name their own account's epoch); the Labyrinth
    # accounts share one root key, so records of either open with it.
    ids = {name: account(name) for name in ("lab", "plain", "lab-load", "plain-load")}
    root = epochs.first_epoch_root()
    lab_epoch = epochs.Epoch(0, ids["lab"], root)
    load_epoch = epochs.Epoch(0, ids["lab-load"], root)
    plain_key = AESGCM(os.urandom(32))
    counters = {"lab": 0, "plain": 0}

    def seal_lab(k: int) -> bytes:
        return mailbox.seal(lab_epoch, inbox_id="inbox", thread_id=f"thread-{k % 20}",
                            message_id=f"m{k:09d}", timestamp=10**12 + k, message=MESSAGE).blob

    lab_keys = mailbox.EpochKeys(lab_epoch)  # each thread's key derived once, as clients do

    def seal_lab_cached(k: int) -> bytes:
        return lab_keys.seal(inbox_id="inbox", thread_id=f"thread-{k % 20}",
                             message_id=f"m{k:09d}", timestamp=10**12 + k,
                             message=MESSAGE).blob

    def seal_plain(k: int) -> bytes:
        nonce = os.urandom(12)
        return nonce + plain_key.encrypt(nonce, MESSAGE, f"thread-{k % 20}".encode())

    def saver(name: str, make: Callable[[int], bytes]) -> Callable[[], None]:
        def run() -> None:
            start = counters[name]
            counters[name] += BATCH
            store.save(name, _records(make, start, ids[name]))
        return run

    print(compare(Case("save: Labyrinth seal + store.save (SQLite)", saver("lab", seal_lab),
                       ops=BATCH),
                  Case("AES-256-GCM + store.save (SQLite)", saver("plain", seal_plain),
                       ops=BATCH), rounds=rounds).line())
    print(compare(Case("save: EpochKeys.seal (key per thread) + store.save",
                       saver("lab", seal_lab_cached), ops=BATCH),
                  Case("AES-256-GCM + store.save (SQLite)", saver("plain", seal_plain),
                       ops=BATCH), rounds=rounds).line())

    # Loads read two accounts of the same size, filled the same way (5,000 records each).
    for name, make in (("lab-load", seal_lab), ("plain-load", seal_plain)):
        counters[name] = 0
        for _ in range(LOAD_RECORDS // BATCH):
            saver(name, make)()
    cursors: dict[str, Cursor | None] = {"lab-load": None, "plain-load": None}

    def page(name: str) -> tuple[StoredRecord, ...]:
        result = store.load(name, LoadQuery(limit=BATCH, cursor=cursors[name]))
        cursors[name] = result.cursor
        return result.records

    def load_lab() -> None:
        for r in page("lab-load"):
            mailbox.open_record(load_epoch, mailbox.MailboxRecord(
                r.inbox_id, r.thread_id, r.message_id, r.timestamp, r.epoch_id, r.version,
                r.blob))

    load_keys = mailbox.EpochKeys(load_epoch)

    def load_lab_cached() -> None:
        for r in page("lab-load"):
            load_keys.open(r)  # the row as decoded (its ids checked once, there)

    def load_plain() -> None:
        for r in page("plain-load"):
            plain_key.decrypt(r.blob[:12], r.blob[12:], r.thread_id.encode())

    print(compare(Case("load: store.load + Labyrinth open_record", load_lab, ops=BATCH),
                  Case("store.load + AES-256-GCM decrypt", load_plain, ops=BATCH),
                  rounds=rounds).line())
    print(compare(Case("load: store.load + EpochKeys.open (key per thread)", load_lab_cached,
                       ops=BATCH),
                  Case("store.load + AES-256-GCM decrypt", load_plain, ops=BATCH),
                  rounds=rounds).line())


def _serve(stack: ExitStack, tmp: Path, db: str) -> LiveServer:
    server = start_live_server("e2ee_core.server.app:create_app", {"db": db, **FAST_ARGON2},
                               tmp, workers=1, threads=4, keepalive=30)
    stack.callback(server.stop)
    return server


def _wait(url: str) -> None:
    probe = ServerClient(url)
    for _ in range(300):
        try:
            if probe.health():
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not start")


def restore(url: str, count: int, rounds: int) -> None:
    _wait(url)
    name = f"r{os.urandom(4).hex()}"
    old = ServerClient(url)
    old.register(name, PASSWORD, device_keys(0, 0))
    new = ServerClient(url)
    new.add_device(name, PASSWORD, device_keys(0, 0))
    old_lab, new_lab = LabyrinthClient(old), LabyrinthClient(new)
    old_lab.put_member_keys(MemberKeys(*(os.urandom(32),) * 3, os.urandom(32), os.urandom(64)))
    root = epochs.first_epoch_root()
    epoch = epochs.Epoch(0, old_lab.open_epoch(0, [EpochMemberUpload("d1", os.urandom(32))]),
                         root)
    records = []
    for k in range(count):
        r = mailbox.seal(epoch, inbox_id="inbox", thread_id=f"thread-{k % 50}",
                         message_id=f"m{k:06d}", timestamp=10**12 + k,
                         message=f"message {k} ".encode() + MESSAGE)
        records.append(StoredRecord(r.inbox_id, r.thread_id, r.message_id, r.timestamp,
                                    r.epoch_id, r.version, r.blob))
    old_lab.save(records)

    def full() -> float:
        start = time.perf_counter()
        opened = 0
        for r in new_lab.iter_records(LoadQuery(limit=1000)):
            mailbox.open_record(epoch, mailbox.MailboxRecord(
                r.inbox_id, r.thread_id, r.message_id, r.timestamp, r.epoch_id, r.version,
                r.blob))
            opened += 1
        assert opened == count
        return time.perf_counter() - start

    def fetch_only() -> float:
        start = time.perf_counter()
        fetched = sum(1 for _ in new_lab.iter_records(LoadQuery(limit=1000)))
        assert fetched == count
        return time.perf_counter() - start

    full()  # warm-up: connection, page cache
    with_decrypt, without = [], []
    for _ in range(rounds):
        with_decrypt.append(full())
        without.append(fetch_only())
    best, median = min(with_decrypt), statistics.median(with_decrypt)
    print(f"restore {count:,} messages over HTTP (pages of 1,000), decrypting: median "
          f"{median:.2f} s, best {best:.2f} s ({count / median:,.0f} messages/s); fetch only: "
          f"median {statistics.median(without):.2f} s; goal <= 3 s: "
          f"{'met' if median <= 3.0 else 'NOT met'}")


class _Device:
    def __init__(self) -> None:
        self.device_priv, self.device_pub = hpke.generate_keypair()
        self.storage_priv, self.storage_pub = hpke.generate_keypair()
        self.auth_priv, self.auth_pub = hpke.generate_keypair()

    def keys(self) -> MemberKeys:
        return MemberKeys(self.device_pub, self.storage_pub,
                          primitives.sign(self.device_priv, STORAGE_USE, self.storage_pub),
                          self.auth_pub, primitives.sign(self.device_priv, AUTH_USE,
                                                         self.auth_pub))


def open_epochs(url: str, devices: int, rounds: int) -> None:
    _wait(url)
    name = f"e{os.urandom(4).hex()}"
    clients = [ServerClient(url)]
    clients[0].register(name, PASSWORD, device_keys(0, 0))
    for _ in range(devices - 1):
        more = ServerClient(url)
        more.add_device(name, PASSWORD, device_keys(0, 0))
        clients.append(more)
    labs = [LabyrinthClient(c) for c in clients]
    keys = [_Device() for _ in labs]
    for lab, dev in zip(labs, keys, strict=True):
        lab.put_member_keys(dev.keys())
    epoch = epochs.Epoch(0, 1, epochs.first_epoch_root())
    epoch = epochs.Epoch(0, labs[0].open_epoch(0, [
        EpochMemberUpload(lab.member, epochs.membership_mac(epoch.root_key, 0, dev.device_pub))
        for lab, dev in zip(labs, keys, strict=True)]), epoch.root_key)
    opener, sender = labs[0], epochs.SenderKeys(keys[0].auth_pub, keys[0].auth_priv)
    totals, cores = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        listed = opener.members()
        members = [epochs.Member(m.keys.device_key_pub, m.keys.storage_key_pub,
                                 m.keys.storage_key_sig, m.membership_mac or b"")
                   for m in listed]
        core_start = time.perf_counter()
        opened = epochs.open_epoch(epoch, members, sender)
        core = time.perf_counter() - core_start
        assert not opened.rejected and len(opened.accepted) == devices
        uploads = [EpochMemberUpload(listed[i].member, new_mac, message)
                   for i, new_mac, message in opened.accepted]
        epoch_id = opener.open_epoch(opened.epoch.sequence_id, uploads,
                                     previous_epoch_id=epoch.epoch_id,
                                     encrypted_previous_sequence_id=
                                     opened.previous.encrypted_sequence_id,
                                     encrypted_previous_root_key=
                                     opened.previous.encrypted_root_key)
        totals.append(time.perf_counter() - start)
        cores.append(core)
        epoch = opened.epoch.with_id(epoch_id)
    print(f"open an epoch for {devices} devices (GET members + core open_epoch + POST epoch): "
          f"median {statistics.median(totals) * 1000:.1f} ms, worst {max(totals) * 1000:.1f} ms;"
          f" core open_epoch median {statistics.median(cores) * 1000:.1f} ms "
          f"({rounds} epochs in a chain)")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench labyrinth")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--restore", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--pg", default=None, help="also run the HTTP parts on PostgreSQL")
    args = parser.parse_args(argv)
    header("labyrinth: mailbox save/load, 10,000-message restore, 16-device epoch")
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-lab-")))
        save_load(args.rounds, tmp)
        server = _serve(stack, tmp, str(tmp / "served.db"))
        print("   served server: SQLite, 1 worker, 4 threads")
        restore(server.url, args.restore, 3)
        open_epochs(server.url, 16, args.epochs)
        if args.pg:
            from bench.harness import temporary_pg_database

            pg = stack.enter_context(temporary_pg_database(args.pg))
            if pg is None:
                print("   PostgreSQL unreachable: skipped")
                return
            pg_server = _serve(stack, tmp, pg)
            print("   served server: PostgreSQL, 1 worker, 4 threads")
            restore(pg_server.url, args.restore, 3)
            open_epochs(pg_server.url, 16, args.epochs)
