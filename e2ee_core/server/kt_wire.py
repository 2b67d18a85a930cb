"""Key transparency on the delivery server's wire (issue #16): the label and value scheme of the
directory, and the JSON shapes of epoch heads and lookup proofs. Sans I/O, shared by the server
(:mod:`e2ee_core.server.transparency`) and the client (:mod:`e2ee_core.client.transparency`).

One directory label per account, ``e2ee/devices/<username>``, whose value is the account's
device list: every current device id with its identity public key. AKD never deletes, so the
label's history (every version ever published) shows every device the account ever had; this
is what an account's own devices monitor. A device's removal publishes a new list without it.

Value encoding (canonical: one encoding per list, decoding refuses anything else)::

    u8 format (1) || u16be count || count x (u32be device_id || u16be len || identity key)

with device ids strictly increasing. Every decoder raises only
:class:`~e2ee_core.keytrans.errors.MalformedProof` (values come out of proofs: untrusted) or,
for the JSON shapes, :class:`~e2ee_core.server.errors.InvalidRequest`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from e2ee_core.keytrans import consts as kt_consts
from e2ee_core.keytrans.errors import MalformedProof
from e2ee_core.server import consts
from e2ee_core.server.errors import InvalidRequest
from e2ee_core.server.wire import decode_bytes, decode_int, decode_username, encode_bytes

LABEL_PREFIX = b"e2ee/devices/"
DEVICE_LIST_FORMAT = 1
#: Largest device list a client decodes: the server's default cap is 16 devices; 4096 leaves
#: room for any configured ``max_devices`` and stays far below the directory's 64 KiB values.
MAX_LISTED_DEVICES = 4096
_HEX32 = re.compile(r"[0-9a-f]{64}")
# Lookup proofs in responses: AKD's proof for our values is ~2-3 KiB; the core caps any proof.
MAX_LOOKUP_PROOF_BYTES = kt_consts.MAX_PROOF_BYTES


def device_list_label(username: str) -> bytes:
    """The directory label of an account's device list."""
    return LABEL_PREFIX + decode_username(username).encode("ascii")


def encode_device_list(devices: Mapping[int, bytes]) -> bytes:
    """The canonical value for ``{device_id: identity_key}``."""
    if len(devices) > MAX_LISTED_DEVICES:
        raise ValueError("too many devices for one list")
    out = bytearray((DEVICE_LIST_FORMAT,))
    out += len(devices).to_bytes(2, "big")
    for device_id in sorted(devices):
        key = devices[device_id]
        if not 1 <= device_id <= consts.MAX_DEVICE_ID:
            raise ValueError("device id out of range")
        if not 1 <= len(key) <= consts.MAX_PUBLIC_KEY_BYTES:
            raise ValueError("identity key length out of range")
        out += device_id.to_bytes(4, "big") + len(key).to_bytes(2, "big") + key
    return bytes(out)


def decode_device_list(value: bytes) -> dict[int, bytes]:
    """``{device_id: identity_key}`` from a value; only :class:`MalformedProof` on bad input."""
    if len(value) < 3 or value[0] != DEVICE_LIST_FORMAT:
        raise MalformedProof("device list value has an unknown format")
    count = int.from_bytes(value[1:3], "big")
    if count > MAX_LISTED_DEVICES:
        raise MalformedProof("device list value lists too many devices")
    devices: dict[int, bytes] = {}
    pos, previous = 3, 0
    for _ in range(count):
        if pos + 6 > len(value):
            raise MalformedProof("device list value is truncated")
        device_id = int.from_bytes(value[pos:pos + 4], "big")
        length = int.from_bytes(value[pos + 4:pos + 6], "big")
        pos += 6
        if not previous < device_id <= consts.MAX_DEVICE_ID:
            raise MalformedProof("device list value has ids out of order or range")
        if not 1 <= length <= consts.MAX_PUBLIC_KEY_BYTES or pos + length > len(value):
            raise MalformedProof("device list value has a bad key length")
        devices[device_id] = value[pos:pos + length]
        pos += length
        previous = device_id
    if pos != len(value):
        raise MalformedProof("device list value has trailing bytes")
    return devices


def _object(obj: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise InvalidRequest(f"{what} must be a JSON object")
    return obj


def _hash(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not _HEX32.fullmatch(value):
        raise InvalidRequest(f"{what} must be 32 bytes of lowercase hex")
    return bytes.fromhex(value)


def _field(obj: Mapping[str, Any], name: str, what: str) -> Any:
    if name not in obj:
        raise InvalidRequest(f"{what} lacks field {name!r}")
    return obj[name]


@dataclass(frozen=True)
class KtHead:
    """``GET /v1/kt/head``: the latest epoch, its root hash and the directory's VRF key."""

    epoch: int
    root_hash: bytes
    vrf_public_key: bytes

    def to_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "root_hash": self.root_hash.hex(),
                "vrf_public_key": self.vrf_public_key.hex()}

    @classmethod
    def from_json(cls, obj: Any) -> KtHead:
        o = _object(obj, "head")
        return cls(decode_int(_field(o, "epoch", "head"), "epoch"),
                   _hash(_field(o, "root_hash", "head"), "root_hash"),
                   _hash(_field(o, "vrf_public_key", "head"), "vrf_public_key"))


@dataclass(frozen=True)
class KtEpoch:
    """``GET /v1/kt/epochs/<epoch>``: one published epoch's root hash."""

    epoch: int
    root_hash: bytes

    def to_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "root_hash": self.root_hash.hex()}

    @classmethod
    def from_json(cls, obj: Any) -> KtEpoch:
        o = _object(obj, "epoch")
        return cls(decode_int(_field(o, "epoch", "epoch"), "epoch"),
                   _hash(_field(o, "root_hash", "epoch"), "root_hash"))


@dataclass(frozen=True)
class KtLookup:
    """The ``transparency`` member of bundle and device-list responses: an AKD lookup proof of
    the account's device-list label against ``epoch`` (whose root is ``root_hash``)."""

    epoch: int
    root_hash: bytes
    proof: bytes

    def to_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "root_hash": self.root_hash.hex(),
                "proof": encode_bytes(self.proof)}

    @classmethod
    def from_json(cls, obj: Any) -> KtLookup:
        o = _object(obj, "transparency")
        return cls(decode_int(_field(o, "epoch", "transparency"), "epoch"),
                   _hash(_field(o, "root_hash", "transparency"), "root_hash"),
                   decode_bytes(_field(o, "proof", "transparency"), "proof",
                                max_len=MAX_LOOKUP_PROOF_BYTES))


def lookup_member(body: Any) -> KtLookup | None:
    """The ``transparency`` member of a response body, or None when it has none."""
    if not isinstance(body, dict) or body.get("transparency") is None:
        return None
    return KtLookup.from_json(body["transparency"])
