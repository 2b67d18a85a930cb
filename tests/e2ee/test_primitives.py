"""Known answers for the building blocks: XEdDSA, padding, fingerprints, key encodings."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from e2ee_core.errors import InvalidKey, InvalidMessage
from e2ee_core.protocol import xeddsa
from e2ee_core.protocol.fingerprint import fingerprint, safety_number
from e2ee_core.protocol.kdf import MessageKeys, chain_message_seed, chain_next, chain_step, hkdf
from e2ee_core.protocol.keys import KemKeyPair, KemPublicKey, KeyPair, PrivateKey, PublicKey
from e2ee_core.protocol.messages import PROTO, encode_signal_message_proto
from e2ee_core.protocol.padding import pad, unpad

# libsignal rust/protocol/src/fingerprint.rs and java NumericFingerprintGeneratorTest.
ALICE_IDENTITY = bytes.fromhex(
    "0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868")
BOB_IDENTITY = bytes.fromhex(
    "05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b")
ALICE_STABLE_ID = "+14152222222"
BOB_STABLE_ID = "+14153333333"
DISPLAYABLE_FINGERPRINT = "300354477692869396892869876765458257569162576843440918079131"
ALICE_SCANNABLE_V1 = ("080112220a201e301a0353dce3dbe7684cb8336e85136cdc0ee96219494ada305d62a7bd61"
                      "df1a220a20d62cbf73a11592015b6b9f1682ac306fea3aaf3885b84d12bca631e9d4fb3a4d")
BOB_SCANNABLE_V1 = ("080112220a20d62cbf73a11592015b6b9f1682ac306fea3aaf3885b84d12bca631e9d4fb3a4d"
                    "1a220a201e301a0353dce3dbe7684cb8336e85136cdc0ee96219494ada305d62a7bd61df")
ALICE_SCANNABLE_V2 = "0802" + ALICE_SCANNABLE_V1[4:]


def test_fingerprint_reproduces_libsignal_published_values() -> None:
    alice = fingerprint(ALICE_STABLE_ID, ALICE_IDENTITY, BOB_STABLE_ID, BOB_IDENTITY, version=1)
    bob = fingerprint(BOB_STABLE_ID, BOB_IDENTITY, ALICE_STABLE_ID, ALICE_IDENTITY, version=1)
    assert alice.display == bob.display == DISPLAYABLE_FINGERPRINT
    assert alice.scannable.hex() == ALICE_SCANNABLE_V1
    assert bob.scannable.hex() == BOB_SCANNABLE_V1
    assert alice.matches_scanned(bob.scannable) and bob.matches_scanned(alice.scannable)
    assert not alice.matches_scanned(alice.scannable)
    v2 = fingerprint(ALICE_STABLE_ID, ALICE_IDENTITY, BOB_STABLE_ID, BOB_IDENTITY)
    assert v2.scannable.hex() == ALICE_SCANNABLE_V2
    assert safety_number(ALICE_STABLE_ID, ALICE_IDENTITY, BOB_STABLE_ID,
                         BOB_IDENTITY) == DISPLAYABLE_FINGERPRINT


def test_fingerprint_changes_with_the_key() -> None:
    other = KeyPair.generate().public.serialize()
    assert safety_number(ALICE_STABLE_ID, ALICE_IDENTITY, BOB_STABLE_ID, other) \
        != DISPLAYABLE_FINGERPRINT
    with pytest.raises(InvalidMessage):
        fingerprint(ALICE_STABLE_ID, ALICE_IDENTITY, BOB_STABLE_ID,
                    BOB_IDENTITY).matches_scanned(b"\xff\xff")


def test_xeddsa_sign_verify_and_rejections() -> None:
    pair = KeyPair.generate()
    for message in (b"", b"m", pair.public.serialize(), bytes(range(256)) * 4):
        sig = pair.private.sign(message)
        assert len(sig) == 64 and not sig[63] & 0x80  # spec XEdDSA: s < 2**253, no sign bit
        assert pair.public.verify(message, sig)
        assert not pair.public.verify(message + b"x", sig)
        assert not KeyPair.generate().public.verify(message, sig)
        for index in (0, 31, 32, 62):
            bad = bytearray(sig)
            bad[index] ^= 1
            assert not pair.public.verify(message, bytes(bad))
    assert not xeddsa.verify(b"\x00" * 32, b"m", b"\x00" * 64)
    assert not xeddsa.verify(pair.public.raw, b"m", b"\x00" * 63)


def test_xeddsa_accepts_the_legacy_sign_bit_form() -> None:
    # Older libsignal signers keep a and put the Edwards sign bit into bit 255 of s;
    # build such a signature from a spec one: when A's sign bit is 1 the signer negates a,
    # which is equivalent, so flipping the flag must break verification only for wrong keys.
    pair = KeyPair.generate()
    sig = bytearray(pair.private.sign(b"msg"))
    sig[63] |= 0x80  # claims the Edwards key -A: must fail
    assert not pair.public.verify(b"msg", bytes(sig))


def test_xeddsa_is_deterministic_given_the_nonce() -> None:
    key = PrivateKey.from_raw(bytes(range(32)))
    z = bytes(64)
    assert xeddsa.sign(key.raw, b"abc", z) == xeddsa.sign(key.raw, b"abc", z)
    assert xeddsa.sign(key.raw, b"abc", z) != xeddsa.sign(key.raw, b"abc", b"\x01" * 64)


@pytest.mark.parametrize(("length", "padded"), [(0, 159), (1, 159), (100, 159), (157, 159),
                                                (158, 159), (159, 319), (318, 319),
                                                (319, 479)])
def test_signal_padding_lengths(length: int, padded: int) -> None:
    message = b"\x07" * length
    out = pad(message)
    assert len(out) == padded and out[length] == 0x80 and not out[length + 1:].strip(b"\x00")
    assert unpad(out) == message


def test_unpad_rejects_missing_terminator() -> None:
    for bad in (b"", b"\x00\x00", b"abc", b"abc\x81\x00"):
        with pytest.raises(InvalidMessage):
            unpad(bad)


def test_key_encodings() -> None:
    pair = KeyPair.generate()
    assert PublicKey.deserialize(pair.public.serialize()) == pair.public
    assert pair.public.serialize()[0] == 0x05 and len(pair.public.serialize()) == 33
    for bad in (b"", pair.public.raw, b"\x06" + pair.public.raw, pair.public.serialize() + b"\0"):
        with pytest.raises(InvalidKey):
            PublicKey.deserialize(bad)
    kem = KemKeyPair.generate()
    encoded = kem.public.serialize()
    assert encoded[0] == 0x08 and len(encoded) == 1569
    shared, ct = KemPublicKey.deserialize(encoded).encapsulate()
    assert kem.decapsulate(ct) == shared
    assert KemKeyPair.from_seed(kem.seed).public == kem.public
    with pytest.raises(InvalidKey):
        KemPublicKey.deserialize(b"\x05" + encoded[1:])
    with pytest.raises(InvalidKey):
        kem.decapsulate(ct[:-1])
    with pytest.raises(InvalidKey):
        pair.private.agree(PublicKey.from_raw(b"\x00" * 32))  # low-order point
    assert "raw" not in repr(pair.private) and pair.private.raw.hex() not in repr(pair)


def test_kdf_chain_matches_rfc5869_hkdf_and_separates_outputs() -> None:
    # RFC 5869 A.1 with SHA-256.
    okm = hkdf(bytes.fromhex("0b" * 22), bytes.fromhex("000102030405060708090a0b0c"),
               bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"), 42)
    assert okm.hex() == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                         "34007208d5b887185865")
    ck = bytes(32)
    assert chain_message_seed(ck) != chain_next(ck)
    assert chain_step(ck) == (chain_message_seed(ck), chain_next(ck))
    keys = MessageKeys.from_seed(chain_message_seed(ck))
    assert len(keys.cipher_key) == 32 and len(keys.mac_key) == 32 and len(keys.iv) == 16
    assert keys.decrypt(keys.encrypt(b"x" * 159)) == b"x" * 159


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=40), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
       st.binary(max_size=600))
def test_signal_message_encoder_matches_the_protobuf_library(
        ratchet_key: bytes, counter: int, previous_counter: int, ciphertext: bytes) -> None:
    expected = PROTO["SignalMessage"](ratchet_key=ratchet_key, counter=counter,
                                      previous_counter=previous_counter,
                                      ciphertext=ciphertext).SerializeToString()
    assert encode_signal_message_proto(ratchet_key, counter, previous_counter,
                                       ciphertext) == expected


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=100))
def test_cbc_padding_round_trips(plaintext: bytes) -> None:
    keys = MessageKeys.from_seed(bytes(32))
    ciphertext = keys.encrypt(plaintext)
    assert len(ciphertext) == (len(plaintext) // 16 + 1) * 16
    assert keys.decrypt(ciphertext) == plaintext


@pytest.mark.parametrize("last_block", [bytes(16), bytes(15) + b"\x11", bytes(14) + b"\x01\x02",
                                        b"\x10" * 15 + b"\x0f" + b"", bytes(13) + b"\x04\x03\x03"])
def test_invalid_cbc_padding_is_typed(last_block: bytes) -> None:
    keys = MessageKeys.from_seed(bytes(32))
    raw = Cipher(algorithms.AES(keys.cipher_key), modes.CBC(keys.iv)).encryptor()
    ciphertext = raw.update(b"a" * 16 + last_block) + raw.finalize()
    with pytest.raises(InvalidMessage):
        keys.decrypt(ciphertext)
