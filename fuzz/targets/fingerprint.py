"""The scannable safety number (e2ee_core.protocol.fingerprint): the peer's QR payload, compared
with ours by ``Fingerprint.matches_scanned``."""

from __future__ import annotations

from collections.abc import Iterator

from e2ee_core.errors import E2EEError
from e2ee_core.protocol.fingerprint import fingerprint

ACCEPTED: tuple[type[Exception], ...] = (E2EEError,)
MAX_LEN = 1024

_ALICE_KEY, _BOB_KEY = b"\x05" + bytes(range(32)), b"\x05" + bytes(range(32, 64))
# Few iterations: the hash chain is not under test, the payload parser is.
_OURS = fingerprint("alice", _ALICE_KEY, "bob", _BOB_KEY, iterations=2)


def test_one_input(data: bytes) -> None:
    try:
        _OURS.matches_scanned(data)
    except ACCEPTED:
        pass


def seeds() -> Iterator[bytes]:
    yield fingerprint("bob", _BOB_KEY, "alice", _ALICE_KEY, iterations=2).scannable
    yield _OURS.scannable
