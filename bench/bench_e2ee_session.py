"""Signal sessions: e2ee_core against libsignal-node 6.0.0, measured in the same run.

    .venv/bin/python -m bench e2ee_session [--quick]

Figures: messages/s for encrypt+decrypt of 100-byte messages in an established session
(SQLite store, one transaction per message and batched as a device drains its backlog, and
in-memory store), and session setups/s (bundle processing, first message
encrypted and decrypted; X3DH like the baseline, plus our PQXDH). The baseline runs in a Node
process (tests/interop/signal_peer.mjs) doing a batch per call, so IPC costs are amortised.
"""

from __future__ import annotations

import itertools
import sys
import tempfile
from pathlib import Path

from bench.harness import Case, compare, header
from e2ee_core.device import Device
from e2ee_core.state.memory import InMemoryProtocolStore
from e2ee_core.state.sqlite import SQLiteProtocolStore
from tests.support import NodePeer

ALICE, BOB = ("alice", 1), ("bob", 1)
MESSAGE = b"m" * 100
NODE_BATCH = 200


def _pair(store_a: object, store_b: object) -> tuple[Device, Device]:
    alice = Device.create(store_a)  # type: ignore[arg-type]
    bob = Device.create(store_b)  # type: ignore[arg-type]
    alice.start_session(BOB, bob.prekey_bundle(1, kyber=False))
    bob.decrypt(ALICE, alice.encrypt(BOB, b"hi"))
    alice.decrypt(BOB, bob.encrypt(ALICE, b"hi"))
    return alice, bob


def _message_case(name: str, alice: Device, bob: Device) -> Case:
    def run() -> None:
        bob.decrypt(ALICE, alice.encrypt(BOB, MESSAGE))

    return Case(name, run)


def _backlog_case(name: str, alice: Device, bob: Device, n: int) -> Case:
    """A device coming online: ``n`` messages encrypted by a sender in one transaction (as a
    fanout commits), then decrypted as the Messenger's inbox does a batch: one write-behind
    transaction (the session record written once, at commit; the inbox redoes the batch with a
    savepoint per message only when one of them fails)."""
    a_store, b_store = alice.store, bob.store
    assert isinstance(a_store, SQLiteProtocolStore) and isinstance(b_store, SQLiteProtocolStore)

    def run() -> None:
        with a_store.atomic():
            sent = [alice.encrypt(BOB, MESSAGE) for _ in range(n)]
        with b_store.write_behind():
            for ciphertext in sent:
                with b_store.savepoint():
                    bob.decrypt(ALICE, ciphertext)

    return Case(name, run, ops=n)


def _setup_case(name: str, alice: Device, bob: Device, *, kyber: bool) -> Case:
    counter = itertools.count()

    def run() -> None:
        n = next(counter)
        address = (f"peer{n}", 1)
        alice.start_session(address, bob.prekey_bundle(1, kyber=kyber))
        bob.decrypt((f"alice{n}", 1), alice.encrypt(address, MESSAGE))

    return Case(name, run)


def _node_case(peer: NodePeer, op: str, name: str, n: int) -> Case:
    def run() -> None:
        peer.call(op=op, n=n, size=len(MESSAGE))

    return Case(name, run, ops=n)


def main(argv: list[str]) -> None:
    quick = "--quick" in argv
    rounds, min_time = (3, 0.2) if quick else (7, 0.5)
    header("e2ee_session: Signal sessions, e2ee_core vs libsignal-node 6.0.0")
    peer = NodePeer("signal_peer.mjs", "libsignal")
    try:
        node_msgs = _node_case(peer, "bench_messages", "libsignal-node msg enc+dec", NODE_BATCH)
        node_setups = _node_case(peer, "bench_setups", "libsignal-node X3DH setup", 50)
        with tempfile.TemporaryDirectory() as tmp:
            sq_a, sq_b = _pair(SQLiteProtocolStore(Path(tmp) / "a.db"),
                               SQLiteProtocolStore(Path(tmp) / "b.db"))
            mem_a, mem_b = _pair(InMemoryProtocolStore(), InMemoryProtocolStore())
            results = [
                compare(_message_case("e2ee_core msg enc+dec (SQLite)", sq_a, sq_b),
                        node_msgs, rounds=rounds, min_time=min_time),
                compare(_backlog_case("e2ee_core backlog enc+dec (SQLite, batched)", sq_a,
                                      sq_b, NODE_BATCH),
                        node_msgs, rounds=rounds, min_time=min_time),
                compare(_message_case("e2ee_core msg enc+dec (memory)", mem_a, mem_b),
                        node_msgs, rounds=rounds, min_time=min_time),
                compare(_setup_case("e2ee_core X3DH setup (SQLite)", sq_a, sq_b, kyber=False),
                        node_setups, rounds=rounds, min_time=min_time),
                compare(_setup_case("e2ee_core X3DH setup (memory)", mem_a, mem_b,
                                    kyber=False),
                        node_setups, rounds=rounds, min_time=min_time),
                compare(_setup_case("e2ee_core PQXDH setup (SQLite)", sq_a, sq_b, kyber=True),
                        node_setups, rounds=rounds, min_time=min_time),
            ]
    finally:
        peer.close()
    for result in results:
        print(result.line())
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
