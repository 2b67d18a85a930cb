"""Mailbox records: message key and aad labels, padding, record validation."""

from __future__ import annotations

from dataclasses import replace

import pytest

from e2ee_core.labyrinth import epochs, mailbox, padding, primitives
from e2ee_core.labyrinth.errors import (
    DecryptionFailed,
    InvalidLabel,
    InvalidRecord,
    UnsupportedCipherVersion,
)

EPOCH = epochs.Epoch(2, 40, bytes(range(32)))


def _seal(message: bytes = b"hello", thread: str = "bob") -> mailbox.MailboxRecord:
    return mailbox.seal(EPOCH, inbox_id="alice", thread_id=thread, message_id="m1",
                        timestamp=1_700_000_000_000, message=message)


def test_record_uses_the_whitepaper_labels_and_padding() -> None:
    record = _seal()
    key = primitives.kdf_key(EPOCH.root_key, None,
                             b"message_key_in_epoch_2_cipher_version_3_thread_bob")
    assert primitives.decrypt(key, b"message_thread_bob", record.blob) == padding.pad(b"hello")
    assert (record.epoch_id, record.version) == (40, 3)
    assert mailbox.open_record(EPOCH, record) == b"hello"


def test_blob_length_hides_the_exact_message_length() -> None:
    assert len(_seal(b"a").blob) == len(_seal(b"abcdefgh").blob)
    assert len(_seal(b"x" * 1000).blob) == len(_seal(b"x" * 1010).blob)


def test_records_are_bound_to_their_thread_and_epoch() -> None:
    record = _seal()
    with pytest.raises(DecryptionFailed):
        mailbox.open_record(EPOCH, replace(record, thread_id="carol"))
    with pytest.raises(InvalidRecord):
        mailbox.open_record(EPOCH, replace(record, epoch_id=41))
    with pytest.raises(UnsupportedCipherVersion):
        mailbox.open_record(EPOCH, replace(record, version=4))
    other = epochs.Epoch(2, 40, bytes(32))
    with pytest.raises(DecryptionFailed):
        mailbox.open_record(other, record)


def test_unicode_thread_ids_and_limits() -> None:
    assert mailbox.open_record(EPOCH, _seal(thread="群聊-42")) == b"hello"
    for bad in ["", "a\nb", "x" * 129]:
        with pytest.raises(InvalidLabel):
            _seal(thread=bad)


@pytest.mark.parametrize("field", [{"timestamp": -1}, {"epoch_id": 2**63}, {"version": True},
                                   {"timestamp": 2**63}])
def test_record_fields_are_validated(field: dict[str, int]) -> None:
    with pytest.raises(InvalidRecord):
        replace(_seal(), **field)  # type: ignore[arg-type]
