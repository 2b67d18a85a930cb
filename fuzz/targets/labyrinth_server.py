"""The Labyrinth mailbox API's wire types (e2ee_core.server.labyrinth_wire): every decoder the
server runs on a request body, path or query (parsed as the app parses them), then a round trip
through the encoder; the load cursor and the query string. The first input byte picks the
decoder."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from e2ee_core.server import labyrinth_wire as lw
from e2ee_core.server.errors import ServerError
from fuzz.targets._select import json_body, json_round_trip

ACCEPTED: tuple[type[Exception], ...] = (ServerError,)
MAX_LEN = 16384

_TYPES: tuple[Any, ...] = (
    lw.MemberKeys, lw.MemberInfo, lw.EpochMemberUpload, lw.OpenEpochRequest, lw.EpochRecord,
    lw.StoredRecord, lw.RecordKey, lw.RecordPage, lw.EvolveRequest, lw.EvaluateRequest,
    lw.VirtualDevice, lw.AttachmentReference)
_FUNCTIONS: tuple[Callable[[Any], Any], ...] = (
    lw.decode_records, lw.decode_record_keys, lw.decode_bundle, lw.decode_membership_mac,
    lw.decode_member, lw.decode_vdevice_id, lw.decode_ref_index, lw.decode_domain)


def _cursor(text: str) -> None:
    cursor = lw.Cursor.decode(text)
    assert lw.Cursor.decode(cursor.encode()) == cursor, "cursor does not round-trip"


def _query(text: str) -> None:
    params: dict[str, str] = {}
    for part in text.split("&"):
        name, _, value = part.partition("=")
        params.setdefault(name, value)
    query = lw.LoadQuery.from_params(params)
    assert lw.LoadQuery.from_params(query.to_params()) == query, "query does not round-trip"


def test_one_input(data: bytes) -> None:
    if not data:
        return
    selector, body = data[0], data[1:]
    try:
        if selector >= 0xF0:
            (_cursor, _query)[selector % 2](body.decode("latin-1"))
            return
        if selector >= 0xE0:
            _FUNCTIONS[selector % len(_FUNCTIONS)](json_body(body))
            return
        json_round_trip(_TYPES[selector % len(_TYPES)], body)
    except ACCEPTED:
        pass


def seeds() -> Iterator[bytes]:
    keys = lw.MemberKeys(bytes(32), bytes(range(32)), bytes(64), bytes(32), bytes(64))
    upload = lw.EpochMemberUpload("d1", bytes(32), bytes(81))
    record = lw.StoredRecord("inbox", "thread-1", "m1", 1700000000000, 7, 3, bytes(40))
    cursor = lw.Cursor(1700000000000, "inbox", "thread-1", "m1")
    values: list[Any] = [
        keys,
        lw.MemberInfo("v" + "ab" * 16, keys, bytes(32)),
        upload,
        lw.OpenEpochRequest(1, 7, bytes(55), bytes(76), (upload, lw.EpochMemberUpload(
            "d2", bytes(32))), b"head"),
        lw.EpochRecord(8, 1, 7, bytes(55), bytes(76), None, "d1", keys, 1700000000000,
                       bytes(81), bytes(32)),
        record,
        lw.RecordKey("inbox", "thread-1", "m1"),
        lw.RecordPage((record,), cursor),
        lw.EvolveRequest("d1", "v" + "00" * 16, bytes(range(1, 33))),
        lw.EvaluateRequest("default", (bytes(32),)),
        lw.VirtualDevice("00" * 16, b"bundle", 1, 1700000000000),
        lw.AttachmentReference(b"reference", bytes(32)),
    ]
    for value in values:
        yield bytes([_TYPES.index(type(value))]) + json.dumps(value.to_json()).encode()
    bodies: list[Any] = [{"records": [record.to_json()]}, {"keys": [{"inbox_id": "i",
                         "thread_id": "t", "message_id": "m"}]}, {"bundle": "AAAA"},
                         {"membership_mac": "A" * 43 + "="}, "d3", "00" * 16, "00" * 32,
                         "default"]
    for index, body in enumerate(bodies):
        yield bytes([0xE0 + index]) + json.dumps(body).encode()
    yield b"\xf0" + cursor.encode().encode()
    yield b"\xf1" + b"inbox_id=inbox&thread_id=t&since=1&until=9&limit=50&cursor=" + \
        cursor.encode().encode()
