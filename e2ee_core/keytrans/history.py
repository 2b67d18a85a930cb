"""key_history_verify (akd_core/src/verify/history.rs) and the marker-version schedule
(akd_core/src/utils.rs get_marker_versions)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from e2ee_core.keytrans import hashing
from e2ee_core.keytrans.errors import EpochOrVersionInvalid, MalformedProof
from e2ee_core.keytrans.proofs import HistoryProof, UpdateProof
from e2ee_core.keytrans.verify import LabelVerifier, VerifyResult

# Versions at which AKD always places a marker, whatever the start version.
MARKER_VERSION_SKIPLIST = (1, 1 << 1, 1 << 2, 1 << 4, 1 << 8, 1 << 16, 1 << 32)


@dataclass(frozen=True, slots=True)
class HistoryParams:
    """How much history was asked for: ``most_recent=None`` is Complete, else MostRecent(n)."""

    most_recent: int | None = None

    @classmethod
    def complete(cls) -> HistoryParams:
        return cls(None)

    @classmethod
    def most_recent_n(cls, n: int) -> HistoryParams:
        if n < 1:
            raise ValueError("MostRecent needs n >= 1")
        return cls(n)


def _log2(version: int) -> int:
    return version.bit_length() - 1


def _max_skiplist_index(value: int) -> int:
    return max(i for i, v in enumerate(MARKER_VERSION_SKIPLIST) if v <= value)


def get_marker_versions(start: int, end: int, epoch: int) -> tuple[list[int], list[int]]:
    """(past, future): marker versions whose existence (past, below ``start``) and absence
    (future, above ``end`` up to ``epoch``) a history proof must show. 1 <= start <= end <=
    epoch."""
    past: list[int] = []
    skip = MARKER_VERSION_SKIPLIST[_max_skiplist_index(start)]
    if skip != start:
        past.append(skip)
    power = 1 << _log2(start)
    if power != start and (not past or power != past[-1]):
        past.append(power)
    for i in reversed(range(start.bit_length())):
        if start & (1 << i):
            version = start & ~((1 << (i + 1)) - 1)
            if version != 0 and (not past or version != past[-1]):
                past.append(version)

    future: list[int] = []
    f = end
    for i in range(end.bit_length()):
        if not end & (1 << i):
            f = (f | (1 << i)) & ~((1 << i) - 1)
            if f <= epoch:
                future.append(f)
    skip_slice = MARKER_VERSION_SKIPLIST[_max_skiplist_index(end) + 1:
                                         _max_skiplist_index(epoch) + 1]
    for j in range(_log2(end) + 1, _log2(epoch) + 1):
        if skip_slice and (1 << j) >= skip_slice[0]:
            break
        future.append(1 << j)
    future.extend(skip_slice)
    return past, future


def _check_shape(current_epoch: int, proof: HistoryProof,
                 params: HistoryParams) -> tuple[list[int], list[int]]:
    updates = proof.update_proofs
    if not updates:
        raise EpochOrVersionInvalid("the history proof has no update proofs")
    for newer, older in itertools.pairwise(updates):
        if older.version + 1 != newer.version:
            raise EpochOrVersionInvalid("update proofs are not consecutive decreasing versions")
    start = min(u.version for u in updates)
    end = max(u.version for u in updates)
    if start == 0:
        raise EpochOrVersionInvalid("the history starts at version 0")
    if end > current_epoch:
        raise EpochOrVersionInvalid("the newest version is greater than the current epoch")
    if params.most_recent is None:
        if start != 1:
            raise EpochOrVersionInvalid("a complete history must start at version 1")
    elif len(updates) > params.most_recent or (len(updates) < params.most_recent
                                               and start != 1):
        raise EpochOrVersionInvalid("the number of update proofs does not match the request")
    past, future = get_marker_versions(start, end, current_epoch)
    if not (len(past) == len(proof.past_marker_vrf_proofs)
            == len(proof.existence_of_past_marker_proofs)):
        raise EpochOrVersionInvalid("wrong number of past marker proofs")
    if not (len(future) == len(proof.future_marker_vrf_proofs)
            == len(proof.non_existence_of_future_marker_proofs)):
        raise EpochOrVersionInvalid("wrong number of future marker proofs")
    return past, future


def _verify_update(check: LabelVerifier, update: UpdateProof,
                   allow_missing_values: bool) -> VerifyResult:
    if allow_missing_values and update.value == b"":  # a tombstone: the value is gone
        check.existence(True, update.version, update.existence_vrf_proof, update.existence_proof)
    else:
        leaf = hashing.leaf_hash_with_value(update.value, update.epoch, update.commitment_nonce)
        check.existence(True, update.version, update.existence_vrf_proof, update.existence_proof,
                        leaf=leaf)
    if update.version > 1:
        # the previous version went stale in the same epoch this one was published
        if update.previous_version_proof is None or update.previous_version_vrf_proof is None:
            raise MalformedProof("UpdateProof lacks the previous version's proof")
        stale_leaf = hashing.leaf_hash_with_commitment(hashing.stale_azks_value(), update.epoch)
        check.existence(False, update.version - 1, update.previous_version_vrf_proof,
                        update.previous_version_proof, leaf=stale_leaf)
    return VerifyResult(epoch=update.epoch, version=update.version, value=update.value)


def key_history_verify(vrf_public_key: bytes, root_hash: bytes, current_epoch: int,
                       akd_label: bytes, proof: HistoryProof | bytes, *,
                       params: HistoryParams | None = None,
                       allow_missing_values: bool = False) -> list[VerifyResult]:
    """Every version in the proof, newest first, checked against the root hash of
    ``current_epoch``; raises a KeyTransparencyError if any check fails. ``params`` is what was
    asked for (default Complete). ``allow_missing_values``: an empty value (a tombstone) skips
    the leaf-value comparison (AKD's HistoryVerificationParams::AllowMissingValues)."""
    if isinstance(proof, bytes):
        proof = HistoryProof.from_bytes(proof)
    params = params if params is not None else HistoryParams.complete()
    past, future = _check_shape(current_epoch, proof, params)
    check = LabelVerifier(vrf_public_key, root_hash, akd_label)
    results: list[VerifyResult] = []
    previous_epoch: int | None = None
    for update in proof.update_proofs:
        if previous_epoch is not None and update.epoch > previous_epoch:
            raise EpochOrVersionInvalid("newer versions must not have older epochs")
        previous_epoch = update.epoch
        results.append(_verify_update(check, update, allow_missing_values))
    for version, vrf_proof, member in zip(past, proof.past_marker_vrf_proofs,
                                          proof.existence_of_past_marker_proofs, strict=True):
        check.existence(True, version, vrf_proof, member)
    for version, vrf_proof, absent in zip(future, proof.future_marker_vrf_proofs,
                                          proof.non_existence_of_future_marker_proofs,
                                          strict=True):
        check.nonexistence(True, version, vrf_proof, absent)
    return results
