"""ECVRF-EDWARDS25519-SHA512-TAI (RFC 9381, suite 0x03): prove, verify, proof_to_hash.

The group operations are libsodium's (PyNaCl ``nacl.bindings``); nothing here does field
arithmetic. libsodium's scalar multiplication refuses points outside the prime-order subgroup,
which RFC 9381 does not exclude in two places:

- encode_to_curve decodes a hash as an arbitrary curve point and then multiplies it by the
  cofactor; the multiplication by 8 is done as three point doublings (``crypto_core_ed25519_add``
  accepts any curve point), so the result is always in the prime-order subgroup.
- ``c*Y`` and ``c*Gamma`` in verification: a public key or Gamma may have a small-order component.
  :func:`_mul` splits such a point into its prime-order part (``8^-1 * (8*P)``) and its torsion
  part and multiplies each separately, so verification computes exactly the RFC's integers.

Point decoding is RFC 8032 Section 5.1.3 (canonical encodings only): a string decodes iff
libsodium decodes it and re-encodes it to the same bytes.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass

from nacl import bindings as sodium
from nacl.exceptions import CryptoError

from e2ee_core.keytrans import consts
from e2ee_core.keytrans.errors import InvalidVrfKey, InvalidVrfProof

IDENTITY = b"\x01" + bytes(31)
_ZERO_SCALAR = bytes(32)
_INV8 = sodium.crypto_core_ed25519_scalar_invert((consts.COFACTOR).to_bytes(32, "little"))
_EIGHT = (consts.COFACTOR).to_bytes(32, "little")
_Y_MASK = (1 << 255) - 1
_X_ZERO_YS = (1, consts.FIELD_PRIME - 1)


def _scalar_reduce(n: bytes) -> bytes:
    """n (up to 64 little-endian bytes) mod q, as 32 bytes."""
    reduced: bytes = sodium.crypto_core_ed25519_scalar_reduce(n.ljust(64, b"\x00"))
    return reduced


def _canonical(data: bytes) -> bool:
    """RFC 8032 5.1.3's canonical-encoding rules without decoding: y < p, and no sign bit on
    x = 0 (the only points with x = 0 have y = 1 or y = p - 1). Whether y is on the curve is
    left to libsodium."""
    y = int.from_bytes(data, "little") & _Y_MASK
    return y < consts.FIELD_PRIME and not (data[31] & 0x80 and y in _X_ZERO_YS)


def decode_point(data: bytes) -> bytes | None:
    """``data`` if it is a canonical RFC 8032 encoding of a curve point, else None."""
    if len(data) != consts.POINT_LEN or not _canonical(data):
        return None
    try:
        sodium.crypto_core_ed25519_add(data, IDENTITY)
    except CryptoError:
        return None  # not the y of a curve point
    return data


def _times_cofactor(point: bytes) -> bytes:
    """8 * point for any curve point (three doublings; add accepts points of any order)."""
    for _ in range(3):
        point = sodium.crypto_core_ed25519_add(point, point)
    return point


def times_cofactor(point: bytes) -> bytes:
    """8 * point for any decoded curve point (IDENTITY exactly when the point has small order)."""
    return _times_cofactor(point)


def _mul_base(scalar: bytes) -> bytes:
    """scalar * B for a reduced scalar."""
    if scalar == _ZERO_SCALAR:
        return IDENTITY
    out: bytes = sodium.crypto_scalarmult_ed25519_base_noclamp(scalar)
    return out


def _mul(scalar: bytes, point: bytes) -> bytes:
    """scalar * point, scalar a little-endian integer < 2^255, point any decoded curve point."""
    reduced = _scalar_reduce(scalar)
    if reduced != _ZERO_SCALAR:
        try:  # libsodium accepts only prime-order points: the usual case, one call
            out: bytes = sodium.crypto_scalarmult_ed25519_noclamp(reduced, point)
            return out
        except CryptoError:
            pass
    # point = P_q + T with P_q of order q and T of order dividing 8: n*point = (n mod q)*P_q +
    # (n mod 8)*T, with P_q = 8^-1 * (8*point).
    eight_p = _times_cofactor(point)
    prime_part = (IDENTITY if eight_p == IDENTITY
                  else sodium.crypto_scalarmult_ed25519_noclamp(_INV8, eight_p))
    prime_product = (IDENTITY if prime_part == IDENTITY or reduced == _ZERO_SCALAR
                     else sodium.crypto_scalarmult_ed25519_noclamp(reduced, prime_part))
    torsion = sodium.crypto_core_ed25519_sub(point, prime_part)
    result = prime_product
    for _ in range(int.from_bytes(scalar, "little") % consts.COFACTOR):
        result = sodium.crypto_core_ed25519_add(result, torsion)
    return result


def secret_scalar(secret_key: bytes) -> tuple[bytes, bytes]:
    """RFC 8032 5.1.5 key expansion: (x, the clamped secret scalar; the nonce prefix)."""
    if len(secret_key) != consts.SECRET_KEY_LEN:
        raise InvalidVrfKey("VRF secret key must be 32 bytes")
    digest = hashlib.sha512(secret_key).digest()
    x = bytearray(digest[:32])
    x[0] &= 248
    x[31] &= 127
    x[31] |= 64
    return bytes(x), digest[32:]


def public_key(secret_key: bytes) -> bytes:
    """The RFC 8032 public key Y = x*B of a 32-byte secret key."""
    x, _ = secret_scalar(secret_key)
    return _mul_base(_scalar_reduce(x))


def encode_to_curve(public_key_bytes: bytes, alpha: bytes) -> tuple[bytes, int]:
    """ECVRF_encode_to_curve_try_and_increment (RFC 9381 5.4.1.1): (H, the ctr that made it)."""
    prefix = (consts.SUITE_STRING + consts.ENCODE_TO_CURVE_DOMAIN_SEPARATOR_FRONT
              + public_key_bytes + alpha)
    for ctr in range(consts.MAX_ENCODE_TO_CURVE_ATTEMPTS):
        digest = hashlib.sha512(prefix + bytes([ctr]) + consts.DOMAIN_SEPARATOR_BACK).digest()
        candidate = digest[: consts.POINT_LEN]
        if not _canonical(candidate):
            continue
        try:  # the first doubling fails exactly when the string is not a curve point
            h_point = _times_cofactor(candidate)
        except CryptoError:
            continue
        if h_point != IDENTITY:
            return h_point, ctr
    raise InvalidVrfProof("encode_to_curve found no point")  # probability 2^-256


def nonce_generation(nonce_prefix: bytes, h_point: bytes) -> tuple[bytes, bytes]:
    """RFC 9381 5.4.2.2 (RFC 8032 style): (k_string, k = k_string mod q)."""
    k_string = hashlib.sha512(nonce_prefix + h_point).digest()
    return k_string, _scalar_reduce(k_string)


def challenge_generation(*points: bytes) -> bytes:
    """RFC 9381 5.4.3: the first cLen bytes of SHA-512(suite || 02 || points || 00)."""
    data = (consts.SUITE_STRING + consts.CHALLENGE_GENERATION_DOMAIN_SEPARATOR_FRONT
            + b"".join(points) + consts.DOMAIN_SEPARATOR_BACK)
    return hashlib.sha512(data).digest()[: consts.CHALLENGE_LEN]


def _hash_of_eight_gamma(eight_gamma: bytes) -> bytes:
    data = (consts.SUITE_STRING + consts.PROOF_TO_HASH_DOMAIN_SEPARATOR_FRONT
            + eight_gamma + consts.DOMAIN_SEPARATOR_BACK)
    return hashlib.sha512(data).digest()


def _gamma_to_hash(gamma: bytes) -> bytes:
    return _hash_of_eight_gamma(_times_cofactor(gamma))


@dataclass(frozen=True, slots=True)
class ProofTrace:
    """Every value RFC 9381 Appendix B prints for one proof (for known-answer tests)."""

    x: bytes
    public_key: bytes
    ctr: int
    h_point: bytes
    k_string: bytes
    k: bytes
    u_point: bytes
    v_point: bytes
    pi: bytes
    beta: bytes


def prove_with_trace(secret_key: bytes, alpha: bytes) -> ProofTrace:
    """ECVRF_prove (RFC 9381 5.1), returning the intermediate values as well."""
    x_clamped, nonce_prefix = secret_scalar(secret_key)
    x = _scalar_reduce(x_clamped)
    y = _mul_base(x)
    h_point, ctr = encode_to_curve(y, alpha)
    gamma = _mul(x, h_point)
    k_string, k = nonce_generation(nonce_prefix, h_point)
    u_point = _mul_base(k)
    v_point = _mul(k, h_point)
    c = challenge_generation(y, h_point, gamma, u_point, v_point)
    s = sodium.crypto_core_ed25519_scalar_add(
        k, sodium.crypto_core_ed25519_scalar_mul(c.ljust(32, b"\x00"), x))
    pi = gamma + c + s
    return ProofTrace(x=x_clamped, public_key=y, ctr=ctr, h_point=h_point, k_string=k_string,
                      k=k, u_point=u_point, v_point=v_point, pi=pi, beta=_gamma_to_hash(gamma))


def evaluate(secret_key: bytes, alpha: bytes, *, public_key_bytes: bytes | None = None) -> bytes:
    """beta for ``alpha`` without building a proof: what a directory needs to place a label;
    equal to verify(pk, alpha, prove(sk, alpha)). ``public_key_bytes``, if given, must be
    public_key(secret_key) (a caller that holds it saves a base-point multiplication).

    beta hashes 8*Gamma = 8*(x*H), computed as one multiplication (8x mod q)*H: H is in the
    prime-order subgroup, so this is the same point."""
    x_clamped, _ = secret_scalar(secret_key)
    x = _scalar_reduce(x_clamped)
    y = public_key_bytes if public_key_bytes is not None else _mul_base(x)
    h_point, _ = encode_to_curve(y, alpha)
    eight_x = sodium.crypto_core_ed25519_scalar_mul(x, _EIGHT)
    return _hash_of_eight_gamma(_mul(eight_x, h_point))


def prove(secret_key: bytes, alpha: bytes) -> bytes:
    """The 80-byte proof pi = Gamma || c || s for ``alpha`` (RFC 9381 5.1)."""
    return prove_with_trace(secret_key, alpha).pi


def _split_proof(pi: bytes) -> tuple[bytes, bytes, bytes]:
    """RFC 9381 5.4.4 ECVRF_decode_proof up to the curve check: (Gamma, c, s) with Gamma a
    canonical encoding and s < q, or InvalidVrfProof."""
    if len(pi) != consts.PROOF_LEN:
        raise InvalidVrfProof("VRF proof must be 80 bytes")
    gamma = pi[: consts.POINT_LEN]
    if not _canonical(gamma):
        raise InvalidVrfProof("VRF proof Gamma is not a curve point")
    c = pi[consts.POINT_LEN: consts.POINT_LEN + consts.CHALLENGE_LEN]
    s = pi[consts.POINT_LEN + consts.CHALLENGE_LEN:]
    if int.from_bytes(s, "little") >= consts.GROUP_ORDER:
        raise InvalidVrfProof("VRF proof s is not reduced")
    return gamma, c, s


def _decode_proof(pi: bytes) -> tuple[bytes, bytes, bytes]:
    """RFC 9381 5.4.4 ECVRF_decode_proof: (Gamma, c, s), or InvalidVrfProof."""
    gamma, c, s = _split_proof(pi)
    if decode_point(gamma) is None:
        raise InvalidVrfProof("VRF proof Gamma is not a curve point")
    return gamma, c, s


@functools.lru_cache(maxsize=64)
def validate_public_key(public_key_bytes: bytes) -> bytes:
    """RFC 9381 5.4.5 ECVRF_validate_key: a decodable point that is not of small order."""
    y = decode_point(public_key_bytes)
    if y is None:
        raise InvalidVrfKey("VRF public key is not a curve point")
    if _times_cofactor(y) == IDENTITY:
        raise InvalidVrfKey("VRF public key has small order")
    return y


def proof_to_hash(pi: bytes) -> bytes:
    """ECVRF_proof_to_hash (RFC 9381 5.2): beta from a proof. Call only after :func:`verify`."""
    gamma, _, _ = _decode_proof(pi)
    return _gamma_to_hash(gamma)


def verify(public_key_bytes: bytes, alpha: bytes, pi: bytes) -> bytes:
    """ECVRF_verify (RFC 9381 5.3, with key validation): beta, or raise InvalidVrfProof /
    InvalidVrfKey."""
    y = validate_public_key(public_key_bytes)
    gamma, c, s = _split_proof(pi)
    try:  # 8*Gamma (for beta) first: libsodium's add also refuses a Gamma off the curve
        eight_gamma = _times_cofactor(gamma)
    except CryptoError:
        raise InvalidVrfProof("VRF proof Gamma is not a curve point") from None
    h_point, _ = encode_to_curve(y, alpha)
    c_wide = c.ljust(32, b"\x00")
    u_point = sodium.crypto_core_ed25519_sub(_mul_base(s), _mul(c_wide, y))
    v_point = sodium.crypto_core_ed25519_sub(_mul(s, h_point), _mul(c_wide, gamma))
    expected = challenge_generation(y, h_point, gamma, u_point, v_point)
    if not hmac.compare_digest(expected, c):
        raise InvalidVrfProof("VRF proof does not verify")
    return _hash_of_eight_gamma(eight_gamma)
