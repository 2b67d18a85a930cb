"""AKD tree node labels (akd_core types/node_label): up to 256 significant bits of a 32-byte value.

Bit 0 is the top bit of the first byte. Two labels are equal only if their lengths and all 32
bytes match (bits beyond the length included), as in AKD.
"""

from __future__ import annotations

from dataclasses import dataclass

from e2ee_core.keytrans import consts, hashing

_ALL_BITS = consts.NODE_LABEL_BITS


@dataclass(frozen=True, slots=True)
class NodeLabel:
    """A node's position in the Patricia tree: ``label_val`` (32 bytes), ``label_len`` bits."""

    label_val: bytes
    label_len: int

    def __post_init__(self) -> None:
        if len(self.label_val) != consts.NODE_LABEL_LEN or not 0 <= self.label_len <= _ALL_BITS:
            raise ValueError("a NodeLabel is 32 bytes and 0..256 bits")  # programming error

    def to_bytes(self) -> bytes:
        """u32be(label_len) || label_val (NodeLabel::to_bytes)."""
        return self.label_len.to_bytes(4, "big") + self.label_val

    def value(self) -> bytes:
        """H(to_bytes()): the label's contribution to its parent's hash (NodeLabel::value)."""
        return hashing.node_label_value(self.to_bytes())

    def _int(self) -> int:
        return int.from_bytes(self.label_val, "big")

    def bit(self, index: int) -> int:
        """Bit ``index`` (0 = most significant) of label_val; index must be < label_len."""
        return (self._int() >> (_ALL_BITS - 1 - index)) & 1

    def is_prefix_of(self, other: NodeLabel) -> bool:
        """The first label_len bits of both labels agree and this one is not longer."""
        if self.label_len > other.label_len:
            return False
        return (self._int() ^ other._int()) >> (_ALL_BITS - self.label_len) == 0

    def prefix(self, length: int) -> NodeLabel:
        """The first ``length`` bits, the rest zeroed (NodeLabel::get_prefix; >= 256: itself)."""
        if length >= _ALL_BITS:
            return self
        mask = ((1 << length) - 1) << (_ALL_BITS - length)
        return NodeLabel((self._int() & mask).to_bytes(consts.NODE_LABEL_LEN, "big"), length)

    def longest_common_prefix(self, other: NodeLabel) -> NodeLabel:
        """get_longest_common_prefix: EMPTY_LABEL if either is EMPTY_LABEL."""
        if EMPTY_LABEL in (self, other):
            return EMPTY_LABEL
        shorter = min(self.label_len, other.label_len)
        diff = self._int() ^ other._int()
        common = _ALL_BITS - diff.bit_length()
        return self.prefix(min(common, shorter))

    def child_direction(self, descendant: NodeLabel) -> int:
        """The bit of ``descendant`` just below this label: 0 = left subtree, 1 = right."""
        return descendant.bit(self.label_len)

    @classmethod
    def from_vrf_output(cls, beta: bytes) -> NodeLabel:
        """(beta[0:32], 256): the leaf label a VRF output names (Output::to_truncated_bytes)."""
        return cls(beta[: consts.NODE_LABEL_LEN], _ALL_BITS)


ROOT_LABEL = NodeLabel(bytes(consts.NODE_LABEL_LEN), 0)
# Stands for a missing child of the root (Configuration::empty_label).
EMPTY_LABEL = NodeLabel(b"\x01" * consts.NODE_LABEL_LEN, 0)
