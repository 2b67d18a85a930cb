"""Message padding (Cryptographic Primitives, 2): pad to 10 bytes, else PADMÉ; length prefix.

Output: 4-byte big-endian unpadded length || plaintext || zero bytes up to the padded size.
PADMÉ (Nikitin et al., "Reducing Metadata Leakage from Encrypted Files and Communication with
PURBs", PoPETs 2019, section 4) rounds a length L to keep only the top ``floor(log2 E) + 1``
bits of its exponent E = floor(log2 L): at most O(log log L) bits leak, overhead at most ~12%.
Unpadding is strict: the body must be exactly the canonical padded size and the padding zero,
so every plaintext has one encoding.
"""

from __future__ import annotations

from .consts import PAD_LENGTH_PREFIX_LEN, PAD_MAX_UNPADDED_LEN, PAD_MIN_LEN
from .errors import InvalidPadding, MessageTooLong


def padme(length: int) -> int:
    """The PADMÉ padded size of ``length`` (for ``length >= 2``; smaller sizes are kept)."""
    if length < 2:
        return length
    exponent = length.bit_length() - 1  # floor(log2 L)
    significant = exponent.bit_length()  # floor(log2 E) + 1
    mask = (1 << (exponent - significant)) - 1
    return (length + mask) & ~mask


def padded_size(length: int) -> int:
    """Size of the padded body for an unpadded plaintext of ``length`` bytes."""
    if length < 0 or length > PAD_MAX_UNPADDED_LEN:
        raise InvalidPadding("plaintext length out of range")
    return PAD_MIN_LEN if length < PAD_MIN_LEN else padme(length)


def pad(plaintext: bytes) -> bytes:
    """Length prefix || plaintext || zeros up to :func:`padded_size`."""
    if len(plaintext) > PAD_MAX_UNPADDED_LEN:
        raise MessageTooLong("plaintext too long to pad")
    size = padded_size(len(plaintext))
    return (len(plaintext).to_bytes(PAD_LENGTH_PREFIX_LEN, "big") + plaintext
            + bytes(size - len(plaintext)))


def unpad(padded: bytes) -> bytes:
    """Inverse of :func:`pad`; :class:`InvalidPadding` on any non-canonical input."""
    if len(padded) < PAD_LENGTH_PREFIX_LEN:
        raise InvalidPadding("missing length prefix")
    length = int.from_bytes(padded[:PAD_LENGTH_PREFIX_LEN], "big")
    body = padded[PAD_LENGTH_PREFIX_LEN:]
    if length > PAD_MAX_UNPADDED_LEN or len(body) != padded_size(length):
        raise InvalidPadding("padded size does not match the length prefix")
    if any(body[length:]):
        raise InvalidPadding("padding bytes are not zero")
    return body[:length]
