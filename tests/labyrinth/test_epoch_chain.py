"""Epoch-chain integrity: signed, hash-chained epoch heads; truncation and forks detected."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from e2ee_core.labyrinth import epoch_chain, epochs, hpke
from e2ee_core.labyrinth.consts import EPOCH_HEAD_LEN
from e2ee_core.labyrinth.epoch_chain import EpochHead, make_head, verify_chain
from e2ee_core.labyrinth.errors import (
    EpochChainForked,
    EpochChainTruncated,
    InvalidEpochHead,
    LabyrinthError,
)

OPENER_PRIV, OPENER_PUB = hpke.generate_keypair()


def _chain(length: int, roots: list[bytes] | None = None) -> tuple[list[EpochHead], list[bytes]]:
    keys = roots or [epochs.first_epoch_root() for _ in range(length)]
    heads: list[EpochHead] = []
    for sequence, root in enumerate(keys):
        heads.append(make_head(sequence_id=sequence, root_key=root,
                               previous=heads[-1] if heads else None,
                               opener_device_key_priv=OPENER_PRIV,
                               opener_device_key_pub=OPENER_PUB))
    return heads, keys


def test_a_whole_chain_verifies_and_round_trips() -> None:
    heads, roots = _chain(5)
    decoded = [EpochHead.decode(head.encode()) for head in heads]
    assert decoded == heads
    assert all(len(head.encode()) == EPOCH_HEAD_LEN for head in heads)
    newest = verify_chain(decoded, checkpoints={2: heads[2].hash()},
                          roots=dict(enumerate(roots)), openers=[OPENER_PUB])
    assert newest == heads[-1].hash()


def test_truncation_below_a_known_epoch_is_detected() -> None:
    heads, _ = _chain(5)
    with pytest.raises(EpochChainTruncated):
        verify_chain(heads[:3], checkpoints={4: heads[4].hash()})
    with pytest.raises(EpochChainTruncated):  # a root the device derived, no head for it
        verify_chain(heads[:3], roots={3: epochs.first_epoch_root()})


def test_a_gap_or_a_missing_start_is_detected() -> None:
    heads, _ = _chain(5)
    with pytest.raises(EpochChainTruncated):
        verify_chain(heads[:2] + heads[3:])
    with pytest.raises(EpochChainTruncated):
        verify_chain(heads[1:])
    with pytest.raises(EpochChainTruncated):
        verify_chain([])


def test_a_fork_is_detected() -> None:
    heads, roots = _chain(4)
    # A second epoch 2 (another root, same predecessor): its successor no longer links.
    other = make_head(sequence_id=2, root_key=epochs.first_epoch_root(), previous=heads[1],
                      opener_device_key_priv=OPENER_PRIV, opener_device_key_pub=OPENER_PUB)
    with pytest.raises(EpochChainForked):
        verify_chain([*heads[:2], other, heads[3]])
    # The forked branch alone verifies, but not against the checkpoint the device holds...
    with pytest.raises(EpochChainForked):
        verify_chain([*heads[:2], other], checkpoints={2: heads[2].hash()})
    # ... nor against the root key the device derived for epoch 2.
    with pytest.raises(EpochChainForked):
        verify_chain([*heads[:2], other], roots={2: roots[2]})
    with pytest.raises(EpochChainForked):
        verify_chain([*heads[:3], heads[2]])


def test_a_bad_signature_or_opener_is_refused() -> None:
    heads, _ = _chain(2)
    forged = replace(heads[1], signature=bytes(64))
    with pytest.raises(InvalidEpochHead):
        verify_chain([heads[0], forged])
    with pytest.raises(InvalidEpochHead):
        verify_chain(heads, openers=[hpke.generate_keypair()[1]])


def test_heads_must_follow_their_predecessor() -> None:
    heads, roots = _chain(2)
    with pytest.raises(InvalidEpochHead):
        make_head(sequence_id=3, root_key=roots[1], previous=heads[1],
                  opener_device_key_priv=OPENER_PRIV, opener_device_key_pub=OPENER_PUB)
    with pytest.raises(InvalidEpochHead):
        make_head(sequence_id=1, root_key=roots[1], previous=None,
                  opener_device_key_priv=OPENER_PRIV, opener_device_key_pub=OPENER_PUB)


def test_the_decoder_is_strict() -> None:
    heads, _ = _chain(2)
    data = heads[1].encode()
    for bad in (data[:-1], data + b"\x00", b"\x02" + data[1:], b""):
        with pytest.raises(InvalidEpochHead):
            EpochHead.decode(bad)
    # Sequence 1 with an all-zero previous hash, and sequence 0 with a non-zero one.
    with pytest.raises(InvalidEpochHead):
        EpochHead.decode(data[:9] + bytes(32) + data[41:])
    with pytest.raises(InvalidEpochHead):
        EpochHead.decode(heads[0].encode()[:9] + b"\x01" * 32 + heads[0].encode()[41:])


def test_the_commitment_hides_nothing_it_should_not() -> None:
    root = epochs.first_epoch_root()
    assert epoch_chain.root_commitment(root, 1) != epoch_chain.root_commitment(root, 2)
    assert epoch_chain.root_commitment(root, 1) != root


@given(st.binary(max_size=2 * EPOCH_HEAD_LEN))
def test_decoder_raises_only_typed_errors(data: bytes) -> None:
    try:
        EpochHead.decode(data).verify_signature()
    except LabyrinthError:
        pass


@given(st.binary(min_size=EPOCH_HEAD_LEN - 1, max_size=EPOCH_HEAD_LEN - 1))
def test_decoder_on_full_length_inputs(tail: bytes) -> None:
    try:
        EpochHead.decode(b"\x01" + tail).verify_signature()
    except LabyrinthError:
        pass
