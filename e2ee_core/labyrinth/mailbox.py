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

from .consts import (
    CIPHER_VERSION,
    EPOCH_ID_MAX,
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


def seal(epoch: Epoch, *, inbox_id: str, thread_id: str, message_id: str, timestamp: int,
         message: bytes) -> MailboxRecord:
    """Encrypt ``message`` into a mailbox record of the current ``epoch``."""
    blob = encrypt(message_key(epoch, thread_id), message_aad(thread_id), pad(message))
    return MailboxRecord(inbox_id, thread_id, message_id, timestamp, epoch.epoch_id,
                         CIPHER_VERSION, blob)


def open_record(epoch: Epoch, record: MailboxRecord) -> bytes:
    """Decrypt ``record`` with the epoch it names; typed errors on any mismatch or forgery."""
    if record.version != CIPHER_VERSION:
        raise UnsupportedCipherVersion("only message cipher version 3 is supported")
    if record.epoch_id != epoch.epoch_id:
        raise InvalidRecord("record belongs to another epoch")
    return unpad(decrypt(message_key(epoch, record.thread_id), message_aad(record.thread_id),
                         record.blob))
