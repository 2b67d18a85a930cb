"""The raw RSA private operation (RSASP1, RFC 8017 §5.2.1), fast and constant time.

RFC 9474 BlindSign needs ``s = m^d mod n`` on an arbitrary representative ``m``, which no
padding mode of ``cryptography`` exposes. Two engines, chosen once per key:

* ``openssl``: the system libcrypto's own RSA private operation (``EVP_PKEY_decrypt`` with
  ``RSA_NO_PADDING``) through ctypes: CRT, Montgomery ladder in constant time, base blinding.
* ``gmpy2``: portable fallback, CRT with ``gmpy2.powmod_sec`` (constant-time exponentiation) and
  multiplicative base blinding.

Neither engine checks its result; :func:`credentials.blind_rsa.blind_sign` verifies every
signature with the public key before releasing it (the fault-attack guard of RFC 9474 §4.3).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import secrets
import threading
from typing import Any, Protocol

import gmpy2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from credentials.errors import BlindRSAError

_RSA_NO_PADDING = 3


class RawPrivateOp(Protocol):
    """``s = m^d mod n`` for a representative ``m`` given as exactly ``k`` big-endian bytes."""

    engine: str

    def __call__(self, representative: bytes) -> bytes: ...


def _load_libcrypto() -> Any | None:
    names = [ctypes.util.find_library("crypto"), "libcrypto.so.3", "libcrypto.3.dylib"]
    for name in names:
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        needed = ("d2i_AutoPrivateKey", "EVP_PKEY_CTX_new", "EVP_PKEY_decrypt_init",
                  "EVP_PKEY_CTX_set_rsa_padding", "EVP_PKEY_decrypt", "EVP_PKEY_CTX_free",
                  "EVP_PKEY_free")
        if not all(hasattr(lib, f) for f in needed):
            continue
        vp, sz = ctypes.c_void_p, ctypes.c_size_t
        lib.d2i_AutoPrivateKey.restype = vp
        lib.d2i_AutoPrivateKey.argtypes = [vp, ctypes.POINTER(ctypes.c_char_p), ctypes.c_long]
        lib.EVP_PKEY_CTX_new.restype = vp
        lib.EVP_PKEY_CTX_new.argtypes = [vp, vp]
        lib.EVP_PKEY_decrypt_init.argtypes = [vp]
        lib.EVP_PKEY_CTX_set_rsa_padding.argtypes = [vp, ctypes.c_int]
        lib.EVP_PKEY_decrypt.argtypes = [vp, ctypes.c_char_p, ctypes.POINTER(sz),
                                         ctypes.c_char_p, sz]
        lib.EVP_PKEY_CTX_free.argtypes = [vp]
        lib.EVP_PKEY_CTX_free.restype = None
        lib.EVP_PKEY_free.argtypes = [vp]
        lib.EVP_PKEY_free.restype = None
        return lib
    return None


_LIB_CACHE: dict[str, Any | None] = {}
_LIB_LOCK = threading.Lock()


def _libcrypto() -> Any | None:
    with _LIB_LOCK:
        if "lib" not in _LIB_CACHE:
            disabled = os.environ.get("CREDENTIALS_RSA_ENGINE") == "gmpy2"
            _LIB_CACHE["lib"] = None if disabled else _load_libcrypto()
        return _LIB_CACHE["lib"]


class OpenSSLPrivateOp:
    """RSASP1 by the system libcrypto (its key object lives outside Python's heap)."""

    engine = "openssl"

    def __init__(self, key: rsa.RSAPrivateKey, lib: Any) -> None:
        self._lib = lib
        self._k = (key.key_size + 7) // 8
        der = key.private_bytes(serialization.Encoding.DER,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        buf = ctypes.c_char_p(der)
        pkey = lib.d2i_AutoPrivateKey(None, ctypes.byref(buf), len(der))
        if not pkey:
            raise BlindRSAError("libcrypto refused the private key")
        self._pkey = pkey
        self._local = threading.local()
        # Each call must not pay for context set-up; contexts are per thread and per process.
        self._contexts: list[int] = []
        self._ctx_lock = threading.Lock()

    def _context(self) -> Any:
        local = self._local
        if getattr(local, "pid", None) == os.getpid():
            return local.ctx
        ctx = self._lib.EVP_PKEY_CTX_new(self._pkey, None)
        if not ctx or self._lib.EVP_PKEY_decrypt_init(ctx) != 1 or \
                self._lib.EVP_PKEY_CTX_set_rsa_padding(ctx, _RSA_NO_PADDING) <= 0:
            raise BlindRSAError("libcrypto could not set up the RSA private operation")
        local.ctx, local.pid = ctx, os.getpid()
        with self._ctx_lock:
            self._contexts.append(ctx)
        return ctx

    def __call__(self, representative: bytes) -> bytes:
        if len(representative) != self._k:
            raise BlindRSAError("representative has the wrong length")
        out = ctypes.create_string_buffer(self._k)
        outlen = ctypes.c_size_t(self._k)
        rc = self._lib.EVP_PKEY_decrypt(self._context(), out, ctypes.byref(outlen),
                                        representative, self._k)
        if rc != 1 or outlen.value != self._k:
            raise BlindRSAError("message representative out of range")
        return out.raw

    def __del__(self) -> None:  # the EVP objects belong to this process only
        lib = getattr(self, "_lib", None)
        if lib is None:
            return
        for ctx in getattr(self, "_contexts", []):
            lib.EVP_PKEY_CTX_free(ctx)
        if getattr(self, "_pkey", None):
            lib.EVP_PKEY_free(self._pkey)
            self._pkey = None


class GmpyPrivateOp:
    """RSASP1 with CRT and ``gmpy2.powmod_sec`` (constant-time exponent), base blinding."""

    engine = "gmpy2"

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        nums = key.private_numbers()
        pub = nums.public_numbers
        self._n, self._e = gmpy2.mpz(pub.n), gmpy2.mpz(pub.e)
        self._p, self._q = gmpy2.mpz(nums.p), gmpy2.mpz(nums.q)
        self._dp, self._dq = gmpy2.mpz(nums.dmp1), gmpy2.mpz(nums.dmq1)
        self._qinv = gmpy2.mpz(nums.iqmp)
        self._k = (key.key_size + 7) // 8

    def __call__(self, representative: bytes) -> bytes:
        if len(representative) != self._k:
            raise BlindRSAError("representative has the wrong length")
        m = gmpy2.mpz(int.from_bytes(representative, "big"))
        n = self._n
        if m >= n:
            raise BlindRSAError("message representative out of range")
        # Blind the base so the CRT halves never see the attacker-chosen value itself.
        r = gmpy2.mpz(secrets.randbelow(int(n) - 2) + 2)
        r_inv = gmpy2.invert(r, n)
        mb = (m * gmpy2.powmod(r, self._e, n)) % n
        s1 = gmpy2.powmod_sec(mb % self._p, self._dp, self._p)
        s2 = gmpy2.powmod_sec(mb % self._q, self._dq, self._q)
        h = (self._qinv * (s1 - s2)) % self._p
        s = ((s2 + h * self._q) * r_inv) % n
        return int(s).to_bytes(self._k, "big")


def private_op(key: rsa.RSAPrivateKey, engine: str | None = None) -> RawPrivateOp:
    """The fastest available RSASP1 for ``key``; ``engine`` forces ``openssl`` or ``gmpy2``."""
    if engine not in (None, "openssl", "gmpy2"):
        raise BlindRSAError("unknown RSA engine")
    if engine != "gmpy2":
        lib = _libcrypto()
        if lib is not None:
            return OpenSSLPrivateOp(key, lib)
        if engine == "openssl":
            raise BlindRSAError("the system libcrypto is not available")
    return GmpyPrivateOp(key)
