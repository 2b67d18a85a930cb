"""Append-only proofs (AKD's SingleAppendOnlyProof / AppendOnlyProof and auditor check): our
directory's proofs verify epoch by epoch; rewriting history, dropping or changing proof
elements is caught; untrusted proof bytes raise only typed errors."""

from __future__ import annotations

import dataclasses
import secrets

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2ee_core.keytrans.directory import Directory
from e2ee_core.keytrans.errors import (
    AppendOnlyProofFailed,
    DirectoryError,
    EpochOrVersionInvalid,
    KeyTransparencyError,
    MalformedProof,
)
from e2ee_core.keytrans.node_label import NodeLabel
from e2ee_core.keytrans.proofs import AppendOnlyProof, AzksElement, SingleAppendOnlyProof
from e2ee_core.keytrans.storage import MemoryDirectoryStorage
from e2ee_core.keytrans.tree import audit_verify, verify_append_only_step


def new_directory(key: bytes | None = None) -> Directory:
    return Directory(MemoryDirectoryStorage(), key or secrets.token_bytes(32))


def hashes(d: Directory, start: int, end: int) -> list[bytes]:
    return [d.epoch_hash(e) for e in range(start, end + 1)]


@pytest.fixture(scope="module")
def busy() -> Directory:
    d = new_directory()
    for epoch in range(1, 13):
        d.publish({f"user{n}".encode(): f"key{n}.{epoch}".encode()
                   for n in range(8) if epoch % (n + 1) == 0})
    d.publish({})  # a quiet epoch
    d.publish({b"late": b"k"})
    return d


def test_every_step_from_the_empty_tree_verifies(busy: Directory) -> None:
    latest = busy.current().epoch
    proof = busy.append_only_proof(0, latest)
    assert proof.epochs == tuple(range(latest))
    audit_verify(hashes(busy, 0, latest), AppendOnlyProof.from_bytes(proof.to_bytes()))


def test_a_middle_range_and_a_quiet_epoch_verify(busy: Directory) -> None:
    audit_verify(hashes(busy, 5, 9), busy.append_only_proof(5, 9))
    quiet = busy.append_only_proof(12, 13)
    assert quiet.proofs[0].inserted == ()
    audit_verify(hashes(busy, 12, 13), quiet)


def test_inserted_leaves_are_the_epochs_new_leaves(busy: Directory) -> None:
    step = busy.append_only_proof(5, 6).proofs[0]
    # epoch 6: user0, user1, user2 update (a fresh and a stale leaf each) and user5 appears
    # (version 1: a fresh leaf only)
    assert len(step.inserted) == 7
    assert len({e.label for e in step.inserted}) == 7


def test_dropping_an_inserted_leaf_is_caught(busy: Directory) -> None:
    proof = busy.append_only_proof(5, 6)
    step = proof.proofs[0]
    bad = dataclasses.replace(step, inserted=step.inserted[1:])
    with pytest.raises(AppendOnlyProofFailed, match="end root"):
        verify_append_only_step(bad, busy.epoch_hash(5), busy.epoch_hash(6), 6)


def test_changing_an_unchanged_node_is_caught(busy: Directory) -> None:
    step = busy.append_only_proof(5, 6).proofs[0]
    first = step.unchanged_nodes[0]
    changed = AzksElement(first.label, bytes(32))
    bad = dataclasses.replace(step, unchanged_nodes=(changed, *step.unchanged_nodes[1:]))
    with pytest.raises(AppendOnlyProofFailed, match="start root"):
        verify_append_only_step(bad, busy.epoch_hash(5), busy.epoch_hash(6), 6)


def test_wrong_end_epoch_is_caught(busy: Directory) -> None:
    step = busy.append_only_proof(5, 6).proofs[0]
    with pytest.raises(AppendOnlyProofFailed):
        verify_append_only_step(step, busy.epoch_hash(5), busy.epoch_hash(6), 7)


def test_a_rewritten_history_is_caught() -> None:
    """The server showed epoch 1 with alice's real key, then rebuilt its directory with a
    substituted key at epoch 1 and went on: no append-only proof links the two."""
    key = secrets.token_bytes(32)
    honest = new_directory(key)
    shown = honest.publish({b"alice": b"real"}).root_hash
    forked = new_directory(key)
    forked.publish({b"alice": b"substituted"})
    head = forked.publish({b"bob": b"b"})
    with pytest.raises(AppendOnlyProofFailed):
        audit_verify([shown, head.root_hash], forked.append_only_proof(1, 2))


def test_epoch_count_mismatch_and_bad_ranges() -> None:
    d = new_directory()
    d.publish({b"a": b"1"})
    d.publish({b"b": b"2"})
    proof = d.append_only_proof(0, 2)
    with pytest.raises(EpochOrVersionInvalid):
        audit_verify(hashes(d, 0, 1), proof)
    gap = dataclasses.replace(proof, epochs=(0, 5))
    with pytest.raises(EpochOrVersionInvalid):
        audit_verify(hashes(d, 0, 2), gap)
    with pytest.raises(DirectoryError):
        d.append_only_proof(1, 1)
    with pytest.raises(DirectoryError):
        d.append_only_proof(0, 3)


def test_overlapping_elements_are_malformed() -> None:
    leaf = NodeLabel(b"\x80" + bytes(31), 256)
    above = leaf.prefix(3)
    step = SingleAppendOnlyProof((AzksElement(leaf, bytes(32)), AzksElement(above, bytes(32))),
                                 ())
    with pytest.raises(MalformedProof):
        verify_append_only_step(step, bytes(32), bytes(32), 1)
    short_insert = SingleAppendOnlyProof((), (AzksElement(above, bytes(32)),))
    with pytest.raises(KeyTransparencyError):
        verify_append_only_step(short_insert, bytes(32), bytes(32), 1)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds=st.lists(st.dictionaries(st.binary(min_size=1, max_size=3), st.binary(max_size=4),
                                       max_size=6), min_size=1, max_size=6))
def test_random_rounds_audit_clean(rounds: list[dict[bytes, bytes]]) -> None:
    d = new_directory()
    for updates in rounds:
        d.publish(updates)
    latest = d.current().epoch
    audit_verify(hashes(d, 0, latest), d.append_only_proof(0, latest))


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400))
def test_decoder_and_auditor_on_arbitrary_bytes(data: bytes) -> None:
    try:
        proof = AppendOnlyProof.from_bytes(data)
        audit_verify([bytes(32)] * (len(proof.epochs) + 1), proof)
    except KeyTransparencyError:
        pass
