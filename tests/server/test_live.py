"""End to end on the service stack: two accounts with three devices each converse; every device sees
every message exactly once; a skipped device is refused and the send retried; a device added
later gets nothing from before; a removed device gets nothing new; a restart loses nothing; and
afterwards neither the database nor the logs hold any payload. Run on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from e2ee_core.attachments import blob_size
from e2ee_core.server.client import ServerClient
from e2ee_core.server.errors import AuthenticationFailed, MismatchedDevices, PayloadTooLarge
from e2ee_core.server.wire import DeviceAddress, Envelope, OutgoingEnvelope
from service_kit.database import Database
from tests.server.support import (
    FAST_ARGON2,
    PASSWORD,
    ServerProcess,
    device_keys,
    unique_name,
)
from tests.support import REPO_ROOT

Starter = Callable[..., ServerProcess]

TABLES = ("accounts", "devices", "one_time_prekeys", "kem_prekeys", "envelopes", "contacts",
          "attachments")


class Peer:
    """One device as a client would drive it: a cached view of device lists, fanout, retries."""

    def __init__(self, client: ServerClient) -> None:
        self.client = client
        self.known: dict[str, set[int]] = {}
        self.seen: Counter[bytes] = Counter()
        self.refusals = 0

    @property
    def address(self) -> DeviceAddress:
        return self.client.address

    def send(self, recipient: str, payload: bytes) -> int:
        me = self.address
        while True:
            targets = [(recipient, d) for d in sorted(self.known.get(recipient, set()))]
            targets += [(me.username, d) for d in sorted(self.known.get(me.username, set()))
                        if d != me.device_id]
            envs = [OutgoingEnvelope(u, d, payload) for u, d in targets]
            try:
                return self.client.send(recipient, envs)
            except MismatchedDevices as refused:
                self.refusals += 1
                for user, dev in refused.missing:  # a real client starts sessions here
                    self.client.fetch_bundles(user, dev)
                    self.known.setdefault(user, set()).add(dev)
                for user, dev in refused.extra:
                    self.known[user].discard(dev)

    def drain(self) -> list[Envelope]:
        """Receive and acknowledge everything queued (long-polling briefly for stragglers)."""
        got: list[Envelope] = []
        while True:
            batch = self.client.receive(wait=0.0)
            if not batch.envelopes:
                return got
            got += batch.envelopes
            self.client.acknowledge(e.id for e in batch.envelopes)
            for e in batch.envelopes:
                if e.kind == "message":
                    assert e.content is not None
                    self.seen[e.content] += 1


def _register(url: str, devices: int) -> list[Peer]:
    name = unique_name()
    first = ServerClient(url)
    first.register(name, PASSWORD, device_keys())
    peers = [first]
    for _ in range(devices - 1):
        more = ServerClient(url)
        more.add_device(name, PASSWORD, device_keys())
        peers.append(more)
    return [Peer(p) for p in peers]


def _rebase(peers: list[Peer], url: str) -> None:
    for p in peers:
        p.client = ServerClient(url, p.client.credential)


def _stored_values(db_url: str) -> list[bytes]:
    """Every value of every row of the server's tables, as bytes."""
    db = Database(db_url)
    values: list[bytes] = []
    for table in TABLES:
        for row in db.fetchall(f"SELECT * FROM {table}"):
            for v in row:
                values.append(bytes(v) if isinstance(v, (bytes, memoryview)) else str(v).encode())
    db.close()
    return values


def _forms(secret: bytes) -> list[bytes]:
    return [secret, secret.hex().encode(), base64.b64encode(secret).rstrip(b"="),
            base64.urlsafe_b64encode(secret).rstrip(b"=")]


def _leaks_in(blob: bytes, secrets_: list[bytes]) -> list[bytes]:
    return [s for s in secrets_ for f in _forms(s) if f in blob]


def _sqlite_file_bytes(path: str) -> bytes:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    wal = Path(path + "-wal")
    return Path(path).read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def conversation(db_url: str, start: Callable[[], ServerProcess],
                 started: list[ServerProcess]) -> None:
    server = start()
    alice, bob = _register(server.url, 3), _register(server.url, 3)
    a_name, b_name = alice[0].address.username, bob[0].address.username
    for p in [*alice, *bob]:
        p.drain()  # device_added notices for the account's own devices
        p.known = {a_name: {1}, b_name: {1}}  # a stale view: everyone knows only device 1
    payloads: list[bytes] = []
    intended: dict[bytes, set[DeviceAddress]] = {}
    sender_of: dict[bytes, DeviceAddress] = {}

    def say(sender: Peer, recipient: str) -> bytes:
        payload = f"msg-{len(payloads)}-".encode() + bytes(range(40))
        payload = payload + sender.client.address.username.encode()  # unique per message
        payloads.append(payload)
        sender.send(recipient, payload)
        # The truth at send time: every current device of both accounts but the sender.
        me = sender.address
        intended[payload] = {DeviceAddress(u, d.device_id) for u in {recipient, me.username}
                             for d in sender.client.list_devices(u)} - {me}
        sender_of[payload] = me
        return payload

    # 1. Everyone talks; the stale views are corrected by 409 refusals and retried.
    for p in alice:
        say(p, b_name)
    for p in bob:
        say(p, a_name)
    assert all(p.refusals == 1 for p in [*alice, *bob])
    # Before delivery the store holds the payloads (so the checks below can fail).
    assert _leaks_in(b"\n".join(_stored_values(db_url)), payloads[:1])

    # 2. bob's device 3 is offline while more is said; the server restarts in between.
    for p in [*alice, *bob[:2]]:
        p.drain()
    offline_payload = say(alice[0], b_name)
    server.stop()
    server = start()
    _rebase([*alice, *bob], server.url)
    for p in [*alice, *bob]:
        p.drain()
    assert bob[2].seen[offline_payload] == 1  # nothing lost across the restart

    # 3. bob links a device: it gets nothing from before, and alice is told.
    newcomer = ServerClient(server.url)
    newcomer.add_device(b_name, PASSWORD, device_keys())
    bob.append(Peer(newcomer))
    bob[3].known = {a_name: {1, 2, 3}, b_name: {1, 2, 3, 4}}
    notices = [e for e in alice[0].drain() if e.kind == "device_added"]
    assert [(e.source, e.source_device) for e in notices] == [(b_name, 4)]
    late = say(alice[1], b_name)  # alice[1] does not know device 4 yet: refused, retried
    assert alice[1].refusals == 2
    for p in [*alice, *bob]:
        p.drain()

    # 4. alice removes her device 3: it gets nothing new, bob's next send drops it.
    alice[0].client.remove_device(3)
    removed = alice.pop()
    with pytest.raises(AuthenticationFailed):
        removed.client.receive()
    after_removal = say(bob[0], a_name)
    assert bob[0].refusals == 2

    for p in [*alice, *bob]:
        p.drain()
    # Every device saw exactly the messages meant for it, each exactly once.
    for p in [*alice, *bob, removed]:
        assert set(p.seen.values()) <= {1}
        assert set(p.seen) == {m for m, dests in intended.items() if p.address in dests}
    assert set(bob[3].seen) == {late, after_removal}  # nothing from before it was linked
    assert after_removal not in removed.seen and late in removed.seen
    assert all(m not in p.seen for p in [*alice, *bob] for m in payloads
               if intended[m] and sender_of[m] == p.address)  # never its own message back

    # 5. Everything is delivered and acknowledged: no payload is left anywhere.
    secrets_: list[bytes] = [*payloads, PASSWORD.encode()]
    for p in [*alice, *bob, removed]:
        assert p.client.credential is not None
        secrets_.append(p.client.credential.credential.split(".")[2].encode())
    assert _leaks_in(b"\n".join(_stored_values(db_url)), secrets_) == []
    server.stop()
    if not db_url.startswith("postgresql://"):
        assert _leaks_in(_sqlite_file_bytes(db_url), secrets_) == []
    logs = "\n".join(s.logs() for s in started)
    assert "event=account_registered" in logs  # (per-envelope events are at DEBUG level)
    assert _leaks_in(logs.encode(), secrets_) == []
    assert a_name not in logs and b_name not in logs


def test_two_accounts_three_devices_each_converse(server_process: Starter, db_url: str) -> None:
    started: list[ServerProcess] = []

    def start() -> ServerProcess:
        started.append(server_process(db_url, workers=3, **FAST_ARGON2))
        return started[-1]

    conversation(db_url, start, started)


def test_concurrent_bundle_fetches_across_worker_processes(server_process: Starter,
                                                           db_url: str) -> None:
    server = server_process(db_url, workers=3, threads=2, **FAST_ARGON2)
    bob = ServerClient(server.url)
    bob_name = unique_name()
    bob.register(bob_name, PASSWORD, device_keys(one_time=24, kem=24))
    fetchers = [ServerClient(server.url) for _ in range(6)]
    for i, f in enumerate(fetchers):
        f.register(unique_name(f"f{i}"), PASSWORD, device_keys())
    served: list[int] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def fetch(client: ServerClient) -> None:
        try:
            for _ in range(4):  # 6 x 4 fetches for 24 keys: each gets one, none twice
                (bundle,) = client.fetch_bundles(bob_name)
                if bundle.one_time_prekey is not None:
                    with lock:
                        served.append(bundle.one_time_prekey.key_id)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=fetch, args=(f,)) for f in fetchers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    assert sorted(served) == list(range(1, 25))  # each key served exactly once
    assert bob.prekey_count().one_time_prekeys == 0


def test_twenty_mebibyte_attachment(server_process: Starter, tmp_path: Path) -> None:
    server = server_process(str(tmp_path / "att.db"), **FAST_ARGON2)
    alice, bob = ServerClient(server.url), ServerClient(server.url)
    alice.register(unique_name(), PASSWORD, device_keys())
    bob.register(unique_name(), PASSWORD, device_keys())
    # The largest blob the client makes for a 20 MiB attachment (padding bucket + nonce + tag).
    blob = (bytes(range(256)) * (blob_size(20 * 1024 * 1024) // 256 + 1))[
        :blob_size(20 * 1024 * 1024)]
    ref = alice.upload_attachment(blob)
    assert ref.size == len(blob)
    assert bob.download_attachment(ref.id) == blob
    with pytest.raises(PayloadTooLarge):
        alice.upload_attachment(bytes(22 * 1024 * 1024 + 1))
    assert f"event=attachment_stored bytes={len(blob)}" in server.logs()


def test_chunked_upload_over_the_limit_is_refused_not_truncated(
        server_process: Starter, tmp_path: Path) -> None:
    """A 30 MiB attachment sent chunked (no Content-Length) is refused with 413 as a whole;
    it was once cut to the limit and stored with 201."""
    import requests

    server = server_process(str(tmp_path / "chunked.db"), **FAST_ARGON2)
    alice = ServerClient(server.url)
    alice.register(unique_name(), PASSWORD, device_keys())
    assert alice.credential is not None

    def pieces() -> Iterator[bytes]:
        for _ in range(30):
            yield bytes(1024 * 1024)

    try:
        resp = requests.post(server.url + "/v1/attachments", data=pieces(), timeout=30,
                             headers={"Authorization": f"Bearer {alice.credential.credential}",
                                      "Content-Type": "application/octet-stream"})
        assert resp.status_code == 413
        assert resp.headers["Content-Type"] == "application/problem+json"
    except requests.ConnectionError:
        pass  # closed while the rest was still being sent: refused all the same
    assert "event=attachment_stored" not in server.logs()


def test_console_script_serves_with_threads_and_purges(server_process: Starter,
                                                       tmp_path: Path) -> None:
    db = str(tmp_path / "cli.db")
    server = server_process(db, workers=1, threads=4, envelope_ttl_seconds=1, **FAST_ARGON2)
    alice, bob = ServerClient(server.url), ServerClient(server.url)
    alice.register("alice", PASSWORD, device_keys())
    bob.register("bob", PASSWORD, device_keys())
    # One worker: the long-poll and the send must run on different threads of it.
    timer = threading.Timer(0.3, lambda: alice.send(
        "bob", [OutgoingEnvelope("bob", 1, b"over threads")]))
    timer.start()
    got = bob.receive(wait=10).envelopes
    timer.join()
    assert [e.content for e in got] == [b"over threads"]
    alice.send("bob", [OutgoingEnvelope("bob", 1, b"never fetched")])
    server.stop()
    time.sleep(1.1)  # let the 1 s envelope TTL pass
    config = tmp_path / "purge.json"
    config.write_text(json.dumps({"envelope_ttl_seconds": 1, **FAST_ARGON2}))
    out = subprocess.run([sys.executable, "-m", "e2ee_core.server.cli", "purge", "--db", db,
                          "--config", str(config)], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert "purged envelopes=2" in out
    bad = subprocess.run([sys.executable, "-m", "e2ee_core.server.cli", "purge", "--db", db,
                          "--config", str(tmp_path / "missing.json")], cwd=REPO_ROOT,
                         capture_output=True, text=True)
    assert bad.returncode == 2
