"""proto2 schemas of the group layer, built at run time from ``descriptor_pb2`` in a private pool.

Why protobuf: libsignal's SenderKeyMessage / SenderKeyDistributionMessage are protobuf
(``wire.proto``) and so are its stored records (``storage.proto``); the same field numbers are
used here. No generated code; a private pool avoids clashes with other packages.
"""

from __future__ import annotations

from typing import Any

from e2ee_core import protobuf
from e2ee_core.groups.errors import GroupError
from e2ee_core.protobuf import BOOL, BYTES, MSG, OPT, REP, U32, U64

PACKAGE = "e2ee.groups"

# (name, number, type, label, message type name or "")
SCHEMA: dict[str, list[protobuf.Field]] = {
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


CLASSES = protobuf.build_messages("e2ee_core/groups.proto", PACKAGE, SCHEMA)


def new(kind: str) -> Any:
    """An empty message of ``kind`` (typed ``Any``: fields are dynamic)."""
    return CLASSES[kind]()


def parse(kind: str, data: bytes, error: type[GroupError]) -> Any:
    """Parse ``data`` as ``kind``; any parse failure raises ``error``."""
    return protobuf.parse(CLASSES, kind, data, error)


def require(msg: Any, name: str, error: type[GroupError]) -> Any:
    """A present field's value, else ``error``."""
    return protobuf.require(msg, name, error)


serialize = protobuf.serialize
