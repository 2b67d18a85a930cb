"""AKD's proof messages (akd_core/src/proto/specs/types.proto, proto2) as typed dataclasses.

The protobuf schema is built at run time (:mod:`e2ee_core.protobuf`, no generated code).
Decoding follows akd_core/src/proto/mod.rs: required fields, label_val minimised on the wire and
padded to 32 bytes, label_len <= 256, hashes exactly 32 bytes, direction masked with 0x0F and then
0 or 1, exactly two longest-prefix children, only the first sibling used. On top of AKD, sizes
and counts are bounded (consts) because proofs are untrusted input. Every failure is
:class:`MalformedProof`; ``to_bytes`` produces the canonical encoding AKD produces.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from e2ee_core import protobuf as pb
from e2ee_core.keytrans import consts
from e2ee_core.keytrans.errors import MalformedProof
from e2ee_core.keytrans.node_label import NodeLabel

_NODE_LABEL = [("label_val", 1, pb.BYTES, pb.OPT), ("label_len", 2, pb.U32, pb.OPT)]
_SCHEMA: dict[str, list[pb.Field]] = {
    "NodeLabel": list(_NODE_LABEL),
    "AzksElement": [("label", 1, pb.MSG, pb.OPT, "NodeLabel"), ("value", 2, pb.BYTES, pb.OPT)],
    "SiblingProof": [("label", 1, pb.MSG, pb.OPT, "NodeLabel"),
                     ("siblings", 2, pb.MSG, pb.REP, "AzksElement"),
                     ("direction", 3, pb.U32, pb.OPT)],
    "MembershipProof": [("label", 1, pb.MSG, pb.OPT, "NodeLabel"),
                        ("hash_val", 2, pb.BYTES, pb.OPT),
                        ("sibling_proofs", 3, pb.MSG, pb.REP, "SiblingProof")],
    "NonMembershipProof": [("label", 1, pb.MSG, pb.OPT, "NodeLabel"),
                           ("longest_prefix", 2, pb.MSG, pb.OPT, "NodeLabel"),
                           ("longest_prefix_children", 3, pb.MSG, pb.REP, "AzksElement"),
                           ("longest_prefix_membership_proof", 4, pb.MSG, pb.OPT,
                            "MembershipProof")],
    "LookupProof": [("epoch", 1, pb.U64, pb.OPT), ("value", 2, pb.BYTES, pb.OPT),
                    ("version", 3, pb.U64, pb.OPT),
                    ("existence_vrf_proof", 4, pb.BYTES, pb.OPT),
                    ("existence_proof", 5, pb.MSG, pb.OPT, "MembershipProof"),
                    ("marker_vrf_proof", 6, pb.BYTES, pb.OPT),
                    ("marker_proof", 7, pb.MSG, pb.OPT, "MembershipProof"),
                    ("freshness_vrf_proof", 8, pb.BYTES, pb.OPT),
                    ("freshness_proof", 9, pb.MSG, pb.OPT, "NonMembershipProof"),
                    ("commitment_nonce", 10, pb.BYTES, pb.OPT)],
    "UpdateProof": [("epoch", 1, pb.U64, pb.OPT), ("value", 2, pb.BYTES, pb.OPT),
                    ("version", 3, pb.U64, pb.OPT),
                    ("existence_vrf_proof", 4, pb.BYTES, pb.OPT),
                    ("existence_proof", 5, pb.MSG, pb.OPT, "MembershipProof"),
                    ("previous_version_vrf_proof", 6, pb.BYTES, pb.OPT),
                    ("previous_version_proof", 7, pb.MSG, pb.OPT, "MembershipProof"),
                    ("commitment_nonce", 8, pb.BYTES, pb.OPT)],
    "HistoryProof": [("update_proofs", 1, pb.MSG, pb.REP, "UpdateProof"),
                     ("past_marker_vrf_proofs", 2, pb.BYTES, pb.REP),
                     ("existence_of_past_marker_proofs", 3, pb.MSG, pb.REP, "MembershipProof"),
                     ("future_marker_vrf_proofs", 4, pb.BYTES, pb.REP),
                     ("non_existence_of_future_marker_proofs", 5, pb.MSG, pb.REP,
                      "NonMembershipProof")],
    "SingleAppendOnlyProof": [("inserted", 1, pb.MSG, pb.REP, "AzksElement"),
                              ("unchanged_nodes", 2, pb.MSG, pb.REP, "AzksElement")],
    "AppendOnlyProof": [("proofs", 1, pb.MSG, pb.REP, "SingleAppendOnlyProof"),
                        ("epochs", 2, pb.U64, pb.REP)],
}
_CLASSES = pb.build_messages("e2ee_keytrans_akd_types.proto", "e2ee.keytrans.akd", _SCHEMA)

DIRECTION_BLINDING_FACTOR = 0x0F  # akd_core proto/mod.rs masks direction with this


class Direction(enum.IntEnum):
    """Which child of its parent the node on the path is."""

    LEFT = 0
    RIGHT = 1


_DIRECTIONS = (Direction.LEFT, Direction.RIGHT)


def _parse(kind: str, data: bytes, limit: int = consts.MAX_PROOF_BYTES) -> Any:
    if len(data) > limit:
        raise MalformedProof(f"{kind} exceeds the size limit")
    return pb.parse(_CLASSES, kind, data, MalformedProof)


def _require(msg: Any, name: str) -> Any:
    # pb.require's check, inlined: decoding runs this ~230 times per lookup proof.
    if not msg.HasField(name):
        raise MalformedProof(f"{type(msg).__name__}.{name} is missing")
    return getattr(msg, name)


def _digest(raw: bytes, what: str) -> bytes:
    if len(raw) != consts.DIGEST_LEN:
        raise MalformedProof(f"{what} must be 32 bytes")
    return raw


def _bounded(raw: bytes, what: str) -> bytes:
    if len(raw) > consts.MAX_VALUE_BYTES:
        raise MalformedProof(f"{what} exceeds the size limit")
    return bytes(raw)


def _u64(value: int, what: str) -> int:
    if not 0 <= value <= consts.MAX_U64:
        raise ValueError(f"{what} is not a u64")  # programming error on the encode side
    return value


# -- NodeLabel, AzksElement --------------------------------------------------------------------

def _label_from_msg(msg: Any) -> NodeLabel:
    raw = _require(msg, "label_val")
    length = _require(msg, "label_len")
    if len(raw) > consts.NODE_LABEL_LEN:
        raise MalformedProof("NodeLabel.label_val is longer than 32 bytes")
    if length > consts.NODE_LABEL_BITS:
        raise MalformedProof("NodeLabel.label_len exceeds 256")
    return NodeLabel(bytes(raw).ljust(consts.NODE_LABEL_LEN, b"\x00"), length)


def _label_to_msg(label: NodeLabel, msg: Any) -> None:
    msg.label_val = label.label_val.rstrip(b"\x00")  # sent minimised (encode_minimum_label)
    msg.label_len = label.label_len


@dataclass(frozen=True, slots=True)
class AzksElement:
    """A tree node: its label and its 32-byte value."""

    label: NodeLabel
    value: bytes

    @classmethod
    def _from_msg(cls, msg: Any) -> AzksElement:
        return cls(_label_from_msg(_require(msg, "label")),
                   _digest(_require(msg, "value"), "AzksElement.value"))

    def _to_msg(self, msg: Any) -> None:
        _label_to_msg(self.label, msg.label)
        msg.value = self.value


# -- membership ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SiblingProof:
    """One level of a Merkle path: the parent's label, the sibling, and the side of the node on
    the path."""

    label: NodeLabel
    sibling: AzksElement
    direction: Direction

    @classmethod
    def _from_msg(cls, msg: Any) -> SiblingProof:
        raw_direction = _require(msg, "direction")
        label = _label_from_msg(_require(msg, "label"))
        if not msg.siblings:
            raise MalformedProof("SiblingProof.siblings is empty")
        direction = raw_direction & DIRECTION_BLINDING_FACTOR
        if direction > 1:
            raise MalformedProof("SiblingProof.direction is invalid")
        return cls(label, AzksElement._from_msg(msg.siblings[0]), _DIRECTIONS[direction])

    def _to_msg(self, msg: Any) -> None:
        _label_to_msg(self.label, msg.label)
        self.sibling._to_msg(msg.siblings.add())
        msg.direction = int(self.direction)


@dataclass(frozen=True, slots=True)
class MembershipProof:
    """A Merkle path from a node (label, hash_val) to the root; sibling_proofs[0] is at the
    root, the last entry just above the node."""

    label: NodeLabel
    hash_val: bytes
    sibling_proofs: tuple[SiblingProof, ...]

    @classmethod
    def _from_msg(cls, msg: Any) -> MembershipProof:
        label = _label_from_msg(_require(msg, "label"))
        hash_val = _digest(_require(msg, "hash_val"), "MembershipProof.hash_val")
        if len(msg.sibling_proofs) > consts.MAX_SIBLING_PROOFS:
            raise MalformedProof("MembershipProof has too many sibling proofs")
        return cls(label, hash_val,
                   tuple(SiblingProof._from_msg(s) for s in msg.sibling_proofs))

    def _to_msg(self, msg: Any) -> None:
        _label_to_msg(self.label, msg.label)
        msg.hash_val = self.hash_val
        for sibling in self.sibling_proofs:
            sibling._to_msg(msg.sibling_proofs.add())

    @classmethod
    def from_bytes(cls, data: bytes) -> MembershipProof:
        return cls._from_msg(_parse("MembershipProof", data))

    def to_bytes(self) -> bytes:
        return _serialize("MembershipProof", self)


@dataclass(frozen=True, slots=True)
class NonMembershipProof:
    """The label is absent: its longest prefix in the tree has two children, neither of which
    is the label, and that prefix node is a member."""

    label: NodeLabel
    longest_prefix: NodeLabel
    longest_prefix_children: tuple[AzksElement, AzksElement]
    longest_prefix_membership_proof: MembershipProof

    @classmethod
    def _from_msg(cls, msg: Any) -> NonMembershipProof:
        label = _label_from_msg(_require(msg, "label"))
        longest_prefix = _label_from_msg(_require(msg, "longest_prefix"))
        membership = MembershipProof._from_msg(_require(msg, "longest_prefix_membership_proof"))
        children = [AzksElement._from_msg(c) for c in msg.longest_prefix_children[:3]]
        if len(children) != 2 or len(msg.longest_prefix_children) != 2:
            raise MalformedProof("NonMembershipProof needs exactly 2 longest-prefix children")
        return cls(label, longest_prefix, (children[0], children[1]), membership)

    def _to_msg(self, msg: Any) -> None:
        _label_to_msg(self.label, msg.label)
        _label_to_msg(self.longest_prefix, msg.longest_prefix)
        for child in self.longest_prefix_children:
            child._to_msg(msg.longest_prefix_children.add())
        self.longest_prefix_membership_proof._to_msg(msg.longest_prefix_membership_proof)

    @classmethod
    def from_bytes(cls, data: bytes) -> NonMembershipProof:
        return cls._from_msg(_parse("NonMembershipProof", data))

    def to_bytes(self) -> bytes:
        return _serialize("NonMembershipProof", self)


# -- lookup and history -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class LookupProof:
    """The server's answer to a lookup: the current value of a label with its proofs."""

    epoch: int
    value: bytes
    version: int
    existence_vrf_proof: bytes
    existence_proof: MembershipProof
    marker_vrf_proof: bytes
    marker_proof: MembershipProof
    freshness_vrf_proof: bytes
    freshness_proof: NonMembershipProof
    commitment_nonce: bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> LookupProof:
        """Decode a LookupProof; every field is required."""
        msg = _parse("LookupProof", data)
        return cls(
            epoch=_require(msg, "epoch"),
            value=_bounded(_require(msg, "value"), "LookupProof.value"),
            version=_require(msg, "version"),
            existence_vrf_proof=_bounded(_require(msg, "existence_vrf_proof"), "VRF proof"),
            existence_proof=MembershipProof._from_msg(_require(msg, "existence_proof")),
            marker_vrf_proof=_bounded(_require(msg, "marker_vrf_proof"), "VRF proof"),
            marker_proof=MembershipProof._from_msg(_require(msg, "marker_proof")),
            freshness_vrf_proof=_bounded(_require(msg, "freshness_vrf_proof"), "VRF proof"),
            freshness_proof=NonMembershipProof._from_msg(_require(msg, "freshness_proof")),
            commitment_nonce=_bounded(_require(msg, "commitment_nonce"), "commitment nonce"),
        )

    def _to_msg(self, msg: Any) -> None:
        msg.epoch = _u64(self.epoch, "epoch")
        msg.value = self.value
        msg.version = _u64(self.version, "version")
        msg.existence_vrf_proof = self.existence_vrf_proof
        self.existence_proof._to_msg(msg.existence_proof)
        msg.marker_vrf_proof = self.marker_vrf_proof
        self.marker_proof._to_msg(msg.marker_proof)
        msg.freshness_vrf_proof = self.freshness_vrf_proof
        self.freshness_proof._to_msg(msg.freshness_proof)
        msg.commitment_nonce = self.commitment_nonce

    def to_bytes(self) -> bytes:
        return _serialize("LookupProof", self)


@dataclass(frozen=True, slots=True)
class UpdateProof:
    """One version in a history proof: its leaf, and (from version 2) the previous version's
    stale leaf written in the same epoch."""

    epoch: int
    value: bytes
    version: int
    existence_vrf_proof: bytes
    existence_proof: MembershipProof
    previous_version_vrf_proof: bytes | None
    previous_version_proof: MembershipProof | None
    commitment_nonce: bytes

    @classmethod
    def _from_msg(cls, msg: Any) -> UpdateProof:
        previous_vrf = (_bounded(msg.previous_version_vrf_proof, "VRF proof")
                        if msg.HasField("previous_version_vrf_proof") else None)
        previous = (MembershipProof._from_msg(msg.previous_version_proof)
                    if msg.HasField("previous_version_proof") else None)
        return cls(
            epoch=_require(msg, "epoch"),
            value=_bounded(_require(msg, "value"), "UpdateProof.value"),
            version=_require(msg, "version"),
            existence_vrf_proof=_bounded(_require(msg, "existence_vrf_proof"), "VRF proof"),
            existence_proof=MembershipProof._from_msg(_require(msg, "existence_proof")),
            previous_version_vrf_proof=previous_vrf,
            previous_version_proof=previous,
            commitment_nonce=_bounded(_require(msg, "commitment_nonce"), "commitment nonce"),
        )

    def _to_msg(self, msg: Any) -> None:
        msg.epoch = _u64(self.epoch, "epoch")
        msg.value = self.value
        msg.version = _u64(self.version, "version")
        msg.existence_vrf_proof = self.existence_vrf_proof
        self.existence_proof._to_msg(msg.existence_proof)
        if self.previous_version_vrf_proof is not None:
            msg.previous_version_vrf_proof = self.previous_version_vrf_proof
        if self.previous_version_proof is not None:
            self.previous_version_proof._to_msg(msg.previous_version_proof)
        msg.commitment_nonce = self.commitment_nonce


@dataclass(frozen=True, slots=True)
class HistoryProof:
    """The server's answer to a history query: update proofs newest first, and proofs that past
    marker versions exist and future marker versions do not."""

    update_proofs: tuple[UpdateProof, ...]
    past_marker_vrf_proofs: tuple[bytes, ...]
    existence_of_past_marker_proofs: tuple[MembershipProof, ...]
    future_marker_vrf_proofs: tuple[bytes, ...]
    non_existence_of_future_marker_proofs: tuple[NonMembershipProof, ...]

    @classmethod
    def from_bytes(cls, data: bytes) -> HistoryProof:
        """Decode a HistoryProof (counts are checked against the versions by the verifier)."""
        msg = _parse("HistoryProof", data)
        if len(msg.update_proofs) > consts.MAX_UPDATE_PROOFS:
            raise MalformedProof("HistoryProof has too many update proofs")
        for field in ("past_marker_vrf_proofs", "existence_of_past_marker_proofs",
                      "future_marker_vrf_proofs", "non_existence_of_future_marker_proofs"):
            if len(getattr(msg, field)) > consts.MAX_MARKER_PROOFS:
                raise MalformedProof("HistoryProof has too many marker proofs")
        return cls(
            update_proofs=tuple(UpdateProof._from_msg(u) for u in msg.update_proofs),
            past_marker_vrf_proofs=_vrf_proofs(msg.past_marker_vrf_proofs),
            existence_of_past_marker_proofs=tuple(
                MembershipProof._from_msg(m) for m in msg.existence_of_past_marker_proofs),
            future_marker_vrf_proofs=_vrf_proofs(msg.future_marker_vrf_proofs),
            non_existence_of_future_marker_proofs=tuple(
                NonMembershipProof._from_msg(m)
                for m in msg.non_existence_of_future_marker_proofs),
        )

    def _to_msg(self, msg: Any) -> None:
        for update in self.update_proofs:
            update._to_msg(msg.update_proofs.add())
        msg.past_marker_vrf_proofs.extend(self.past_marker_vrf_proofs)
        for past in self.existence_of_past_marker_proofs:
            past._to_msg(msg.existence_of_past_marker_proofs.add())
        msg.future_marker_vrf_proofs.extend(self.future_marker_vrf_proofs)
        for future in self.non_existence_of_future_marker_proofs:
            future._to_msg(msg.non_existence_of_future_marker_proofs.add())

    def to_bytes(self) -> bytes:
        return _serialize("HistoryProof", self)


@dataclass(frozen=True, slots=True)
class SingleAppendOnlyProof:
    """One epoch step: the subtrees left unchanged (label, node value) and the leaves inserted
    (label, azks value before the epoch is mixed in)."""

    unchanged_nodes: tuple[AzksElement, ...]
    inserted: tuple[AzksElement, ...]

    @classmethod
    def _from_msg(cls, msg: Any) -> SingleAppendOnlyProof:
        if len(msg.inserted) + len(msg.unchanged_nodes) > consts.MAX_APPEND_ONLY_ELEMENTS:
            raise MalformedProof("SingleAppendOnlyProof has too many elements")
        return cls(tuple(AzksElement._from_msg(e) for e in msg.unchanged_nodes),
                   tuple(AzksElement._from_msg(e) for e in msg.inserted))

    def _to_msg(self, msg: Any) -> None:
        for element in self.inserted:
            element._to_msg(msg.inserted.add())
        for element in self.unchanged_nodes:
            element._to_msg(msg.unchanged_nodes.add())


@dataclass(frozen=True, slots=True)
class AppendOnlyProof:
    """Steps epochs[i] -> epochs[i] + 1, one SingleAppendOnlyProof each."""

    proofs: tuple[SingleAppendOnlyProof, ...]
    epochs: tuple[int, ...]

    @classmethod
    def from_bytes(cls, data: bytes) -> AppendOnlyProof:
        msg = _parse("AppendOnlyProof", data, consts.MAX_APPEND_ONLY_PROOF_BYTES)
        return cls(tuple(SingleAppendOnlyProof._from_msg(p) for p in msg.proofs),
                   tuple(msg.epochs))

    def _to_msg(self, msg: Any) -> None:
        for step in self.proofs:
            step._to_msg(msg.proofs.add())
        msg.epochs.extend(_u64(e, "epoch") for e in self.epochs)

    def to_bytes(self) -> bytes:
        return _serialize("AppendOnlyProof", self)


def _vrf_proofs(raw: Sequence[bytes]) -> tuple[bytes, ...]:
    return tuple(_bounded(p, "VRF proof") for p in raw)


def _serialize(kind: str, proof: Any) -> bytes:
    msg = _CLASSES[kind]()
    proof._to_msg(msg)
    return pb.serialize(msg)
