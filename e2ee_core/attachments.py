"""Client-side attachment encryption: a fresh key per attachment, a padded opaque blob, a digest.

The sender encrypts the file with a fresh random AES-256 key, uploads the resulting *blob* (the
server only ever sees ciphertext of a bucketed size) and sends an
:class:`~e2ee_core.content.AttachmentPointer` (blob id, key, SHA-256 digest of the blob,
plaintext size, media type, optional file name) *inside* the end-to-end encrypted message.
The recipient downloads the blob, checks the digest against the pointer (constant-time) before
decrypting, decrypts, checks the padding and hands back exactly ``size`` bytes.

Blob layout: ``nonce (12) || AES-256-GCM(key, nonce, plaintext || zero padding) || tag (16)``.

Why AES-256-GCM (from ``cryptography``) rather than Signal's AES-CBC + HMAC-SHA256: it is one
standard AEAD from one library call path, hardware-accelerated, and ``cryptography``'s
``Cipher(AES, GCM)`` context encrypts incrementally, so a 20 MiB+ file never needs two copies in
memory. The key is used exactly once, so a random nonce cannot repeat under it. The digest over
the whole blob is kept in addition (as Signal does): it binds the pointer to one exact blob, lets
the recipient reject a swapped or corrupted download before any decryption, and gives the
server-side blob a content address that reveals nothing.

Padding: Signal's exponential buckets (``max(541, floor(1.05 ** ceil(log_1.05(size))))``), so
the stored size reveals only one of 251 buckets between 541 B and 100 MiB (at most ~5 % extra).

Usage::

    >>> blob, pointer = encrypt_attachment(b"cat picture", content_type="image/png")
    >>> decrypt_attachment(blob, pointer)
    b'cat picture'
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import (
    AEADDecryptionContext,
    AEADEncryptionContext,
    Cipher,
    algorithms,
    modes,
)

from e2ee_core.content import (
    ATTACHMENT_KEY_LENGTH,
    MAX_ATTACHMENT_BYTES,
    AttachmentPointer,
)
from e2ee_core.errors import (  # noqa: F401 - part of this module's API
    AttachmentCorrupted,
    AttachmentDecryptionFailed,
    AttachmentError,
    AttachmentSizeMismatch,
    AttachmentTooLarge,
    E2EEError,
)

__all__ = [
    "BLOB_OVERHEAD",
    "NONCE_LENGTH",
    "TAG_LENGTH",
    "AttachmentCorrupted",
    "AttachmentDecryptionFailed",
    "AttachmentDecryptor",
    "AttachmentEncryptor",
    "AttachmentError",
    "AttachmentSizeMismatch",
    "AttachmentTooLarge",
    "blob_size",
    "decrypt_attachment",
    "encrypt_attachment",
    "padded_size",
]

NONCE_LENGTH = 12
"""GCM's native 96-bit nonce."""
TAG_LENGTH = 16
"""Full 128-bit GCM tag."""
BLOB_OVERHEAD = NONCE_LENGTH + TAG_LENGTH
BLOB_ID_LENGTH = 16
"""Random blob ids: unguessable names for the upload."""
MIN_PADDED_SIZE = 541
"""Signal's smallest bucket: every small attachment looks the same."""
PADDING_GROWTH = 1.05
"""Signal's bucket ratio: at most ~5 % padding, ~14 buckets per doubling of size."""
_PAD_CHUNK = 1 << 16


def padded_size(size: int) -> int:
    """The bucket a plaintext of ``size`` bytes is padded to (Signal's exponential buckets)."""
    if size < 0:
        raise ValueError("size must be non-negative")
    if size <= MIN_PADDED_SIZE:
        return MIN_PADDED_SIZE
    bucket = math.floor(PADDING_GROWTH ** math.ceil(math.log(size, PADDING_GROWTH)))
    return max(size, bucket)  # guard against float rounding just under size


def blob_size(size: int) -> int:
    """Length of the blob that carries a plaintext of ``size`` bytes."""
    return padded_size(size) + BLOB_OVERHEAD


class AttachmentEncryptor:
    """Incremental encryption of one attachment with its own fresh key.

    Feed chunks to :meth:`update` and write each returned chunk to the upload; :meth:`finalize`
    returns the last bytes of the blob and the pointer to send in the message.
    """

    def __init__(self, *, content_type: str, file_name: str | None = None,
                 blob_id: bytes | None = None) -> None:
        # Validate the pointer fields now rather than after encrypting 20 MiB.
        AttachmentPointer(blob_id or b"x", bytes(ATTACHMENT_KEY_LENGTH), bytes(32), 0,
                          content_type, file_name)
        self._content_type = content_type
        self._file_name = file_name
        self._blob_id = blob_id if blob_id is not None else secrets.token_bytes(BLOB_ID_LENGTH)
        self._key = secrets.token_bytes(ATTACHMENT_KEY_LENGTH)
        nonce = secrets.token_bytes(NONCE_LENGTH)
        self._encryptor: AEADEncryptionContext = Cipher(algorithms.AES(self._key),
                                                modes.GCM(nonce)).encryptor()
        self._digest = hashlib.sha256()
        self._pending_header: bytes | None = nonce
        self._size = 0
        self._done = False

    def update(self, chunk: bytes) -> bytes:
        """Encrypt the next plaintext chunk; returns the next blob bytes (may be empty)."""
        if self._done:
            raise AttachmentError("encryptor already finalized")
        self._size += len(chunk)
        if self._size > MAX_ATTACHMENT_BYTES:
            raise AttachmentTooLarge(f"attachment exceeds {MAX_ATTACHMENT_BYTES} bytes")
        out = self._encryptor.update(chunk)
        if self._pending_header is not None:
            out, self._pending_header = self._pending_header + out, None
        self._digest.update(out)
        return out

    def finalize(self) -> tuple[bytes, AttachmentPointer]:
        """Pad, finish the AEAD and return ``(last_blob_bytes, pointer)``."""
        tail = self.update(b"")
        self._done = True
        parts = [tail]
        remaining = padded_size(self._size) - self._size
        zeros = bytes(min(remaining, _PAD_CHUNK))
        while remaining:
            step = min(remaining, _PAD_CHUNK)
            parts.append(self._encryptor.update(zeros[:step]))
            remaining -= step
        parts.append(self._encryptor.finalize())
        parts.append(self._encryptor.tag)
        for part in parts[1:]:
            self._digest.update(part)
        pointer = AttachmentPointer(self._blob_id, self._key, self._digest.digest(), self._size,
                                    self._content_type, self._file_name)
        return b"".join(parts), pointer


def encrypt_attachment(data: bytes, *, content_type: str, file_name: str | None = None,
                       blob_id: bytes | None = None) -> tuple[bytes, AttachmentPointer]:
    """Encrypt ``data`` with a fresh key; returns ``(blob, pointer)``. Upload the blob under
    ``pointer.blob_id`` and send the pointer inside an encrypted message."""
    if len(data) > MAX_ATTACHMENT_BYTES:
        raise AttachmentTooLarge(f"attachment exceeds {MAX_ATTACHMENT_BYTES} bytes")
    # Same blob as AttachmentEncryptor produces, built with one large allocation and one copy
    # (the incremental path costs two more copies of a whole in-memory file).
    AttachmentPointer(blob_id or b"x", bytes(ATTACHMENT_KEY_LENGTH), bytes(32), 0,
                      content_type, file_name)
    key, nonce = secrets.token_bytes(ATTACHMENT_KEY_LENGTH), secrets.token_bytes(NONCE_LENGTH)
    encryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
    body = encryptor.update(data)
    padding = encryptor.update(bytes(padded_size(len(data)) - len(data)))
    final = encryptor.finalize()
    blob = b"".join((nonce, body, padding, final, encryptor.tag))
    pointer = AttachmentPointer(
        blob_id if blob_id is not None else secrets.token_bytes(BLOB_ID_LENGTH), key,
        hashlib.sha256(blob).digest(), len(data), content_type, file_name)
    return blob, pointer


class AttachmentDecryptor:
    """Incremental decryption of one blob against its pointer.

    Plaintext returned by :meth:`update` is **not yet authenticated**: write it to a temporary
    place and use it only after :meth:`finalize` returns (it checks length, digest, tag and
    padding). :func:`decrypt_attachment` checks the digest before decrypting anything.
    """

    def __init__(self, pointer: AttachmentPointer) -> None:
        if not isinstance(pointer, AttachmentPointer):
            raise AttachmentError("pointer must be an AttachmentPointer")
        self._pointer = pointer
        self._expected = blob_size(pointer.size)
        self._digest = hashlib.sha256()
        self._received = 0
        self._header = b""
        self._decryptor: AEADDecryptionContext | None = None
        self._holdback = b""  # the last TAG_LENGTH bytes seen so far: maybe the tag
        self._plain_emitted = 0  # plaintext bytes decrypted so far (padding included)
        self._padding_nonzero = False
        self._done = False

    def _decrypt(self, ciphertext: bytes) -> bytes:
        assert self._decryptor is not None
        plain = self._decryptor.update(ciphertext)
        start = self._plain_emitted
        self._plain_emitted += len(plain)
        keep = max(0, min(len(plain), self._pointer.size - start))
        if keep < len(plain) and plain[keep:].count(0) != len(plain) - keep:
            self._padding_nonzero = True
        return plain[:keep]

    def update(self, chunk: bytes) -> bytes:
        """Consume the next blob bytes; returns the next (unauthenticated) plaintext bytes."""
        if self._done:
            raise AttachmentError("decryptor already finalized")
        self._received += len(chunk)
        if self._received > self._expected:
            raise AttachmentSizeMismatch("blob is longer than the pointer's size implies")
        self._digest.update(chunk)
        if self._decryptor is None:
            self._header += chunk
            if len(self._header) < NONCE_LENGTH:
                return b""
            nonce, chunk = self._header[:NONCE_LENGTH], self._header[NONCE_LENGTH:]
            self._decryptor = Cipher(algorithms.AES(self._pointer.key),
                                     modes.GCM(nonce)).decryptor()
        data = self._holdback + chunk
        if len(data) <= TAG_LENGTH:
            self._holdback = data
            return b""
        self._holdback = data[-TAG_LENGTH:]
        return self._decrypt(data[:-TAG_LENGTH])

    def finalize(self) -> bytes:
        """Check length, digest (constant time), AEAD tag and padding; returns the last bytes."""
        if self._done:
            raise AttachmentError("decryptor already finalized")
        self._done = True
        if self._received != self._expected or self._decryptor is None:
            raise AttachmentSizeMismatch("blob is shorter than the pointer's size implies")
        if not hmac.compare_digest(self._digest.digest(), self._pointer.digest):
            raise AttachmentCorrupted("blob digest does not match the pointer")
        try:
            last = self._decryptor.finalize_with_tag(self._holdback)
        except InvalidTag:
            raise AttachmentDecryptionFailed("attachment failed to authenticate") from None
        tail = self._decrypt(last) if last else b""  # GCM emits nothing at finalize
        if self._padding_nonzero:
            raise AttachmentCorrupted("attachment padding is not zero")
        return tail


def decrypt_attachment(blob: bytes, pointer: AttachmentPointer) -> bytes:
    """Verify ``blob`` against ``pointer`` (length, then SHA-256 digest in constant time) and only
    then decrypt it; returns exactly ``pointer.size`` bytes. Raises :class:`AttachmentError`."""
    if not isinstance(pointer, AttachmentPointer):
        raise AttachmentError("pointer must be an AttachmentPointer")
    if len(blob) != blob_size(pointer.size):
        raise AttachmentSizeMismatch("blob length does not match the pointer's size")
    if not hmac.compare_digest(hashlib.sha256(blob).digest(), pointer.digest):
        raise AttachmentCorrupted("blob digest does not match the pointer")
    view = memoryview(blob)
    decryptor = Cipher(algorithms.AES(pointer.key), modes.GCM(view[:NONCE_LENGTH])).decryptor()
    plain = decryptor.update(view[NONCE_LENGTH:-TAG_LENGTH])
    try:
        decryptor.finalize_with_tag(view[-TAG_LENGTH:].tobytes())
    except InvalidTag:
        raise AttachmentDecryptionFailed("attachment failed to authenticate") from None
    if plain.count(0, pointer.size) != len(plain) - pointer.size:
        raise AttachmentCorrupted("attachment padding is not zero")
    return plain[:pointer.size]
