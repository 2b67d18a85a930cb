"""Oblivious HTTP (RFC 9458): Appendix A byte for byte, every suite, key lists, truncation."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st
from pyhpke import AEADId, CipherSuite, KDFId, KEMId

from ohttp_relay import ohttp
from ohttp_relay.errors import (
    DecodeError,
    DecryptError,
    KeyConfigError,
    OHTTPError,
    UnknownKeyId,
    UnsupportedSuite,
)

H = bytes.fromhex


_VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).resolve().parents[2].parent / "shared" / "vectors" / "rfc9458.json")
    .read_text())["vectors"]


@pytest.fixture(scope="module", params=range(len(_VECTORS)))
def a1(request: pytest.FixtureRequest, vectors: Callable[[str], dict[str, Any]]
       ) -> dict[str, Any]:
    """Each RFC 9458 vector in turn (every test below runs once per entry)."""
    vector: dict[str, Any] = vectors("rfc9458")["vectors"][request.param]
    return vector


def _gateway_key(a1: dict[str, Any]) -> ohttp.GatewayKey:
    config = ohttp.KeyConfig.from_bytes(H(a1["key_config"]))
    return ohttp.GatewayKey.from_private_key(config.key_id, config.kem_id,
                                            H(a1["gateway_x25519_secret_key"]), config.symmetric)


def test_appendix_a_key_config(a1: dict[str, Any]) -> None:
    config = ohttp.KeyConfig.from_bytes(H(a1["key_config"]))
    assert (config.key_id, config.kem_id) == (1, ohttp.KEM_X25519)
    assert config.symmetric == (ohttp.SymmetricSuite(1, 1), ohttp.SymmetricSuite(1, 3))
    assert config.to_bytes().hex() == a1["key_config"]
    # The gateway's secret key reproduces the advertised public key.
    assert _gateway_key(a1).config == config


def test_appendix_a_client_request(a1: dict[str, Any]) -> None:
    config = ohttp.KeyConfig.from_bytes(H(a1["key_config"]))
    header = ohttp.RequestHeader(config.key_id, config.kem_id, 1, 1)
    assert header.info().hex() == a1["hpke_info"]
    encapsulated, context = ohttp.encapsulate_request(
        config, H(a1["request_bhttp"]), suite=ohttp.SymmetricSuite(1, 1),
        ephemeral_private_key=H(a1["client_ephemeral_secret_key"]))
    assert context.enc.hex() == a1["client_ephemeral_public_key"]
    assert encapsulated.hex() == a1["encapsulated_request"]
    assert context.exported_secret().hex() == a1["exported_secret"]
    assert context.decapsulate(H(a1["encapsulated_response"])).hex() == a1["response_bhttp"]


def test_appendix_a_gateway(a1: dict[str, Any]) -> None:
    key = _gateway_key(a1)
    request, context = ohttp.decapsulate_request(H(a1["encapsulated_request"]),
                                                 {1: key}.get)
    assert request.hex() == a1["request_bhttp"]
    secret = context.exported_secret()
    assert secret.hex() == a1["exported_secret"]
    response_nonce = H(a1["encapsulated_response"])[:16]
    salt = context.enc + response_nonce
    assert salt.hex() == a1["response_salt"]
    assert HKDF.extract(hashes.SHA256(), salt, secret).hex() == a1["prk"]
    aead_key, aead_nonce = ohttp.response_key_nonce(1, secret, context.enc, response_nonce)
    assert (aead_key.hex(), aead_nonce.hex()) == (a1["aead_key"], a1["aead_nonce"])
    sealed = context.encapsulate(H(a1["response_bhttp"]), response_nonce=response_nonce)
    assert sealed.hex() == a1["encapsulated_response"]


def test_rfc9180_subset_with_pyhpke(vectors: Callable[[str], dict[str, Any]]) -> None:
    """Our pyhpke usage (fixed ephemeral key, sequence, export) reproduces RFC 9180 A.1/A.2."""
    for v in vectors("rfc9180_subset")["vectors"]:
        suite = CipherSuite.new(KEMId(v["kem_id"]), KDFId(v["kdf_id"]), AEADId(v["aead_id"]))
        skr = suite.kem.derive_key_pair(H(v["ikmR"]))
        eks = suite.kem.derive_key_pair(H(v["ikmE"]))
        assert skr.public_key.to_public_bytes().hex() == v["pkRm"]
        sks = suite.kem.derive_key_pair(H(v["ikmS"])).private_key if v["mode"] == 2 else None
        pks = suite.kem.derive_key_pair(H(v["ikmS"])).public_key if v["mode"] == 2 else None
        enc, sender = suite.create_sender_context(skr.public_key, H(v["info"]), sks=sks, eks=eks)
        assert enc.hex() == v["enc"]
        recipient = suite.create_recipient_context(enc, skr.private_key, H(v["info"]), pks=pks)
        seq = 0
        for e in sorted(v["encryptions"], key=lambda e: e["sequence_number"]):
            while seq < e["sequence_number"]:  # advance both counters
                recipient.open(sender.seal(b"", b""), b"")
                seq += 1
            assert sender.seal(H(e["pt"]), H(e["aad"])).hex() == e["ct"]
            assert recipient.open(H(e["ct"]), H(e["aad"])).hex() == e["pt"]
            seq += 1
        for x in v["exports"]:
            assert sender.export(H(x["exporter_context"]), x["L"]).hex() == x["exported_value"]


SUITES = [(kem, aead) for kem in (ohttp.KEM_X25519, ohttp.KEM_P256)
          for aead in (ohttp.AEAD_AES_128_GCM, ohttp.AEAD_AES_256_GCM,
                       ohttp.AEAD_CHACHA20_POLY1305)]


@pytest.mark.parametrize(("kem_id", "aead_id"), SUITES)
def test_every_suite_round_trips(kem_id: int, aead_id: int) -> None:
    key = ohttp.GatewayKey.generate(7, kem_id)
    suite = ohttp.SymmetricSuite(ohttp.KDF_HKDF_SHA256, aead_id)
    encapsulated, client = ohttp.encapsulate_request(key.config, b"request", suite=suite)
    assert len(encapsulated) == 7 + ohttp.KEM_SIZES[kem_id][1] + len(b"request") + 16
    request, server = ohttp.decapsulate_request(encapsulated, {7: key}.get)
    assert request == b"request"
    sealed = server.encapsulate(b"response")
    assert len(sealed) == ohttp.response_nonce_length(aead_id) + len(b"response") + 16
    assert client.decapsulate(sealed) == b"response"
    stored = ohttp.GatewayKey.from_private_key(7, kem_id, key.private_key)
    assert stored.config.public_key == key.config.public_key
    assert "private" not in repr(key) and key.private_key.hex() not in repr(key)


def test_key_config_list_with_several_configs_and_unknown_kem() -> None:
    a = ohttp.GatewayKey.generate(1, ohttp.KEM_X25519).config
    b = ohttp.GatewayKey.generate(2, ohttp.KEM_P256, (ohttp.SymmetricSuite(1, 2),)).config
    unknown = bytes([9]) + (0x0021).to_bytes(2, "big") + b"\x00" * 56 + b"\x00\x04\x00\x01\x00\x01"
    body = ohttp.encode_key_configs([a, b])
    body += len(unknown).to_bytes(2, "big") + unknown
    assert ohttp.decode_key_configs(body) == [a, b]
    with pytest.raises(UnsupportedSuite):
        ohttp.decode_key_configs(body, skip_unsupported=False)
    assert ohttp.parse_key_material(a.to_bytes()) == [a]
    with pytest.raises(KeyConfigError):
        ohttp.decode_key_configs(b"")


def test_key_config_every_truncation_is_a_typed_error() -> None:
    config = ohttp.GatewayKey.generate(3).config.to_bytes()
    for cut in range(len(config)):
        with pytest.raises(KeyConfigError):
            ohttp.KeyConfig.from_bytes(config[:cut])
    listing = ohttp.encode_key_configs([ohttp.KeyConfig.from_bytes(config)] * 2)
    for cut in range(1, len(listing)):
        if cut == len(listing) // 2:
            continue  # exactly one whole entry is a valid list
        with pytest.raises(KeyConfigError):
            ohttp.decode_key_configs(listing[:cut])


def test_encapsulated_request_and_response_every_truncation(a1: dict[str, Any]) -> None:
    key = _gateway_key(a1)
    request = H(a1["encapsulated_request"])
    for cut in range(len(request)):  # header, enc and ciphertext fields at every length
        with pytest.raises((DecodeError, DecryptError)):
            ohttp.decapsulate_request(request[:cut], {1: key}.get)
    config = key.config
    _enc, client = ohttp.encapsulate_request(config, b"x", suite=ohttp.SymmetricSuite(1, 1))
    response = H(a1["encapsulated_response"])
    _req, server = ohttp.decapsulate_request(request, {1: key}.get)
    sealed = server.encapsulate(b"abc")
    for cut in range(len(sealed)):
        with pytest.raises((DecodeError, DecryptError)):
            client.decapsulate(sealed[:cut])
    assert len(response) == 16 + 3 + 16


def test_gateway_key_errors(a1: dict[str, Any]) -> None:
    key = _gateway_key(a1)
    request = bytearray(H(a1["encapsulated_request"]))
    with pytest.raises(UnknownKeyId):
        ohttp.decapsulate_request(bytes(request), {2: key}.get)
    wrong_aead = bytes(request[:6]) + b"\x02" + bytes(request[7:])
    with pytest.raises(UnsupportedSuite):  # AES-256-GCM is not in this config
        ohttp.decapsulate_request(wrong_aead, {1: key}.get)
    request[-1] ^= 1
    with pytest.raises(DecryptError):
        ohttp.decapsulate_request(bytes(request), {1: key}.get)


def test_tampered_response_is_rejected() -> None:
    key = ohttp.GatewayKey.generate(0)
    encapsulated, client = ohttp.encapsulate_request(key.config, b"q")
    _req, server = ohttp.decapsulate_request(encapsulated, {0: key}.get)
    sealed = bytearray(server.encapsulate(b"answer"))
    sealed[3] ^= 0x80  # the response nonce feeds the key derivation
    with pytest.raises(DecryptError):
        client.decapsulate(bytes(sealed))


_KEY = ohttp.GatewayKey.generate(5)


@settings(deadline=None, max_examples=200)
@given(st.binary(max_size=120))
def test_decapsulate_raises_only_ohttp_errors(data: bytes) -> None:
    try:
        ohttp.decapsulate_request(bytes([5]) + data, {5: _KEY}.get)
    except OHTTPError:
        pass


@settings(deadline=None, max_examples=200)
@given(st.binary(max_size=120))
def test_key_config_decoders_raise_only_key_config_errors(data: bytes) -> None:
    for decode in (ohttp.KeyConfig.from_bytes, ohttp.decode_key_configs):
        try:
            decode(data)
        except KeyConfigError:
            pass


@settings(deadline=None, max_examples=100)
@given(st.binary(max_size=300))
def test_random_plaintexts_round_trip(body: bytes) -> None:
    encapsulated, client = ohttp.encapsulate_request(_KEY.config, body)
    request, server = ohttp.decapsulate_request(encapsulated, {5: _KEY}.get)
    assert request == body
    assert client.decapsulate(server.encapsulate(body[::-1])) == body[::-1]


_, _CLIENT = ohttp.encapsulate_request(_KEY.config, b"fixed")


@settings(deadline=None, max_examples=150)
@given(st.binary(max_size=120))
def test_response_decapsulation_raises_only_ohttp_errors(data: bytes) -> None:
    try:
        _CLIENT.decapsulate(data)
    except OHTTPError:
        pass
    else:
        raise AssertionError("random bytes authenticated")


@settings(deadline=None, max_examples=150)
@given(st.text(max_size=60))
def test_http_date_parser_never_raises(value: str) -> None:
    from ohttp_relay.replay import parse_http_date

    parsed = parse_http_date(value)
    assert parsed is None or isinstance(parsed, float)
