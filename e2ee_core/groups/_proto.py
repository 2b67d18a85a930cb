"""proto2 schemas of the group layer, built at run time from ``descriptor_pb2`` in a private pool.

Why protobuf: libsignal's SenderKeyMessage / SenderKeyDistributionMessage are protobuf
(``wire.proto``) and so are its stored records (``storage.proto``); the same field numbers are
used here. No generated code; a private pool avoids clashes with other packages.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from e2ee_core.groups.errors import GroupError

_F = descriptor_pb2.FieldDescriptorProto
OPT, REP = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
BYTES, U32, U64, BOOL, MSG = _F.TYPE_BYTES, _F.TYPE_UINT32, _F.TYPE_UINT64, _F.TYPE_BOOL, \
    _F.TYPE_MESSAGE
PACKAGE = "e2ee.groups"

# (name, number, type, label, message type name or "")
SCHEMA: dict[str, list[tuple[str, int, int, int, str]]] = {
    # libsignal wire.proto field numbers
    "SenderKeyMessage": [("distribution_uuid", 1, BYTES, OPT, ""), ("chain_id", 2, U32, OPT, ""),
                         ("iteration", 3, U32, OPT, ""), ("ciphertext", 4, BYTES, OPT, "")],
    "SenderKeyDistributionMessage": [
        ("distribution_uuid", 1, BYTES, OPT, ""), ("chain_id", 2, U32, OPT, ""),
        ("iteration", 3, U32, OPT, ""), ("chain_key", 4, BYTES, OPT, ""),
        ("signing_key", 5, BYTES, OPT, "")],
    # storage (local only)
    "SenderKeyState": [("chain_id", 1, U32, OPT, ""), ("chain_iteration", 2, U32, OPT, ""),
                       ("chain_seed", 3, BYTES, OPT, ""), ("signing_public", 4, BYTES, OPT, ""),
                       ("signing_private", 5, BYTES, OPT, ""),
                       # skipped keys packed as iteration (u32, big-endian) || seed (32), in
                       # insertion order: one bytes field instead of 2,000 nested messages
                       ("message_keys", 6, BYTES, OPT, "")],
    "SenderKeyRecord": [("states", 1, MSG, REP, "SenderKeyState")],
    "Address": [("name", 1, BYTES, OPT, ""), ("device_id", 2, U32, OPT, "")],
    "GroupState": [("group_id", 1, BYTES, OPT, ""), ("local", 2, MSG, OPT, "Address"),
                   ("epoch", 3, U64, OPT, ""), ("members", 4, BYTES, REP, ""),
                   ("senders", 5, MSG, REP, "Address"), ("left", 6, BOOL, OPT, "")],
}


def _build() -> dict[str, type[Message]]:
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="e2ee_core/groups.proto", package=PACKAGE, syntax="proto2")
    for name, fields in SCHEMA.items():
        msg = file_proto.message_type.add(name=name)
        for field_name, number, type_, label, type_name in fields:
            field = msg.field.add(name=field_name, number=number, type=type_, label=label)
            if type_name:
                field.type_name = f".{PACKAGE}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
            for name in SCHEMA}


CLASSES = _build()


def new(kind: str) -> Any:
    """An empty message of ``kind`` (typed ``Any``: fields are dynamic)."""
    return CLASSES[kind]()


def parse(kind: str, data: bytes, error: type[GroupError]) -> Any:
    """Parse ``data`` as ``kind``; any parse failure raises ``error``."""
    msg = CLASSES[kind]()
    try:
        msg.ParseFromString(data)
    except DecodeError:
        raise error(f"malformed {kind}") from None
    return msg


def require(msg: Any, name: str, error: type[GroupError]) -> Any:
    """A present field's value, else ``error``."""
    if not msg.HasField(name):
        raise error(f"{type(msg).__name__}.{name} is missing")
    return getattr(msg, name)


def serialize(msg: Any) -> bytes:
    out: bytes = msg.SerializeToString(deterministic=True)
    return out
