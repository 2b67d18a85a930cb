"""The AZKS tree (akd/src/append_only_zks.rs, tree_node.rs): a compressed binary Patricia tree
over 256-bit VRF labels, with AKD's WhatsApp v1 node hashing.

The root (label length 0) may lack a child; a missing child counts as (EMPTY_LABEL,
empty node value). Every other interior node has two children and the label of their longest
common prefix. Leaves are never removed or changed (append-only): each version of a user's
value and each retirement of a version is a new leaf.
"""

from __future__ import annotations

from typing import Protocol

from e2ee_core.keytrans import consts, hashing
from e2ee_core.keytrans.errors import DirectoryError, InvalidUpdate
from e2ee_core.keytrans.node_label import EMPTY_LABEL, ROOT_LABEL, NodeLabel
from e2ee_core.keytrans.proofs import (
    AzksElement,
    Direction,
    MembershipProof,
    NonMembershipProof,
    SiblingProof,
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
    """One epoch's insertions over ``source``, buffered until :meth:`finish`."""

    def __init__(self, source: NodeSource) -> None:
        self._source = source
        self._changed: dict[NodeLabel, TreeNode] = {}

    def get_node(self, label: NodeLabel) -> TreeNode | None:
        return self._changed.get(label) or self._source.get_node(label)

    def _put(self, node: TreeNode) -> None:
        self._changed[node.label] = node

    def insert_leaf(self, label: NodeLabel, azks_value: bytes, epoch: int) -> None:
        """Add the leaf ``label`` holding ``azks_value``, stamped with ``epoch``."""
        if label.label_len != consts.NODE_LABEL_BITS:
            raise ValueError("leaves have 256-bit labels")  # programming error
        leaf = TreeNode(label, hashing.leaf_hash_with_commitment(azks_value, epoch))
        node = _root(self)
        while True:
            direction = label.bit(node.label.label_len)
            child_label = node.child(direction)
            if child_label is not None and child_label.is_prefix_of(label):
                if child_label == label:
                    raise InvalidUpdate("this leaf is already in the tree")
                self._put(node)  # on the path: its value is recomputed in finish()
                node = _get(self, child_label)
                continue
            if child_label is None:
                replacement = label
            else:  # split the edge with an interior node at the common prefix
                lcp = child_label.longest_common_prefix(label)
                pair = {child_label.bit(lcp.label_len): child_label,
                        label.bit(lcp.label_len): label}
                self._put(TreeNode(lcp, b"", left=pair[0], right=pair[1]))
                replacement = lcp
            self._put(_with_child(node, direction, replacement))
            self._put(leaf)
            return

    def finish(self) -> tuple[list[TreeNode], bytes]:
        """Recompute every changed interior node's value, children first; the nodes to store
        and the new root hash."""
        for label in sorted(self._changed, key=lambda lab: -lab.label_len):
            node = self._changed[label]
            if node.left is None and node.right is None:
                continue  # a leaf (or an empty root): its value is already final
            left, right = _element(self, node.left), _element(self, node.right)
            value = hashing.parent_hash(left.value, left.label.value(),
                                        right.value, right.label.value())
            self._changed[label] = TreeNode(label, value, node.left, node.right)
        return list(self._changed.values()), root_hash(self)


def _with_child(node: TreeNode, direction: int, child: NodeLabel) -> TreeNode:
    if direction:
        return TreeNode(node.label, node.value, node.left, child)
    return TreeNode(node.label, node.value, child, node.right)


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
