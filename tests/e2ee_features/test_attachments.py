"""Attachments: fresh keys, padded blobs, digest before decrypt, streaming, typed failures."""

from __future__ import annotations

import dataclasses
import hashlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2ee_core.attachments import (
    BLOB_OVERHEAD,
    AttachmentCorrupted,
    AttachmentDecryptionFailed,
    AttachmentDecryptor,
    AttachmentEncryptor,
    AttachmentError,
    AttachmentSizeMismatch,
    AttachmentTooLarge,
    blob_size,
    decrypt_attachment,
    encrypt_attachment,
    padded_size,
)
from e2ee_core.content import MAX_ATTACHMENT_BYTES, AttachmentPointer, Content

MIB = 1024 * 1024


def test_a_small_file_round_trips_through_a_padded_blob() -> None:
    blob, pointer = encrypt_attachment(b"cat picture", content_type="image/png",
                                       file_name="cat.png")
    assert len(blob) == 541 + BLOB_OVERHEAD
    assert b"cat picture" not in blob
    assert pointer.digest == hashlib.sha256(blob).digest()
    assert decrypt_attachment(blob, pointer) == b"cat picture"
    decryptor = AttachmentDecryptor(pointer)  # one-shot and incremental paths share the format
    assert decryptor.update(blob) + decryptor.finalize() == b"cat picture"


def test_the_pointer_travels_inside_content_and_still_opens_the_blob() -> None:
    blob, pointer = encrypt_attachment(b"report", content_type="application/pdf",
                                       file_name="q3.pdf")
    received = Content.decode(Content.new(pointer, sent_at_ms=1).encode()).body
    assert isinstance(received, AttachmentPointer)
    assert decrypt_attachment(blob, received) == b"report"


def test_every_attachment_gets_a_fresh_key_nonce_and_blob_id() -> None:
    a_blob, a = encrypt_attachment(b"same", content_type="text/plain")
    b_blob, b = encrypt_attachment(b"same", content_type="text/plain")
    assert a.key != b.key and a.blob_id != b.blob_id and a_blob != b_blob


def test_twenty_mib_streams_in_chunks_and_decrypts_in_odd_chunks() -> None:
    data = os.urandom(20 * MIB + 12345)
    encryptor = AttachmentEncryptor(content_type="video/mp4")
    parts = [encryptor.update(data[i:i + MIB]) for i in range(0, len(data), MIB)]
    tail, pointer = encryptor.finalize()
    blob = b"".join(parts) + tail
    assert len(blob) == blob_size(len(data)) and len(blob) < len(data) * 1.06 + BLOB_OVERHEAD
    assert pointer.size == len(data)
    decryptor = AttachmentDecryptor(pointer)
    out = [decryptor.update(blob[i:i + 999_983]) for i in range(0, len(blob), 999_983)]
    out.append(decryptor.finalize())
    assert b"".join(out) == data
    assert decrypt_attachment(blob, pointer) == data


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(1, 700), min_size=1, max_size=8))
def test_any_chunking_round_trips(data: bytes, cuts: list[int]) -> None:
    encryptor = AttachmentEncryptor(content_type="application/octet-stream")
    parts, pos, i = [], 0, 0
    while pos < len(data):
        step = cuts[i % len(cuts)]
        parts.append(encryptor.update(data[pos:pos + step]))
        pos, i = pos + step, i + 1
    tail, pointer = encryptor.finalize()
    blob = b"".join(parts) + tail
    decryptor = AttachmentDecryptor(pointer)
    out, pos = [], 0
    while pos < len(blob):
        step = cuts[i % len(cuts)]
        out.append(decryptor.update(blob[pos:pos + step]))
        pos, i = pos + step, i + 1
    out.append(decryptor.finalize())
    assert b"".join(out) == data


@settings(max_examples=100, deadline=None)
@given(st.integers(0, MAX_ATTACHMENT_BYTES))
def test_buckets_cover_the_size_with_at_most_five_percent_padding(size: int) -> None:
    bucket = padded_size(size)
    assert bucket >= size
    assert bucket == 541 or bucket <= size * 1.05 + 1
    assert padded_size(bucket) == bucket  # a bucket maps to itself: sizes collapse


def test_sizes_in_one_bucket_give_identical_blob_lengths() -> None:
    bucket = padded_size(100_000)
    lengths = {len(encrypt_attachment(os.urandom(n), content_type="image/jpeg")[0])
               for n in (bucket - 3000, bucket - 1000, bucket)}
    assert len(lengths) == 1


@pytest.fixture
def sample() -> tuple[bytes, AttachmentPointer]:
    return encrypt_attachment(os.urandom(5000), content_type="image/png")


def test_a_flipped_bit_is_rejected_by_the_digest(sample: tuple[bytes, AttachmentPointer]) -> None:
    blob, pointer = sample
    for position in (0, 20, len(blob) // 2, len(blob) - 1):
        tampered = bytearray(blob)
        tampered[position] ^= 1
        with pytest.raises(AttachmentCorrupted):
            decrypt_attachment(bytes(tampered), pointer)
        decryptor = AttachmentDecryptor(pointer)
        decryptor.update(bytes(tampered))
        with pytest.raises(AttachmentCorrupted):
            decryptor.finalize()


def test_truncated_or_extended_blobs_are_rejected(sample: tuple[bytes, AttachmentPointer]) -> None:
    blob, pointer = sample
    for candidate in (blob[:-1], blob[:10], b"", blob + b"\x00"):
        with pytest.raises(AttachmentSizeMismatch):
            decrypt_attachment(candidate, pointer)
    decryptor = AttachmentDecryptor(pointer)
    decryptor.update(blob[:-1])
    with pytest.raises(AttachmentSizeMismatch):
        decryptor.finalize()
    decryptor = AttachmentDecryptor(pointer)
    with pytest.raises(AttachmentSizeMismatch):
        decryptor.update(blob + b"x")


def test_a_wrong_key_fails_authentication(sample: tuple[bytes, AttachmentPointer]) -> None:
    blob, pointer = sample
    wrong = dataclasses.replace(pointer, key=bytes(32))
    with pytest.raises(AttachmentDecryptionFailed):
        decrypt_attachment(blob, wrong)


def test_a_wrong_size_in_the_pointer_is_rejected(sample: tuple[bytes, AttachmentPointer]) -> None:
    blob, pointer = sample
    with pytest.raises(AttachmentSizeMismatch):
        decrypt_attachment(blob, dataclasses.replace(pointer, size=100_000))
    # Same bucket, smaller claimed size: the zero-padding check catches it.
    with pytest.raises(AttachmentCorrupted):
        decrypt_attachment(blob, dataclasses.replace(pointer, size=pointer.size - 1))


def test_a_blob_matching_a_forged_digest_still_needs_the_key() -> None:
    blob, pointer = encrypt_attachment(b"x" * 600, content_type="text/plain")
    forged = bytearray(blob)
    forged[-1] ^= 1
    lying = dataclasses.replace(pointer, digest=hashlib.sha256(bytes(forged)).digest())
    with pytest.raises(AttachmentDecryptionFailed):
        decrypt_attachment(bytes(forged), lying)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=700))
def test_random_blobs_raise_only_attachment_errors(blob: bytes) -> None:
    pointer = AttachmentPointer(b"id", os.urandom(32), hashlib.sha256(blob).digest(), 10,
                                "image/png")
    with pytest.raises(AttachmentError):
        decrypt_attachment(blob, pointer)


def test_oversized_attachments_are_refused_before_encrypting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(AttachmentTooLarge):
        encrypt_attachment(bytes(MAX_ATTACHMENT_BYTES + 1), content_type="video/mp4")
    monkeypatch.setattr("e2ee_core.attachments.MAX_ATTACHMENT_BYTES", 1000)
    encryptor = AttachmentEncryptor(content_type="video/mp4")
    encryptor.update(bytes(600))
    encryptor.update(bytes(400))
    with pytest.raises(AttachmentTooLarge):
        encryptor.update(b"x")


def test_errors_never_hold_the_key(sample: tuple[bytes, AttachmentPointer]) -> None:
    blob, pointer = sample
    try:
        decrypt_attachment(blob[:-1], pointer)
    except AttachmentError as exc:
        assert pointer.key.hex() not in str(exc) and repr(pointer.key) not in str(exc)
