"""HChaCha20 binding, AES-GCM-Extended, padding and Labyrinth HPKE."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from e2ee_core.labyrinth import hpke, padding, primitives, sodium
from e2ee_core.labyrinth.errors import (
    DecryptionFailed,
    InvalidKeyLength,
    InvalidPadding,
    InvalidPublicKey,
)


def test_hchacha20_draft_irtf_cfrg_xchacha_section_2_2_1() -> None:
    key = bytes(range(32))
    nonce = bytes.fromhex("000000090000004a0000000031415927")
    expected = bytes.fromhex(
        "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc")
    assert sodium.hchacha20(key, nonce) == expected


def test_hchacha20_comes_from_pynacls_bundled_library() -> None:
    assert sodium.library_available()
    assert any("nacl" in path for path in sodium._candidate_paths())


@pytest.mark.parametrize(("key_len", "nonce_len"), [(31, 16), (33, 16), (32, 15), (32, 17)])
def test_hchacha20_refuses_wrong_sizes(key_len: int, nonce_len: int) -> None:
    with pytest.raises(InvalidKeyLength):
        sodium.hchacha20(bytes(key_len), bytes(nonce_len))


def test_aes_gcm_extended_is_hchacha20_subkey_then_aes_256_gcm() -> None:
    key = bytes(range(32))
    nonce = bytes(range(100, 128))
    sealed = primitives.encrypt_with_nonce(key, nonce, b"aad", b"hello")
    subkey = sodium.hchacha20(key, nonce[:16])
    assert sealed == nonce + AESGCM(subkey).encrypt(nonce[16:], b"hello", b"aad")
    assert primitives.decrypt(key, b"aad", sealed) == b"hello"


def test_aes_gcm_extended_round_trip_and_fresh_nonces() -> None:
    key = bytes(32)
    one, two = primitives.encrypt(key, b"a", b"m"), primitives.encrypt(key, b"a", b"m")
    assert one[:28] != two[:28]
    assert primitives.decrypt(key, b"a", one) == b"m"


def test_aes_gcm_extended_rejects_wrong_aad_key_and_truncation() -> None:
    key = bytes(32)
    sealed = primitives.encrypt(key, b"a", b"message")
    with pytest.raises(DecryptionFailed):
        primitives.decrypt(key, b"b", sealed)
    with pytest.raises(DecryptionFailed):
        primitives.decrypt(bytes([1]) * 32, b"a", sealed)
    for cut in range(len(sealed)):
        with pytest.raises(DecryptionFailed):
            primitives.decrypt(key, b"a", sealed[:cut])


@pytest.mark.parametrize(("length", "expected"), [
    (0, 10), (1, 10), (9, 10), (10, 10), (11, 12), (100, 104), (1000, 1024),
    (1 << 20, 1 << 20), ((1 << 20) + 1, (1 << 20) + (1 << 15)),
])
def test_padded_sizes(length: int, expected: int) -> None:
    assert padding.padded_size(length) == expected


def test_padme_overhead_is_at_most_twelve_percent() -> None:
    for length in range(10, 70000, 7):
        assert length <= padding.padme(length) <= length * 1.12 + 1


def test_pad_prefix_and_round_trip() -> None:
    padded = padding.pad(b"hi")
    assert padded == b"\x00\x00\x00\x02hi" + bytes(8)
    assert padding.unpad(padded) == b"hi"
    assert padding.unpad(padding.pad(b"x" * 1000)) == b"x" * 1000


@pytest.mark.parametrize("bad", [
    b"", b"\x00\x00\x00", b"\x00\x00\x00\x02hi" + bytes(7), b"\x00\x00\x00\x02hi" + bytes(9),
    b"\x00\x00\x00\x02hi" + bytes(7) + b"\x01", b"\xff\xff\xff\xff" + bytes(10),
])
def test_unpad_refuses_non_canonical(bad: bytes) -> None:
    with pytest.raises(InvalidPadding):
        padding.unpad(bad)


def test_hpke_round_trip_and_binding() -> None:
    recipient_priv, recipient_pub = hpke.generate_keypair()
    auth_priv, auth_pub = hpke.generate_keypair()
    psk = bytes(range(32))
    sealed = hpke.encrypt(recipient_pub, auth_pub, auth_priv, psk=psk, aad=b"epoch__1",
                          plaintext=b"entropy")
    assert sealed[0] == 0x01 and len(sealed) == 1 + 32 + len(b"entropy") + 16
    assert hpke.decrypt(recipient_pub, recipient_priv, auth_pub, psk=psk, aad=b"epoch__1",
                        ciphertext=sealed) == b"entropy"
    _, other_pub = hpke.generate_keypair()
    for sender, key, aad in [(auth_pub, bytes(32), b"epoch__1"), (auth_pub, psk, b"epoch__2"),
                             (other_pub, psk, b"epoch__1")]:
        with pytest.raises(DecryptionFailed):
            hpke.decrypt(recipient_pub, recipient_priv, sender, psk=key, aad=aad,
                         ciphertext=sealed)
    for cut in range(len(sealed)):
        with pytest.raises(DecryptionFailed):
            hpke.decrypt(recipient_pub, recipient_priv, auth_pub, psk=psk, aad=b"epoch__1",
                         ciphertext=sealed[:cut])


def test_hpke_refuses_small_order_keys_and_long_psk() -> None:
    auth_priv, auth_pub = hpke.generate_keypair()
    with pytest.raises(InvalidPublicKey):
        hpke.encrypt(bytes(32), auth_pub, auth_priv, psk=b"", aad=b"", plaintext=b"x")
    with pytest.raises(InvalidKeyLength):
        hpke.encrypt(auth_pub, auth_pub, auth_priv, psk=bytes(33), aad=b"", plaintext=b"x")


def test_too_long_plaintexts_are_refused_with_their_own_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from e2ee_core.labyrinth.errors import MessageTooLong

    monkeypatch.setattr(primitives, "MAX_PLAINTEXT_LEN", 8)
    monkeypatch.setattr(hpke, "MAX_PLAINTEXT_LEN", 8)
    monkeypatch.setattr(padding, "PAD_MAX_UNPADDED_LEN", 8)
    with pytest.raises(MessageTooLong):
        primitives.encrypt(bytes(32), b"", bytes(9))
    auth_priv, auth_pub = hpke.generate_keypair()
    with pytest.raises(MessageTooLong):
        hpke.encrypt(auth_pub, auth_pub, auth_priv, psk=b"", aad=b"", plaintext=bytes(9))
    with pytest.raises(MessageTooLong):
        padding.pad(bytes(9))
    assert primitives.decrypt(bytes(32), b"", primitives.encrypt(bytes(32), b"", bytes(8))) \
        == bytes(8)
