"""An Encapsulated Response (RFC 9458 §4.4), opened by the client that sent the request."""

from __future__ import annotations

from collections.abc import Iterator

from fuzz.targets._ohttp_keys import X25519_KEY
from fuzz.vectors import vectors
from ohttp_relay.errors import OHTTPError
from ohttp_relay.ohttp import SymmetricSuite, decapsulate_request, encapsulate_request

ACCEPTED: tuple[type[Exception], ...] = (OHTTPError,)
MAX_LEN = 4096

_VECTOR = next(iter(vectors("rfc9458")), None)
_EPHEMERAL = bytes.fromhex(_VECTOR["client_ephemeral_secret_key"]) if _VECTOR else None
# A client context with a fixed ephemeral key (RFC 9458 Appendix A's when available).
_REQUEST, _CONTEXTS = {}, {}
for _suite in (SymmetricSuite(1, 1), SymmetricSuite(1, 2), SymmetricSuite(1, 3)):
    _REQUEST[_suite.aead_id], _CONTEXTS[_suite.aead_id] = encapsulate_request(
        X25519_KEY.config, b"\x00\x03GET\x05https\x0bexample.com\x01/", suite=_suite,
        ephemeral_private_key=_EPHEMERAL)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    context = _CONTEXTS[1 + data[0] % 3]
    try:
        context.decapsulate(data[1:])
    except ACCEPTED:
        pass


def seeds() -> Iterator[bytes]:
    for vector in vectors("rfc9458"):
        yield b"\x00" + bytes.fromhex(vector["encapsulated_response"])
    for aead_id, request in _REQUEST.items():
        _, server = decapsulate_request(request, lambda _key_id: X25519_KEY)
        yield bytes([aead_id - 1]) + server.encapsulate(b"\x01\x40\xc8")
