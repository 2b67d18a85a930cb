"""Key transparency proofs (e2ee_core.keytrans, AKD's WhatsApp v1 format): the protobuf proof
decoders (lookup, history, membership, non-membership, append-only) and the two client
verifiers run on the decoded proof against AKD's published vector (its VRF key, root hash,
epoch and label). The first input byte picks the decoder."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from e2ee_core.keytrans.errors import KeyTransparencyError
from e2ee_core.keytrans.history import HistoryParams, key_history_verify
from e2ee_core.keytrans.lookup import lookup_verify
from e2ee_core.keytrans.proofs import (
    AppendOnlyProof,
    HistoryProof,
    LookupProof,
    MembershipProof,
    NonMembershipProof,
)
from fuzz.targets._select import select
from fuzz.vectors import vectors

ACCEPTED: tuple[type[Exception], ...] = (KeyTransparencyError,)
MAX_LEN = 16 * 1024

_VECTORS = vectors("akd_whatsapp_v1")
_V = _VECTORS[0] if _VECTORS else None
_PK = bytes.fromhex(_V["vrf_public_key"]) if _V else bytes(32)
_ROOT = bytes.fromhex(_V["epoch_hash"]) if _V else bytes(32)
_LABEL = bytes.fromhex(_V["label"]) if _V else b"label"
_EPOCH = int(_V["epoch"]) if _V else 1


def _lookup(data: bytes) -> None:
    proof = LookupProof.from_bytes(data)
    lookup_verify(_PK, _ROOT, _EPOCH, _LABEL, proof)


def _history(data: bytes) -> None:
    proof = HistoryProof.from_bytes(data)
    key_history_verify(_PK, _ROOT, _EPOCH, _LABEL, proof, params=HistoryParams.complete())


def _membership(data: bytes) -> None:
    MembershipProof.from_bytes(data)


def _nonmembership(data: bytes) -> None:
    NonMembershipProof.from_bytes(data)


def _append_only(data: bytes) -> None:
    AppendOnlyProof.from_bytes(data)


_DECODERS: tuple[Callable[[bytes], None], ...] = (
    _lookup, _history, _membership, _nonmembership, _append_only)


def test_one_input(data: bytes) -> None:
    select(_DECODERS, ACCEPTED, data)


def seeds() -> Iterator[bytes]:
    for vector in _VECTORS:
        yield b"\x00" + bytes.fromhex(vector["lookup_proof"])
        for name in ("history_proof_complete", "history_proof"):
            if name in vector:
                yield b"\x01" + bytes.fromhex(vector[name])
    yield b"\x02"
    yield b"\x03"
    yield b"\x04"
