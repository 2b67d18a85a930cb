"""Mailbox records (Protocol: Saving Messages, Loading Messages; Appendix: cipher versions).

A saved message is the row (inbox_id, thread_id, message_id, timestamp, blob, epoch_id,
version) of the whitepaper's ``encrypted_messages`` table, with, for cipher version 3:

    messageKey = kdf(epochRootKey, null,
                     "message_key_in_epoch_<seq>_cipher_version_3_thread_<threadId>")
    blob       = AES-GCM-Extended(messageKey, aad = "message_thread_<threadId>", pad(message))

As in the whitepaper the aad binds the thread, not the message id or timestamp: a server can
swap two blobs of one thread and epoch, or change a row's timestamp, without detection
(docs/labyrinth.md, "What is and is not protected").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .consts import (
    CIPHER_VERSION,
    EPOCH_ID_MAX,
    EPOCH_KEYS_MAX_THREADS,
    INBOX_ID_MAX_LEN,
    MESSAGE_ID_MAX_LEN,
    THREAD_ID_MAX_LEN,
    TIMESTAMP_MAX,
)
from .epochs import Epoch
from .errors import InvalidLabel, InvalidRecord, UnsupportedCipherVersion
from .padding import pad, unpad
from .primitives import decrypt, encrypt, kdf_key


def _check_id(value: str, limit: int, what: str) -> None:
    if not isinstance(value, str) or not 1 <= len(value) <= limit or not value.isprintable():
        raise InvalidLabel(f"{what} must be 1..{limit} printable characters")


def message_key(epoch: Epoch, thread_id: str) -> bytes:
    """The cipher-version-3 messageKey of ``thread_id`` in ``epoch``."""
    _check_id(thread_id, THREAD_ID_MAX_LEN, "thread id")
    label = (f"message_key_in_epoch_{epoch.sequence_id}_cipher_version_{CIPHER_VERSION}"
             f"_thread_{thread_id}")
    return kdf_key(epoch.root_key, None, label.encode("utf-8"))


def message_aad(thread_id: str) -> bytes:
    """The AEAD associated data of a message in ``thread_id``: "message_thread_<id>"."""
    _check_id(thread_id, THREAD_ID_MAX_LEN, "thread id")
    return f"message_thread_{thread_id}".encode()


@dataclass(frozen=True, slots=True)
class MailboxRecord:
    """One row of the encrypted mailbox, exactly what the server stores."""

    inbox_id: str
    thread_id: str
    message_id: str
    timestamp: int
    epoch_id: int
    version: int
    blob: bytes

    def __post_init__(self) -> None:
        _check_id(self.inbox_id, INBOX_ID_MAX_LEN, "inbox id")
        _check_id(self.thread_id, THREAD_ID_MAX_LEN, "thread id")
        _check_id(self.message_id, MESSAGE_ID_MAX_LEN, "message id")
        for value, limit in ((self.timestamp, TIMESTAMP_MAX), (self.epoch_id, EPOCH_ID_MAX)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
                raise InvalidRecord("timestamp or epoch id out of range")
        if isinstance(self.version, bool) or not isinstance(self.version, int):
            raise InvalidRecord("cipher version must be an integer")
        if not isinstance(self.blob, bytes):
            raise InvalidRecord("blob must be bytes")


class SealedRecord(Protocol):
    """What opening a record reads (a :class:`MailboxRecord` has it)."""

    @property
    def thread_id(self) -> str: ...
    @property
    def epoch_id(self) -> int: ...
    @property
    def version(self) -> int: ...
    @property
    def blob(self) -> bytes: ...


class EpochKeys:
    """The message keys of one epoch, each thread's derived once.

    Saving or loading a page of records from a few threads then costs one HKDF per thread,
    not one per record (the per-record derivation was half of a load). It holds key material:
    keep one only for the saves or loads at hand. At most ``EPOCH_KEYS_MAX_THREADS`` keys are
    kept; past that it starts over (bounded memory)."""

    __slots__ = ("_keys", "epoch")

    def __init__(self, epoch: Epoch) -> None:
        self.epoch = epoch
        self._keys: dict[str, tuple[bytes, bytes]] = {}

    def thread(self, thread_id: str) -> tuple[bytes, bytes]:
        """(messageKey, aad) of ``thread_id`` in this epoch."""
        keys = self._keys.get(thread_id)
        if keys is None:
            if len(self._keys) >= EPOCH_KEYS_MAX_THREADS:
                self._keys.clear()
            keys = self._keys[thread_id] = (message_key(self.epoch, thread_id),
                                            message_aad(thread_id))
        return keys

    def seal(self, *, inbox_id: str, thread_id: str, message_id: str, timestamp: int,
             message: bytes) -> MailboxRecord:
        """Encrypt ``message`` into a mailbox record of this epoch."""
        key, aad = self.thread(thread_id)
        return MailboxRecord(inbox_id, thread_id, message_id, timestamp, self.epoch.epoch_id,
                             CIPHER_VERSION, encrypt(key, aad, pad(message)))

    def open(self, record: SealedRecord) -> bytes:
        """Decrypt ``record`` (a :class:`MailboxRecord`, or a row as the server's client
        decoded it), which must name this epoch; typed errors on any mismatch or forgery.
        The thread id is checked when its key is derived."""
        if record.version != CIPHER_VERSION:
            raise UnsupportedCipherVersion("only message cipher version 3 is supported")
        if record.epoch_id != self.epoch.epoch_id:
            raise InvalidRecord("record belongs to another epoch")
        key, aad = self.thread(record.thread_id)
        return unpad(decrypt(key, aad, record.blob))


def seal(epoch: Epoch, *, inbox_id: str, thread_id: str, message_id: str, timestamp: int,
         message: bytes) -> MailboxRecord:
    """Encrypt ``message`` into a mailbox record of the current ``epoch`` (for many records,
    :class:`EpochKeys` derives each thread's key once)."""
    return EpochKeys(epoch).seal(inbox_id=inbox_id, thread_id=thread_id,
                                 message_id=message_id, timestamp=timestamp, message=message)


def open_record(epoch: Epoch, record: MailboxRecord) -> bytes:
    """Decrypt ``record`` with the epoch it names; typed errors on any mismatch or forgery
    (for many records, :meth:`EpochKeys.open`)."""
    return EpochKeys(epoch).open(record)
