"""The directory (server side of AKD, akd/src/directory.rs): epochs of label -> value updates,
and lookup and history proofs in AKD's WhatsApp v1 format, checked by :mod:`.lookup` and
:mod:`.history`.

Publishing version v of a label in epoch e inserts the fresh leaf VRF(label, fresh, v) holding
a commitment to the value, and for v > 1 the stale leaf VRF(label, stale, v - 1): the tree only
grows. Proofs are made against the latest epoch. Sans-I/O apart from the storage it is given.
"""

from __future__ import annotations

from collections.abc import Mapping

from e2ee_core.keytrans import consts, ecvrf, hashing, tree
from e2ee_core.keytrans.errors import DirectoryError, InvalidUpdate, UnknownLabel
from e2ee_core.keytrans.history import HistoryParams, get_marker_versions
from e2ee_core.keytrans.lookup import marker_version
from e2ee_core.keytrans.node_label import NodeLabel
from e2ee_core.keytrans.proofs import (
    AppendOnlyProof,
    HistoryProof,
    LookupProof,
    MembershipProof,
    NonMembershipProof,
    UpdateProof,
)
from e2ee_core.keytrans.storage import DirectoryStorage, EpochHead, ValueState


class Directory:
    """An auditable key directory over ``storage``, placing labels with the VRF
    ``vrf_secret_key`` and hiding values behind commitments keyed by ``commitment_key`` (by
    default H(vrf_secret_key), as AKD's Directory::derive_commitment_key does)."""

    def __init__(self, storage: DirectoryStorage, vrf_secret_key: bytes,
                 commitment_key: bytes | None = None) -> None:
        self._storage = storage
        self._vrf_secret_key = vrf_secret_key
        self._commitment_key = (commitment_key if commitment_key is not None
                                else hashing.h(vrf_secret_key))
        self.vrf_public_key = ecvrf.public_key(vrf_secret_key)

    # -- labels ------------------------------------------------------------------------------
    def _alpha(self, akd_label: bytes, fresh: bool, version: int) -> bytes:
        return hashing.vrf_alpha(akd_label, fresh, version)

    def node_label(self, akd_label: bytes, fresh: bool, version: int) -> NodeLabel:
        """Where (label, freshness, version) sits in the tree: the VRF output's first 32 bytes."""
        beta = ecvrf.evaluate(self._vrf_secret_key, self._alpha(akd_label, fresh, version),
                              public_key_bytes=self.vrf_public_key)
        return NodeLabel.from_vrf_output(beta)

    def _vrf_proof(self, akd_label: bytes, fresh: bool, version: int) -> tuple[bytes, NodeLabel]:
        """The VRF proof for (label, freshness, version) and the node label it proves."""
        trace = ecvrf.prove_with_trace(self._vrf_secret_key,
                                       self._alpha(akd_label, fresh, version))
        return trace.pi, NodeLabel.from_vrf_output(trace.beta)

    def _nonce(self, fresh_label: NodeLabel, version: int, value: bytes) -> bytes:
        return hashing.commitment_nonce(self._commitment_key, fresh_label.to_bytes(), version,
                                        value)

    # -- epochs ------------------------------------------------------------------------------
    def current(self) -> EpochHead:
        """The latest epoch and its root hash (epoch 0, the empty tree, before any publish)."""
        head = self._storage.latest_epoch()
        return head if head is not None else EpochHead(0, tree.root_hash(tree.EMPTY_SOURCE))

    def publish(self, updates: Mapping[bytes, bytes]) -> EpochHead:
        """Start the next epoch with ``updates`` (label -> new value) and return its head.
        A value equal to the label's current one is skipped, as in AKD; unlike AKD, the epoch
        advances even when nothing changed, so clients can tell a quiet directory from a
        stale view."""
        epoch = self.current().epoch + 1
        pending = tree.PendingTree(self._storage)
        states: dict[bytes, ValueState] = {}
        for akd_label, value in updates.items():
            if len(akd_label) > consts.MAX_AKD_LABEL_BYTES or len(value) > consts.MAX_VALUE_BYTES:
                raise InvalidUpdate("label or value too long")
            previous = self._storage.get_states(akd_label)
            if previous and previous[-1].value == value:
                continue
            version = previous[-1].version + 1 if previous else 1
            fresh_label = self.node_label(akd_label, True, version)
            nonce = self._nonce(fresh_label, version, value)
            pending.insert_leaf(fresh_label, hashing.commitment(value, nonce), epoch)
            if version > 1:
                pending.insert_leaf(self.node_label(akd_label, False, version - 1),
                                    hashing.stale_azks_value(), epoch)
            states[akd_label] = ValueState(version, epoch, value)
        nodes, root_hash = pending.finish()
        head = EpochHead(epoch, root_hash)
        self._storage.commit_epoch(head, nodes, states)
        return head

    # -- proofs ------------------------------------------------------------------------------
    def _states(self, akd_label: bytes) -> list[ValueState]:
        states = self._storage.get_states(akd_label)
        if not states:
            raise UnknownLabel("no value was published for this label")
        return states

    def _existence(self, akd_label: bytes, fresh: bool,
                   version: int) -> tuple[bytes, MembershipProof]:
        pi, label = self._vrf_proof(akd_label, fresh, version)
        return pi, tree.membership_proof(self._storage, label)

    def _nonexistence(self, akd_label: bytes, fresh: bool,
                      version: int) -> tuple[bytes, NonMembershipProof]:
        pi, label = self._vrf_proof(akd_label, fresh, version)
        return pi, tree.nonmembership_proof(self._storage, label)

    def append_only_proof(self, start_epoch: int, end_epoch: int) -> AppendOnlyProof:
        """Proof that the tree only grew from ``start_epoch`` to ``end_epoch`` (one step per
        epoch, AKD's format), made from the latest tree."""
        with self._storage.snapshot():
            return self._append_only_proof(start_epoch, end_epoch)

    def _append_only_proof(self, start_epoch: int, end_epoch: int) -> AppendOnlyProof:
        latest = self.current().epoch
        if not 0 <= start_epoch < end_epoch <= latest:
            raise DirectoryError("append-only proofs need start < end <= the latest epoch")
        steps = tuple(tree.append_only_step(self._storage, epoch)
                      for epoch in range(start_epoch, end_epoch))
        return AppendOnlyProof(steps, tuple(range(start_epoch, end_epoch)))

    def epoch_hash(self, epoch: int) -> bytes:
        """The root hash published for ``epoch`` (epoch 0: the empty tree)."""
        if epoch == 0:
            return tree.root_hash(tree.EMPTY_SOURCE)
        head = self._storage.epoch_head(epoch)
        if head is None:
            raise DirectoryError("no such epoch")
        return head.root_hash

    def lookup(self, akd_label: bytes) -> tuple[EpochHead, LookupProof]:
        """The latest epoch and a proof of the label's current value in it."""
        with self._storage.snapshot():
            return self._lookup(akd_label)

    def _lookup(self, akd_label: bytes) -> tuple[EpochHead, LookupProof]:
        head = self.current()
        state = self._states(akd_label)[-1]
        existence_vrf, existence = self._existence(akd_label, True, state.version)
        marker_vrf, marker = self._existence(akd_label, True, marker_version(state.version))
        freshness_vrf, freshness = self._nonexistence(akd_label, False, state.version)
        return head, LookupProof(
            epoch=state.epoch, value=state.value, version=state.version,
            existence_vrf_proof=existence_vrf, existence_proof=existence,
            marker_vrf_proof=marker_vrf, marker_proof=marker,
            freshness_vrf_proof=freshness_vrf, freshness_proof=freshness,
            commitment_nonce=self._nonce(existence.label, state.version, state.value))

    def key_history(self, akd_label: bytes,
                    params: HistoryParams | None = None) -> tuple[EpochHead, HistoryProof]:
        """The latest epoch and a proof of the label's versions (newest first)."""
        with self._storage.snapshot():
            return self._key_history(akd_label, params)

    def _key_history(self, akd_label: bytes,
                     params: HistoryParams | None) -> tuple[EpochHead, HistoryProof]:
        head = self.current()
        states = self._states(akd_label)[::-1]
        if params is not None and params.most_recent is not None:
            states = states[: params.most_recent]
        updates = []
        for state in states:
            vrf, existence = self._existence(akd_label, True, state.version)
            previous_vrf, previous = (self._existence(akd_label, False, state.version - 1)
                                      if state.version > 1 else (None, None))
            updates.append(UpdateProof(
                epoch=state.epoch, value=state.value, version=state.version,
                existence_vrf_proof=vrf, existence_proof=existence,
                previous_version_vrf_proof=previous_vrf, previous_version_proof=previous,
                commitment_nonce=self._nonce(existence.label, state.version, state.value)))
        past, future = get_marker_versions(states[-1].version, states[0].version, head.epoch)
        past_proofs = [self._existence(akd_label, True, v) for v in past]
        future_proofs = [self._nonexistence(akd_label, True, v) for v in future]
        return head, HistoryProof(
            update_proofs=tuple(updates),
            past_marker_vrf_proofs=tuple(p for p, _ in past_proofs),
            existence_of_past_marker_proofs=tuple(m for _, m in past_proofs),
            future_marker_vrf_proofs=tuple(p for p, _ in future_proofs),
            non_existence_of_future_marker_proofs=tuple(m for _, m in future_proofs))
