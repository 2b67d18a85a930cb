"""Labyrinth's symmetric primitives (Cryptographic Primitives): kdf, mac, AES-GCM-Extended.

- ``kdf(ikm, salt, info, *lengths)``: HKDF-SHA256 (RFC 5869) of the summed length, split in
  order; ``salt=None`` is the whitepaper's ``null`` (HashLen zero bytes).
- ``mac(data, key)``: HMAC-SHA256, argument order as the whitepaper's interface.
- AES-GCM-Extended: subkey = HChaCha20(key, nonce[0:16]), AES-256-GCM with nonce[16:28], the
  28-byte nonce prepended to the ciphertext.
"""

from __future__ import annotations

import hmac
import os
from hashlib import sha256

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .consts import (
    EXTENDED_NONCE_LEN,
    GCM_TAG_LEN,
    HCHACHA20_INPUT_LEN,
    KEY_LEN,
    MAX_PLAINTEXT_LEN,
)
from .errors import DecryptionFailed, InvalidKeyLength, MessageTooLong
from .sodium import hchacha20

# HKDF-SHA256 can expand to at most 255 * 32 bytes (RFC 5869 section 2.3).
_HKDF_MAX_OUTPUT = 255 * 32


def kdf(ikm: bytes, salt: bytes | None, info: bytes, *lengths: int) -> tuple[bytes, ...]:
    """HKDF-SHA256 over ``ikm``; one output of each length in ``lengths`` (default one key)."""
    sizes = lengths or (KEY_LEN,)
    total = sum(sizes)
    if any(size <= 0 for size in sizes) or total > _HKDF_MAX_OUTPUT:
        raise InvalidKeyLength("KDF output lengths out of range")
    okm = HKDF(algorithm=hashes.SHA256(), length=total, salt=salt, info=info).derive(ikm)
    out: list[bytes] = []
    offset = 0
    for size in sizes:
        out.append(okm[offset:offset + size])
        offset += size
    return tuple(out)


def kdf_key(ikm: bytes, salt: bytes | None, info: bytes) -> bytes:
    """One 32-byte key: ``kdf(ikm, salt, info)[0]``."""
    return kdf(ikm, salt, info, KEY_LEN)[0]


def mac(data: bytes, key: bytes) -> bytes:
    """HMAC-SHA256 of ``data`` under ``key`` (the whitepaper's ``mac(data, key)``)."""
    return hmac.new(key, data, sha256).digest()


def mac_equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison of two MAC values."""
    return hmac.compare_digest(a, b)


def _split(key: bytes, nonce: bytes) -> tuple[AESGCM, bytes]:
    if len(key) != KEY_LEN:
        raise InvalidKeyLength("AES-GCM-Extended key must be 32 bytes")
    if len(nonce) != EXTENDED_NONCE_LEN:
        raise InvalidKeyLength("AES-GCM-Extended nonce must be 28 bytes")
    subkey = hchacha20(key, nonce[:HCHACHA20_INPUT_LEN])
    return AESGCM(subkey), nonce[HCHACHA20_INPUT_LEN:]


def encrypt_with_nonce(key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
    """AES-GCM-Extended with a caller-chosen 28-byte nonce (for test vectors only)."""
    if len(plaintext) > MAX_PLAINTEXT_LEN:
        raise MessageTooLong("plaintext too long")
    cipher, subnonce = _split(key, nonce)
    return nonce + cipher.encrypt(subnonce, plaintext, aad)


def encrypt(key: bytes, aad: bytes, plaintext: bytes) -> bytes:
    """``encrypt(key, aad, plaintext)``: a fresh random 28-byte nonce || AES-GCM ciphertext."""
    return encrypt_with_nonce(key, os.urandom(EXTENDED_NONCE_LEN), aad, plaintext)


def decrypt(key: bytes, aad: bytes, ciphertext: bytes) -> bytes:
    """Inverse of :func:`encrypt`; :class:`DecryptionFailed` on any malformed or forged input."""
    if len(key) != KEY_LEN:
        raise InvalidKeyLength("AES-GCM-Extended key must be 32 bytes")
    if len(ciphertext) < EXTENDED_NONCE_LEN + GCM_TAG_LEN:
        raise DecryptionFailed("ciphertext too short")
    if len(ciphertext) > EXTENDED_NONCE_LEN + MAX_PLAINTEXT_LEN + GCM_TAG_LEN:
        raise DecryptionFailed("ciphertext too long")
    cipher, subnonce = _split(key, ciphertext[:EXTENDED_NONCE_LEN])
    try:
        return cipher.decrypt(subnonce, ciphertext[EXTENDED_NONCE_LEN:], aad)
    except InvalidTag:
        raise DecryptionFailed("authentication failed") from None


def sign(private_key: bytes, use_case: int, data: bytes, random: bytes | None = None) -> bytes:
    """``pk_sign``: XEdDSA over ``use_case_byte || data`` with a Curve25519 device key."""
    from e2ee_core.protocol import xeddsa

    if len(private_key) != KEY_LEN:
        raise InvalidKeyLength("signing key must be 32 bytes")
    return xeddsa.sign(private_key, bytes([use_case]) + data, random)


def verify(public_key: bytes, signature: bytes, use_case: int, data: bytes) -> bool:
    """``pk_verify``: True when ``signature`` is XEdDSA by ``public_key`` over use case || data."""
    from e2ee_core.protocol import xeddsa

    return xeddsa.verify(public_key, bytes([use_case]) + data, signature)
