"""The Messenger's encrypted history (issue #15, e2ee_core/client/history.py), end to end
through the real delivery server app in this process (WSGI, SQLite; no sockets):

1. Sending with history on: ``Messenger.send_text`` of an account whose device saves to the
   mailbox (the message queued with it, then the newest-epoch check and one save request per
   send), against the same sends of an account without history, alternating rounds. The
   ratio is what history costs a sender.
2. Restoring N messages on a new device (default 10,000): ``restore_history`` with a recovery
   code (bundle, whole epoch chain verified) and ``load_all_history`` (pages of 1,000 fetched,
   every record decrypted and checked, all stored in one local transaction), against the
   baseline of storing the same N contents on a fresh device without fetching or decrypting
   (``Conversations.store_content`` in one transaction). Rounds alternate; each uses a newly
   linked device. The mailbox is filled by sealing the records directly (sending 10,000
   messages through the Messenger would only measure the sends).

    .venv/bin/python -m bench labyrinth_client [--rounds N] [--messages N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from bench.harness import Case, compare, header
from e2ee_core.client.history import History, HistoryPayload
from e2ee_core.client.messenger import Messenger
from e2ee_core.content import Content, Text
from e2ee_core.server.app import create_app
from e2ee_core.server.labyrinth_client import LabyrinthClient
from e2ee_core.server.labyrinth_wire import StoredRecord
from tests.server.support import FAST_ARGON2, FakeClock, in_process_session

PASSWORD = "bench passphrase, long enough"
URL = "http://e2ee.test"


def _fill(alice: Messenger, peer: str, count: int) -> None:
    """``count`` history records of conversation ``peer``, sealed under alice's newest epoch."""
    epoch = alice.history._known()[-1].epoch
    lab = LabyrinthClient(alice.server)
    batch: list[StoredRecord] = []
    for i in range(count):
        content = Content.new(Text(f"message {i:05d} of the restored history"),
                              sent_at_ms=1_700_000_000_000 + i)
        payload = HistoryPayload(peer if i % 2 else alice.username, 1, i % 2 == 0, content)
        batch.append(StoredRecord(*History._seal(epoch, peer, content.message_id.hex(),
                                                 content.sent_at_ms, payload.encode())))
        if len(batch) == 1000:
            lab.save(batch)
            batch = []
    if batch:
        lab.save(batch)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench labyrinth_client")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=10_000)
    args = parser.parse_args(argv)
    header("labyrinth client: the Messenger's encrypted history")
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"db": os.path.join(tmp, "server.db"), "clock": FakeClock(),
                          **FAST_ARGON2})
        session = in_process_session(app)

        def register(name: str) -> Messenger:
            return Messenger.register(URL, name, PASSWORD, session=session)

        saver, plain, bob = register("saver"), register("plain"), register("bob")
        saver.enable_history()
        for who in (saver, plain):  # sessions set up outside the rounds
            who.send_text("bob", "hello")
        bob.receive()
        result = compare(Case("send_text, history on (save per send)",
                              lambda: saver.send_text("bob", "m" * 100)),
                         Case("send_text, history off", lambda: plain.send_text("bob", "m" * 100)),
                         rounds=args.rounds, min_time=0.5)
        result = type(result)(result.subject, result.baseline, result.subject_rate,
                              result.baseline_rate, "sends/s")
        print(result.line())
        print(f"  mailbox records saved by the sender: "
              f"{len(list(LabyrinthClient(saver.server).iter_records()))}")

        _fill(saver, "bob", args.messages)
        code = saver.create_recovery_code()
        contents = [Content.new(Text(f"message {i:05d} of the restored history"),
                                sent_at_ms=1_700_000_000_000 + i) for i in range(args.messages)]
        restore_s: list[float] = []
        local_s: list[float] = []
        for _ in range(args.rounds):
            device = Messenger.link(URL, "saver", PASSWORD, session=session)
            start = time.perf_counter()
            device.restore_history(code)
            loaded = device.load_all_history()
            restore_s.append(time.perf_counter() - start)
            assert len(loaded) >= args.messages, len(loaded)
            fresh = Messenger.link(URL, "saver", PASSWORD, session=session)
            start = time.perf_counter()
            with fresh.store.atomic():
                for i, content in enumerate(contents):
                    fresh.conversations.store_content("bob", content, "bob", 1,
                                                      outgoing=i % 2 == 0)
            local_s.append(time.perf_counter() - start)
            for messenger in (device, fresh):
                messenger.remove_device(messenger.device_id)
                messenger.close()
        r, b = statistics.median(restore_s), statistics.median(local_s)
        print(f"{'restore + load_all_history, ' + format(args.messages, ',') + ' messages':<44} "
              f"{r:>9.2f} s (worst {max(restore_s):.2f} s)   baseline store_content only "
              f"{b:>6.2f} s   ratio {b / r:5.2f}x   ({args.messages / r:,.0f} messages/s)")
    with open("/proc/loadavg") as f:
        print(f"load average: {f.read().split()[0]}")
    return 0
