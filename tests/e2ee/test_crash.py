"""kill -9 during decrypt/encrypt: no message lost, no message key ever used twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from e2ee_core.device import Ciphertext, Device
from e2ee_core.protocol.messages import SignalMessage
from e2ee_core.state.sqlite import SQLiteProtocolStore
from tests.e2ee.helpers import ALICE, BOB
from tests.support import REPO_ROOT

ROUNDS = 4


def _run_child(args: list[str], kill_after: float | None) -> list[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "tests.e2ee.crash_child", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO_ROOT, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().strip() == "ready"
    chunks: list[str] = []
    # Drain stdout while the child runs, so it is never blocked on a full pipe when killed.
    reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()))  # type: ignore[union-attr]
    reader.start()
    if kill_after is not None:
        time.sleep(kill_after)
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=120)
    reader.join(timeout=30)
    err = proc.stderr.read()
    if kill_after is None:
        assert proc.returncode == 0, err[-2000:]
    return "".join(chunks).split("\n")[:-1]  # complete lines only: a kill may cut the last


def _setup(tmp_path: Path) -> tuple[Device, Path]:
    alice = Device.create(SQLiteProtocolStore(tmp_path / "alice.db"))
    bob_db = tmp_path / "bob.db"
    bob = Device.open(bob_db)
    alice.start_session(BOB, bob.prekey_bundle(1))
    assert bob.decrypt(ALICE, alice.encrypt(BOB, b"hello")) == b"hello"
    assert alice.decrypt(BOB, bob.encrypt(ALICE, b"hi")) == b"hi"
    bob.store.close()  # type: ignore[attr-defined]
    return alice, bob_db


def test_kill_during_decrypt_loses_nothing(tmp_path: Path) -> None:
    alice, bob_db = _setup(tmp_path)
    count = 400
    messages = tmp_path / "inbox.txt"
    messages.write_text("\n".join(alice.encrypt(BOB, b"m%d" % i).to_bytes().hex()
                                  for i in range(count)))
    rng = random.Random(9)
    decrypted: list[int] = []
    for _ in range(ROUNDS):
        lines = _run_child(["decrypt", str(bob_db), str(messages)], rng.uniform(0.0, 0.25))
        decrypted += [int(line.split()[1]) for line in lines if line.startswith("ok ")]
    final = _run_child(["decrypt", str(bob_db), str(messages)], None)
    outcome = dict(line.split()[::-1] for line in final if line)
    decrypted += [int(i) for i, status in outcome.items() if status == "ok"]
    # Every message was decrypted at most once (a key is never used twice) ...
    assert len(decrypted) == len(set(decrypted))
    # ... and the last run accounts for all of them: decrypted now or already delivered.
    assert sorted(int(i) for i in outcome) == list(range(count))
    assert set(outcome.values()) <= {"ok", "dup"}
    assert len(set(decrypted)) >= count - ROUNDS  # at most one commit per kill went unseen


def test_kill_during_encrypt_never_reuses_a_message_key(tmp_path: Path) -> None:
    alice, bob_db = _setup(tmp_path)
    rng = random.Random(10)
    sent: list[str] = []
    for _ in range(ROUNDS):
        sent += [line for line in _run_child(["encrypt", str(bob_db), "100000"],
                                             rng.uniform(0.0, 0.25)) if line]
    sent += [line for line in _run_child(["encrypt", str(bob_db), "20"], None) if line]
    keys = []
    for line in sent:
        ct = Ciphertext.from_bytes(bytes.fromhex(line))
        message = SignalMessage.from_bytes(ct.body)
        keys.append((message.ratchet_key.raw, message.counter))
        assert alice.decrypt(BOB, ct).startswith(b"crash ")
    assert len(keys) == len(set(keys)) and len(keys) >= 20


def test_two_processes_sharing_a_database_never_share_a_message_key(tmp_path: Path) -> None:
    alice, bob_db = _setup(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    procs = [subprocess.Popen([sys.executable, "-m", "tests.e2ee.crash_child", "encrypt",
                               str(bob_db), "150"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT, env=env)
             for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-500:] for _, err in outputs]
    lines = [line for out, _ in outputs for line in out.split("\n")[1:] if line]
    assert len(lines) == 300
    keys = set()
    for line in lines:
        ct = Ciphertext.from_bytes(bytes.fromhex(line))
        message = SignalMessage.from_bytes(ct.body)
        keys.add((message.ratchet_key.raw, message.counter))
        assert alice.decrypt(BOB, ct).startswith(b"crash ")
    assert len(keys) == 300
