"""lookup_verify (akd_core/src/verify/lookup.rs): check a LookupProof against an epoch's root."""

from __future__ import annotations

from e2ee_core.keytrans import hashing
from e2ee_core.keytrans.errors import EpochOrVersionInvalid
from e2ee_core.keytrans.proofs import LookupProof
from e2ee_core.keytrans.verify import LabelVerifier, VerifyResult


def marker_version(version: int) -> int:
    """The largest power of two <= version (1 << get_marker_version_log2)."""
    return 1 << (version.bit_length() - 1)


def lookup_verify(vrf_public_key: bytes, root_hash: bytes, current_epoch: int,
                  akd_label: bytes, proof: LookupProof | bytes) -> VerifyResult:
    """The label's current (epoch, version, value) in the directory whose root hash at
    ``current_epoch`` is ``root_hash``; raises a KeyTransparencyError if the proof fails."""
    if isinstance(proof, bytes):
        proof = LookupProof.from_bytes(proof)
    if proof.version > current_epoch:
        raise EpochOrVersionInvalid("the version is greater than the current epoch")
    if proof.version == 0:
        raise EpochOrVersionInvalid("version 0 does not exist")  # AKD panics here
    check = LabelVerifier(vrf_public_key, root_hash, akd_label)
    # (1) this version's fresh leaf commits to the value, published in proof.epoch
    leaf = hashing.leaf_hash_with_value(proof.value, proof.epoch, proof.commitment_nonce)
    check.existence(True, proof.version, proof.existence_vrf_proof, proof.existence_proof,
                    leaf=leaf)
    # (2) the marker version below it exists (versions cannot be skipped silently)
    check.existence(True, marker_version(proof.version), proof.marker_vrf_proof,
                    proof.marker_proof)
    # (3) this version has not been superseded: its stale leaf is absent
    check.nonexistence(False, proof.version, proof.freshness_vrf_proof, proof.freshness_proof)
    return VerifyResult(epoch=proof.epoch, version=proof.version, value=proof.value)
