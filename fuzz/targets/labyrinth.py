"""Labyrinth records and messages a device reads from the server (e2ee_core.labyrinth):
PADMÉ unpadding, AES-GCM-Extended decryption, the Labyrinth HPKE variant, epoch-entropy
messages, previous-epoch data, mailbox records and recovery-code parsing. Keys are fixed, so
the fuzzer also reaches the code after a successful decryption through the seeds. The first
input byte picks the decoder."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from e2ee_core.labyrinth import epochs, hpke, mailbox, padding, primitives
from e2ee_core.labyrinth.errors import LabyrinthError
from e2ee_core.labyrinth.recovery_codes import RecoveryCode
from fuzz.targets._select import select

ACCEPTED: tuple[type[Exception], ...] = (LabyrinthError,)
MAX_LEN = 4096

_KEY = bytes(range(32))
_EPOCH = epochs.Epoch(3, 9, bytes(range(1, 33)))
_RECIPIENT_PRIV = bytes(range(2, 34))
_RECIPIENT_PUB = hpke.public_key(_RECIPIENT_PRIV)
_SENDER_PRIV = bytes(range(3, 35))
_SENDER_PUB = hpke.public_key(_SENDER_PRIV)
_PSK = bytes(32)


def _unpad(data: bytes) -> None:
    padding.unpad(data)


def _decrypt(data: bytes) -> None:
    padding.unpad(primitives.decrypt(_KEY, b"aad", data))


def _hpke(data: bytes) -> None:
    hpke.decrypt(_RECIPIENT_PUB, _RECIPIENT_PRIV, _SENDER_PUB, psk=_PSK, aad=b"aad",
                 ciphertext=data)


def _previous_epoch(data: bytes) -> None:
    half = len(data) // 2
    epochs.open_previous_epoch(_EPOCH, epochs.PreviousEpochData(data[:half], data[half:]), 8)


def _record(data: bytes) -> None:
    thread = data[:8].decode("latin-1")
    record = mailbox.MailboxRecord("inbox", thread, "m1", 1, _EPOCH.epoch_id, 3, data[8:])
    mailbox.open_record(_EPOCH, record)


def _recovery_code(data: bytes) -> None:
    RecoveryCode.parse(data.decode("latin-1"))


_DECODERS: tuple[Callable[[bytes], None], ...] = (
    _unpad, _decrypt, _hpke, _previous_epoch, _record, _recovery_code)


def test_one_input(data: bytes) -> None:
    select(_DECODERS, ACCEPTED, data)


def seeds() -> Iterator[bytes]:
    yield b"\x00" + padding.pad(b"hello")
    yield b"\x01" + primitives.encrypt(_KEY, b"aad", padding.pad(b"a stored message"))
    yield b"\x02" + hpke.encrypt(_RECIPIENT_PUB, _SENDER_PUB, _SENDER_PRIV, psk=_PSK,
                                 aad=b"aad", plaintext=bytes(32))
    record = mailbox.seal(_EPOCH, inbox_id="inbox", thread_id="thread01", message_id="m1",
                          timestamp=1, message=b"hi")
    yield b"\x04" + b"thread01" + record.blob
    yield b"\x05" + RecoveryCode.generate().formatted().encode("latin-1")
