"""AKD's verification building blocks (akd_core/src/verify/base.rs), WhatsApp v1 hashing.

Membership: hash a node up its Merkle path to the published root. Non-membership: the label's
longest prefix in the tree is a member whose two children both differ from the label. Labels
are tied to (user label, freshness, version) by an ECVRF proof.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from e2ee_core.keytrans import ecvrf, hashing
from e2ee_core.keytrans.errors import (
    InvalidVrfProof,
    MembershipProofFailed,
    NonMembershipProofFailed,
)
from e2ee_core.keytrans.node_label import EMPTY_LABEL, ROOT_LABEL, NodeLabel
from e2ee_core.keytrans.proofs import Direction, MembershipProof, NonMembershipProof


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """A verified (epoch, version, value) of a label; ``epoch`` is when it was published."""

    epoch: int
    version: int
    value: bytes


def membership_root(proof: MembershipProof) -> bytes:
    """The root hash the membership proof's path leads to."""
    cur_val, cur_label = proof.hash_val, proof.label
    for step in reversed(proof.sibling_proofs):
        sibling = step.sibling
        if step.direction == Direction.LEFT:
            cur_val = hashing.parent_hash(cur_val, cur_label.value(),
                                          sibling.value, sibling.label.value())
        else:
            cur_val = hashing.parent_hash(sibling.value, sibling.label.value(),
                                          cur_val, cur_label.value())
        cur_label = step.label
    return hashing.root_hash(cur_val, ROOT_LABEL.value())


def verify_membership(root_hash: bytes, proof: MembershipProof) -> None:
    """The node (proof.label, proof.hash_val) is in the tree whose root hash is ``root_hash``."""
    if not hmac.compare_digest(membership_root(proof), root_hash):
        raise MembershipProofFailed("membership proof does not lead to the root hash")


def verify_nonmembership(root_hash: bytes, proof: NonMembershipProof) -> None:
    """proof.label is not in the tree whose root hash is ``root_hash``."""
    left, right = proof.longest_prefix_children
    if proof.label in (left.label, right.label):
        raise NonMembershipProofFailed("the label is one of the longest prefix's children")
    if not proof.longest_prefix.is_prefix_of(proof.label):
        raise NonMembershipProofFailed("the longest prefix is not a prefix of the label")
    lcp = left.label.longest_common_prefix(right.label)
    if lcp == EMPTY_LABEL:
        lcp = ROOT_LABEL  # the root with one child missing
    if proof.longest_prefix != lcp:
        raise NonMembershipProofFailed("the longest prefix is not the children's common prefix")
    lcp_hash = hashing.parent_hash(left.value, left.label.value(),
                                   right.value, right.label.value())
    member = proof.longest_prefix_membership_proof
    if member.label != lcp or not hmac.compare_digest(member.hash_val, lcp_hash):
        raise NonMembershipProofFailed("the children do not hash to the longest prefix node")
    verify_membership(root_hash, member)


@dataclass(frozen=True, slots=True)
class LabelVerifier:
    """Checks about one user label in one epoch: its VRF key, the epoch's root hash, the label.

    One verifier serves one proof check (one ``lookup_verify`` or ``key_history_verify``
    call). Within it, a VRF proof that was already verified for the same (freshness, version)
    is not verified again. That happens when a version is its own marker (a power of two:
    version 1, the most common, included), so the lookup's existence and marker proofs carry
    the same VRF proof. The result is the same, since ECVRF verification is deterministic."""

    vrf_public_key: bytes
    root_hash: bytes
    akd_label: bytes
    _betas: dict[tuple[bool, int, bytes], bytes] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def label(self, fresh: bool, version: int, vrf_proof: bytes, node_label: NodeLabel) -> None:
        """``node_label`` is the VRF label of (akd_label, freshness, version) (verify_label)."""
        key = (fresh, version, vrf_proof)
        beta = self._betas.get(key)
        if beta is None:
            alpha = hashing.vrf_alpha(self.akd_label, fresh, version)
            beta = ecvrf.verify(self.vrf_public_key, alpha, vrf_proof)
            self._betas[key] = beta
        if NodeLabel.from_vrf_output(beta) != node_label:
            raise InvalidVrfProof("the VRF output does not match the proof's label")

    def existence(self, fresh: bool, version: int, vrf_proof: bytes, proof: MembershipProof,
                  *, leaf: bytes | None = None) -> None:
        """The (label, freshness, version) leaf is in the tree, holding ``leaf`` if given
        (verify_existence, verify_existence_with_val / _with_commitment)."""
        if leaf is not None and not hmac.compare_digest(leaf, proof.hash_val):
            raise MembershipProofFailed("the leaf hash does not match the value and epoch")
        self.label(fresh, version, vrf_proof, proof.label)
        verify_membership(self.root_hash, proof)

    def nonexistence(self, fresh: bool, version: int, vrf_proof: bytes,
                     proof: NonMembershipProof) -> None:
        """The (label, freshness, version) leaf is not in the tree (verify_nonexistence)."""
        self.label(fresh, version, vrf_proof, proof.label)
        verify_nonmembership(self.root_hash, proof)
