"""The signed web manifest (sticker_search.webmanifest) as ``sticker-search verify-web`` reads
it from a web origin: ``open_envelope`` (JSON, base64url, Ed25519), then ``Manifest.from_json``
of the payload it carries (unsigned here, so the payload parser is reached too)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sticker_search.errors import StickerSearchError
from sticker_search.webmanifest import Manifest, open_envelope, sign, sri

ACCEPTED: tuple[type[Exception], ...] = (StickerSearchError,)
MAX_LEN = 4096

_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"fuzz manifest").digest())


def test_one_input(data: bytes) -> None:
    if not data:
        return
    try:
        if data[0] & 1:
            Manifest.from_json(data[1:])
        else:
            open_envelope(data[1:])
    except ACCEPTED:
        pass


def seeds() -> Iterator[bytes]:
    keys = b"\x01\x00\x20" + bytes(32) + b"\x00\x04\x00\x01\x00\x01"
    manifest = Manifest({"/index.html": sri(b"<html>")}, {"content-security-policy": "x"},
                        {"relay": "https://relay.example"}, keys)
    yield b"\x01" + manifest.to_json()
    yield b"\x00" + sign(manifest, _KEY)
