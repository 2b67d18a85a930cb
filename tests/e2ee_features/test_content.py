"""Message content: round trips, limits, forward compatibility, any bytes -> value or error."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2ee_core.content import (
    CONTENT_VERSION,
    MAX_CONTENT_BYTES,
    MAX_RECEIPT_IDS,
    MAX_TEXT_CHARS,
    AttachmentPointer,
    Content,
    ContentDecodeError,
    ContentError,
    ContentType,
    Delete,
    Edit,
    GroupMembershipChange,
    InvalidContent,
    Reaction,
    ReadReceipt,
    SenderKeyDistribution,
    Sticker,
    Text,
    TimerChange,
    Unknown,
    UnsupportedContentVersion,
    _serialize,
)
from e2ee_core.errors import E2EEError

ids = st.binary(min_size=16, max_size=16)
printable = st.text(alphabet=st.characters(categories=("L", "N", "P", "S")), min_size=1,
                    max_size=20)
member_lists = st.lists(printable, max_size=6, unique=True).map(lambda xs: tuple(sorted(xs)))


@st.composite
def memberships(draw: st.DrawFn) -> GroupMembershipChange:
    members = draw(member_lists.filter(bool))
    added = tuple(m for m in members if draw(st.booleans()))
    removed = tuple(sorted(set(draw(member_lists)) - set(members)))
    return GroupMembershipChange(draw(st.integers(0, 2**63 - 1)), members, added, removed)


EMOJI = ["👍", "❤️", "😂", "👨‍👩‍👧‍👦", "🏴󠁧󠁢󠁳󠁣󠁴󠁿"]
bodies = st.one_of(
    st.builds(Text, st.text(max_size=300)),
    st.builds(Sticker, st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", fullmatch=True)),
    st.builds(Reaction, ids, st.one_of(st.none(), st.sampled_from(EMOJI))),
    st.builds(Edit, ids, st.text(max_size=100)),
    st.builds(Delete, ids),
    st.builds(ReadReceipt, st.lists(ids, min_size=1, max_size=10, unique=True).map(tuple)),
    st.builds(AttachmentPointer, st.binary(min_size=1, max_size=64),
              st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32),
              st.integers(0, 100 * 1024 * 1024), st.sampled_from(["image/png", "video/mp4",
                                                                  "text/plain; charset=utf-8"]),
              st.one_of(st.none(), st.sampled_from(["cat.png", "Ünïcode report.pdf"]))),
    st.builds(TimerChange, st.one_of(st.none(), st.integers(1, 90 * 24 * 3600))),
    st.builds(SenderKeyDistribution, st.binary(min_size=1, max_size=200)),
    memberships(),
    st.builds(Unknown, st.integers(1000, 65535), st.binary(max_size=50)),
)
contents = st.builds(
    Content, bodies, ids, st.integers(0, 2**63 - 1),
    st.one_of(st.none(), st.integers(1, 90 * 24 * 3600)),
    st.one_of(st.none(), st.binary(min_size=16, max_size=32)))


@settings(max_examples=200, deadline=None)
@given(contents)
def test_every_content_round_trips_and_encodes_deterministically(content: Content) -> None:
    data = content.encode()
    assert Content.decode(data) == content
    assert Content.decode(data).encode() == data


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_decode_to_a_value_or_a_typed_error(data: bytes) -> None:
    try:
        Content.decode(data)
    except ContentError:
        pass


@settings(max_examples=150, deadline=None)
@given(contents, st.data())
def test_mutated_encodings_decode_to_a_value_or_a_typed_error(content: Content,
                                                              data: st.DataObject) -> None:
    raw = bytearray(content.encode())
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.integers(0, len(raw)))
    for candidate in (bytes(raw), bytes(raw[:cut])):
        try:
            Content.decode(candidate)
        except ContentError as exc:
            assert isinstance(exc, E2EEError)


def test_a_text_message_round_trips() -> None:
    content = Content.new(Text("see you at 8"), sent_at_ms=1_700_000_000_000, expire_timer=3600)
    decoded = Content.decode(content.encode())
    assert decoded.body == Text("see you at 8")
    assert decoded.expire_timer == 3600
    assert len(decoded.message_id) == 16
    assert decoded.type_id == ContentType.TEXT


def test_fresh_message_ids_differ() -> None:
    a = Content.new(Text("x"), sent_at_ms=1)
    b = Content.new(Text("x"), sent_at_ms=1)
    assert a.message_id != b.message_id


def test_a_newer_body_type_decodes_to_unknown_and_survives_re_encoding() -> None:
    future = _serialize("Content", version=1, message_id=b"m" * 16, sent_at_ms=7, type=4242,
                        body=b"\x0a\x03new")
    content = Content.decode(future)
    assert content.body == Unknown(4242, b"\x0a\x03new")
    assert content.encode() == future


def test_a_newer_envelope_version_is_a_typed_error() -> None:
    future = _serialize("Content", version=CONTENT_VERSION + 1, message_id=b"m" * 16,
                        sent_at_ms=7, type=1, body=b"")
    with pytest.raises(UnsupportedContentVersion):
        Content.decode(future)


@pytest.mark.parametrize("field", ["version", "message_id", "sent_at_ms", "type"])
def test_a_missing_required_envelope_field_is_a_typed_error(field: str) -> None:
    fields = {"version": 1, "message_id": b"m" * 16, "sent_at_ms": 7, "type": 1,
              "body": Text("x")._encode_body()}
    del fields[field]
    with pytest.raises(ContentDecodeError):
        Content.decode(_serialize("Content", **fields))


def test_limits_are_enforced_on_construction_and_on_decode() -> None:
    Text("a" * MAX_TEXT_CHARS)
    with pytest.raises(InvalidContent):
        Text("a" * (MAX_TEXT_CHARS + 1))
    too_many = tuple(i.to_bytes(16, "big") for i in range(MAX_RECEIPT_IDS + 1))
    with pytest.raises(InvalidContent):
        ReadReceipt(too_many)
    forged = _serialize("Content", version=1, message_id=b"m" * 16, sent_at_ms=7,
                        type=int(ContentType.READ_RECEIPT),
                        body=_serialize("ReadReceipt", message_ids=list(too_many)))
    with pytest.raises(ContentDecodeError):
        Content.decode(forged)
    with pytest.raises(ContentDecodeError):
        Content.decode(b"\x00" * (MAX_CONTENT_BYTES + 1))


@pytest.mark.parametrize("build", [
    lambda: Text("\ud800"),
    lambda: Sticker("../etc"),
    lambda: Sticker(""),
    lambda: Reaction(b"short", "👍"),
    lambda: Reaction(b"t" * 16, ""),
    lambda: Reaction(b"t" * 16, "a b"),
    lambda: Reaction(b"t" * 16, "lol"),  # free text was accepted as a reaction before
    lambda: Reaction(b"t" * 16, "👍👍"),  # two emoji
    lambda: Reaction(b"t" * 16, "x"),
    lambda: Edit(b"t" * 15, "x"),
    lambda: ReadReceipt(()),
    lambda: ReadReceipt((b"t" * 16, b"t" * 16)),
    lambda: AttachmentPointer(b"b", b"k" * 31, b"d" * 32, 1, "image/png"),
    lambda: AttachmentPointer(b"b", b"k" * 32, b"d" * 32, -1, "image/png"),
    lambda: AttachmentPointer(b"b", b"k" * 32, b"d" * 32, 1, "png"),
    lambda: AttachmentPointer(b"b", b"k" * 32, b"d" * 32, 1, "image/png", "../../x"),
    lambda: TimerChange(0),
    lambda: TimerChange(91 * 24 * 3600),
    lambda: GroupMembershipChange(1, ("b", "a")),
    lambda: GroupMembershipChange(1, ("a",), added=("b",)),
    lambda: GroupMembershipChange(1, ("a",), removed=("a",)),
    lambda: GroupMembershipChange(1, ()),
    lambda: Unknown(int(ContentType.TEXT), b""),
    lambda: Content(Text("x"), b"m" * 16, -1),
    lambda: Content(Text("x"), b"m" * 16, 1, group_id=b"g"),
])
def test_invalid_values_are_rejected_with_a_typed_error(build: object) -> None:
    with pytest.raises(InvalidContent):
        build()  # type: ignore[operator]


def test_a_reaction_removal_round_trips_and_ambiguous_reactions_are_rejected() -> None:
    removal = Content.new(Reaction(b"t" * 16, None), sent_at_ms=1)
    assert Content.decode(removal.encode()).body == Reaction(b"t" * 16, None)
    both = _serialize("Reaction", target_id=b"t" * 16, emoji="👍".encode(), remove=True)
    with pytest.raises(ContentDecodeError):
        Reaction._decode_body(both)


def test_errors_and_reprs_do_not_leak_keys_or_text() -> None:
    key = bytes(range(32))
    pointer = AttachmentPointer(b"blob", key, b"d" * 32, 10, "image/png")
    assert key.hex() not in repr(pointer) and repr(key) not in repr(pointer)
    secret = "my secret text " * 2000
    with pytest.raises(InvalidContent) as info:
        Text(secret)
    assert "secret" not in str(info.value)


def test_every_sticker_in_the_shipped_catalog_is_a_valid_sticker_content() -> None:
    from sticker_search.catalog import load_catalog

    catalog = load_catalog()
    assert len(catalog) > 3000
    for sticker in catalog:
        content = Content.new(Sticker(sticker.id), sent_at_ms=1)
        assert Content.decode(content.encode()).body == Sticker(sticker.id)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(ContentType)), st.binary(max_size=120))
def test_random_bodies_of_every_known_type_decode_or_raise_typed_errors(
        kind: ContentType, body: bytes) -> None:
    envelope = _serialize("Content", version=1, message_id=b"m" * 16, sent_at_ms=7,
                          type=int(kind), body=body)
    try:
        content = Content.decode(envelope)
    except ContentError:
        return
    assert content.type_id == kind
    assert Content.decode(content.encode()) == content


def test_text_reprs_do_not_show_the_plaintext() -> None:
    content = Content.new(Text("meet me at the secret place"), sent_at_ms=1)
    assert "secret" not in repr(content)
    assert "secret" not in repr(Edit(b"t" * 16, "secret edit"))
