"""Epoch chaining, membership MACs, entropy distribution and post-revocation secrecy."""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace

import pytest

from e2ee_core.labyrinth import epochs, hpke, mailbox, primitives
from e2ee_core.labyrinth.consts import (
    SIGNATURE_USE_EPOCH_STORAGE_AUTH_KEY,
    SIGNATURE_USE_EPOCH_STORAGE_KEY,
)
from e2ee_core.labyrinth.errors import (
    DecryptionFailed,
    InvalidEpoch,
    LabyrinthError,
    MembershipMacMismatch,
)


@dataclass
class Device:
    device_priv: bytes
    device_pub: bytes
    storage_priv: bytes
    storage_pub: bytes
    auth_priv: bytes
    auth_pub: bytes

    @classmethod
    def new(cls) -> Device:
        return cls(*hpke.generate_keypair(), *hpke.generate_keypair(), *hpke.generate_keypair())

    def member(self, epoch: epochs.Epoch) -> epochs.Member:
        return epochs.Member(
            self.device_pub, self.storage_pub,
            primitives.sign(self.device_priv, SIGNATURE_USE_EPOCH_STORAGE_KEY, self.storage_pub),
            epochs.membership_mac(epoch.root_key, epoch.sequence_id, self.device_pub))

    def sender(self) -> epochs.SenderKeys:
        return epochs.SenderKeys(self.auth_pub, self.auth_priv)

    def auth_sig(self) -> bytes:
        return primitives.sign(self.device_priv, SIGNATURE_USE_EPOCH_STORAGE_AUTH_KEY,
                               self.auth_pub)

    def receive(self, previous: epochs.Epoch, message: bytes, opener: Device
                ) -> epochs.NextEpoch:
        return epochs.receive_epoch_entropy(
            previous, message, storage_pub=self.storage_pub, storage_priv=self.storage_priv,
            sender_device_key_pub=opener.device_pub, sender_auth_pub=opener.auth_pub,
            sender_auth_sig=opener.auth_sig())


def test_b64_sequence_matches_the_whitepaper_example() -> None:
    assert epochs.b64_sequence(3) == "Mw=="
    assert epochs.b64_sequence(12) == base64.b64encode(b"12").decode()


def test_chain_follows_the_whitepaper_labels() -> None:
    previous = epochs.Epoch(4, 77, bytes(range(32)))
    entropy = bytes([9]) * 32
    chaining, psk = primitives.kdf(previous.root_key, None, b"epoch_chaining_4_77", 32, 32)
    nxt = epochs.next_epoch(previous, entropy)
    assert nxt.sequence_id == 5
    assert nxt.distribution_psk == psk
    assert nxt.root_key == primitives.kdf_key(entropy, chaining, b"epoch_root_key")
    assert epochs.data_storage_key(nxt.root_key, 5) == primitives.kdf_key(
        nxt.root_key, None, b"epoch_data_storage_NQ==")
    assert epochs.device_mac_key(nxt.root_key, 5) == primitives.kdf_key(
        nxt.root_key, None, b"epoch_devices_NQ==")


def test_previous_epoch_round_trip_and_validation() -> None:
    previous = epochs.Epoch(0, 10, bytes(32))
    current = epochs.next_epoch(previous, bytes([1]) * 32).with_id(11)
    sealed = epochs.seal_previous_epoch(current, previous)
    assert epochs.open_previous_epoch(current, sealed, 10) == previous
    # A server replaying another epoch's metadata fails authentication or the sequence check.
    later = epochs.next_epoch(current, bytes([2]) * 32).with_id(12)
    with pytest.raises(DecryptionFailed):
        epochs.open_previous_epoch(later, sealed, 10)
    key = epochs.data_storage_key(current.root_key, 1)
    for bad in (b"01", b"1", b"x", b"123456789012", b""):
        forged = replace(sealed, encrypted_sequence_id=primitives.encrypt(
            key, epochs.EPOCH_METADATA_AAD, bad))
        with pytest.raises(InvalidEpoch):
            epochs.open_previous_epoch(current, forged, 10)


def test_open_epoch_reaches_members_and_leaves_out_the_revoked_device() -> None:
    alice_phone, alice_laptop, stolen = Device.new(), Device.new(), Device.new()
    first = epochs.Epoch(0, 1, epochs.first_epoch_root())
    members = [alice_phone.member(first), alice_laptop.member(first)]  # `stolen` revoked
    opened = epochs.open_epoch(first, members, alice_phone.sender())
    assert opened.rejected == ()
    new_epoch = opened.epoch.with_id(2)
    laptop_view = alice_laptop.receive(first, opened.accepted[1][2], alice_phone)
    assert laptop_view.with_id(2) == new_epoch
    assert opened.accepted[1][1] == epochs.membership_mac(new_epoch.root_key, 1,
                                                          alice_laptop.device_pub)

    # Post-revocation secrecy: the revoked device knows the old epoch and receives every
    # record and every entropy message, yet cannot open a message saved in the new epoch.
    record = mailbox.seal(new_epoch, inbox_id="alice", thread_id="bob", message_id="m1",
                          timestamp=1, message=b"after revocation")
    for _, _, message in opened.accepted:
        with pytest.raises(DecryptionFailed):
            stolen.receive(first, message, alice_phone)
    with pytest.raises(LabyrinthError):
        mailbox.open_record(first, record)
    guessed = epochs.Epoch(1, 2, first.root_key)
    with pytest.raises(DecryptionFailed):
        mailbox.open_record(guessed, record)
    assert mailbox.open_record(laptop_view.with_id(2), record) == b"after revocation"


def test_open_epoch_rejects_forged_membership_and_bad_signatures() -> None:
    opener, intruder, unsigned = Device.new(), Device.new(), Device.new()
    first = epochs.Epoch(0, 1, epochs.first_epoch_root())
    forged = replace(intruder.member(first), membership_mac=bytes(32))
    bad_sig = replace(unsigned.member(first), epoch_storage_key_sig=bytes(64))
    opened = epochs.open_epoch(first, [opener.member(first), forged, bad_sig], opener.sender())
    assert opened.rejected == (1, 2)
    assert [index for index, _, _ in opened.accepted] == [0]


def test_check_membership() -> None:
    device = Device.new()
    first = epochs.Epoch(0, 1, bytes(32))
    good = epochs.membership_mac(first.root_key, 0, device.device_pub)
    epochs.check_membership(first.root_key, 0, device.device_pub, good)
    with pytest.raises(MembershipMacMismatch):
        epochs.check_membership(first.root_key, 1, device.device_pub, good)


def test_entropy_from_an_unsigned_sender_is_refused() -> None:
    opener, member, impostor = Device.new(), Device.new(), Device.new()
    first = epochs.Epoch(0, 1, bytes(32))
    opened = epochs.open_epoch(first, [member.member(first)], opener.sender())
    with pytest.raises(DecryptionFailed):
        epochs.receive_epoch_entropy(
            first, opened.accepted[0][2], storage_pub=member.storage_pub,
            storage_priv=member.storage_priv, sender_device_key_pub=impostor.device_pub,
            sender_auth_pub=opener.auth_pub, sender_auth_sig=opener.auth_sig())


@pytest.mark.parametrize(("sequence", "epoch_id"), [(-1, 0), (10**11, 0), (0, -1), (0, 2**63)])
def test_epoch_ranges(sequence: int, epoch_id: int) -> None:
    with pytest.raises(InvalidEpoch):
        epochs.Epoch(sequence, epoch_id, bytes(32))


def test_epoch_repr_hides_the_root_key() -> None:
    epoch = epochs.Epoch(0, 1, bytes([0xAB]) * 32)
    assert "abab" not in repr(epoch).lower()
