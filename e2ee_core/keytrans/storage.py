"""Directory storage: a Protocol and its in-memory implementation (for tests and small use).

The directory writes one epoch at a time with :meth:`DirectoryStorage.commit_epoch` (tree nodes
changed, label states appended, the new root hash), so an implementation can make each epoch
one transaction. Only the latest tree is kept: proofs are generated against the current epoch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from e2ee_core.keytrans.node_label import NodeLabel


@dataclass(frozen=True, slots=True)
class TreeNode:
    """A node of the Patricia tree. ``value`` is what the parent hashes: for a leaf,
    H(azks_value || u64be(epoch)); for an interior node, the hash of its children.
    ``epoch`` is the last epoch the node changed in (a leaf's: when it was inserted) and
    ``min_descendant_epoch`` the oldest leaf below it; append-only proofs use both to find the
    subtrees an epoch left unchanged (as AKD's TreeNode does). ``azks_value`` is a leaf's
    commitment (or stale value) before the epoch is mixed in."""

    label: NodeLabel
    value: bytes
    left: NodeLabel | None = None
    right: NodeLabel | None = None
    epoch: int = 0
    min_descendant_epoch: int = 0
    azks_value: bytes | None = None

    @property
    def is_leaf(self) -> bool:
        return self.azks_value is not None

    def child(self, direction: int) -> NodeLabel | None:
        return self.right if direction else self.left


@dataclass(frozen=True, slots=True)
class ValueState:
    """One published version of a label's value."""

    version: int
    epoch: int
    value: bytes


@dataclass(frozen=True, slots=True)
class EpochHead:
    """A published epoch and its root hash."""

    epoch: int
    root_hash: bytes


class DirectoryStorage(Protocol):
    """What :class:`~e2ee_core.keytrans.directory.Directory` needs from a store."""

    def get_node(self, label: NodeLabel) -> TreeNode | None:
        """The current node at ``label``, if any."""
        ...

    def get_states(self, akd_label: bytes) -> list[ValueState]:
        """Every version of ``akd_label``, oldest first (empty if never published)."""
        ...

    def latest_epoch(self) -> EpochHead | None:
        """The newest published epoch, or None before the first."""
        ...

    def epoch_head(self, epoch: int) -> EpochHead | None:
        """A published epoch's root hash."""
        ...

    def commit_epoch(self, head: EpochHead, nodes: Iterable[TreeNode],
                     states: Mapping[bytes, ValueState]) -> None:
        """Atomically: write ``nodes``, append ``states`` (one new version per label) and
        record ``head`` as the latest epoch."""
        ...

    def snapshot(self) -> AbstractContextManager[None]:
        """Reads made inside see one committed state, so a proof is made from one epoch even
        while another instance publishes the next."""
        ...


class MemoryDirectoryStorage:
    """DirectoryStorage in process memory, for one thread (a publish and a proof must not run
    at the same time)."""

    def __init__(self) -> None:
        self._nodes: dict[NodeLabel, TreeNode] = {}
        self._states: dict[bytes, list[ValueState]] = {}
        self._heads: dict[int, EpochHead] = {}
        self._latest: EpochHead | None = None

    def get_node(self, label: NodeLabel) -> TreeNode | None:
        return self._nodes.get(label)

    def get_states(self, akd_label: bytes) -> list[ValueState]:
        return list(self._states.get(akd_label, ()))

    def latest_epoch(self) -> EpochHead | None:
        return self._latest

    def epoch_head(self, epoch: int) -> EpochHead | None:
        return self._heads.get(epoch)

    def commit_epoch(self, head: EpochHead, nodes: Iterable[TreeNode],
                     states: Mapping[bytes, ValueState]) -> None:
        for node in nodes:
            self._nodes[node.label] = node
        for akd_label, state in states.items():
            self._states.setdefault(akd_label, []).append(state)
        self._heads[head.epoch] = head
        self._latest = head

    def snapshot(self) -> AbstractContextManager[None]:
        return contextlib.nullcontext()
