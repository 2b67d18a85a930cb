"""facebook/akd WhatsApp v1 vector (label "16" at epoch 49): decoding, re-encoding and both
verifiers, byte for byte, and rejection of every tampering the vector's README lists."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from e2ee_core.keytrans import ecvrf, hashing
from e2ee_core.keytrans.errors import (
    EpochOrVersionInvalid,
    InvalidVrfProof,
    KeyTransparencyError,
    MalformedProof,
    MembershipProofFailed,
    VerificationFailed,
)
from e2ee_core.keytrans.history import HistoryParams, key_history_verify
from e2ee_core.keytrans.lookup import lookup_verify
from e2ee_core.keytrans.node_label import ROOT_LABEL, NodeLabel
from e2ee_core.keytrans.proofs import HistoryProof, LookupProof
from e2ee_core.keytrans.verify import VerifyResult
from tests.conftest import VECTORS_DIR

V: dict[str, Any] = json.loads((VECTORS_DIR / "akd_whatsapp_v1.json").read_text())["vectors"][0]
PK = bytes.fromhex(V["vrf_public_key"])
ROOT = bytes.fromhex(V["epoch_hash"])
EPOCH: int = V["epoch"]
LABEL = bytes.fromhex(V["label"])
LOOKUP = bytes.fromhex(V["lookup_proof"])
HISTORY_COMPLETE = bytes.fromhex(V["history_proof_complete"])
HISTORY_RECENT_1 = bytes.fromhex(V["history_proof_most_recent_1"])
RECENT_1 = HistoryParams.most_recent_n(1)


def expected(entries: list[dict[str, Any]]) -> list[VerifyResult]:
    return [VerifyResult(e["epoch"], e["version"], bytes.fromhex(e["value"])) for e in entries]


def test_vrf_key_is_the_public_key_of_the_vector_secret_key() -> None:
    assert ecvrf.public_key(bytes.fromhex(V["vrf_secret_key"])) == PK


@pytest.mark.parametrize("field,cls", [("lookup_proof", LookupProof),
                                       ("history_proof_complete", HistoryProof),
                                       ("history_proof_most_recent_1", HistoryProof)])
def test_proofs_decode_and_re_encode_byte_for_byte(field: str, cls: Any) -> None:
    raw = bytes.fromhex(V[field])
    assert cls.from_bytes(raw).to_bytes() == raw


def test_lookup_verify_reproduces_the_expected_result() -> None:
    result = lookup_verify(PK, ROOT, EPOCH, LABEL, LOOKUP)
    assert [result] == expected([V["expected_lookup_result"]])
    assert result.value.decode() == V["expected_lookup_result"]["value_ascii"]


def test_key_history_verify_complete_reproduces_all_three_versions() -> None:
    results = key_history_verify(PK, ROOT, EPOCH, LABEL, HISTORY_COMPLETE,
                                 params=HistoryParams.complete())
    assert results == expected(V["expected_history_results_complete"])
    assert len(results) == V["history_proof_complete_versions"]


def test_key_history_verify_most_recent_1() -> None:
    results = key_history_verify(PK, ROOT, EPOCH, LABEL, HISTORY_RECENT_1, params=RECENT_1)
    assert results == expected(V["expected_history_results_most_recent_1"])


def test_membership_path_hashes_to_the_epoch_hash() -> None:
    proof = LookupProof.from_bytes(LOOKUP)
    from e2ee_core.keytrans.verify import membership_root

    assert membership_root(proof.existence_proof) == ROOT
    leaf = hashing.leaf_hash_with_value(proof.value, proof.epoch, proof.commitment_nonce)
    assert leaf == proof.existence_proof.hash_val
    beta = ecvrf.verify(PK, hashing.vrf_alpha(LABEL, True, 3), proof.existence_vrf_proof)
    assert NodeLabel.from_vrf_output(beta) == proof.existence_proof.label


# -- tampering ---------------------------------------------------------------------------------

def flip_bit(data: bytes, index: int = 0) -> bytes:
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1:]


def test_lookup_rejects_a_flipped_root_hash() -> None:
    with pytest.raises(MembershipProofFailed):
        lookup_verify(PK, flip_bit(ROOT, 31), EPOCH, LABEL, LOOKUP)


def test_lookup_rejects_another_label() -> None:
    with pytest.raises(InvalidVrfProof):
        lookup_verify(PK, ROOT, EPOCH, b"17", LOOKUP)


def test_lookup_rejects_a_changed_value() -> None:
    bad = dataclasses.replace(LookupProof.from_bytes(LOOKUP), value=b"16,47")
    with pytest.raises(MembershipProofFailed):
        lookup_verify(PK, ROOT, EPOCH, LABEL, bad)


def test_lookup_rejects_a_changed_publication_epoch() -> None:
    bad = dataclasses.replace(LookupProof.from_bytes(LOOKUP), epoch=47)
    with pytest.raises(MembershipProofFailed):
        lookup_verify(PK, ROOT, EPOCH, LABEL, bad.to_bytes())


def test_lookup_rejects_a_version_ahead_of_the_current_epoch() -> None:
    with pytest.raises(EpochOrVersionInvalid):
        lookup_verify(PK, ROOT, 2, LABEL, LOOKUP)


def test_lookup_rejects_version_zero() -> None:
    bad = dataclasses.replace(LookupProof.from_bytes(LOOKUP), version=0)
    with pytest.raises(EpochOrVersionInvalid):
        lookup_verify(PK, ROOT, EPOCH, LABEL, bad)


def test_lookup_rejects_another_vrf_key() -> None:
    other = ecvrf.public_key(bytes(32))
    with pytest.raises(InvalidVrfProof):
        lookup_verify(other, ROOT, EPOCH, LABEL, LOOKUP)


def test_lookup_rejects_swapped_marker_and_existence_vrf_proofs() -> None:
    proof = LookupProof.from_bytes(LOOKUP)
    bad = dataclasses.replace(proof, marker_vrf_proof=proof.existence_vrf_proof)
    with pytest.raises(InvalidVrfProof):
        lookup_verify(PK, ROOT, EPOCH, LABEL, bad)


def test_lookup_rejects_a_freshness_proof_for_a_present_label() -> None:
    """A stale version's proof: claim version 2 is current with version 2's data -- the
    freshness VRF proof is for version 3's stale label, so it fails."""
    proof = LookupProof.from_bytes(LOOKUP)
    bad = dataclasses.replace(proof, version=2)
    with pytest.raises(VerificationFailed):
        lookup_verify(PK, ROOT, EPOCH, LABEL, bad)


def test_history_rejects_a_changed_older_value() -> None:
    proof = HistoryProof.from_bytes(HISTORY_COMPLETE)
    updates = list(proof.update_proofs)
    updates[1] = dataclasses.replace(updates[1], value=b"16,31")
    bad = dataclasses.replace(proof, update_proofs=tuple(updates))
    with pytest.raises(MembershipProofFailed):
        key_history_verify(PK, ROOT, EPOCH, LABEL, bad)


def test_history_rejects_a_corrupted_future_marker_vrf_proof() -> None:
    proof = HistoryProof.from_bytes(HISTORY_COMPLETE)
    markers = list(proof.future_marker_vrf_proofs)
    markers[1] = flip_bit(markers[1], 40)
    bad = dataclasses.replace(proof, future_marker_vrf_proofs=tuple(markers))
    with pytest.raises(InvalidVrfProof):
        key_history_verify(PK, ROOT, EPOCH, LABEL, bad)


def test_history_rejects_a_dropped_version() -> None:
    proof = HistoryProof.from_bytes(HISTORY_COMPLETE)
    bad = dataclasses.replace(proof, update_proofs=proof.update_proofs[:1]
                              + proof.update_proofs[2:])
    with pytest.raises(EpochOrVersionInvalid):
        key_history_verify(PK, ROOT, EPOCH, LABEL, bad)


def test_history_most_recent_proof_is_not_a_complete_history() -> None:
    with pytest.raises(EpochOrVersionInvalid):
        key_history_verify(PK, ROOT, EPOCH, LABEL, HISTORY_RECENT_1,
                           params=HistoryParams.complete())


def test_history_complete_proof_is_too_long_for_most_recent_1() -> None:
    with pytest.raises(EpochOrVersionInvalid):
        key_history_verify(PK, ROOT, EPOCH, LABEL, HISTORY_COMPLETE, params=RECENT_1)


def test_history_rejects_missing_marker_proofs() -> None:
    proof = HistoryProof.from_bytes(HISTORY_COMPLETE)
    bad = dataclasses.replace(proof, future_marker_vrf_proofs=proof.future_marker_vrf_proofs[:1],
                              non_existence_of_future_marker_proofs=(
                                  proof.non_existence_of_future_marker_proofs[:1]))
    with pytest.raises(EpochOrVersionInvalid):
        key_history_verify(PK, ROOT, EPOCH, LABEL, bad)


def test_history_rejects_a_missing_previous_version_proof() -> None:
    proof = HistoryProof.from_bytes(HISTORY_COMPLETE)
    updates = list(proof.update_proofs)
    updates[0] = dataclasses.replace(updates[0], previous_version_proof=None)
    bad = dataclasses.replace(proof, update_proofs=tuple(updates))
    with pytest.raises(MalformedProof):
        key_history_verify(PK, ROOT, EPOCH, LABEL, bad.to_bytes())


def test_history_rejects_epochs_out_of_order() -> None:
    proof = HistoryProof.from_bytes(HISTORY_COMPLETE)
    updates = list(proof.update_proofs)
    updates[1] = dataclasses.replace(updates[1], epoch=49)
    bad = dataclasses.replace(proof, update_proofs=tuple(updates))
    with pytest.raises(EpochOrVersionInvalid):
        key_history_verify(PK, ROOT, EPOCH, LABEL, bad)


def test_history_at_a_later_epoch_needs_more_future_markers() -> None:
    """At epoch 300 the marker 256 must also be shown absent: the epoch-49 proof is short."""
    with pytest.raises(EpochOrVersionInvalid):
        key_history_verify(PK, ROOT, 300, LABEL, HISTORY_COMPLETE)


def test_every_truncation_of_the_lookup_proof_fails_cleanly() -> None:
    for cut in range(len(LOOKUP)):
        with pytest.raises(KeyTransparencyError):
            lookup_verify(PK, ROOT, EPOCH, LABEL, LOOKUP[:cut])


def test_root_label_value_is_the_hash_of_36_zero_bytes() -> None:
    assert ROOT_LABEL.to_bytes() == bytes(36)
    assert ROOT_LABEL.value() == hashing.h(bytes(36))
