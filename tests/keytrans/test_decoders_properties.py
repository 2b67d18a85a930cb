"""Proofs are untrusted input: on arbitrary or mutated bytes every decoder and verifier raises
only KeyTransparencyError subclasses (never DecodeError, ValueError, IndexError, ...)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2ee_core.keytrans.errors import KeyTransparencyError, MalformedProof
from e2ee_core.keytrans.history import HistoryParams, key_history_verify
from e2ee_core.keytrans.lookup import lookup_verify
from e2ee_core.keytrans.proofs import HistoryProof, LookupProof, MembershipProof, NonMembershipProof
from tests.conftest import VECTORS_DIR

V: dict[str, Any] = json.loads((VECTORS_DIR / "akd_whatsapp_v1.json").read_text())["vectors"][0]
PK = bytes.fromhex(V["vrf_public_key"])
ROOT = bytes.fromhex(V["epoch_hash"])
LABEL = bytes.fromhex(V["label"])
LOOKUP = bytes.fromhex(V["lookup_proof"])
HISTORY = bytes.fromhex(V["history_proof_complete"])
DECODERS = [LookupProof.from_bytes, HistoryProof.from_bytes, MembershipProof.from_bytes,
            NonMembershipProof.from_bytes]
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """The original with a few bytes replaced, inserted or deleted, or truncated."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "replace" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and data:
            del data[at]
        else:
            del data[at:]
    return bytes(data)


def only_typed(call: Any, *args: Any) -> None:
    try:
        call(*args)
    except KeyTransparencyError:
        pass


@SETTINGS
@given(data=st.binary(max_size=600))
def test_decoders_on_arbitrary_bytes(data: bytes) -> None:
    for decode in DECODERS:
        only_typed(decode, data)


@SETTINGS
@given(data=mutated(LOOKUP))
def test_lookup_verify_on_mutated_proofs(data: bytes) -> None:
    only_typed(lookup_verify, PK, ROOT, V["epoch"], LABEL, data)


@SETTINGS
@given(data=mutated(HISTORY), epoch=st.sampled_from([3, 49, 2**64 - 1]))
def test_key_history_verify_on_mutated_proofs(data: bytes, epoch: int) -> None:
    only_typed(lambda: key_history_verify(PK, ROOT, epoch, LABEL, data,
                                         params=HistoryParams.complete()))


@SETTINGS
@given(data=mutated(HISTORY))
def test_mutated_history_decodes_only_to_typed_errors(data: bytes) -> None:
    for decode in DECODERS:
        only_typed(decode, data)


def test_oversized_input_is_refused_before_parsing() -> None:
    import pytest

    with pytest.raises(MalformedProof, match="size limit"):
        HistoryProof.from_bytes(bytes(2 << 20))
