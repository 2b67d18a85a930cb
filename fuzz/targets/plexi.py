"""Auditor signatures in plexi's format (e2ee_core.keytrans.plexi): the SignatureMessage
decoders of both ciphersuites (protobuf 0x0001, bincode 0x0002) and the SignatureResponse JSON
decoder with verification under plexi's vector key; and the log's answers the auditor decodes
(e2ee_core.keytrans.auditor: epoch head, epoch root). The first input byte picks the decoder."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

from e2ee_core.keytrans import auditor, consts, plexi
from e2ee_core.keytrans.errors import AuditorSignatureError, LogUnavailable
from fuzz.targets._select import select
from fuzz.vectors import vectors

ACCEPTED: tuple[type[Exception], ...] = (AuditorSignatureError, LogUnavailable)
MAX_LEN = 4 * 1024

_VECTORS = vectors("plexi_auditor")
_VK = bytes.fromhex(_VECTORS[0]["verifying_key"]) if _VECTORS else plexi.public_key(bytes(32))


def _protobuf(data: bytes) -> None:
    plexi.SignatureMessage.from_bytes(data, consts.PLEXI_PROTOBUF_ED25519)


def _bincode(data: bytes) -> None:
    plexi.SignatureMessage.from_bytes(data, consts.PLEXI_BINCODE_ED25519)


def _response(data: bytes) -> None:
    plexi.SignatureResponse.from_json(data).verify(_VK)


def _head(data: bytes) -> None:
    auditor.decode_head(data)


def _epoch_root(data: bytes) -> None:
    auditor.decode_epoch_root(data, 1)


_DECODERS: tuple[Callable[[bytes], None], ...] = (_protobuf, _bincode, _response, _head,
                                                  _epoch_root)


def test_one_input(data: bytes) -> None:
    select(_DECODERS, ACCEPTED, data)


def seeds() -> Iterator[bytes]:
    for v in _VECTORS:
        msg = plexi.SignatureMessage(v["ciphersuite"], v["namespace"], v["timestamp"],
                                     v["epoch"], bytes.fromhex(v["digest"]))
        selector = b"\x00" if v["ciphersuite"] == consts.PLEXI_PROTOBUF_ED25519 else b"\x01"
        yield selector + msg.to_bytes()
        response = plexi.SignatureResponse(msg, bytes.fromhex(v["signature"]), v["key_id"])
        yield b"\x02" + json.dumps(response.to_json()).encode()
    yield b"\x03" + json.dumps({"epoch": 1, "root_hash": "ab" * 32,
                                "vrf_public_key": "cd" * 32}).encode()
    yield b"\x04" + json.dumps({"epoch": 1, "root_hash": "ab" * 32}).encode()
