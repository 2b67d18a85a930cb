"""RFC 9381 Appendix B.3 (ECVRF-EDWARDS25519-SHA512-TAI): every printed value, byte for byte."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2ee_core.keytrans import consts, ecvrf
from e2ee_core.keytrans.errors import InvalidVrfKey, InvalidVrfProof, KeyTransparencyError
from tests.conftest import VECTORS_DIR

VECTORS: list[dict[str, Any]] = json.loads(
    (VECTORS_DIR / "rfc9381_ecvrf.json").read_text())["vectors"]
IDS = [f"example{v['example']}" for v in VECTORS]

# The small-order points of edwards25519 (canonical encodings), for key and Gamma checks.
ORDER_2 = bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
ORDER_4 = bytes(32)
ORDER_8 = bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")


def h(v: dict[str, Any], key: str) -> bytes:
    return bytes.fromhex(v[key])


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_prove_reproduces_every_intermediate_value(v: dict[str, Any]) -> None:
    trace = ecvrf.prove_with_trace(h(v, "SK"), h(v, "alpha"))
    assert trace.x == h(v, "x")
    assert trace.public_key == h(v, "PK") == ecvrf.public_key(h(v, "SK"))
    assert trace.ctr == v["ctr"]
    assert trace.h_point == h(v, "H")
    assert ecvrf.encode_to_curve(h(v, "PK"), h(v, "alpha")) == (h(v, "H"), v["ctr"])
    assert trace.k_string == h(v, "k_string")
    assert trace.k == h(v, "k")
    assert trace.u_point == h(v, "U")
    assert trace.v_point == h(v, "V")
    assert trace.pi == h(v, "pi") == ecvrf.prove(h(v, "SK"), h(v, "alpha"))
    assert trace.beta == h(v, "beta") == ecvrf.proof_to_hash(h(v, "pi"))


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_verify_returns_beta(v: dict[str, Any]) -> None:
    assert ecvrf.verify(h(v, "PK"), h(v, "alpha"), h(v, "pi")) == h(v, "beta")


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_verify_rejects_changed_alpha(v: dict[str, Any]) -> None:
    with pytest.raises(InvalidVrfProof):
        ecvrf.verify(h(v, "PK"), h(v, "alpha") + b"\x00", h(v, "pi"))


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_verify_rejects_every_single_bit_flip_of_the_proof(v: dict[str, Any]) -> None:
    pi = h(v, "pi")
    for i in range(len(pi)):
        for bit in (0, 7):
            bad = bytearray(pi)
            bad[i] ^= 1 << bit
            with pytest.raises(InvalidVrfProof):
                ecvrf.verify(h(v, "PK"), h(v, "alpha"), bytes(bad))


def test_verify_rejects_another_key() -> None:
    with pytest.raises(InvalidVrfProof):
        ecvrf.verify(h(VECTORS[1], "PK"), h(VECTORS[0], "alpha"), h(VECTORS[0], "pi"))


def test_draft10_proof_without_public_key_in_challenge_is_rejected() -> None:
    draft10 = bytes.fromhex(
        "8657106690b5526245a92b003bb079ccd1a92130477671f6fc01ad16f26f723f5e8bd1839b414219e8626d"
        "393787a192241fc442e6569e96c462f62b8079b9ed83ff2ee21c90c7c398802fdeebea4001")
    with pytest.raises(InvalidVrfProof):
        ecvrf.verify(h(VECTORS[0], "PK"), b"", draft10)


def test_unreduced_s_is_rejected() -> None:
    v = VECTORS[0]
    pi = h(v, "pi")
    s = int.from_bytes(pi[48:], "little") + consts.GROUP_ORDER
    with pytest.raises(InvalidVrfProof, match="not reduced"):
        ecvrf.verify(h(v, "PK"), b"", pi[:48] + s.to_bytes(32, "little"))


@pytest.mark.parametrize("point", [ecvrf.IDENTITY, ORDER_2, ORDER_4, ORDER_8])
def test_small_order_public_keys_are_refused(point: bytes) -> None:
    with pytest.raises(InvalidVrfKey, match="small order"):
        ecvrf.verify(point, b"", h(VECTORS[0], "pi"))


def test_non_canonical_encodings_do_not_decode() -> None:
    y_plus_p = (1 + consts.FIELD_PRIME).to_bytes(32, "little")  # y = 1 written as 1 + p
    assert ecvrf.decode_point(y_plus_p) is None
    # x = 0 with the sign bit set (RFC 8032 5.1.3 step 4): the identity with bit 255 set.
    assert ecvrf.decode_point(ecvrf.IDENTITY[:31] + b"\x80") is None
    assert ecvrf.decode_point(ecvrf.IDENTITY) == ecvrf.IDENTITY
    with pytest.raises(InvalidVrfKey, match="not a curve point"):
        ecvrf.verify(y_plus_p, b"", h(VECTORS[0], "pi"))


@pytest.mark.parametrize("torsion", [ORDER_2, ORDER_4, ORDER_8])
def test_mixed_order_points_multiply_like_integers(torsion: bytes) -> None:
    """c*P for P = P_q + T outside the prime-order subgroup (libsodium refuses those directly):
    checked against the group law, (a+b)*P = a*P + b*P and 8*(c*P) = c*(8*P)."""
    from nacl import bindings as sodium

    base_q = h(VECTORS[0], "PK")
    mixed = sodium.crypto_core_ed25519_add(base_q, torsion)
    assert not sodium.crypto_core_ed25519_is_valid_point(mixed)
    for a, b in [(3, 5), (7, 9), (2**127 + 1, 6), (1, 1)]:
        lhs = ecvrf._mul((a + b).to_bytes(32, "little"), mixed)
        rhs = sodium.crypto_core_ed25519_add(ecvrf._mul(a.to_bytes(32, "little"), mixed),
                                             ecvrf._mul(b.to_bytes(32, "little"), mixed))
        assert lhs == rhs
    one = ecvrf._mul((1).to_bytes(32, "little"), mixed)
    assert one == mixed
    eight = ecvrf._mul((8).to_bytes(32, "little"), mixed)
    assert eight == ecvrf._mul((8).to_bytes(32, "little"), base_q)


def test_prove_verify_round_trip_with_fresh_keys() -> None:
    import secrets

    for size in (0, 1, 32, 100):
        sk = secrets.token_bytes(32)
        alpha = secrets.token_bytes(size)
        pi = ecvrf.prove(sk, alpha)
        assert ecvrf.verify(ecvrf.public_key(sk), alpha, pi) == ecvrf.proof_to_hash(pi)


@settings(max_examples=300, deadline=None)
@given(pk=st.binary(max_size=40), alpha=st.binary(max_size=40), pi=st.binary(max_size=90))
def test_verify_raises_only_typed_errors_on_arbitrary_bytes(pk: bytes, alpha: bytes,
                                                            pi: bytes) -> None:
    try:
        ecvrf.verify(pk, alpha, pi)
    except KeyTransparencyError:
        pass


@settings(max_examples=200, deadline=None)
@given(pi=st.binary(min_size=80, max_size=80))
def test_verify_random_80_byte_proofs_against_a_real_key(pi: bytes) -> None:
    with pytest.raises(InvalidVrfProof):
        ecvrf.verify(h(VECTORS[0], "PK"), b"", pi)
