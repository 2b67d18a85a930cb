"""Signal session messages (e2ee_core.protocol.messages): SignalMessage and
PreKeySignalMessage parsed directly, then the transport blob (``Ciphertext.from_bytes``) handed
to ``Device.decrypt``, as a recipient does (key agreement against its own prekeys, MAC check).

Devices get fresh random keys in every process, so no seed decrypts: the target explores the
decoders and every check before the MAC, never a successful decryption."""

from __future__ import annotations

from collections.abc import Iterator

from e2ee_core.device import Ciphertext, Device
from e2ee_core.errors import E2EEError
from e2ee_core.protocol.messages import PreKeySignalMessage, SignalMessage

ACCEPTED: tuple[type[Exception], ...] = (E2EEError,)
MAX_LEN = 4096

ALICE, BOB = ("alice", 1), ("bob", 1)
_bob = Device.create()


def test_one_input(data: bytes) -> None:
    for decode in (SignalMessage.from_bytes, PreKeySignalMessage.from_bytes):
        try:
            decode(data)
        except ACCEPTED:
            pass
    try:
        _bob.decrypt(ALICE, Ciphertext.from_bytes(data))
    except ACCEPTED:
        pass


def seeds() -> Iterator[bytes]:
    alice, bob = Device.create(), Device.create()
    for kyber in (True, False):
        alice.start_session(BOB, bob.prekey_bundle(1, kyber=kyber))
        first = alice.encrypt(BOB, b"hello")
        yield first.to_bytes()
        yield first.body
        bob.decrypt(ALICE, first)
        reply = bob.encrypt(ALICE, b"hi")
        yield reply.to_bytes()
        yield reply.body
