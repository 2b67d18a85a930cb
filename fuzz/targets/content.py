"""Message content (e2ee_core.content): the protobuf a recipient finds inside every decrypted
message, every body type included; a decoded content must re-encode to the same value."""

from __future__ import annotations

from collections.abc import Iterator

from e2ee_core import content as c
from e2ee_core.errors import ContentError

ACCEPTED: tuple[type[Exception], ...] = (ContentError,)
MAX_LEN = 8192


def test_one_input(data: bytes) -> None:
    try:
        decoded = c.Content.decode(data)
    except ACCEPTED:
        return
    assert c.Content.decode(decoded.encode()) == decoded, "content does not round-trip"


def seeds() -> Iterator[bytes]:
    mid = bytes(range(16))
    bodies: list[c.Body] = [
        c.Text("hello, world"),
        c.Sticker("cat-01"),
        c.Reaction(mid, "👍"),
        c.Reaction(mid, None),
        c.Edit(mid, "hello again"),
        c.Delete(mid),
        c.ReadReceipt((mid, bytes(16))),
        c.DeliveryReceipt((mid,)),
        c.AttachmentPointer(bytes(16), bytes(32), bytes(32), 1234, "image/png", "cat.png"),
        c.TimerChange(3600),
        c.TimerChange(None),
        c.SenderKeyDistribution(b"\x33" + bytes(40)),
        c.GroupMembershipChange(2, ("alice", "bob", "carol"), ("carol",), ("dave",)),
        c.Unknown(99, b"future"),
    ]
    for body in bodies:
        yield c.Content(body, mid, 1700000000000).encode()
    yield c.Content(c.Text("group"), mid, 1, 60, bytes(32)).encode()
