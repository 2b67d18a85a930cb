"""Property tests of the Labyrinth mailbox API's wire decoders (e2ee_core.server.labyrinth_wire):
on any JSON, query or cursor they raise only the server's typed errors, and what they accept
round-trips through the encoders. The fuzz target fuzz/targets/labyrinth_server.py feeds the
same decoders."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2ee_core.server import labyrinth_wire as lw
from e2ee_core.server.errors import InvalidRequest, PayloadTooLarge, ServerError
from fuzz.targets import labyrinth_server as target

TYPES: list[Any] = [
    lw.MemberKeys, lw.MemberInfo, lw.EpochMemberUpload, lw.OpenEpochRequest, lw.EpochRecord,
    lw.StoredRecord, lw.RecordKey, lw.RecordPage, lw.EvolveRequest, lw.EvaluateRequest,
    lw.VirtualDevice, lw.AttachmentReference]
FUNCTIONS: list[Any] = [
    lw.decode_records, lw.decode_record_keys, lw.decode_bundle, lw.decode_membership_mac,
    lw.decode_member, lw.decode_vdevice_id, lw.decode_ref_index, lw.decode_domain,
    lambda value: lw.decode_text_id(value, "id"),
    lw.decode_epoch_id, lw.decode_sequence]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
    | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=30), inner,
                                                                max_size=8),
    max_leaves=30)
ids = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp", "Co", "Cn", "Zs")),
              min_size=1, max_size=128).filter(str.isprintable)


def _mutations(seed: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A valid object with one field replaced by anything, or removed, or one added."""
    keys = sorted(seed)

    def replace(key: str, value: Any) -> dict[str, Any]:
        out = dict(seed)
        out[key] = value
        return out

    def drop(key: str) -> dict[str, Any]:
        return {k: v for k, v in seed.items() if k != key}

    return st.one_of(st.builds(replace, st.sampled_from(keys), json_values),
                     st.builds(drop, st.sampled_from(keys)),
                     st.builds(replace, st.text(max_size=10), json_values))


SEED_VALUES = [value for value in (
    json.loads(s[1:]) for s in target.seeds() if s[0] < len(TYPES))]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(range(len(TYPES))), json_values)
def test_any_json_is_decoded_or_refused_with_a_typed_error(index: int, value: Any) -> None:
    try:
        TYPES[index].from_json(value)
    except (InvalidRequest, PayloadTooLarge):
        pass


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_near_valid_objects_decode_or_are_refused_and_round_trip(data: st.DataObject) -> None:
    index = data.draw(st.sampled_from(range(len(TYPES))))
    seed = SEED_VALUES[index]
    value = data.draw(_mutations(seed))
    try:
        decoded = TYPES[index].from_json(value)
    except ServerError:
        return
    assert TYPES[index].from_json(json.loads(json.dumps(decoded.to_json()))) == decoded


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(range(len(FUNCTIONS))), json_values)
def test_body_and_id_decoders_raise_only_typed_errors(index: int, value: Any) -> None:
    try:
        FUNCTIONS[index](value)
    except (InvalidRequest, PayloadTooLarge):
        pass


@given(st.integers(min_value=0, max_value=2**63 - 1), ids, ids, ids)
def test_cursors_round_trip(timestamp: int, inbox: str, thread: str, message: str) -> None:
    cursor = lw.Cursor(timestamp, inbox, thread, message)
    assert lw.Cursor.decode(cursor.encode()) == cursor


@settings(max_examples=300)
@given(st.text(max_size=200) | st.binary(max_size=150).map(
    lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")))
def test_any_cursor_text_is_a_cursor_or_invalid(text: str) -> None:
    try:
        lw.Cursor.decode(text)
    except InvalidRequest:
        pass


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(["inbox_id", "thread_id", "message_id", "since",
                                        "until", "limit", "cursor", "x"]),
                       st.text(max_size=30), max_size=6))
def test_any_query_is_a_query_or_invalid(params: dict[str, str]) -> None:
    try:
        query = lw.LoadQuery.from_params(params)
    except InvalidRequest:
        return
    assert lw.LoadQuery.from_params(query.to_params()) == query


@given(ids, ids, ids, st.integers(0, 2**63 - 1), st.integers(1, 2**53 - 1),
       st.integers(0, 2**31 - 1), st.binary(min_size=1, max_size=300))
def test_records_round_trip(inbox: str, thread: str, message: str, timestamp: int,
                            epoch_id: int, version: int, blob: bytes) -> None:
    record = lw.StoredRecord(inbox, thread, message, timestamp, epoch_id, version, blob)
    assert lw.StoredRecord.from_json(json.loads(json.dumps(record.to_json()))) == record


@pytest.mark.parametrize("seed", list(target.seeds()))
def test_every_fuzz_seed_is_accepted(seed: bytes) -> None:
    # The seeds are valid encodings: they reach the code after a successful decode.
    selector, body = seed[0], seed[1:]
    if selector >= 0xF0:
        (target._cursor, target._query)[selector % 2](body.decode("latin-1"))
    elif selector >= 0xE0:
        target._FUNCTIONS[selector % len(target._FUNCTIONS)](json.loads(body))
    else:
        kind = target._TYPES[selector % len(target._TYPES)]
        assert kind.from_json(json.loads(body)).to_json() == json.loads(body)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_target_on_random_bytes(data: bytes) -> None:
    target.test_one_input(data)


@pytest.mark.parametrize("member", ["d1", "d2147483647", "v" + "0f" * 16])
def test_member_names(member: str) -> None:
    assert lw.decode_member(member) == member


@pytest.mark.parametrize("member", ["d0", "d01", "d2147483648", "v" + "0F" * 16, "v00", "D1",
                                    "d1\n", " d1", "d٣"])
def test_bad_member_names(member: str) -> None:
    with pytest.raises(InvalidRequest):
        lw.decode_member(member)
