"""Attachment references: ORF-indexed, sealed, with the ORF-keyed deletion MAC."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2ee_core.labyrinth import attachments, orf
from e2ee_core.labyrinth.errors import (
    InvalidAttachmentReference,
    InvalidLabel,
    InvalidPublicKey,
    LabyrinthError,
)

SERVER_DOMAIN = b"labyrinth_orf_attachment_ref"  # the delivery server's prefix + the domain


def _output(client: orf.ClientState, server: orf.ServerState, attachment_id: bytes) -> bytes:
    return orf.server_map(server, SERVER_DOMAIN, attachments.blind(client, attachment_id))


def test_every_device_of_the_mailbox_finds_and_opens_the_reference() -> None:
    client, server = orf.client_init(), orf.server_init()
    keys = attachments.reference_keys(_output(client, server, b"cdn/blob/42"))
    reference, tag = attachments.seal(keys, b"pointer: key, digest, blob id",
                                      thread_id="bob", message_id="m1")
    # Another device (ORF state evolved at linking) reaches the same index and keys.
    laptop, token = orf.client_evolve(client)
    laptop_keys = attachments.reference_keys(
        _output(laptop, orf.server_evolve(server, token), b"cdn/blob/42"))
    assert laptop_keys == keys
    assert attachments.open_reference(laptop_keys, reference) == \
        b"pointer: key, digest, blob id"
    assert attachments.matches(laptop_keys, tag, "bob", "m1")
    assert not attachments.matches(laptop_keys, tag, "bob", "m2")
    assert not attachments.matches(laptop_keys, tag, "bobby", "m1")
    assert not attachments.matches(laptop_keys, tag[:-1], "bob", "m1")


def test_mailboxes_and_attachments_are_unlinkable() -> None:
    attachment = b"cdn/blob/42"
    alice = _output(orf.client_init(), orf.server_init(), attachment)
    bob = _output(orf.client_init(), orf.server_init(), attachment)
    assert attachments.reference_keys(alice).index != attachments.reference_keys(bob).index
    client, server = orf.client_init(), orf.server_init()
    assert attachments.reference_keys(_output(client, server, b"a")).index != \
        attachments.reference_keys(_output(client, server, b"b")).index
    # The index is not the ORF output itself.
    assert attachments.reference_keys(alice).index != alice


def test_a_revoked_device_cannot_reach_later_references() -> None:
    client, server = orf.client_init(), orf.server_init()
    laptop, _ = orf.client_evolve(client)
    # The laptop is revoked: the server deleted its share (s / t). The most it can get is an
    # evaluation of its own state under another device's share, which gives other keys.
    keys = attachments.reference_keys(_output(client, server, b"after"))
    reference, _ = attachments.seal(keys, b"secret pointer", thread_id="t", message_id="m")
    guessed = attachments.reference_keys(_output(laptop, server, b"after"))
    assert guessed.index != keys.index
    with pytest.raises(InvalidAttachmentReference):
        attachments.open_reference(guessed, reference)


def test_the_reference_is_bound_to_its_index() -> None:
    client, server = orf.client_init(), orf.server_init()
    one = attachments.reference_keys(_output(client, server, b"one"))
    two = attachments.reference_keys(_output(client, server, b"two"))
    reference, _ = attachments.seal(one, b"p", thread_id="t", message_id="m")
    with pytest.raises(InvalidAttachmentReference):
        attachments.open_reference(two, reference)
    for bad in (b"", b"\x01", b"\x02" + reference[1:], reference[:-1], reference + b"\x00"):
        with pytest.raises(InvalidAttachmentReference):
            attachments.open_reference(one, bad)


def test_limits() -> None:
    client = orf.client_init()
    with pytest.raises(InvalidAttachmentReference):
        attachments.blind(client, b"")
    with pytest.raises(InvalidAttachmentReference):
        attachments.blind(client, b"x" * 257)
    keys = attachments.reference_keys(bytes(32))
    with pytest.raises(InvalidAttachmentReference):
        attachments.seal(keys, b"", thread_id="t", message_id="m")
    with pytest.raises(InvalidAttachmentReference):
        attachments.seal(keys, b"x" * 1025, thread_id="t", message_id="m")
    with pytest.raises(InvalidLabel):
        attachments.deletion_mac(keys, "", "m")
    with pytest.raises(InvalidAttachmentReference):
        attachments.reference_keys(bytes(31))
    with pytest.raises(InvalidPublicKey):
        orf.server_map(orf.server_init(), SERVER_DOMAIN, bytes(32))


_KEYS = attachments.reference_keys(bytes(range(32)))


@settings(max_examples=300)
@given(st.binary(max_size=1200))
def test_decoder_raises_only_typed_errors(data: bytes) -> None:
    try:
        attachments.open_reference(_KEYS, data)
    except LabyrinthError:
        pass


@given(st.text(max_size=200), st.text(max_size=200), st.binary(min_size=30, max_size=34))
def test_matches_raises_only_typed_errors(thread: str, message: str, tag: bytes) -> None:
    try:
        attachments.matches(_KEYS, tag, thread, message)
    except LabyrinthError:
        pass
