"""The AZKS tree (akd/src/append_only_zks.rs, tree_node.rs): a compressed binary Patricia tree
over 256-bit VRF labels, with AKD's WhatsApp v1 node hashing.

The root (label length 0) may lack a child; a missing child counts as (EMPTY_LABEL,
empty node value). Every other interior node has two children and the label of their longest
common prefix. Leaves are never removed or changed (append-only): each version of a user's
value and each retirement of a version is a new leaf.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Protocol

from e2ee_core.keytrans import consts, hashing
from e2ee_core.keytrans.errors import (
    AppendOnlyProofFailed,
    DirectoryError,
    EpochOrVersionInvalid,
    InvalidUpdate,
    KeyTransparencyError,
    MalformedProof,
)
from e2ee_core.keytrans.node_label import EMPTY_LABEL, ROOT_LABEL, NodeLabel
from e2ee_core.keytrans.proofs import (
    AppendOnlyProof,
    AzksElement,
    Direction,
    MembershipProof,
    NonMembershipProof,
    SiblingProof,
    SingleAppendOnlyProof,
)
from e2ee_core.keytrans.storage import TreeNode

# H(H(00) || lv(EMPTY_LABEL)): the value a missing child contributes (empty_node_hash).
EMPTY_NODE_VALUE = hashing.h(hashing.h(consts.EMPTY_VALUE) + EMPTY_LABEL.value())
EMPTY_ROOT = TreeNode(ROOT_LABEL, hashing.empty_root_value())


class NodeSource(Protocol):
    def get_node(self, label: NodeLabel) -> TreeNode | None: ...


def _get(source: NodeSource, label: NodeLabel) -> TreeNode:
    node = source.get_node(label)
    if node is None:
        raise DirectoryError("the tree is inconsistent: a child node is missing")
    return node


def _element(source: NodeSource, label: NodeLabel | None) -> AzksElement:
    if label is None:
        return AzksElement(EMPTY_LABEL, EMPTY_NODE_VALUE)
    return AzksElement(label, _get(source, label).value)


def _root(source: NodeSource) -> TreeNode:
    return source.get_node(ROOT_LABEL) or EMPTY_ROOT


def root_hash(source: NodeSource) -> bytes:
    """The published hash of the tree: H(root value || lv(ROOT_LABEL))."""
    return hashing.root_hash(_root(source).value, ROOT_LABEL.value())


class PendingTree:
    """One epoch's insertions over ``source``, buffered until :meth:`finish`.

    ``strict`` (the auditor's rebuild from untrusted elements) turns structural impossibilities
    -- an element at the root, one element a prefix of another, a duplicate -- into
    MalformedProof instead of InvalidUpdate."""

    def __init__(self, source: NodeSource, *, strict: bool = False) -> None:
        self._source = source
        self._changed: dict[NodeLabel, TreeNode] = {}
        self._error: type[KeyTransparencyError] = MalformedProof if strict else InvalidUpdate

    def get_node(self, label: NodeLabel) -> TreeNode | None:
        return self._changed.get(label) or self._source.get_node(label)

    def _put(self, node: TreeNode) -> None:
        self._changed[node.label] = node

    def insert_leaf(self, label: NodeLabel, azks_value: bytes, epoch: int) -> None:
        """Add the leaf ``label`` holding ``azks_value``, stamped with ``epoch``."""
        if label.label_len != consts.NODE_LABEL_BITS:
            raise ValueError("leaves have 256-bit labels")  # programming error
        self.insert_node(TreeNode(label, hashing.leaf_hash_with_commitment(azks_value, epoch),
                                  epoch=epoch, min_descendant_epoch=epoch,
                                  azks_value=azks_value))

    def insert_node(self, new: TreeNode) -> None:
        """Add ``new`` (a leaf, or for the auditor any subtree root given by label and value)."""
        label = new.label
        if label.label_len == 0:
            raise self._error("an element cannot sit at the root")
        node = _root(self)
        while True:
            if node.label != ROOT_LABEL and node.left is None and node.right is None:
                raise self._error("an element lies inside another element's subtree")
            direction = label.bit(node.label.label_len)
            child_label = node.child(direction)
            if child_label is not None and child_label.is_prefix_of(label):
                if child_label == label:
                    raise self._error("this node is already in the tree")
                self._put(_touched(node, new.epoch))  # on the path: recomputed in finish()
                node = _get(self, child_label)
                continue
            if child_label is None:
                replacement = label
            else:  # split the edge with an interior node at the common prefix
                lcp = child_label.longest_common_prefix(label)
                if lcp == label:
                    raise self._error("an element lies above another element")
                pair = {child_label.bit(lcp.label_len): child_label,
                        label.bit(lcp.label_len): label}
                self._put(TreeNode(lcp, b"", left=pair[0], right=pair[1], epoch=new.epoch))
                replacement = lcp
            self._put(_touched(_with_child(node, direction, replacement), new.epoch))
            self._put(new)
            return

    def finish(self) -> tuple[list[TreeNode], bytes]:
        """Recompute every changed interior node's value, children first; the nodes to store
        and the new root hash."""
        for label in sorted(self._changed, key=lambda lab: -lab.label_len):
            node = self._changed[label]
            if node.left is None and node.right is None:
                continue  # a leaf (or an empty root): its value is already final
            children = [_get(self, c) for c in (node.left, node.right) if c is not None]
            left, right = _element(self, node.left), _element(self, node.right)
            value = hashing.parent_hash(left.value, left.label.value(),
                                        right.value, right.label.value())
            self._changed[label] = TreeNode(
                node.label, value, node.left, node.right, node.epoch,
                min(c.min_descendant_epoch for c in children), node.azks_value)
        return list(self._changed.values()), root_hash(self)


def _touched(node: TreeNode, epoch: int) -> TreeNode:
    if node.epoch >= epoch:
        return node  # already touched in this epoch (TreeNode is immutable)
    return TreeNode(node.label, node.value, node.left, node.right, epoch,
                    node.min_descendant_epoch, node.azks_value)


def _with_child(node: TreeNode, direction: int, child: NodeLabel) -> TreeNode:
    left, right = (node.left, child) if direction else (child, node.right)
    return TreeNode(node.label, node.value, left, right, node.epoch, node.min_descendant_epoch,
                    node.azks_value)


# -- append-only proofs (akd/src/append_only_zks.rs, akd/src/auditor.rs) -----------------------

def append_only_step(source: NodeSource, start_epoch: int) -> SingleAppendOnlyProof:
    """What changed from ``start_epoch`` to the next epoch: the roots of the subtrees left
    unchanged (with their values) and the leaves inserted (with their azks values)."""
    end_epoch = start_epoch + 1
    root = _root(source)
    children = [c for c in (root.left, root.right) if c is not None]
    if root.epoch <= start_epoch:
        # Nothing changed (an epoch without updates): the root's children are unchanged.
        # AKD sends nothing here, since it never has such epochs; its verifier would then
        # rebuild an empty tree, so we send the children to keep the proof verifiable.
        return SingleAppendOnlyProof(tuple(_element(source, c) for c in children), ())
    unchanged: list[AzksElement] = []
    inserted: list[AzksElement] = []
    stack = list(reversed(children))
    while stack:
        node = _get(source, stack.pop())
        if node.epoch <= start_epoch:
            unchanged.append(AzksElement(node.label, node.value))
        elif node.min_descendant_epoch > end_epoch:
            continue  # everything below arrived later
        elif node.azks_value is not None:
            inserted.append(AzksElement(node.label, node.azks_value))
        else:
            stack.extend(c for c in (node.right, node.left) if c is not None)
    return SingleAppendOnlyProof(tuple(unchanged), tuple(inserted))


class _NoNodes:
    def get_node(self, label: NodeLabel) -> TreeNode | None:
        return None


EMPTY_SOURCE = _NoNodes()


def _rebuilt_root_hash(elements: list[TreeNode]) -> bytes:
    pending = PendingTree(EMPTY_SOURCE, strict=True)
    for element in elements:
        pending.insert_node(element)
    _, digest = pending.finish()
    return digest


def verify_append_only_step(proof: SingleAppendOnlyProof, start_hash: bytes, end_hash: bytes,
                            end_epoch: int) -> None:
    """The tree with root ``start_hash`` grew into the one with root ``end_hash`` in
    ``end_epoch`` only by the proof's inserted leaves (AKD verify_consecutive_append_only)."""
    unchanged = [TreeNode(e.label, e.value) for e in proof.unchanged_nodes]
    if not hmac.compare_digest(_rebuilt_root_hash(unchanged), start_hash):
        raise AppendOnlyProofFailed("the unchanged nodes do not rebuild the start root")
    inserted = []
    for leaf in proof.inserted:
        if leaf.label.label_len != consts.NODE_LABEL_BITS:
            raise MalformedProof("an inserted leaf's label is not 256 bits")
        inserted.append(TreeNode(leaf.label,
                                 hashing.leaf_hash_with_commitment(leaf.value, end_epoch)))
    if not hmac.compare_digest(_rebuilt_root_hash(unchanged + inserted), end_hash):
        raise AppendOnlyProofFailed("unchanged and inserted nodes do not rebuild the end root")


def audit_verify(hashes: Sequence[bytes], proof: AppendOnlyProof) -> None:
    """``hashes`` are the root hashes of consecutive epochs proof.epochs[0] .. +len; each step
    must be append-only (AKD auditor::audit_verify)."""
    if len(proof.epochs) + 1 != len(hashes) or len(proof.epochs) != len(proof.proofs):
        raise EpochOrVersionInvalid("the append-only proof does not match the epochs given")
    for i, (step, epoch) in enumerate(zip(proof.proofs, proof.epochs, strict=True)):
        if i and epoch != proof.epochs[i - 1] + 1:
            raise EpochOrVersionInvalid("append-only proof epochs are not consecutive")
        verify_append_only_step(step, hashes[i], hashes[i + 1], epoch + 1)


def membership_proof(source: NodeSource, label: NodeLabel) -> MembershipProof:
    """Proof that the node ``label`` is in the tree (the root's proof has no siblings)."""
    node = _root(source)
    steps: list[SiblingProof] = []
    while node.label != label:
        if node.label.label_len >= consts.NODE_LABEL_BITS:
            raise DirectoryError("the label is not in the tree")
        direction = label.bit(node.label.label_len)
        child_label = node.child(direction)
        if child_label is None or not child_label.is_prefix_of(label):
            raise DirectoryError("the label is not in the tree")
        steps.append(SiblingProof(node.label, _element(source, node.child(1 - direction)),
                                  Direction(direction)))
        node = _get(source, child_label)
    return MembershipProof(label, node.value, tuple(steps))


def nonmembership_proof(source: NodeSource, label: NodeLabel) -> NonMembershipProof:
    """Proof that the leaf ``label`` is not in the tree: its longest prefix in the tree, that
    node's two children (neither is the label) and the prefix node's membership proof."""
    node = _root(source)
    while True:
        direction = label.bit(node.label.label_len)
        child_label = node.child(direction)
        if child_label is None or not child_label.is_prefix_of(label):
            break
        if child_label == label:
            raise DirectoryError("the label is in the tree")
        node = _get(source, child_label)
    children = (_element(source, node.left), _element(source, node.right))
    return NonMembershipProof(label, node.label, children, membership_proof(source, node.label))
