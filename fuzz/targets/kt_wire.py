"""Key transparency on the delivery server's wire (e2ee_core.server.kt_wire, issue #16): the
device-list value a lookup or history proof carries (decoded, re-encoded byte for byte), the
``transparency`` member of bundle and device-list responses, the head and epoch answers, and
the client's check of a lookup proof (e2ee_core.client.transparency) on arbitrary proof bytes.
The first input byte picks the decoder."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

from e2ee_core.client.errors import TransparencyError
from e2ee_core.client.store import ClientStore
from e2ee_core.client.transparency import Transparency
from e2ee_core.keytrans.directory import Directory
from e2ee_core.keytrans.errors import KeyTransparencyError
from e2ee_core.keytrans.storage import MemoryDirectoryStorage
from e2ee_core.server.client import ServerClient
from e2ee_core.server.errors import ServerError
from e2ee_core.server.kt_wire import (
    KtEpoch,
    KtHead,
    KtLookup,
    decode_device_list,
    device_list_label,
    encode_device_list,
    lookup_member,
)
from fuzz.targets._select import select

ACCEPTED: tuple[type[Exception], ...] = (KeyTransparencyError, ServerError, TransparencyError)
MAX_LEN = 8192

# Each refused proof logs a warning (and records a notice): quiet under the fuzzer.
logging.getLogger("e2ee_core.client").setLevel(logging.CRITICAL)

_VALUE = encode_device_list({1: b"\x05" + bytes(32), 7: b"\x05" + bytes(range(32))})
_DIRECTORY = Directory(MemoryDirectoryStorage(), vrf_secret_key=bytes(range(32)))
_DIRECTORY.publish({device_list_label("alice"): _VALUE})
_HEAD, _PROOF = _DIRECTORY.lookup(device_list_label("alice"))
_STORE = ClientStore(":memory:")
_STORE.set_meta("kt_vrf_public_key", _DIRECTORY.vrf_public_key.hex())
_CLIENT = Transparency(_STORE, ServerClient("http://unused.invalid"), clock=lambda: 0,
                       username="bob", device_id=1, identity_key=b"\x05" + bytes(32))


def _device_list(data: bytes) -> None:
    devices = decode_device_list(data)
    assert encode_device_list(devices) == data, "device list is not canonical"


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _head(data: bytes) -> None:
    head = KtHead.from_json(_json(data))
    assert KtHead.from_json(head.to_json()) == head


def _epoch(data: bytes) -> None:
    epoch = KtEpoch.from_json(_json(data))
    assert KtEpoch.from_json(epoch.to_json()) == epoch


def _member(data: bytes) -> None:
    lookup = lookup_member(_json(data))
    if lookup is not None:
        assert KtLookup.from_json(lookup.to_json()) == lookup


def _client_check(data: bytes) -> None:
    # a fresh client each time: no pinned epoch, no notices piling up over a long run
    _STORE.execute("DELETE FROM client_meta WHERE name LIKE 'kt_%' AND name <> "
                   "'kt_vrf_public_key'")
    _STORE.execute("DELETE FROM client_notices")
    devices = _CLIENT.proven_devices("alice", KtLookup(_HEAD.epoch, _HEAD.root_hash, data))
    assert devices == decode_device_list(_VALUE), "a proof of another value passed"


_DECODERS: tuple[Callable[[bytes], None], ...] = (
    _device_list, _head, _epoch, _member, _client_check)


def test_one_input(data: bytes) -> None:
    select(_DECODERS, ACCEPTED, data)


def seeds() -> Iterator[bytes]:
    yield b"\x00" + _VALUE
    yield b"\x01" + json.dumps({"epoch": 3, "root_hash": "ab" * 32,
                                "vrf_public_key": "cd" * 32}).encode()
    yield b"\x02" + json.dumps({"epoch": 3, "root_hash": "ab" * 32}).encode()
    yield b"\x03" + json.dumps({"transparency": KtLookup(
        _HEAD.epoch, _HEAD.root_hash, _PROOF.to_bytes()).to_json()}).encode()
    yield b"\x04" + _PROOF.to_bytes()
