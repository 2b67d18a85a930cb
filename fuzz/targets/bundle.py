"""Prekey bundles (e2ee_core.protocol.bundle) as a device receives them: ``from_bytes`` (JSON)
then ``verify`` (key decoding and the XEdDSA signatures)."""

from __future__ import annotations

from collections.abc import Iterator

from e2ee_core.device import Device
from e2ee_core.errors import E2EEError
from e2ee_core.protocol.bundle import PreKeyBundle

ACCEPTED: tuple[type[Exception], ...] = (E2EEError,)
MAX_LEN = 8192


def test_one_input(data: bytes) -> None:
    try:
        bundle = PreKeyBundle.from_bytes(data)
        assert PreKeyBundle.from_bytes(bundle.to_bytes()) == bundle, "bundle round trip"
        bundle.verify()
    except ACCEPTED:
        pass


def seeds() -> Iterator[bytes]:
    device = Device.create()
    yield device.prekey_bundle(1, kyber=True).to_bytes()
    yield device.prekey_bundle(2, kyber=False, one_time=False).to_bytes()
