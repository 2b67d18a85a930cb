"""Mailbox records: message key and aad labels, padding, record validation."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


@settings(max_examples=40, deadline=None)
@given(threads=st.lists(st.text(alphabet="abcdef-_0123456789", min_size=1, max_size=12),
                        min_size=1, max_size=8),
       message=st.binary(max_size=300))
def test_epoch_keys_equal_the_one_shot_functions(threads: list[str], message: bytes) -> None:
    """EpochKeys derives each thread's key once; its records open with open_record and the
    one-shot seal's open with it (the same labels, keys and checks)."""
    keys = mailbox.EpochKeys(EPOCH)
    for n, thread in enumerate(threads):
        record = keys.seal(inbox_id="alice", thread_id=thread, message_id=f"m{n}",
                           timestamp=1_700_000_000_000 + n, message=message)
        assert mailbox.open_record(EPOCH, record) == message
        assert keys.open(_seal(message, thread)) == message
        assert keys.thread(thread) == (mailbox.message_key(EPOCH, thread),
                                       mailbox.message_aad(thread))


def test_epoch_keys_refuse_what_open_record_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = mailbox.EpochKeys(EPOCH)
    record = _seal()
    with pytest.raises(InvalidRecord):
        keys.open(replace(record, epoch_id=41))
    with pytest.raises(UnsupportedCipherVersion):
        keys.open(replace(record, version=2))
    with pytest.raises(DecryptionFailed):
        keys.open(replace(record, thread_id="carol"))  # the key and aad of another thread
    other = mailbox.EpochKeys(epochs.Epoch(3, 40, bytes(32)))  # same id, another root
    with pytest.raises(DecryptionFailed):
        other.open(record)
    monkeypatch.setattr(mailbox, "EPOCH_KEYS_MAX_THREADS", 3)
    for n in range(10):  # bounded: it starts over past the limit, and still answers right
        assert keys.open(_seal(b"x", f"t{n}")) == b"x"
        assert len(keys._keys) <= 3


def test_epoch_keys_open_a_decoded_row_and_check_its_thread_id() -> None:
    """EpochKeys.open takes the server client's rows as decoded (no second MailboxRecord);
    a thread id that is not a valid label is refused when its key would be derived."""
    from e2ee_core.server.labyrinth_wire import StoredRecord

    record = _seal(b"from a row")
    row = StoredRecord(record.inbox_id, record.thread_id, record.message_id, record.timestamp,
                       record.epoch_id, record.version, record.blob)
    assert mailbox.EpochKeys(EPOCH).open(row) == b"from a row"
    with pytest.raises(InvalidLabel):
        mailbox.EpochKeys(EPOCH).open(replace(row, thread_id="bad\nthread"))
