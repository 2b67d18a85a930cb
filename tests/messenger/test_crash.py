"""A receiving device killed (SIGKILL) at random points while it decrypts, stores and
acknowledges loses nothing and stores nothing twice: decrypt, store and the envelope id commit
in one local transaction, and acknowledgement comes after."""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from e2ee_core.client import Messenger
from tests.messenger.support import Account
from tests.support import REPO_ROOT, LiveServer

CHILD = """
import sys
from e2ee_core.client import Messenger
m = Messenger.open(sys.argv[1])
while True:
    got = m.receive(wait=float(sys.argv[2]))
    if sys.argv[2] == "0" and not got:
        break
"""


def test_receiver_killed_at_random_points(stack_server: Callable[..., LiveServer],
                                          tmp_path: Path) -> None:
    server = stack_server()
    alice = Account(server.url, 1)
    bob = Account(server.url, 1, state_dir=tmp_path)
    state = tmp_path / f"{bob.name}-1.db"
    bob.devices[0].close()
    texts: list[str] = []
    rng = secrets.SystemRandom()
    for _ in range(10):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(state), "0.2"],
                                 cwd=REPO_ROOT)
        time.sleep(0.6)                           # imports; then it long-polls and works
        kill_after = rng.randrange(10)
        for i in range(10):                       # messages arrive while it receives
            texts.append(f"message {len(texts)}")
            alice.devices[0].send_text(bob.name, texts[-1])
            if i == kill_after:
                time.sleep(rng.uniform(0, 0.03))
                child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    final = subprocess.run([sys.executable, "-c", CHILD, str(state), "0"], cwd=REPO_ROOT,
                           timeout=120)
    assert final.returncode == 0
    stored = Messenger.open(state)
    counts = Counter(m.text for m in stored.messages(alice.name))
    assert set(counts) == set(texts) and set(counts.values()) == {1}
