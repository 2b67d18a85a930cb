"""Labyrinth HPKE (Cryptographic Primitives, 3): authenticated, PSK-bound X25519 encryption.

    fresh_secret = X25519(sender_auth_priv, recipient_pub) || X25519(ephem_priv, recipient_pub)
    inner_aad    = 0x01 || sender_auth_pub || recipient_pub || ephem_pub || aad
    subkey       = HKDF-SHA256(ikm=fresh_secret, salt=psk, info=inner_aad)
    ciphertext   = 0x01 || ephem_pub || AES-256-GCM(subkey, nonce=0^12, aad, plaintext)

The zero nonce is safe because every subkey depends on a fresh ephemeral key. This is not
RFC 9180 HPKE; it is the whitepaper's own construction over `cryptography`'s X25519/AES-GCM.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .consts import (
    HPKE_MAX_PSK_LEN,
    HPKE_NONCE,
    HPKE_OVERHEAD,
    HPKE_VERSION,
    MAX_PLAINTEXT_LEN,
    X25519_LEN,
)
from .errors import DecryptionFailed, InvalidKeyLength, InvalidPublicKey, MessageTooLong
from .primitives import kdf_key


def generate_keypair() -> tuple[bytes, bytes]:
    """A fresh X25519 key pair as (private, public) raw 32-byte values."""
    private = X25519PrivateKey.generate()
    return private.private_bytes_raw(), private.public_key().public_bytes_raw()


def public_key(private: bytes) -> bytes:
    """The raw X25519 public key of a raw 32-byte private key."""
    return _private(private).public_key().public_bytes_raw()


def _private(raw: bytes) -> X25519PrivateKey:
    if len(raw) != X25519_LEN:
        raise InvalidKeyLength("X25519 private key must be 32 bytes")
    return X25519PrivateKey.from_private_bytes(raw)


def _dh(private: X25519PrivateKey, public: bytes) -> bytes:
    # assert_valid_curve_point: a 32-byte u-coordinate whose shared secret is not all-zero
    # (`cryptography` refuses small-order points with ValueError).
    if len(public) != X25519_LEN:
        raise InvalidPublicKey("X25519 public key must be 32 bytes")
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        raise InvalidPublicKey("X25519 public key of small order") from None


def _subkey(fresh_secret: bytes, psk: bytes, inner_aad: bytes) -> AESGCM:
    return AESGCM(kdf_key(fresh_secret, psk, inner_aad))


def _check_psk(psk: bytes) -> None:
    if len(psk) > HPKE_MAX_PSK_LEN:
        raise InvalidKeyLength("pre-shared key longer than 32 bytes")


def encrypt_with_ephemeral(recipient_enc_pub: bytes, sender_auth_pub: bytes,
                           sender_auth_priv: bytes, *, psk: bytes, aad: bytes, plaintext: bytes,
                           ephemeral_priv: bytes) -> bytes:
    """:func:`encrypt` with a caller-chosen ephemeral private key (for test vectors only)."""
    _check_psk(psk)
    if len(plaintext) > MAX_PLAINTEXT_LEN:
        raise MessageTooLong("plaintext too long")
    ephemeral = _private(ephemeral_priv)
    ephemeral_pub = ephemeral.public_key().public_bytes_raw()
    auth = _private(sender_auth_priv)
    if len(sender_auth_pub) != X25519_LEN:
        raise InvalidPublicKey("X25519 public key must be 32 bytes")
    fresh_secret = _dh(auth, recipient_enc_pub) + _dh(ephemeral, recipient_enc_pub)
    inner_aad = (bytes([HPKE_VERSION]) + sender_auth_pub + recipient_enc_pub + ephemeral_pub
                 + aad)
    sealed = _subkey(fresh_secret, psk, inner_aad).encrypt(HPKE_NONCE, plaintext, aad)
    return bytes([HPKE_VERSION]) + ephemeral_pub + sealed


def encrypt(recipient_enc_pub: bytes, sender_auth_pub: bytes, sender_auth_priv: bytes, *,
            psk: bytes, aad: bytes, plaintext: bytes) -> bytes:
    """``pk_encrypt``: seal ``plaintext`` to the recipient, authenticated by the sender and psk."""
    ephemeral_priv, _ = generate_keypair()
    return encrypt_with_ephemeral(recipient_enc_pub, sender_auth_pub, sender_auth_priv, psk=psk,
                                  aad=aad, plaintext=plaintext, ephemeral_priv=ephemeral_priv)


def decrypt(recipient_enc_pub: bytes, recipient_enc_priv: bytes, sender_auth_pub: bytes, *,
            psk: bytes, aad: bytes, ciphertext: bytes) -> bytes:
    """``pk_decrypt``; :class:`DecryptionFailed` on any malformed, forged or mis-bound input."""
    _check_psk(psk)
    if len(ciphertext) < HPKE_OVERHEAD or ciphertext[0] != HPKE_VERSION:
        raise DecryptionFailed("malformed Labyrinth HPKE ciphertext")
    if len(ciphertext) > HPKE_OVERHEAD + MAX_PLAINTEXT_LEN:
        raise DecryptionFailed("Labyrinth HPKE ciphertext too long")
    if len(recipient_enc_pub) != X25519_LEN or len(sender_auth_pub) != X25519_LEN:
        raise InvalidPublicKey("X25519 public key must be 32 bytes")
    recipient = _private(recipient_enc_priv)
    ephemeral_pub = ciphertext[1:1 + X25519_LEN]
    fresh_secret = _dh(recipient, sender_auth_pub) + _dh(recipient, ephemeral_pub)
    inner_aad = (bytes([HPKE_VERSION]) + sender_auth_pub + recipient_enc_pub + ephemeral_pub
                 + aad)
    try:
        return _subkey(fresh_secret, psk, inner_aad).decrypt(
            HPKE_NONCE, ciphertext[1 + X25519_LEN:], aad)
    except InvalidTag:
        raise DecryptionFailed("authentication failed") from None

