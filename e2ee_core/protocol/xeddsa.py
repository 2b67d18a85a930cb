"""XEdDSA signatures with Curve25519 keys (Signal's XEdDSA specification, section 2.3).

All Edwards-side scalar and point operations go through libsodium (PyNaCl's low-level
``crypto_core_ed25519_*`` / ``crypto_scalarmult_ed25519_*_noclamp``). The only arithmetic done
here is the birational map u -> y = (u - 1) / (u + 1) mod p, which libsodium does not expose.

Signing follows the specification (the private scalar is negated when needed so that the
Edwards public key has sign bit 0). Verification is libsignal's: the sign bit of the Edwards
key is taken from bit 255 of the signature, so signatures from older libsignal clients (which
carry the sign bit there instead of negating) verify too.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from nacl import bindings as sodium
from nacl import exceptions as nacl_exceptions

from e2ee_core.protocol.consts import CURVE_KEY_LEN, SIGNATURE_LEN

_P = 2**255 - 19
# hash_1 in XEdDSA section 2.4: SHA-512 over (2**256 - 1 - 1) encoded in 32 bytes || ...
_HASH1_PREFIX = b"\xfe" + b"\xff" * 31


def clamp(raw: bytes) -> bytes:
    """The X25519 scalar a Curve25519 private key stands for (RFC 7748 decodeScalar25519)."""
    k = bytearray(raw)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    return bytes(k)


def _reduce(scalar32: bytes) -> bytes:
    return bytes(sodium.crypto_core_ed25519_scalar_reduce(scalar32 + b"\x00" * 32))


def _hash_scalar(*parts: bytes) -> bytes:
    return bytes(sodium.crypto_core_ed25519_scalar_reduce(hashlib.sha512(b"".join(parts)).digest()))


def sign(private_key: bytes, message: bytes, random: bytes | None = None) -> bytes:
    """XEdDSA-sign ``message`` with a 32-byte Curve25519 private key; 64-byte signature."""
    if len(private_key) != CURVE_KEY_LEN:
        raise ValueError("private key must be 32 bytes")
    z = os.urandom(64) if random is None else random
    k = clamp(private_key)
    big_a = bytes(sodium.crypto_scalarmult_ed25519_base_noclamp(k))
    a = _reduce(k)
    if big_a[31] & 0x80:
        # calculate_key_pair: use -a so that the public key's sign bit is 0.
        a = bytes(sodium.crypto_core_ed25519_scalar_negate(a))
        big_a = big_a[:31] + bytes([big_a[31] & 0x7F])
    r = _hash_scalar(_HASH1_PREFIX, a, message, z)
    big_r = bytes(sodium.crypto_scalarmult_ed25519_base_noclamp(r))
    h = _hash_scalar(big_r, big_a, message)
    s = bytes(sodium.crypto_core_ed25519_scalar_add(
        r, sodium.crypto_core_ed25519_scalar_mul(h, a)))
    return big_r + s


def _montgomery_to_edwards(u_bytes: bytes, sign_bit: int) -> bytes | None:
    u = int.from_bytes(u_bytes, "little") & ((1 << 255) - 1)
    u %= _P
    if (u + 1) % _P == 0:
        return None
    y = (u - 1) * pow(u + 1, _P - 2, _P) % _P
    encoded = bytearray(y.to_bytes(32, "little"))
    encoded[31] |= sign_bit
    return bytes(encoded)


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid XEdDSA signature by the 32-byte Curve25519 key."""
    if len(public_key) != CURVE_KEY_LEN or len(signature) != SIGNATURE_LEN:
        return False
    big_a = _montgomery_to_edwards(public_key, signature[63] & 0x80)
    if big_a is None or not sodium.crypto_core_ed25519_is_valid_point(big_a):
        return False
    big_r = signature[:32]
    s = bytearray(signature[32:])
    s[31] &= 0x7F
    if s[31] & 0xE0:  # s must be below 2**253
        return False
    h = _hash_scalar(big_r, big_a, message)
    try:
        s_b = sodium.crypto_scalarmult_ed25519_base_noclamp(bytes(s))
        h_a = sodium.crypto_scalarmult_ed25519_noclamp(h, big_a)
        check = sodium.crypto_core_ed25519_sub(s_b, h_a)
    except (nacl_exceptions.CryptoError, ValueError, TypeError):
        return False  # zero scalar or identity result: cannot be a valid signature
    return hmac.compare_digest(bytes(check), big_r)
