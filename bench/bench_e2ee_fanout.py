"""Client fanout: one message to a user with 8 devices plus 4 own other devices (12 envelopes).

Comparisons (subject and baseline alternate in one run, bench.harness):

1. ``Messenger.fanout_envelopes`` (frame and content encoding, the device-set lookup, session
   checks, 12 ``Device.encrypt`` calls committed in one transaction, envelope objects) against
   12 separate ``Device.encrypt`` calls of the same plaintext over established sessions on the
   same kind of store, measured in the same run. Goal of issue #7: overhead <= 1.5x. Run on the
   default SQLite state file and on the in-memory state.
2. The whole ``Messenger.send`` (fanout + the HTTP send to a real server + storing the message
   locally) against the fanout alone, to show where a send's time goes.

Group send to 100 members vs 1:1 fanout is measured by ``bench e2ee_groups`` (not repeated).
Accounts are set up through a real delivery server (the Flask app under werkzeug's threaded
HTTP server, on loopback, SQLite).

    .venv/bin/python -m bench e2ee_fanout [--rounds R] [--recipient-devices N] [--own-devices M]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server

from bench.harness import Case, compare, header
from e2ee_core.client import Messenger
from e2ee_core.client.frames import Frame
from e2ee_core.content import Content, Text
from e2ee_core.device import Ciphertext, Device
from e2ee_core.server.app import create_app

TEXT = "x" * 100
PASSWORD = "benchmark password"
CHEAP_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1}


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:  # no access log
        pass


class _Server:
    """The delivery server on a loopback port, in a thread, until ``stop``."""

    def __init__(self, db: str) -> None:
        app = create_app({"db": db, **CHEAP_ARGON2})
        self._http = make_server("127.0.0.1", 0, app, threaded=True,
                                 request_handler=_QuietHandler)
        self.url = f"http://127.0.0.1:{self._http.server_port}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._http.shutdown()


def _accounts(url: str, work: Path, recipient_devices: int, own_devices: int,
              in_memory: bool) -> tuple[Messenger, list[Messenger]]:
    """Alice (1 + ``own_devices``) and Bob (``recipient_devices``), every pairwise session
    used in both directions (no PreKey messages left)."""
    tag = "mem" if in_memory else "sql"

    def device(name: str, index: int) -> Messenger:
        state = None if in_memory else work / f"{name}-{tag}-{index}.db"
        enrol = Messenger.register if index == 0 else Messenger.link
        return enrol(url, f"{name}-{tag}", PASSWORD, state=state, prekeys=20, kem_prekeys=2)

    alice = [device("alice", i) for i in range(1 + own_devices)]
    bob = [device("bob", i) for i in range(recipient_devices)]
    everyone = alice + bob
    for sender in everyone:                       # every device talks once: sessions both ways
        sender.send_text(bob[0].username if sender in alice else alice[0].username, "setup")
        for receiver in everyone:
            receiver.receive()
    return alice[0], everyone


def _baseline_devices(work: Path, peers: int, in_memory: bool) -> tuple[Device,
                                                                       list[tuple[str, int]]]:
    """A sender device with established sessions to ``peers`` devices, same store kind."""
    from e2ee_core.client.store import ClientStore

    store = ClientStore(":memory:" if in_memory else str(work / "baseline.db"))
    sender = Device.create(store.protocol)
    addresses = []
    for i in range(peers):
        peer = Device.create()
        address = (f"peer{i:02d}", i + 1)
        sender.start_session(address, peer.prekey_bundle(device_id=i + 1))
        peer.decrypt(("sender", 1), sender.encrypt(address, b"hello"))
        sender.decrypt(address, Ciphertext.from_bytes(
            peer.encrypt(("sender", 1), b"hi").to_bytes()))
        addresses.append(address)
    return sender, addresses


def _run(url: str, work: Path, args: Any, in_memory: bool) -> None:
    label = "in-memory state" if in_memory else "SQLite state file"
    started = time.perf_counter()
    alice, everyone = _accounts(url, work, args.recipient_devices, args.own_devices, in_memory)
    peers = args.recipient_devices + args.own_devices
    sender, addresses = _baseline_devices(work, peers, in_memory)
    print(f"   setup ({label}): {len(everyone)} devices, sessions both ways, "
          f"{time.perf_counter() - started:.1f} s")
    bob = everyone[-1].username
    content = Content.new(Text(TEXT), sent_at_ms=int(time.time() * 1000))
    frame = Frame(bob, content).encode()
    assert len(alice.fanout_envelopes(bob, content)) == peers

    def twelve_encrypts() -> None:
        for address in addresses:
            sender.encrypt(address, frame)

    result = compare(
        Case(f"fanout_envelopes, {peers} devices ({label})",
             lambda: alice.fanout_envelopes(bob, content)),
        Case(f"{peers} x Device.encrypt, same plaintext", twelve_encrypts),
        rounds=args.rounds)
    print(result.line().replace("ops/s", "sends/s"))
    overhead = 1 / result.ratio
    print(f"   fanout {1000 / result.subject_rate:.2f} ms vs {peers} x encrypt "
          f"{1000 / result.baseline_rate:.2f} ms: overhead {overhead:.2f}x (goal <= 1.5x)")

    whole = compare(
        Case(f"Messenger.send (fanout + HTTP + local store, {label})",
             lambda: alice.send_text(bob, TEXT)),
        Case("fanout_envelopes alone", lambda: alice.fanout_envelopes(bob, content)),
        rounds=max(3, args.rounds // 2), min_time=0.3)
    print(whole.line().replace("ops/s", "sends/s"))
    print(f"   a whole send costs {1 / whole.ratio:.1f}x its fanout")
    for device in everyone:
        device.close()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench e2ee_fanout")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--recipient-devices", type=int, default=8)
    parser.add_argument("--own-devices", type=int, default=4)
    parser.add_argument("--memory-only", action="store_true")
    args = parser.parse_args(argv)
    header(f"e2ee fanout: one message to {args.recipient_devices} recipient devices + "
           f"{args.own_devices} own devices vs {args.recipient_devices + args.own_devices} "
           "single-session encrypts")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        server = _Server(str(work / "server.db"))
        try:
            if not args.memory_only:
                _run(server.url, work, args, in_memory=False)
            _run(server.url, work, args, in_memory=True)
        finally:
            server.stop()
    print("   group send to 100 members vs 1:1: see `python -m bench e2ee_groups`")
