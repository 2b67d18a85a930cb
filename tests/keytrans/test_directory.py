"""The directory: our proofs verify with our verifiers, and replaying facebook/akd's vector
generator reproduces its epoch hash and proofs byte for byte."""

from __future__ import annotations

import dataclasses
import json
import secrets
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2ee_core.keytrans.directory import Directory
from e2ee_core.keytrans.errors import InvalidUpdate, MembershipProofFailed, UnknownLabel
from e2ee_core.keytrans.history import HistoryParams, key_history_verify
from e2ee_core.keytrans.lookup import lookup_verify
from e2ee_core.keytrans.proofs import HistoryProof, LookupProof
from e2ee_core.keytrans.storage import MemoryDirectoryStorage
from e2ee_core.keytrans.verify import VerifyResult
from tests.conftest import VECTORS_DIR

V: dict[str, Any] = json.loads((VECTORS_DIR / "akd_whatsapp_v1.json").read_text())["vectors"][0]


@pytest.fixture(scope="module")
def akd_replay() -> Directory:
    """examples/src/test_vectors/mod.rs: labels 1, 2, 4, 8, 16; in round e every label L with
    e mod L = 0 is published with the value "L,e"; 49 rounds; HardCodedAkdVRF's key."""
    directory = Directory(MemoryDirectoryStorage(), bytes.fromhex(V["vrf_secret_key"]))
    for epoch in range(1, V["epoch"] + 1):
        head = directory.publish({str(n).encode(): f"{n},{epoch}".encode()
                                  for n in (1, 2, 4, 8, 16) if epoch % n == 0})
        assert head.epoch == epoch
    return directory


def test_replay_reproduces_the_vrf_key_and_epoch_hash(akd_replay: Directory) -> None:
    assert akd_replay.vrf_public_key.hex() == V["vrf_public_key"]
    head = akd_replay.current()
    assert (head.epoch, head.root_hash.hex()) == (V["epoch"], V["epoch_hash"])


def test_replay_reproduces_the_lookup_proof_byte_for_byte(akd_replay: Directory) -> None:
    _, proof = akd_replay.lookup(bytes.fromhex(V["label"]))
    assert proof.to_bytes().hex() == V["lookup_proof"]


def test_replay_reproduces_both_history_proofs_byte_for_byte(akd_replay: Directory) -> None:
    label = bytes.fromhex(V["label"])
    _, complete = akd_replay.key_history(label, HistoryParams.complete())
    _, recent = akd_replay.key_history(label, HistoryParams.most_recent_n(1))
    assert complete.to_bytes().hex() == V["history_proof_complete"]
    assert recent.to_bytes().hex() == V["history_proof_most_recent_1"]


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16])
def test_every_label_of_the_replay_verifies(akd_replay: Directory, n: int) -> None:
    label = str(n).encode()
    head, lookup = akd_replay.lookup(label)
    pk = akd_replay.vrf_public_key
    last = 48 // n * n if n > 1 else 49
    expected = VerifyResult(last, last // n, f"{n},{last}".encode())
    assert lookup_verify(pk, head.root_hash, head.epoch, label, lookup.to_bytes()) == expected
    _, history = akd_replay.key_history(label)
    results = key_history_verify(pk, head.root_hash, head.epoch, label, history.to_bytes())
    assert [r.version for r in results] == list(range(last // n, 0, -1))
    assert results[0] == expected


def directory() -> Directory:
    return Directory(MemoryDirectoryStorage(), secrets.token_bytes(32))


def test_epochs_advance_without_updates_and_keep_the_root() -> None:
    d = directory()
    first = d.publish({b"alice": b"key-1"})
    quiet = d.publish({})
    assert (quiet.epoch, quiet.root_hash) == (first.epoch + 1, first.root_hash)
    head, proof = d.lookup(b"alice")
    assert head == quiet
    assert lookup_verify(d.vrf_public_key, head.root_hash, head.epoch, b"alice", proof) == (
        VerifyResult(1, 1, b"key-1"))


def test_republishing_the_same_value_is_not_a_new_version() -> None:
    d = directory()
    d.publish({b"alice": b"key-1"})
    d.publish({b"alice": b"key-1"})
    _, history = d.key_history(b"alice")
    assert [u.version for u in history.update_proofs] == [1]


def test_a_proof_from_an_older_epoch_fails_against_the_new_root() -> None:
    d = directory()
    d.publish({b"alice": b"key-1", b"bob": b"key-b"})
    _, old = d.lookup(b"alice")
    head = d.publish({b"alice": b"key-2"})
    with pytest.raises(MembershipProofFailed):
        lookup_verify(d.vrf_public_key, head.root_hash, head.epoch, b"alice", old)
    _, new = d.lookup(b"alice")
    result = lookup_verify(d.vrf_public_key, head.root_hash, head.epoch, b"alice", new)
    assert result == VerifyResult(2, 2, b"key-2")


def test_unknown_label_and_oversized_values_are_typed_errors() -> None:
    d = directory()
    d.publish({b"alice": b"k"})
    with pytest.raises(UnknownLabel):
        d.lookup(b"mallory")
    with pytest.raises(InvalidUpdate):
        d.publish({b"alice": bytes(1 << 20)})


@settings(max_examples=15, deadline=None)
@given(rounds=st.lists(st.dictionaries(st.binary(min_size=1, max_size=4), st.binary(max_size=8),
                                       max_size=5), min_size=1, max_size=5))
def test_every_label_verifies_after_random_rounds(rounds: list[dict[bytes, bytes]]) -> None:
    d = directory()
    current: dict[bytes, bytes] = {}
    for updates in rounds:
        d.publish(updates)
        current.update(updates)
    head = d.current()
    for label, value in current.items():
        _, lookup = d.lookup(label)
        decoded = LookupProof.from_bytes(lookup.to_bytes())
        result = lookup_verify(d.vrf_public_key, head.root_hash, head.epoch, label, decoded)
        assert result.value == value
        _, history = d.key_history(label, HistoryParams.most_recent_n(2))
        results = key_history_verify(d.vrf_public_key, head.root_hash, head.epoch, label,
                                     HistoryProof.from_bytes(history.to_bytes()),
                                     params=HistoryParams.most_recent_n(2))
        assert results[0] == result


def test_tombstoned_values_verify_only_when_allowed() -> None:
    """A server that deleted an old value (AKD's tombstone: an empty value) still proves the
    version existed; the client accepts that only with allow_missing_values."""
    d = directory()
    d.publish({b"alice": b"old key"})
    d.publish({b"alice": b"new key"})
    head, history = d.key_history(b"alice")
    older = dataclasses.replace(history.update_proofs[1], value=b"")
    tombstoned = dataclasses.replace(history, update_proofs=(history.update_proofs[0], older))
    with pytest.raises(MembershipProofFailed):
        key_history_verify(d.vrf_public_key, head.root_hash, head.epoch, b"alice", tombstoned)
    results = key_history_verify(d.vrf_public_key, head.root_hash, head.epoch, b"alice",
                                 tombstoned, allow_missing_values=True)
    assert [r.value for r in results] == [b"new key", b""]
