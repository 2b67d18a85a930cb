"""A thin, typed ctypes binding to libsodium's own ``crypto_core_hchacha20``.

No Python wrapper exposes HChaCha20 (PyNaCl, rbcl and pysodium do not), so we call the C
function directly. The library is the one PyNaCl already loaded: its ``_sodium`` extension
bundles libsodium and exports the symbol (or links a system libsodium, which ``dlsym`` on the
extension's handle also searches). Only if that fails do we fall back to the system library
(Debian's ``libsodium23``), so a plain ``pip install`` is enough and nothing is built by hand.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Protocol

from .consts import HCHACHA20_INPUT_LEN, HCHACHA20_KEY_LEN, HCHACHA20_OUTPUT_LEN
from .errors import InvalidKeyLength, LibsodiumUnavailable


class _HChaCha20(Protocol):
    def __call__(self, out: ctypes.Array[ctypes.c_char], inp: bytes, key: bytes,
                 const: None) -> int: ...


def _bind(library: ctypes.CDLL) -> _HChaCha20 | None:
    function = getattr(library, "crypto_core_hchacha20", None)
    if function is None:
        return None
    function.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p]
    function.restype = ctypes.c_int
    # libsodium's own size constants must agree with ours before we trust the binding.
    for name, expected in (("crypto_core_hchacha20_outputbytes", HCHACHA20_OUTPUT_LEN),
                           ("crypto_core_hchacha20_inputbytes", HCHACHA20_INPUT_LEN),
                           ("crypto_core_hchacha20_keybytes", HCHACHA20_KEY_LEN)):
        size = getattr(library, name, None)
        if size is None:
            return None
        size.restype = ctypes.c_size_t
        if size() != expected:
            return None
    bound: _HChaCha20 = function
    return bound


def _candidate_paths() -> list[str]:
    paths: list[str] = []
    try:
        import nacl._sodium

        paths.append(nacl._sodium.__file__)
    except ImportError:  # pragma: no cover - PyNaCl is a core dependency
        pass
    system = ctypes.util.find_library("sodium")
    if system is not None:
        paths.append(system)
    return paths


@functools.cache
def _hchacha20_function() -> _HChaCha20:
    for path in _candidate_paths():
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        function = _bind(library)
        if function is not None:
            return function
    raise LibsodiumUnavailable("no libsodium with crypto_core_hchacha20 could be loaded")


def library_available() -> bool:
    """True when a libsodium exporting ``crypto_core_hchacha20`` can be loaded."""
    try:
        _hchacha20_function()
    except LibsodiumUnavailable:
        return False
    return True


_OUTPUT = ctypes.c_char * HCHACHA20_OUTPUT_LEN


def hchacha20(key: bytes, nonce16: bytes) -> bytes:
    """HChaCha20(key, nonce16) with the standard constants (draft-irtf-cfrg-xchacha 2.2)."""
    if len(key) != HCHACHA20_KEY_LEN:
        raise InvalidKeyLength("HChaCha20 key must be 32 bytes")
    if len(nonce16) != HCHACHA20_INPUT_LEN:
        raise InvalidKeyLength("HChaCha20 input must be 16 bytes")
    out = _OUTPUT()  # a fresh buffer (create_string_buffer's checks were a third of the call)
    if _hchacha20_function()(out, bytes(nonce16), bytes(key), None) != 0:
        raise LibsodiumUnavailable("crypto_core_hchacha20 failed")  # pragma: no cover
    return out.raw
