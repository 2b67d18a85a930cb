"""Blind RSA checks, stores and the rate limiter, without HTTP."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from credentials import blind_rsa, consts
from credentials.errors import BlindRSAError, InvalidSignatureError, IssuanceRateLimited
from credentials.issuer_store import IssuerStore
from credentials.rsa_private import GmpyPrivateOp
from credentials.spent_store import DatabaseSpentStore, MemorySpentStore


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


class _FaultyOp:
    """A real private operation whose result is corrupted, as a glitched CRT half would be."""

    engine = "faulty"

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self._op = GmpyPrivateOp(key)

    def __call__(self, representative: bytes) -> bytes:
        good = bytearray(self._op(representative))
        good[100] ^= 0x10
        return bytes(good)


def test_faulty_signature_is_never_released(key: rsa.RSAPrivateKey) -> None:
    signer = blind_rsa.BlindSigner(key)
    blinded, _ = blind_rsa.blind(key.public_key(), b"m", blind_rsa.Variants.PSS_RANDOMIZED)
    signer._op = _FaultyOp(key)
    with pytest.raises(InvalidSignatureError):
        signer.blind_sign(blinded)


@pytest.mark.parametrize("engine", ["openssl", "gmpy2"])
def test_batch_signing_checks_every_signature(key: rsa.RSAPrivateKey, engine: str) -> None:
    """blind_sign_many: the same signatures as blind_sign, bad inputs failing in place, and a
    faulty signature withheld while the others of the batch are released."""
    signer = blind_rsa.BlindSigner(key, engine=engine)
    pk = key.public_key()
    blinded = [blind_rsa.blind(pk, b"m%d" % i, blind_rsa.Variants.PSS_RANDOMIZED)
               for i in range(6)]
    msgs = [b for b, _ in blinded]
    n = pk.public_numbers().n
    out = signer.blind_sign_many([*msgs[:3], n.to_bytes(256, "big"), b"\x01" * 255, *msgs[3:]])
    assert [type(o) for o in out] == [bytes] * 3 + [BlindRSAError] * 2 + [bytes] * 3
    assert [o for o in out if isinstance(o, bytes)] == [signer.blind_sign(m) for m in msgs]
    assert signer.blind_sign_many([]) == []

    faulty_at = {2, 4}
    real_op = signer._op
    calls = iter(range(100))

    def glitchy(representative: bytes) -> bytes:
        good = real_op(representative)
        if next(calls) in faulty_at:
            return _FaultyOp(key)(representative)
        return good

    signer._op = glitchy  # type: ignore[assignment]
    out = signer.blind_sign_many(msgs)
    assert [isinstance(o, InvalidSignatureError) for o in out] == [
        i in faulty_at for i in range(6)]
    good = [o for o in out if isinstance(o, bytes)]
    assert good == [real_op(m) for i, m in enumerate(msgs) if i not in faulty_at]


@pytest.mark.parametrize("engine", ["openssl", "gmpy2"])
def test_blind_sign_refuses_out_of_range_and_wrong_length(key: rsa.RSAPrivateKey,
                                                           engine: str) -> None:
    signer = blind_rsa.BlindSigner(key, engine=engine)
    n = key.public_key().public_numbers().n
    for bad in (n.to_bytes(256, "big"), b"\xff" * 256, b"\x01" * 255, b"\x01" * 257):
        with pytest.raises(BlindRSAError):
            signer.blind_sign(bad)


@pytest.mark.parametrize("variant", list(blind_rsa.Variants))
def test_round_trip_every_variant(key: rsa.RSAPrivateKey, variant: blind_rsa.Variants) -> None:
    prepared = blind_rsa.prepare(b"hello", variant)
    assert (len(prepared) == 37) is variant.value.randomized
    blinded, inv = blind_rsa.blind(key.public_key(), prepared, variant)
    sig = blind_rsa.finalize(key.public_key(), prepared,
                             blind_rsa.BlindSigner(key).blind_sign(blinded), inv, variant)
    blind_rsa.verify(key.public_key(), prepared, sig, variant)
    other = blind_rsa.Variants.PSSZERO_DETERMINISTIC if variant.value.salt_length else \
        blind_rsa.Variants.PSS_DETERMINISTIC
    with pytest.raises(InvalidSignatureError):
        blind_rsa.verify(key.public_key(), prepared, sig, other)


def test_blinding_is_randomized(key: rsa.RSAPrivateKey) -> None:
    v = blind_rsa.Variants.PSSZERO_DETERMINISTIC
    a, _ = blind_rsa.blind(key.public_key(), b"same", v)
    b, _ = blind_rsa.blind(key.public_key(), b"same", v)
    assert a != b


def test_spent_stores_accept_once_and_purge(tmp_path: Path) -> None:
    for store in (MemorySpentStore(), DatabaseSpentStore(str(tmp_path / "s.db"))):
        assert store.mark_spent(b"k1" * 16, b"n" * 32)
        assert not store.mark_spent(b"k1" * 16, b"n" * 32)
        assert store.mark_spent(b"k2" * 16, b"n" * 32)  # same nonce, other key: distinct
        assert store.note_directory([b"k2" * 16], now=0) == 0  # withdrawn: kept a while
        assert store.note_directory([b"k2" * 16], now=consts.SPENT_PURGE_DELAY) == 1
        assert store.mark_spent(b"k1" * 16, b"n" * 32)
        assert store.note_directory([], now=10**9) == 0  # an empty list never wipes the store


def test_rate_limit_never_over_grants_under_threads(tmp_path: Path) -> None:
    store = IssuerStore(str(tmp_path / "i.db"))
    granted: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(10):
            try:
                got = store.reserve("acct", 3, limit=50, window=3600)
            except IssuanceRateLimited:
                continue
            with lock:
                granted.append(got)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 50
    with pytest.raises(IssuanceRateLimited) as info:
        store.reserve("acct", 1, limit=50, window=3600)
    assert 1 <= info.value.retry_after <= 3600
    assert store.reserve("other", 1, limit=50, window=3600) == 1


def test_accounts_authenticate_by_credential_only(tmp_path: Path) -> None:
    store = IssuerStore(str(tmp_path / "i.db"))
    credential = store.add_account("erin")
    assert store.authenticate(credential) == "erin"
    assert store.authenticate(credential[:-1] + ("A" if credential[-1] != "A" else "B")) is None
    assert store.authenticate("") is None
    raw = store.db.fetchall("SELECT * FROM issuer_accounts")
    assert credential.encode() not in repr(raw).encode()  # stored hashed
