"""The symmetric primitives of the protocol, all from ``cryptography``: HKDF, HMAC, AES-CBC."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from e2ee_core.errors import InvalidMessage
from e2ee_core.protocol.consts import CHAIN_KEY_SEED, LABEL_MESSAGE_KEYS, MESSAGE_KEY_SEED

_SHA256 = hashes.SHA256()
_BLOCK = 16  # AES block size
_PADS = [bytes([n]) * n for n in range(_BLOCK + 1)]  # PKCS#7 padding of n bytes


def hkdf(ikm: bytes, salt: bytes | None, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF-SHA256 (a ``None`` salt is 32 zero bytes, as in libsignal)."""
    return HKDF(algorithm=_SHA256, length=length, salt=salt, info=info).derive(ikm)


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    mac = crypto_hmac.HMAC(key, _SHA256)
    mac.update(data)
    return mac.finalize()


def chain_message_seed(chain_key: bytes) -> bytes:
    """Double Ratchet KDF_CK, output half: the seed of this step's message keys."""
    return hmac_sha256(chain_key, MESSAGE_KEY_SEED)


def chain_next(chain_key: bytes) -> bytes:
    """Double Ratchet KDF_CK, chain half: the next chain key."""
    return hmac_sha256(chain_key, CHAIN_KEY_SEED)


def chain_step(chain_key: bytes) -> tuple[bytes, bytes]:
    """Both halves of KDF_CK: ``(chain_message_seed(ck), chain_next(ck))``, keying HMAC once."""
    mac = crypto_hmac.HMAC(chain_key, _SHA256)
    seed = mac.copy()
    seed.update(MESSAGE_KEY_SEED)
    mac.update(CHAIN_KEY_SEED)
    return seed.finalize(), mac.finalize()


@dataclass(frozen=True)
class MessageKeys:
    """AES-256 key, HMAC key and IV of one message (HKDF "WhisperMessageKeys", 80 bytes)."""

    cipher_key: bytes
    mac_key: bytes
    iv: bytes

    @classmethod
    def from_seed(cls, seed: bytes) -> MessageKeys:
        okm = hkdf(seed, None, LABEL_MESSAGE_KEYS, 80)
        return cls(okm[:32], okm[32:64], okm[64:80])

    # PKCS#7 is applied inline rather than through ``cryptography``'s padder objects (which
    # cost more than the AES call here). Callers decrypt only after the message MAC verified
    # (encrypt-then-MAC), so the padding check below is no padding oracle.
    def encrypt(self, plaintext: bytes) -> bytes:
        n = _BLOCK - len(plaintext) % _BLOCK
        enc = Cipher(algorithms.AES(self.cipher_key), modes.CBC(self.iv)).encryptor()
        return enc.update(plaintext + _PADS[n]) + enc.finalize()

    def decrypt(self, ciphertext: bytes) -> bytes:
        if not ciphertext or len(ciphertext) % _BLOCK:
            raise InvalidMessage("ciphertext is not a whole number of AES blocks")
        dec = Cipher(algorithms.AES(self.cipher_key), modes.CBC(self.iv)).decryptor()
        data = dec.update(ciphertext) + dec.finalize()
        n = data[-1]
        if not 1 <= n <= _BLOCK or not hmac.compare_digest(data[-n:], _PADS[n]):
            raise InvalidMessage("invalid CBC padding")
        return data[:-n]
