"""The delivery server's JSON wire types (e2ee_core.server.wire): every ``from_json`` on the
body the server or the client reads (parsed as the app parses it), then a ``to_json`` round
trip; the bearer credential parsers on header text; the frames a device sends on the push
channel (acknowledgements, sends). The first input byte picks the type."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from e2ee_core.server import wire
from e2ee_core.server.errors import ServerError
from fuzz.targets._select import json_round_trip

ACCEPTED: tuple[type[Exception], ...] = (ServerError,)
MAX_LEN = 16384

_TYPES: tuple[Any, ...] = (
    wire.AccountRequest, wire.DeviceCredential, wire.PreKeyUpload, wire.PreKeyCount,
    wire.PreKeyBundle, wire.DeviceInfo, wire.DeviceAddress, wire.SendRequest,
    wire.MultiSendRequest, wire.Envelope, wire.AckRequest)


def _bearer(text: str) -> None:
    wire.parse_credential(wire.bearer_credential(text))


def _credential(text: str) -> None:
    wire.parse_credential(text)


def _client_frame(text: str) -> None:
    frame = wire.decode_client_frame(text)
    again = wire.decode_client_frame(json.dumps(
        {"type": "ack", **frame.to_json()} if isinstance(frame, wire.AckRequest)
        else frame.to_json()))
    assert again == frame, "push frame does not round-trip"


_TEXT: tuple[Callable[[str], None], ...] = (_bearer, _credential, _client_frame)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    selector, body = data[0], data[1:]
    try:
        if selector >= 0xF0:
            _TEXT[selector % len(_TEXT)](body.decode("latin-1"))
            return
        json_round_trip(_TYPES[selector % len(_TYPES)], body)
    except ACCEPTED:
        pass


def seeds() -> Iterator[bytes]:
    key = b"\x05" + bytes(32)
    signed = wire.SignedPreKey(1, key, bytes(64))
    prekey = wire.PreKey(2, key)
    device = wire.DeviceKeys(7, key, signed, signed, (prekey,), (signed,))
    credential = "alice.1." + "A" * 43
    out = wire.OutgoingEnvelope("bob", 1, b"sealed")
    values: list[Any] = [
        wire.AccountRequest("alice", "correct horse battery", device),
        wire.DeviceCredential("alice", 1, credential),
        wire.PreKeyUpload((prekey,), (signed,), signed, signed),
        wire.PreKeyCount(3, 1),
        wire.PreKeyBundle("bob", 1, 7, key, signed, signed, False, prekey),
        wire.DeviceInfo(1, 7, key, 1700000000000),
        wire.DeviceAddress("bob", 2),
        wire.SendRequest("bob", (out,), 1700000000000),
        wire.MultiSendRequest(("bob", "carol"), (out, wire.OutgoingEnvelope("carol", 1, b"x"))),
        wire.Envelope(1, "message", "alice", 1, 1700000000000, 1700000100000, b"sealed"),
        wire.Envelope(2, "device_added", "alice", 2, 1700000000000, 1700000100000, None),
        wire.AckRequest((1, 2), (2,)),
    ]
    for value in values:
        yield bytes([_TYPES.index(type(value))]) + json.dumps(value.to_json()).encode()
    yield b"\xf0Bearer " + credential.encode()
    yield b"\xf1" + credential.encode()
    yield b"\xf2" + b'{"type":"ack","ids":[1,2],"refused":[2]}'
    for frame in (wire.SendFrame(7, values[7]), wire.SendFrame(8, values[8])):
        yield b"\xf2" + json.dumps(frame.to_json()).encode()
