"""Epochs (Protocol: Epochs; Phases: Opening an Epoch): key chaining, metadata, membership.

For an epoch after the first (labels exactly as the whitepaper; integers in decimal, and
``b64(seq)`` is base64 of that decimal string, e.g. sequence 3 -> "Mw=="):

    (chainingKey, distributionPSK) = kdf(prevRoot, null, "epoch_chaining_<prevSeq>_<prevID>")
    root             = kdf(newEntropy, salt=chainingKey, "epoch_root_key")
    dataStorageKey   = kdf(root, null, "epoch_data_storage_" + b64(seq))
    deviceMacKey     = kdf(root, null, "epoch_devices_" + b64(seq))
    previous epoch   = encrypt(dataStorageKey, "epoch_data_metadata", prevSeq | prevRoot)
    membership MAC   = mac(deviceKeyPub, deviceMacKey)
    entropy message  = pk_encrypt(member's storage key, own auth key, distributionPSK,
                                  "epoch__<seq>", newEntropy)

Only the entropy travels, and only to devices whose previous-epoch membership MAC and
storage-key signature verify, so a new epoch can only contain members of the previous one.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import hpke
from .consts import (
    EPOCH_ENTROPY_LEN,
    EPOCH_ID_MAX,
    EPOCH_ROOT_KEY_LEN,
    EPOCH_SEQUENCE_MAX,
    EPOCH_SEQUENCE_MAX_DIGITS,
    KEY_LEN,
    MEMBERSHIP_MAC_LEN,
    SIGNATURE_USE_EPOCH_STORAGE_AUTH_KEY,
    SIGNATURE_USE_EPOCH_STORAGE_KEY,
    X25519_LEN,
)
from .errors import DecryptionFailed, InvalidEpoch, InvalidPublicKey, MembershipMacMismatch
from .primitives import decrypt, encrypt, kdf, kdf_key, mac, mac_equal, verify

EPOCH_METADATA_AAD = b"epoch_data_metadata"


def _check_sequence(sequence_id: int) -> None:
    if isinstance(sequence_id, bool) or not 0 <= sequence_id <= EPOCH_SEQUENCE_MAX:
        raise InvalidEpoch("epoch sequence id out of range")


def _check_epoch_id(epoch_id: int) -> None:
    if isinstance(epoch_id, bool) or not 0 <= epoch_id <= EPOCH_ID_MAX:
        raise InvalidEpoch("epoch id out of range")


def _check_key(key: bytes) -> None:
    if len(key) != KEY_LEN:
        raise InvalidEpoch("epoch key must be 32 bytes")


def b64_sequence(sequence_id: int) -> str:
    """base64 of the decimal sequence id (Appendix, Encodings): 3 -> "Mw=="."""
    _check_sequence(sequence_id)
    return base64.b64encode(str(sequence_id).encode("ascii")).decode("ascii")


@dataclass(frozen=True, slots=True)
class Epoch:
    """An epoch a device knows: its client sequence id, server id and secret root key."""

    sequence_id: int
    epoch_id: int
    root_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_sequence(self.sequence_id)
        _check_epoch_id(self.epoch_id)
        if len(self.root_key) != EPOCH_ROOT_KEY_LEN:
            raise InvalidEpoch("epoch root key must be 32 bytes")


@dataclass(frozen=True, slots=True)
class NextEpoch:
    """A derived epoch before the server assigns its id, with its distribution PSK."""

    sequence_id: int
    root_key: bytes = field(repr=False)
    distribution_psk: bytes = field(repr=False)

    def with_id(self, epoch_id: int) -> Epoch:
        """The epoch once the server has assigned ``epoch_id``."""
        return Epoch(self.sequence_id, epoch_id, self.root_key)


def first_epoch_root() -> bytes:
    """Root key of the first epoch (sequence 0): 32 random bytes."""
    return os.urandom(EPOCH_ROOT_KEY_LEN)


def chaining_keys(previous: Epoch) -> tuple[bytes, bytes]:
    """(epochChainingKey, epochDistributionPreSharedKey) from the previous epoch."""
    label = f"epoch_chaining_{previous.sequence_id}_{previous.epoch_id}".encode("ascii")
    chaining, psk = kdf(previous.root_key, None, label, KEY_LEN, KEY_LEN)
    return chaining, psk


def next_epoch(previous: Epoch, new_entropy: bytes) -> NextEpoch:
    """The epoch following ``previous`` for ``new_entropy`` (random(32) when opening)."""
    if len(new_entropy) != EPOCH_ENTROPY_LEN:
        raise InvalidEpoch("epoch entropy must be 32 bytes")
    if previous.sequence_id >= EPOCH_SEQUENCE_MAX:
        raise InvalidEpoch("epoch sequence id exhausted")
    chaining, psk = chaining_keys(previous)
    root = kdf_key(new_entropy, chaining, b"epoch_root_key")
    return NextEpoch(previous.sequence_id + 1, root, psk)


def data_storage_key(root_key: bytes, sequence_id: int) -> bytes:
    """epochDataStorageKey: encrypts the previous epoch's secrets."""
    _check_key(root_key)
    return kdf_key(root_key, None, f"epoch_data_storage_{b64_sequence(sequence_id)}".encode())


def device_mac_key(root_key: bytes, sequence_id: int) -> bytes:
    """epochDeviceMacKey: authenticates each member device's deviceKeyPub."""
    _check_key(root_key)
    return kdf_key(root_key, None, f"epoch_devices_{b64_sequence(sequence_id)}".encode())


def entropy_aad(sequence_id: int) -> bytes:
    """aad of the entropy message for epoch ``sequence_id``: "epoch__<seq>"."""
    _check_sequence(sequence_id)
    return f"epoch__{sequence_id}".encode("ascii")


def membership_mac(root_key: bytes, sequence_id: int, device_key_pub: bytes) -> bytes:
    """epochDeviceMac of a device in the epoch ``(root_key, sequence_id)``."""
    return mac(device_key_pub, device_mac_key(root_key, sequence_id))


def check_membership(root_key: bytes, sequence_id: int, device_key_pub: bytes,
                     claimed_mac: bytes) -> None:
    """Raise :class:`MembershipMacMismatch` unless ``claimed_mac`` verifies (constant time)."""
    expected = membership_mac(root_key, sequence_id, device_key_pub)
    if len(claimed_mac) != MEMBERSHIP_MAC_LEN or not mac_equal(expected, claimed_mac):
        raise MembershipMacMismatch("epoch membership MAC does not verify")


@dataclass(frozen=True, slots=True)
class PreviousEpochData:
    """The previous epoch's secrets, encrypted under the new epoch's data storage key."""

    encrypted_sequence_id: bytes
    encrypted_root_key: bytes


def seal_previous_epoch(current: NextEpoch | Epoch, previous: Epoch) -> PreviousEpochData:
    """encryptedPreviousEpochSequenceID and encryptedPreviousEpochRootKey."""
    key = data_storage_key(current.root_key, current.sequence_id)
    return PreviousEpochData(
        encrypt(key, EPOCH_METADATA_AAD, str(previous.sequence_id).encode("ascii")),
        encrypt(key, EPOCH_METADATA_AAD, previous.root_key))


def open_previous_epoch(current: Epoch, data: PreviousEpochData,
                        previous_epoch_id: int) -> Epoch:
    """Backward chaining: the previous epoch's secrets, with its sequence id validated.

    The sequence id must be a decimal string of at most 11 characters without leading zeros
    (the whitepaper's implicit domain separation) and exactly one below the current one.
    """
    key = data_storage_key(current.root_key, current.sequence_id)
    raw_sequence = decrypt(key, EPOCH_METADATA_AAD, data.encrypted_sequence_id)
    root = decrypt(key, EPOCH_METADATA_AAD, data.encrypted_root_key)
    if (not 1 <= len(raw_sequence) <= EPOCH_SEQUENCE_MAX_DIGITS
            or not all(0x30 <= byte <= 0x39 for byte in raw_sequence)
            or (len(raw_sequence) > 1 and raw_sequence[0] == 0x30)):
        raise InvalidEpoch("previous epoch sequence id is not a canonical decimal")
    sequence = int(raw_sequence)
    if sequence + 1 != current.sequence_id:
        raise InvalidEpoch("previous epoch sequence id does not precede the current one")
    if len(root) != EPOCH_ROOT_KEY_LEN:
        raise InvalidEpoch("previous epoch root key has the wrong length")
    return Epoch(sequence, previous_epoch_id, root)


@dataclass(frozen=True, slots=True)
class Member:
    """A device (or virtual device) of the previous epoch, as the server presents it."""

    device_key_pub: bytes
    epoch_storage_key_pub: bytes
    epoch_storage_key_sig: bytes
    membership_mac: bytes  # its epochDeviceMac in the previous epoch


@dataclass(frozen=True, slots=True)
class SenderKeys:
    """The opening device's epochStorageAuthKey pair."""

    auth_pub: bytes
    auth_priv: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class OpenedEpoch:
    """Everything a device uploads when it opens an epoch (before the server assigns its id)."""

    epoch: NextEpoch
    previous: PreviousEpochData
    # For each accepted member, in input order: (index, new membership MAC, entropy message).
    accepted: tuple[tuple[int, bytes, bytes], ...]
    rejected: tuple[int, ...]  # members whose MAC or storage-key signature failed


def _member_valid(previous: Epoch, member: Member) -> bool:
    try:
        check_membership(previous.root_key, previous.sequence_id, member.device_key_pub,
                         member.membership_mac)
    except MembershipMacMismatch:
        return False
    return verify(member.device_key_pub, member.epoch_storage_key_sig,
                  SIGNATURE_USE_EPOCH_STORAGE_KEY, member.epoch_storage_key_pub)


def open_epoch(previous: Epoch, members: Sequence[Member], sender: SenderKeys,
               new_entropy: bytes | None = None) -> OpenedEpoch:
    """Open the epoch after ``previous`` for ``members`` (the opening device included).

    Members whose previous membership MAC or storage-key signature do not verify get no
    entropy and no new MAC; a revoked device is simply left out of ``members``.
    """
    entropy = os.urandom(EPOCH_ENTROPY_LEN) if new_entropy is None else new_entropy
    epoch = next_epoch(previous, entropy)
    accepted: list[tuple[int, bytes, bytes]] = []
    rejected: list[int] = []
    for index, member in enumerate(members):
        if not _member_valid(previous, member):
            rejected.append(index)
            continue
        try:
            message = hpke.encrypt(member.epoch_storage_key_pub, sender.auth_pub,
                                   sender.auth_priv, psk=epoch.distribution_psk,
                                   aad=entropy_aad(epoch.sequence_id), plaintext=entropy)
        except InvalidPublicKey:
            rejected.append(index)
            continue
        accepted.append((index, membership_mac(epoch.root_key, epoch.sequence_id,
                                               member.device_key_pub), message))
    return OpenedEpoch(epoch, seal_previous_epoch(epoch, previous), tuple(accepted),
                       tuple(rejected))


def receive_epoch_entropy(previous: Epoch, entropy_message: bytes, *, storage_pub: bytes,
                          storage_priv: bytes, sender_device_key_pub: bytes,
                          sender_auth_pub: bytes, sender_auth_sig: bytes) -> NextEpoch:
    """Forward chaining: decrypt the entropy addressed to us and derive the next epoch.

    The sender's epochStorageAuthKeyPub must carry its device key's 0x31 signature.
    """
    if len(sender_auth_pub) != X25519_LEN or not verify(
            sender_device_key_pub, sender_auth_sig, SIGNATURE_USE_EPOCH_STORAGE_AUTH_KEY,
            sender_auth_pub):
        raise DecryptionFailed("sender's epoch storage auth key signature does not verify")
    if previous.sequence_id >= EPOCH_SEQUENCE_MAX:
        raise InvalidEpoch("epoch sequence id exhausted")
    _, psk = chaining_keys(previous)
    entropy = hpke.decrypt(storage_pub, storage_priv, sender_auth_pub, psk=psk,
                           aad=entropy_aad(previous.sequence_id + 1),
                           ciphertext=entropy_message)
    if len(entropy) != EPOCH_ENTROPY_LEN:
        raise InvalidEpoch("epoch entropy must be 32 bytes")
    return next_epoch(previous, entropy)
