"""RFC 9474 RSA blind signatures: the four RSABSSA-SHA384 variants.

Sans-I/O: bytes and ``cryptography`` RSA keys in, bytes out. The protocol (RFC 9474 §4):

* client: ``prepared = prepare(msg)``; ``blinded, inv = blind(pk, prepared)``
* server: ``blind_sig = BlindSigner(sk).blind_sign(blinded)`` (verified before release)
* client: ``sig = finalize(pk, prepared, blind_sig, inv)`` (verified before return)
* anyone: ``verify(pk, prepared, sig)``: a standard RSASSA-PSS signature.

Hashing and PSS verification come from ``cryptography``; EMSA-PSS-ENCODE (RFC 8017 §9.1.1) is
written out here because no library exposes the encoding step by itself.
"""

from __future__ import annotations

import enum
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gmpy2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from credentials.errors import BlindRSAError, InvalidSignatureError
from credentials.rsa_private import RawPrivateOp, private_op

_HASH_LEN = 48  # SHA-384
_RANDOMIZER_LEN = 32  # RFC 9474 §4.1 PrepareRandomize: 32 random bytes


@dataclass(frozen=True)
class Variant:
    """One RSABSSA-SHA384 variant of RFC 9474 §5."""

    name: str
    salt_length: int
    randomized: bool


class Variants(enum.Enum):
    """RFC 9474 §5: the four named variants (SHA-384, MGF1-SHA-384)."""

    PSS_RANDOMIZED = Variant("RSABSSA-SHA384-PSS-Randomized", 48, True)
    PSSZERO_RANDOMIZED = Variant("RSABSSA-SHA384-PSSZERO-Randomized", 0, True)
    PSS_DETERMINISTIC = Variant("RSABSSA-SHA384-PSS-Deterministic", 48, False)
    PSSZERO_DETERMINISTIC = Variant("RSABSSA-SHA384-PSSZERO-Deterministic", 0, False)

    @classmethod
    def by_name(cls, name: str) -> Variants:
        """The variant with the RFC 9474 name, e.g. ``RSABSSA-SHA384-PSS-Deterministic``."""
        for member in cls:
            if member.value.name == name:
                return member
        raise BlindRSAError("unknown RSABSSA variant")


def _sha384(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA384())
    digest.update(data)
    return digest.finalize()


def _mgf1_sha384(seed: bytes, length: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += _sha384(seed + counter.to_bytes(4, "big"))
        counter += 1
    return bytes(out[:length])


def emsa_pss_encode(msg: bytes, em_bits: int, salt: bytes) -> bytes:
    """RFC 8017 §9.1.1 with SHA-384 and MGF1-SHA-384."""
    em_len = (em_bits + 7) // 8
    m_hash = _sha384(msg)
    if em_len < _HASH_LEN + len(salt) + 2:
        raise BlindRSAError("encoding error: key too small for this salt")
    h = _sha384(b"\x00" * 8 + m_hash + salt)
    ps = b"\x00" * (em_len - len(salt) - _HASH_LEN - 2)
    db = ps + b"\x01" + salt
    mask = _mgf1_sha384(h, em_len - _HASH_LEN - 1)
    masked = bytearray(a ^ b for a, b in zip(db, mask, strict=True))
    masked[0] &= 0xFF >> (8 * em_len - em_bits)
    return bytes(masked) + h + b"\xbc"


def _modulus_len(pk: rsa.RSAPublicKey) -> int:
    return (pk.key_size + 7) // 8


def prepare(msg: bytes, variant: Variants, *, randomizer: bytes | None = None) -> bytes:
    """RFC 9474 §4.1: PrepareRandomize (32 random bytes || msg) or PrepareIdentity (msg).

    ``randomizer`` fixes the 32 bytes (known-answer tests only).
    """
    if not variant.value.randomized:
        return msg
    prefix = secrets.token_bytes(_RANDOMIZER_LEN) if randomizer is None else randomizer
    if len(prefix) != _RANDOMIZER_LEN:
        raise BlindRSAError("randomizer must be 32 bytes")
    return prefix + msg


def blind(
    pk: rsa.RSAPublicKey,
    msg: bytes,
    variant: Variants,
    *,
    salt: bytes | None = None,
    r: int | None = None,
) -> tuple[bytes, int]:
    """RFC 9474 §4.2 Blind: returns ``(blinded_msg, inv)``; keep ``inv`` secret for Finalize.

    ``salt`` and the blind ``r`` are fixed only by known-answer tests.
    """
    pub = pk.public_numbers()
    n, e = gmpy2.mpz(pub.n), gmpy2.mpz(pub.e)
    k = _modulus_len(pk)
    if salt is None:
        salt = secrets.token_bytes(variant.value.salt_length)
    elif len(salt) != variant.value.salt_length:
        raise BlindRSAError("salt length does not match the variant")
    encoded = emsa_pss_encode(msg, pk.key_size - 1, salt)
    m = gmpy2.mpz(int.from_bytes(encoded, "big"))
    if math.gcd(int(m), pub.n) != 1:
        raise BlindRSAError("invalid input: message not co-prime with n")
    if r is None:
        while True:
            r = secrets.randbelow(pub.n - 1) + 1
            if math.gcd(r, pub.n) == 1:
                break
    rz = gmpy2.mpz(r)
    if not 0 < rz < n or math.gcd(r, pub.n) != 1:
        raise BlindRSAError("invalid blind")
    inv = int(gmpy2.invert(rz, n))
    z = (m * gmpy2.powmod(rz, e, n)) % n
    return int(z).to_bytes(k, "big"), inv


class BlindSigner:
    """The server side (RFC 9474 §4.3) for one private key, using the fast private operation."""

    def __init__(self, sk: rsa.RSAPrivateKey, *, engine: str | None = None) -> None:
        self.public_key = sk.public_key()
        pub = self.public_key.public_numbers()
        self._n, self._e = gmpy2.mpz(pub.n), gmpy2.mpz(pub.e)
        self._k = _modulus_len(self.public_key)
        self._op: RawPrivateOp = private_op(sk, engine)

    @property
    def engine(self) -> str:
        """Which private-operation engine signs: ``openssl`` or ``gmpy2``."""
        return self._op.engine

    def blind_sign(self, blinded_msg: bytes) -> bytes:
        """BlindSign: ``s = m^d mod n``, released only after ``s^e mod n == m`` is checked."""
        m, s = self._sign_unchecked(blinded_msg)
        # Fault-attack guard: a faulty CRT signature would leak a factor of n.
        if not self._verifies(m, s):
            raise InvalidSignatureError("signing failure")
        return s

    def blind_sign_many(self, blinded_msgs: Sequence[bytes]) -> list[bytes | BlindRSAError]:
        """BlindSign each message; a failed one gives its error in its place.

        The fault-attack check of RFC 9474 §4.3 (``s^e mod n == m``) is made for the whole
        batch at once: ``(s_1 ... s_k)^e == m_1 ... m_k (mod n)``, one exponentiation instead of
        k. A faulty signature ``s_j' = s_j * f`` (``f != 1``) fails it, since ``x -> x^e`` is a
        permutation modulo n: the check passes only if the faults of several signatures
        multiply to exactly 1, which random faults do with negligible probability. When the
        batch check fails every signature is checked on its own, and only the faulty ones are
        withheld (``InvalidSignatureError``): no signature is released unchecked.
        """
        results: list[bytes | BlindRSAError] = []
        product_s, product_m = gmpy2.mpz(1), gmpy2.mpz(1)
        for blinded_msg in blinded_msgs:
            try:
                m, s = self._sign_unchecked(blinded_msg)
            except BlindRSAError as exc:
                results.append(exc)
                continue
            product_s = product_s * gmpy2.mpz(int.from_bytes(s, "big")) % self._n
            product_m = product_m * m % self._n
            results.append(s)
        if gmpy2.powmod(product_s, self._e, self._n) == product_m:
            return results
        return [InvalidSignatureError("signing failure") if isinstance(result, bytes)
                and not self._verifies(gmpy2.mpz(int.from_bytes(blinded_msg, "big")), result)
                else result
                for blinded_msg, result in zip(blinded_msgs, results, strict=True)]

    def _verifies(self, m: Any, s: bytes) -> bool:
        """RFC 9474 §4.3's check: ``s^e mod n == m``."""
        return bool(gmpy2.powmod(gmpy2.mpz(int.from_bytes(s, "big")), self._e, self._n) == m)

    def _sign_unchecked(self, blinded_msg: bytes) -> tuple[Any, bytes]:
        """``(m, m^d mod n)``: the caller must check the signature before releasing it."""
        if len(blinded_msg) != self._k:
            raise BlindRSAError("blinded message has the wrong length")
        m = gmpy2.mpz(int.from_bytes(blinded_msg, "big"))
        if m >= self._n:
            raise BlindRSAError("message representative out of range")
        return m, self._op(blinded_msg)


def blind_sign(sk: rsa.RSAPrivateKey, blinded_msg: bytes) -> bytes:
    """RFC 9474 §4.3 BlindSign with a one-off signer (use :class:`BlindSigner` to reuse it)."""
    return BlindSigner(sk).blind_sign(blinded_msg)


def finalize(
    pk: rsa.RSAPublicKey, msg: bytes, blind_sig: bytes, inv: int, variant: Variants
) -> bytes:
    """RFC 9474 §4.4 Finalize: unblind and verify; raises InvalidSignatureError."""
    k = _modulus_len(pk)
    if len(blind_sig) != k:
        raise BlindRSAError("unexpected input size")
    n = gmpy2.mpz(pk.public_numbers().n)
    z = gmpy2.mpz(int.from_bytes(blind_sig, "big"))
    if z >= n:
        raise InvalidSignatureError("invalid signature")
    sig = int((z * gmpy2.mpz(inv)) % n).to_bytes(k, "big")
    verify(pk, msg, sig, variant)
    return sig


def verify(pk: rsa.RSAPublicKey, msg: bytes, sig: bytes, variant: Variants) -> None:
    """RSASSA-PSS-VERIFY (SHA-384, MGF1-SHA-384, the variant's salt); raises on failure."""
    try:
        pk.verify(
            sig,
            msg,
            padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=variant.value.salt_length),
            hashes.SHA384(),
        )
    except InvalidSignature as exc:
        raise InvalidSignatureError("invalid signature") from exc
