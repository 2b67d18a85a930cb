"""Cloudflare plexi's auditor-signature vectors (plexi_core/tests/test-vectors.json), every entry
byte for byte: the key id, the signed bytes in both encodings, the signature, and rejection of
the other encoding, a changed digest, another key and weak keys."""

from __future__ import annotations

import json
from typing import Any

import pytest

from e2ee_core.keytrans import consts, plexi
from e2ee_core.keytrans.errors import AuditorSignatureError
from tests.conftest import VECTORS_DIR

DOC: dict[str, Any] = json.loads((VECTORS_DIR / "plexi_auditor.json").read_text())
VECTORS: list[dict[str, Any]] = DOC["vectors"]
# The notes' worked example: the exact signed bytes of entry 0 and entry 1.
SIGNED = [
    "080112106c6f67312e6578616d706c652e636f6d18b1a5e1d1fc31220208012a20" + "11" * 32,
    "0200000010000000000000006c6f67322e6578616d706c652e636f6db15238ca8f0100000100000000000000"
    "2000000000000000" + "11" * 32,
]


def message(v: dict[str, Any], **changes: Any) -> plexi.SignatureMessage:
    fields = {"ciphersuite": v["ciphersuite"], "namespace": v["namespace"],
              "timestamp": v["timestamp"], "epoch": v["epoch"],
              "digest": bytes.fromhex(v["digest"])}
    fields.update(changes)
    return plexi.SignatureMessage(**fields)


def test_the_file_has_both_ciphersuites() -> None:
    assert [v["ciphersuite"] for v in VECTORS] == [consts.PLEXI_PROTOBUF_ED25519,
                                                   consts.PLEXI_BINCODE_ED25519]


@pytest.mark.parametrize("index", range(len(VECTORS)))
def test_key_and_key_id(index: int) -> None:
    v = VECTORS[index]
    vk = plexi.public_key(bytes.fromhex(v["signing_key"]))
    assert vk.hex() == v["verifying_key"]
    assert plexi.key_id(vk) == v["key_id"] == 188


@pytest.mark.parametrize("index", range(len(VECTORS)))
def test_signed_bytes_signature_and_decoding_byte_for_byte(index: int) -> None:
    v = VECTORS[index]
    msg = message(v)
    assert msg.to_bytes().hex() == SIGNED[index]
    assert plexi.sign(bytes.fromhex(v["signing_key"]), msg).hex() == v["signature"]
    plexi.verify(bytes.fromhex(v["verifying_key"]), msg, bytes.fromhex(v["signature"]))
    assert plexi.SignatureMessage.from_bytes(bytes.fromhex(SIGNED[index]), v["ciphersuite"]) == msg


@pytest.mark.parametrize("index", range(len(VECTORS)))
def test_response_json_round_trip_and_verify(index: int) -> None:
    v = VECTORS[index]
    response = plexi.signature_response(bytes.fromhex(v["signing_key"]), message(v))
    body = response.to_json()
    assert body["signature"] == v["signature"]
    assert body["key_id"] == v["key_id"]
    assert body["version"] == body["ciphersuite"] == v["ciphersuite"]
    assert body["serialized_message"] == SIGNED[index]
    again = plexi.SignatureResponse.from_json(json.dumps(body))
    assert again == response
    again.verify(bytes.fromhex(v["verifying_key"]))


@pytest.mark.parametrize("index", range(len(VECTORS)))
def test_the_signature_does_not_verify_over_the_other_encoding(index: int) -> None:
    v = VECTORS[index]
    other = (consts.PLEXI_BINCODE_ED25519 if v["ciphersuite"] == consts.PLEXI_PROTOBUF_ED25519
             else consts.PLEXI_PROTOBUF_ED25519)
    with pytest.raises(AuditorSignatureError):
        plexi.verify(bytes.fromhex(v["verifying_key"]), message(v, ciphersuite=other),
                     bytes.fromhex(v["signature"]))


@pytest.mark.parametrize("index", range(len(VECTORS)))
@pytest.mark.parametrize("change", [
    {"digest": bytes.fromhex("11" * 31 + "10")}, {"epoch": 2}, {"timestamp": 1717084639922},
    {"namespace": "log3.example.com"}])
def test_a_changed_field_does_not_verify(index: int, change: dict[str, Any]) -> None:
    v = VECTORS[index]
    with pytest.raises(AuditorSignatureError):
        plexi.verify(bytes.fromhex(v["verifying_key"]), message(v, **change),
                     bytes.fromhex(v["signature"]))


def test_a_flipped_signature_bit_or_another_key_does_not_verify() -> None:
    v = VECTORS[0]
    sig = bytearray(bytes.fromhex(v["signature"]))
    for at in (0, 31, 32, 63):
        flipped = bytearray(sig)
        flipped[at] ^= 1
        with pytest.raises(AuditorSignatureError):
            plexi.verify(bytes.fromhex(v["verifying_key"]), message(v), bytes(flipped))
    with pytest.raises(AuditorSignatureError):
        plexi.verify(plexi.public_key(bytes(32)), message(v), bytes(sig))


def test_small_order_keys_and_points_are_refused_as_verify_strict_does() -> None:
    v = VECTORS[0]
    identity = b"\x01" + bytes(31)
    # identity key with signature (R = identity, s = 0) verifies under plain RFC 8032 for every
    # message; verify_strict refuses it.
    with pytest.raises(AuditorSignatureError):
        plexi.verify(identity, message(v), identity + bytes(32))
    with pytest.raises(AuditorSignatureError):
        plexi.verify(bytes.fromhex(v["verifying_key"]), message(v), identity + bytes(32))


def test_key_id_mismatch_is_refused() -> None:
    v = VECTORS[0]
    body = plexi.signature_response(bytes.fromhex(v["signing_key"]), message(v)).to_json()
    body["key_id"] = 7
    with pytest.raises(AuditorSignatureError):
        plexi.SignatureResponse.from_json(body).verify(bytes.fromhex(v["verifying_key"]))
