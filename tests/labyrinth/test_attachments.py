"""Attachment references (version 2): ORF-indexed, keyed by the ORF output and an epoch
secret, with the deletion MAC; the server, which computes every ORF output, cannot open them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2ee_core.labyrinth import attachments, epochs, orf, primitives
from e2ee_core.labyrinth.consts import EPOCH_SEQUENCE_MAX, EXTENDED_NONCE_LEN
from e2ee_core.labyrinth.errors import (
    DecryptionFailed,
    InvalidAttachmentReference,
    InvalidLabel,
    InvalidPublicKey,
    LabyrinthError,
    UnsupportedAttachmentReference,
)

SERVER_DOMAIN = b"labyrinth_orf_attachment_ref"  # the delivery server's prefix + the domain
EPOCH = epochs.Epoch(3, 77, bytes(range(1, 33)))


def _output(client: orf.ClientState, server: orf.ServerState, attachment_id: bytes) -> bytes:
    return orf.server_map(server, SERVER_DOMAIN, attachments.blind(client, attachment_id))


def test_every_device_of_the_mailbox_finds_and_opens_the_reference() -> None:
    client, server = orf.client_init(), orf.server_init()
    keys = attachments.reference_keys(_output(client, server, b"cdn/blob/42"), EPOCH)
    reference, tag = attachments.seal(keys, b"pointer: key, digest, blob id",
                                      thread_id="bob", message_id="m1")
    assert attachments.reference_sequence_id(reference) == EPOCH.sequence_id
    # Another device (ORF state evolved at linking, the same epoch roots) reaches the same
    # index and keys.
    laptop, token = orf.client_evolve(client)
    laptop_keys = attachments.reference_keys(
        _output(laptop, orf.server_evolve(server, token), b"cdn/blob/42"), EPOCH)
    assert laptop_keys == keys
    assert attachments.open_reference(laptop_keys, reference) == \
        b"pointer: key, digest, blob id"
    assert attachments.matches(laptop_keys, tag, "bob", "m1")
    assert not attachments.matches(laptop_keys, tag, "bob", "m2")
    assert not attachments.matches(laptop_keys, tag, "bobby", "m1")
    assert not attachments.matches(laptop_keys, tag[:-1], "bob", "m1")


def test_the_server_with_every_orf_output_cannot_open_a_reference() -> None:
    """The server computes the ORF output (its map ends with the HMAC) and stores the
    references: it finds which output belongs to which stored reference (the index), but
    without an epoch root it derives no key that opens the reference or forges its MAC."""
    client, server = orf.client_init(), orf.server_init()
    outputs = [_output(client, server, f"cdn/blob/{i}".encode()) for i in range(4)]
    stored = {}
    for i, output in enumerate(outputs):
        keys = attachments.reference_keys(output, EPOCH)
        stored[keys.index] = attachments.seal(keys, f"pointer {i}".encode(), thread_id="t",
                                              message_id=f"m{i}")
    for output in outputs:
        index = attachments.reference_index(output)
        reference, tag = stored[index]  # the server matches outputs to references
        sequence_id = attachments.reference_sequence_id(reference)
        # What version 1 derived from the output alone (the attack this version closes) ...
        old_index, old_key, old_mac_key = primitives.kdf(
            output, None, b"attachment_reference_v1", 32, 32, 32)
        with pytest.raises(DecryptionFailed):
            primitives.decrypt(old_key, reference[:9] + index, reference[9:])
        with pytest.raises(DecryptionFailed):
            primitives.decrypt(old_key, reference[:9] + old_index, reference[9:])
        # ... and keys under any root it can make up (none, the output itself, a guess).
        for root in (bytes(32), output, index, tag):
            guessed = attachments.reference_keys(output, epochs.Epoch(sequence_id, 77, root))
            with pytest.raises(InvalidAttachmentReference):
                attachments.open_reference(guessed, reference)
            assert not attachments.matches(guessed, tag, "t", "m0")
        assert not primitives.mac_equal(primitives.mac(b"\x00\x01tm0", old_mac_key), tag)
    # A device with the epoch's root opens every one.
    for i, output in enumerate(outputs):
        reference, tag = stored[attachments.reference_index(output)]
        keys = attachments.reference_keys(output, EPOCH)
        assert attachments.open_reference(keys, reference) == f"pointer {i}".encode()
        assert attachments.matches(keys, tag, "t", f"m{i}")


def test_a_revoked_device_cannot_open_a_later_reference_even_with_the_orf_output() -> None:
    client, server = orf.client_init(), orf.server_init()
    laptop, _ = orf.client_evolve(client)
    before = epochs.Epoch(0, 1, epochs.first_epoch_root())
    # The laptop is revoked: the server deleted its ORF share and the phone opened an epoch
    # without it (fresh entropy the laptop never receives).
    after = epochs.next_epoch(before, bytes(range(32, 64))).with_id(2)
    output = _output(client, server, b"after")
    keys = attachments.reference_keys(output, after)
    reference, tag = attachments.seal(keys, b"secret pointer", thread_id="t", message_id="m")
    # The laptop's own ORF state under another device's share gives another index ...
    assert attachments.reference_index(_output(laptop, server, b"after")) != keys.index
    # ... and even handed the real output, the roots it has open nothing.
    with pytest.raises(InvalidAttachmentReference):  # the reference names epoch 1
        attachments.open_reference(attachments.reference_keys(output, before), reference)
    forced = attachments.reference_keys(output, epochs.Epoch(1, 2, before.root_key))
    with pytest.raises(InvalidAttachmentReference):
        attachments.open_reference(forced, reference)
    assert not attachments.matches(forced, tag, "t", "m")
    assert attachments.open_reference(keys, reference) == b"secret pointer"


def test_mailboxes_and_attachments_are_unlinkable() -> None:
    attachment = b"cdn/blob/42"
    alice = _output(orf.client_init(), orf.server_init(), attachment)
    bob = _output(orf.client_init(), orf.server_init(), attachment)
    assert attachments.reference_index(alice) != attachments.reference_index(bob)
    client, server = orf.client_init(), orf.server_init()
    assert attachments.reference_index(_output(client, server, b"a")) != \
        attachments.reference_index(_output(client, server, b"b"))
    # The index is neither the ORF output nor a key; the keys differ per epoch.
    keys = attachments.reference_keys(alice, EPOCH)
    assert keys.index == attachments.reference_index(alice)
    assert len({alice, keys.index, keys.reference_key, keys.mac_key}) == 4
    other = attachments.reference_keys(alice, epochs.Epoch(4, 78, EPOCH.root_key))
    assert other.index == keys.index
    assert other.reference_key != keys.reference_key and other.mac_key != keys.mac_key


def test_the_reference_is_bound_to_its_index_and_epoch() -> None:
    client, server = orf.client_init(), orf.server_init()
    one = attachments.reference_keys(_output(client, server, b"one"), EPOCH)
    two = attachments.reference_keys(_output(client, server, b"two"), EPOCH)
    reference, _ = attachments.seal(one, b"p", thread_id="t", message_id="m")
    with pytest.raises(InvalidAttachmentReference):
        attachments.open_reference(two, reference)
    # The sequence id is authenticated: a server that rewrites it gets nothing to open.
    moved = reference[:1] + (4).to_bytes(8, "big") + reference[9:]
    with pytest.raises(InvalidAttachmentReference):
        attachments.open_reference(one, moved)
    relabelled = attachments.reference_keys(_output(client, server, b"one"),
                                            epochs.Epoch(4, 78, EPOCH.root_key))
    with pytest.raises(InvalidAttachmentReference):
        attachments.open_reference(relabelled, moved)
    for bad in (b"", b"\x02", reference[:9], reference[:-1], reference + b"\x00",
                reference[:-1] + bytes([reference[-1] ^ 1])):
        with pytest.raises(InvalidAttachmentReference):
            attachments.open_reference(one, bad)


def test_version_1_references_are_refused() -> None:
    client, server = orf.client_init(), orf.server_init()
    keys = attachments.reference_keys(_output(client, server, b"one"), EPOCH)
    reference, _ = attachments.seal(keys, b"p", thread_id="t", message_id="m")
    assert reference[0] == 2
    for version in (0, 1, 3, 255):
        with pytest.raises(UnsupportedAttachmentReference):
            attachments.reference_sequence_id(bytes([version]) + reference[1:])
        with pytest.raises(UnsupportedAttachmentReference):
            attachments.open_reference(keys, bytes([version]) + reference[1:])


def test_limits() -> None:
    client = orf.client_init()
    with pytest.raises(InvalidAttachmentReference):
        attachments.blind(client, b"")
    with pytest.raises(InvalidAttachmentReference):
        attachments.blind(client, b"x" * 257)
    keys = attachments.reference_keys(bytes(32), EPOCH)
    with pytest.raises(InvalidAttachmentReference):
        attachments.seal(keys, b"", thread_id="t", message_id="m")
    with pytest.raises(InvalidAttachmentReference):
        attachments.seal(keys, b"x" * 1025, thread_id="t", message_id="m")
    for size in (1, 1024):  # the shortest and the longest reference open
        reference, _ = attachments.seal(keys, b"x" * size, thread_id="t", message_id="m")
        assert attachments.open_reference(keys, reference) == b"x" * size
    with pytest.raises(InvalidLabel):
        attachments.deletion_mac(keys, "", "m")
    with pytest.raises(InvalidAttachmentReference):
        attachments.reference_keys(bytes(31), EPOCH)
    with pytest.raises(InvalidAttachmentReference):
        attachments.reference_index(bytes(33))
    with pytest.raises(InvalidPublicKey):
        orf.server_map(orf.server_init(), SERVER_DOMAIN, bytes(32))


_KEYS = attachments.reference_keys(bytes(range(32)), EPOCH)
_VALID, _ = attachments.seal(_KEYS, b"a pointer", thread_id="t", message_id="m",
                             nonce=bytes(EXTENDED_NONCE_LEN))


@settings(max_examples=300)
@given(st.binary(max_size=1200))
def test_decoder_raises_only_typed_errors(data: bytes) -> None:
    try:
        attachments.reference_sequence_id(data)
        attachments.open_reference(_KEYS, data)
    except LabyrinthError:
        pass


@settings(max_examples=300)
@given(st.integers(min_value=0, max_value=len(_VALID) - 1), st.integers(1, 255),
       st.binary(max_size=4))
def test_any_change_to_a_reference_is_refused(position: int, flip: int, tail: bytes) -> None:
    changed = bytearray(_VALID)
    changed[position] ^= flip
    for bad in (bytes(changed), _VALID + tail if tail else bytes(changed)):
        with pytest.raises(InvalidAttachmentReference):
            attachments.open_reference(_KEYS, bad)


@given(st.integers(min_value=0, max_value=EPOCH_SEQUENCE_MAX))
def test_the_sequence_id_round_trips(sequence_id: int) -> None:
    keys = attachments.reference_keys(bytes(range(32)), epochs.Epoch(sequence_id, 1, bytes(32)))
    reference, _ = attachments.seal(keys, b"p", thread_id="t", message_id="m")
    assert attachments.reference_sequence_id(reference) == sequence_id
    assert attachments.open_reference(keys, reference) == b"p"


@given(st.text(max_size=200), st.text(max_size=200), st.binary(min_size=30, max_size=34))
def test_matches_raises_only_typed_errors(thread: str, message: str, tag: bytes) -> None:
    try:
        attachments.matches(_KEYS, tag, thread, message)
    except LabyrinthError:
        pass
