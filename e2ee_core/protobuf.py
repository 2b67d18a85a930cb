"""proto2 schemas built at run time (``descriptor_pb2``, a private descriptor pool), for the
content envelope and the group layer: no generated code, and no clash with other packages'
registrations. One helper for both: build, parse (failures become the caller's error), require
a field, serialize deterministically."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

_F = descriptor_pb2.FieldDescriptorProto
OPT, REP = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
BYTES, U32, U64, BOOL, MSG = (_F.TYPE_BYTES, _F.TYPE_UINT32, _F.TYPE_UINT64, _F.TYPE_BOOL,
                              _F.TYPE_MESSAGE)

#: (name, number, type, label) or (name, number, type, label, message type name or "").
Field = tuple[str, int, int, int] | tuple[str, int, int, int, str]


def build_messages(file_name: str, package: str,
                   schema: Mapping[str, Sequence[Field]]) -> dict[str, type[Message]]:
    """The message classes of ``schema`` (proto2) in their own pool."""
    file_proto = descriptor_pb2.FileDescriptorProto(name=file_name, package=package,
                                                    syntax="proto2")
    for name, fields in schema.items():
        msg = file_proto.message_type.add(name=name)
        for field_name, number, type_, label, *rest in fields:
            field = msg.field.add(name=field_name, number=number, type=type_, label=label)
            if rest and rest[0]:
                field.type_name = f".{package}.{rest[0]}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))
            for name in schema}


def parse(classes: Mapping[str, type[Message]], kind: str, data: bytes,
          error: type[Exception]) -> Any:
    """Parse ``data`` as ``kind``; any parse failure raises ``error`` (typed ``Any``: fields
    are dynamic)."""
    msg = classes[kind]()
    try:
        msg.ParseFromString(data)
    except DecodeError:
        raise error(f"malformed {kind}") from None
    return msg


def require(msg: Any, name: str, error: type[Exception], kind: str | None = None) -> Any:
    """A present field's value, else ``error``."""
    if not msg.HasField(name):
        raise error(f"{kind or type(msg).__name__}.{name} is missing")
    return getattr(msg, name)


def serialize(msg: Any) -> bytes:
    out: bytes = msg.SerializeToString(deterministic=True)
    return out
