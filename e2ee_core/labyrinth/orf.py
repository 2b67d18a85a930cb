"""The oblivious revocable function (Cryptographic Primitives, 4; eprint 2022/1044).

Two chained PRFs over Ristretto255. The client blinds its input with its secret scalar c:

    client_map(c, client_domain, id) = H2C(HMAC(key=client_domain, id)) * c
    server_map(s, server_domain, P)  = HMAC(key=server_domain, P * s)
    H2C(x)                           = ristretto255_from_hash(SHA-512(x))

so the overall mapping is HMAC(server_domain, H2C(...) * (c*s)): the client never sees the
output, the server never the input. Evolving to a new device keeps the product c*s:
c' = c * t and s' = s / t for a random rotation token t. Revocation: the server deletes s.

Ristretto255 arithmetic comes from libsodium through `rbcl` (see docs/labyrinth.md).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from hashlib import sha512

import rbcl

from .consts import (
    ORF_MAX_DOMAIN_LEN,
    ORF_MAX_INPUT_LEN,
    RISTRETTO_POINT_LEN,
    RISTRETTO_SCALAR_LEN,
)
from .errors import InvalidKeyLength, InvalidPublicKey
from .primitives import mac


def _remove_rbcl_temporary_library() -> None:
    # rbcl writes its bundled libsodium to a new temporary file at every import and never
    # deletes it (2.8 MB per process). The library stays mapped once loaded, so the file can
    # go at once; a later rbcl without the attribute makes this a no-op.
    path = getattr(sys.modules.get("rbcl._sodium"), "lib_path", None)
    if isinstance(path, str) and os.path.basename(path).startswith("tmp"):
        try:
            os.unlink(path)
        except OSError:
            pass


_remove_rbcl_temporary_library()
# The order of the Ristretto255 group (RFC 9496 section 4): scalars are canonical below it.
_GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493


@dataclass(frozen=True, slots=True)
class Scalar:
    """A canonical, non-zero Ristretto255 scalar (client state, server state or token)."""

    value: bytes

    def __post_init__(self) -> None:
        if len(self.value) != RISTRETTO_SCALAR_LEN:
            raise InvalidKeyLength("Ristretto255 scalar must be 32 bytes")
        number = int.from_bytes(self.value, "little")
        if number == 0 or number >= _GROUP_ORDER:
            raise InvalidKeyLength("Ristretto255 scalar must be canonical and non-zero")

    @classmethod
    def random(cls) -> Scalar:
        """A uniformly random non-zero scalar from 64 bytes of os.urandom, reduced mod L."""
        while True:
            value = rbcl.crypto_core_ristretto255_scalar_reduce(os.urandom(64))
            if any(value):
                return cls(value)

    def __repr__(self) -> str:
        return "Scalar(<secret>)"


ClientState = Scalar
ServerState = Scalar
EvolveToken = Scalar


def client_init() -> ClientState:
    """``orf_client_init``: a random client scalar."""
    return Scalar.random()


def server_init() -> ServerState:
    """``orf_server_init``: a random server scalar."""
    return Scalar.random()


def _check_domain(domain: bytes) -> None:
    if not 1 <= len(domain) <= ORF_MAX_DOMAIN_LEN:
        raise InvalidKeyLength("ORF domain must be 1..255 bytes")


def hash_to_curve(data: bytes) -> bytes:
    """``ristretto_from_hash(sha512(data))``: a Ristretto255 point."""
    return bytes(rbcl.crypto_core_ristretto255_from_hash(sha512(data).digest()))


def _multiply(point: bytes, scalar: Scalar) -> bytes:
    try:
        return bytes(rbcl.crypto_scalarmult_ristretto255(scalar.value, point))
    except (ValueError, TypeError, RuntimeError):
        # libsodium refuses a product equal to the identity element.
        raise InvalidPublicKey("Ristretto255 multiplication gave the identity") from None


def client_map(state: ClientState, client_domain: bytes, data: bytes) -> bytes:
    """``orf_client_map``: the blinded point the client sends to the server."""
    _check_domain(client_domain)
    if len(data) > ORF_MAX_INPUT_LEN:
        raise InvalidKeyLength("ORF input too long")
    return _multiply(hash_to_curve(mac(data, client_domain)), state)


def server_map(state: ServerState, server_domain: bytes, blinded: bytes) -> bytes:
    """``orf_server_map``: HMAC-SHA256 (key = server domain) of the point times s."""
    _check_domain(server_domain)
    if len(blinded) != RISTRETTO_POINT_LEN or not rbcl.crypto_core_ristretto255_is_valid_point(
            blinded):
        raise InvalidPublicKey("not a canonical Ristretto255 point")
    return mac(_multiply(blinded, state), server_domain)


def client_evolve(state: ClientState, token: EvolveToken | None = None
                  ) -> tuple[ClientState, EvolveToken]:
    """``orf_client_evolve``: (c * t, t) for a fresh random t (or the given one, for vectors)."""
    rotation = Scalar.random() if token is None else token
    return Scalar(bytes(rbcl.crypto_core_ristretto255_scalar_mul(state.value, rotation.value))
                  ), rotation


def server_evolve(state: ServerState, token: EvolveToken) -> ServerState:
    """``orf_server_evolve``: s / t, so (c * t) * (s / t) keeps the overall mapping."""
    inverse = bytes(rbcl.crypto_core_ristretto255_scalar_invert(token.value))
    return Scalar(bytes(rbcl.crypto_core_ristretto255_scalar_mul(state.value, inverse)))
