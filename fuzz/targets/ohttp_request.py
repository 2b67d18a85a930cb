"""An Encapsulated Request (RFC 9458 §4.3), opened by the gateway with its fixed keys."""

from __future__ import annotations

from collections.abc import Iterator

from fuzz.targets._ohttp_keys import KEYS, lookup
from fuzz.vectors import vectors
from ohttp_relay import bhttp
from ohttp_relay.errors import OHTTPError
from ohttp_relay.ohttp import DEFAULT_SYMMETRIC, decapsulate_request, encapsulate_request

ACCEPTED: tuple[type[Exception], ...] = (OHTTPError,)
MAX_LEN = 4096


def test_one_input(data: bytes) -> None:
    try:
        plaintext, context = decapsulate_request(data, lookup)
    except ACCEPTED:
        return
    context.encapsulate(plaintext)  # the gateway always answers an opened request


def seeds() -> Iterator[bytes]:
    for vector in vectors("rfc9458"):
        yield bytes.fromhex(vector["encapsulated_request"])
    inner = bhttp.Request("GET", "https", "example.com", "/").to_bytes()
    for key in KEYS.values():
        for suite in DEFAULT_SYMMETRIC:
            yield encapsulate_request(key.config, inner, suite=suite)[0]
