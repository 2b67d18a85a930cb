"""Shared helpers for the e2ee tests: store snapshots and device pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from e2ee_core.device import Ciphertext, Device
from e2ee_core.state.memory import InMemoryProtocolStore
from e2ee_core.state.sqlite import SQLiteProtocolStore

ALICE = ("alice", 1)
BOB = ("bob", 1)


def snapshot(device: Device) -> Any:
    """Everything a decrypt could change, in comparable form."""
    store = device.store
    sessions = {}
    for address in store.session_addresses():
        record = store.load_session(address)
        assert record is not None
        sessions[address] = record.to_bytes()
    identities = {a: store.get_identity(a) for a in [*sessions, ALICE, BOB]}
    pre_keys = sorted(i for i in range(1, 400) if store.get_pre_key(i) is not None)
    kyber = sorted(r.id for r in store.kyber_pre_keys())
    signed = sorted(r.id for r in store.signed_pre_keys())
    return sessions, identities, pre_keys, kyber, signed


def pair(*, kyber: bool = True, sqlite_dir: Any = None) -> tuple[Device, Device]:
    """Alice and Bob with an established session (Bob has decrypted and replied)."""
    if sqlite_dir is not None:
        alice = Device.create(SQLiteProtocolStore(sqlite_dir / "alice.db"))
        bob = Device.create(SQLiteProtocolStore(sqlite_dir / "bob.db"))
    else:
        alice, bob = Device.create(InMemoryProtocolStore()), Device.create()
    alice.start_session(BOB, bob.prekey_bundle(1, kyber=kyber))
    assert bob.decrypt(ALICE, alice.encrypt(BOB, b"hello")) == b"hello"
    assert alice.decrypt(BOB, bob.encrypt(ALICE, b"hi")) == b"hi"
    return alice, bob


def roundtrip(sender: Device, receiver: Device, to: tuple[str, int], frm: tuple[str, int],
              text: bytes) -> Ciphertext:
    ct = sender.encrypt(to, text)
    assert receiver.decrypt(frm, ct) == text
    return ct


def pair_on(path: Path) -> tuple[Device, Device]:
    """An in-memory alice and a bob on the SQLite file ``path``, a session each way."""
    alice = Device.create()
    bob = Device.open(path)
    alice.start_session(BOB, bob.prekey_bundle(1))
    assert bob.decrypt(ALICE, alice.encrypt(BOB, b"hello")) == b"hello"
    assert alice.decrypt(BOB, bob.encrypt(ALICE, b"hi")) == b"hi"
    return alice, bob
