"""Virtual devices and adding a device (Protocol: Virtual Devices, Adding a Device).

A virtual device is a read-only member of the mailbox that an enrolled device creates from a
recovery code, after which the enrolled device forgets the code and the virtual device's
secrets. It has its own device key (XEdDSA, membership MACs) and epoch storage key (entropy
messages reach it like any member), an ORF client state evolved from the creator's, and the
epoch it was created in. The server stores its bundle under the vdeviceId:

    header  = 0x01 || vdeviceId[16] || deviceKeyPub[32] || epochStorageKeyPub[32]
              || pk_sign(deviceKeyPriv, 0x30, epochStorageKeyPub)[64] || salt[32]
    wrapKey = kdf(vdeviceDecryptionKey, salt, "virtual_device_bundle_v1")
    secrets = deviceKeyPriv || epochStorageKeyPriv || orfClientState || u64be(seq)
              || u64be(epochId) || epochRootKey || epochHeadHash           (176 bytes)
    bundle  = header || encrypt(wrapKey, aad = header, secrets)               (397 bytes)

(The whitepaper names the contents, not a byte layout; this one is ours and has vectors.)
Restoring: the recovery code derives (vdeviceId, vdeviceDecryptionKey); :func:`open_bundle`
checks the id, decrypts, and checks that the private keys match the public header and its
signature. :func:`chain_backward` and :func:`chain_forward` then walk the stored previous-epoch
records and the entropy messages addressed to the virtual device; :func:`add_device` evolves
the ORF state for the new device and gives its membership MAC in the newest epoch.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from . import hpke, orf
from .consts import (
    EPOCH_HEAD_HASH_LEN,
    EPOCH_SEQUENCE_MAX,
    EXTENDED_NONCE_LEN,
    KEY_LEN,
    MAX_CHAIN_STEPS,
    SEQUENCE_FIELD_LEN,
    SIGNATURE_LEN,
    SIGNATURE_USE_EPOCH_STORAGE_AUTH_KEY,
    SIGNATURE_USE_EPOCH_STORAGE_KEY,
    VDEVICE_BUNDLE_HEADER_LEN,
    VDEVICE_BUNDLE_LEN,
    VDEVICE_BUNDLE_VERSION,
    VDEVICE_ID_LEN,
    VDEVICE_SALT_LEN,
    X25519_LEN,
)
from .epoch_chain import EpochHead, verify_chain
from .epochs import (
    Epoch,
    Member,
    NextEpoch,
    PreviousEpochData,
    SenderKeys,
    membership_mac,
    open_previous_epoch,
    receive_epoch_entropy,
)
from .errors import (
    DecryptionFailed,
    EpochChainTruncated,
    InvalidEpoch,
    InvalidKeyLength,
    InvalidVirtualDevice,
    LabyrinthError,
)
from .primitives import decrypt, encrypt_with_nonce, kdf_key, mac_equal, sign, verify
from .recovery_codes import VirtualDeviceSecrets

WRAP_KEY_LABEL = b"virtual_device_bundle_v1"


@dataclass(frozen=True, slots=True)
class DeviceKeys:
    """A (virtual) device's device key and epoch storage key pairs, X25519 raw bytes."""

    device_pub: bytes
    storage_pub: bytes
    device_priv: bytes = field(repr=False)
    storage_priv: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> DeviceKeys:
        device_priv, device_pub = hpke.generate_keypair()
        storage_priv, storage_pub = hpke.generate_keypair()
        return cls(device_pub, storage_pub, device_priv, storage_priv)

    @classmethod
    def from_private(cls, device_priv: bytes, storage_priv: bytes) -> DeviceKeys:
        return cls(hpke.public_key(device_priv), hpke.public_key(storage_priv), device_priv,
                   storage_priv)

    def storage_signature(self, random: bytes | None = None) -> bytes:
        """pk_sign(deviceKeyPriv, 0x30, epochStorageKeyPub)."""
        return sign(self.device_priv, SIGNATURE_USE_EPOCH_STORAGE_KEY, self.storage_pub, random)


@dataclass(frozen=True, slots=True)
class VirtualDeviceBundle:
    """The server-stored bundle of one virtual device (see the module docstring)."""

    vdevice_id: bytes
    device_pub: bytes
    storage_pub: bytes
    storage_sig: bytes
    salt: bytes
    sealed: bytes

    def __post_init__(self) -> None:
        if (len(self.vdevice_id) != VDEVICE_ID_LEN or len(self.device_pub) != X25519_LEN
                or len(self.storage_pub) != X25519_LEN or len(self.storage_sig) != SIGNATURE_LEN
                or len(self.salt) != VDEVICE_SALT_LEN
                or len(self.sealed) != VDEVICE_BUNDLE_LEN - VDEVICE_BUNDLE_HEADER_LEN):
            raise InvalidVirtualDevice("virtual device bundle field has the wrong length")

    def header(self) -> bytes:
        return (bytes([VDEVICE_BUNDLE_VERSION]) + self.vdevice_id + self.device_pub
                + self.storage_pub + self.storage_sig + self.salt)

    def encode(self) -> bytes:
        return self.header() + self.sealed

    @classmethod
    def decode(cls, data: bytes) -> VirtualDeviceBundle:
        """Strict decoder: exact length and version; contents checked by :func:`open_bundle`."""
        if not isinstance(data, bytes) or len(data) != VDEVICE_BUNDLE_LEN:
            raise InvalidVirtualDevice("virtual device bundle has the wrong length")
        if data[0] != VDEVICE_BUNDLE_VERSION:
            raise InvalidVirtualDevice("unknown virtual device bundle version")
        cuts = [1, VDEVICE_ID_LEN, X25519_LEN, X25519_LEN, SIGNATURE_LEN, VDEVICE_SALT_LEN]
        parts: list[bytes] = []
        offset = 0
        for size in cuts:
            parts.append(data[offset:offset + size])
            offset += size
        return cls(parts[1], parts[2], parts[3], parts[4], parts[5], data[offset:])

    def member(self, claimed_mac: bytes) -> Member:
        """The virtual device as a member (with its MAC in the previous epoch) when a device
        opens the next epoch."""
        return Member(self.device_pub, self.storage_pub, self.storage_sig, claimed_mac)


@dataclass(frozen=True, slots=True)
class VirtualDeviceState:
    """What opening a bundle yields: the virtual device's keys, ORF state and epoch."""

    vdevice_id: bytes
    keys: DeviceKeys
    orf_state: orf.ClientState = field(repr=False)
    epoch: Epoch = field(repr=False)
    head_hash: bytes


@dataclass(frozen=True, slots=True)
class CreatedVirtualDevice:
    """What an enrolled device uploads when it creates a virtual device.

    ``bundle`` goes to the server under its vdeviceId, ``membership_mac`` is the virtual
    device's epochDeviceMac in the current epoch, and the server derives the virtual device's
    ORF share from the creator's share and ``orf_token`` (``orf.server_evolve``).
    """

    bundle: VirtualDeviceBundle
    membership_mac: bytes
    orf_token: orf.EvolveToken = field(repr=False)


def _wrap_key(secrets: VirtualDeviceSecrets, salt: bytes) -> bytes:
    return kdf_key(secrets.decryption_key, salt, WRAP_KEY_LABEL)


def create(secrets: VirtualDeviceSecrets, *, epoch: Epoch, head_hash: bytes,
           orf_state: orf.ClientState, keys: DeviceKeys | None = None,
           salt: bytes | None = None, token: orf.EvolveToken | None = None,
           nonce: bytes | None = None, random: bytes | None = None) -> CreatedVirtualDevice:
    """Create the virtual device of ``secrets`` (from a recovery code) in ``epoch``.

    ``keys``, ``salt``, ``token``, ``nonce`` and ``random`` are fresh unless given (vectors).
    The caller forgets the recovery code and every secret here once the upload succeeded.
    """
    if len(head_hash) != EPOCH_HEAD_HASH_LEN:
        raise InvalidVirtualDevice("epoch head hash must be 32 bytes")
    own = DeviceKeys.generate() if keys is None else keys
    salt = os.urandom(VDEVICE_SALT_LEN) if salt is None else salt
    nonce = os.urandom(EXTENDED_NONCE_LEN) if nonce is None else nonce
    if len(salt) != VDEVICE_SALT_LEN:
        raise InvalidKeyLength("virtual device salt must be 32 bytes")
    evolved, rotation = orf.client_evolve(orf_state, token)
    plaintext = (own.device_priv + own.storage_priv + evolved.value
                 + epoch.sequence_id.to_bytes(SEQUENCE_FIELD_LEN, "big")
                 + epoch.epoch_id.to_bytes(SEQUENCE_FIELD_LEN, "big")
                 + epoch.root_key + head_hash)
    header_only = VirtualDeviceBundle(secrets.vdevice_id, own.device_pub, own.storage_pub,
                                      own.storage_signature(random), salt,
                                      bytes(VDEVICE_BUNDLE_LEN - VDEVICE_BUNDLE_HEADER_LEN))
    sealed = encrypt_with_nonce(_wrap_key(secrets, salt), nonce, header_only.header(),
                                plaintext)
    bundle = VirtualDeviceBundle(secrets.vdevice_id, own.device_pub, own.storage_pub,
                                 header_only.storage_sig, salt, sealed)
    return CreatedVirtualDevice(
        bundle, membership_mac(epoch.root_key, epoch.sequence_id, own.device_pub), rotation)


def open_bundle(secrets: VirtualDeviceSecrets, bundle: VirtualDeviceBundle) -> VirtualDeviceState:
    """Decrypt ``bundle`` with the recovery code's secrets and check every key in it."""
    if not mac_equal(secrets.vdevice_id, bundle.vdevice_id):
        raise InvalidVirtualDevice("virtual device bundle belongs to another recovery code")
    plaintext = decrypt(_wrap_key(secrets, bundle.salt), bundle.header(), bundle.sealed)
    offset = 0

    def take(size: int) -> bytes:
        nonlocal offset
        piece = plaintext[offset:offset + size]
        offset += size
        return piece

    device_priv, storage_priv, orf_value = take(KEY_LEN), take(KEY_LEN), take(KEY_LEN)
    sequence_id = int.from_bytes(take(SEQUENCE_FIELD_LEN), "big")
    epoch_id = int.from_bytes(take(SEQUENCE_FIELD_LEN), "big")
    root_key, head_hash = take(KEY_LEN), take(EPOCH_HEAD_HASH_LEN)
    try:
        keys = DeviceKeys.from_private(device_priv, storage_priv)
        state = orf.Scalar(orf_value)
        epoch = Epoch(sequence_id, epoch_id, root_key)
    except LabyrinthError:
        raise InvalidVirtualDevice("virtual device bundle holds invalid secrets") from None
    if not (mac_equal(keys.device_pub, bundle.device_pub)
            and mac_equal(keys.storage_pub, bundle.storage_pub)):
        raise InvalidVirtualDevice("virtual device keys do not match the bundle's public keys")
    if not verify(keys.device_pub, bundle.storage_sig, SIGNATURE_USE_EPOCH_STORAGE_KEY,
                  keys.storage_pub):
        raise InvalidVirtualDevice("virtual device storage key signature does not verify")
    return VirtualDeviceState(bundle.vdevice_id, keys, state, epoch, head_hash)


@dataclass(frozen=True, slots=True)
class BackwardStep:
    """The previous-epoch record stored with an epoch: the predecessor's server id and its
    secrets encrypted under this epoch's data storage key."""

    previous_epoch_id: int
    data: PreviousEpochData


@dataclass(frozen=True, slots=True)
class ForwardStep:
    """An entropy message for the next epoch addressed to this device, with the opener's
    device key, epoch storage auth key and 0x31 signature, and the new epoch's server id."""

    epoch_id: int
    message: bytes
    sender_device_key_pub: bytes
    sender_auth_pub: bytes
    sender_auth_sig: bytes


def _check_steps(steps: Sequence[object]) -> None:
    if len(steps) > MAX_CHAIN_STEPS:
        raise InvalidEpoch("too many epochs to chain")


def chain_backward(current: Epoch, steps: Sequence[BackwardStep]) -> list[Epoch]:
    """Backward chaining from ``current``: ``steps[i]`` is stored with epoch seq - i.

    Returns every epoch reached, oldest first, ending with ``current``.
    """
    _check_steps(steps)
    chain = [current]
    for step in steps:
        if chain[-1].sequence_id == 0:
            raise InvalidEpoch("the first epoch has no predecessor")
        chain.append(open_previous_epoch(chain[-1], step.data, step.previous_epoch_id))
    chain.reverse()
    return chain


def chain_forward(current: Epoch, steps: Sequence[ForwardStep], keys: DeviceKeys) -> list[Epoch]:
    """Forward chaining from ``current`` through entropy messages addressed to ``keys``.

    Returns ``current`` followed by every later epoch reached, oldest first.
    """
    _check_steps(steps)
    chain = [current]
    for step in steps:
        following = receive_epoch_entropy(
            chain[-1], step.message, storage_pub=keys.storage_pub,
            storage_priv=keys.storage_priv, sender_device_key_pub=step.sender_device_key_pub,
            sender_auth_pub=step.sender_auth_pub, sender_auth_sig=step.sender_auth_sig)
        chain.append(following.with_id(step.epoch_id))
    return chain


@dataclass(frozen=True, slots=True)
class DeviceAddition:
    """What a device added from a virtual device uploads: its membership MAC in the newest
    epoch, and the token the server uses to derive its ORF share from the virtual device's."""

    orf_state: orf.ClientState = field(repr=False)
    orf_token: orf.EvolveToken = field(repr=False)
    membership_mac: bytes


def add_device(state: VirtualDeviceState, newest: Epoch, device_key_pub: bytes,
               token: orf.EvolveToken | None = None) -> DeviceAddition:
    """Add the device ``device_key_pub`` from an opened virtual device.

    ``newest`` is the newest epoch reached by :func:`chain_forward` (the new device becomes a
    member of it); the new device's ORF state is the virtual device's, evolved.
    """
    if len(device_key_pub) != X25519_LEN:
        raise InvalidKeyLength("device key must be 32 bytes")
    if newest.sequence_id < state.epoch.sequence_id:
        raise InvalidEpoch("the newest epoch precedes the virtual device's")
    evolved, rotation = orf.client_evolve(state.orf_state, token)
    return DeviceAddition(evolved, rotation,
                          membership_mac(newest.root_key, newest.sequence_id, device_key_pub))


def restore_epochs(start: Epoch, start_head_hash: bytes, *, backward: Sequence[BackwardStep],
                   forward: Sequence[ForwardStep], keys: DeviceKeys,
                   heads: Sequence[EpochHead],
                   openers: Collection[bytes] | None = None) -> list[Epoch]:
    """The chaining driver: every epoch from the first to the newest, checked against heads.

    ``start`` is the epoch the device knows (a virtual device's, or a linked device's), with
    its head hash; ``backward`` runs from ``start`` down to the first epoch, ``forward`` up
    from it through entropy messages addressed to ``keys``. The epochs reached must be exactly
    those of ``heads`` (:func:`epoch_chain.verify_chain`, each root checked against its head's
    commitment): a missing previous-epoch record, withheld entropy, or a chain ending early
    raises :class:`EpochChainTruncated`; a different history :class:`EpochChainForked`.
    """
    older = chain_backward(start, backward)
    newer = chain_forward(start, forward, keys)
    known = older + newer[1:]
    if known[0].sequence_id != 0:
        raise EpochChainTruncated("previous-epoch records stop before the first epoch")
    verify_chain(heads, checkpoints={start.sequence_id: start_head_hash},
                 roots={epoch.sequence_id: epoch.root_key for epoch in known},
                 openers=openers)
    if len(heads) != len(known):
        raise EpochChainTruncated("epochs exist whose keys were not delivered")
    return known


def join_aad(sequence_id: int) -> bytes:
    """aad of a join message for epoch ``sequence_id``: "epoch_join__<seq>" (ours)."""
    if isinstance(sequence_id, bool) or not 1 <= sequence_id <= EPOCH_SEQUENCE_MAX:
        raise InvalidEpoch("epoch sequence id out of range")
    return f"epoch_join__{sequence_id}".encode("ascii")


def seal_join(epoch: NextEpoch, recipient_storage_pub: bytes, sender: SenderKeys,
              orf_state: orf.ClientState | None = None) -> bytes:
    """Adding a linked device (ours; the whitepaper hands the new device the epoch root over
    the device-linking channel): the root of a newly opened epoch, for a device that was not
    in the previous one, HPKE-encrypted to its epoch storage key from the opener's auth key,
    with (optionally) the ORF client state the opener evolved for it:

        pk_encrypt(storage key, auth key, psk = "", aad = "epoch_join__<seq>",
                   root || orfClientState?)

    The opener gave the new device a membership MAC in the previous epoch first, so the new
    epoch still holds only devices a member admitted; the new device then reaches every
    earlier epoch by backward chaining. Sent in the entropy-message slot of the new epoch.
    """
    plaintext = epoch.root_key + (b"" if orf_state is None else orf_state.value)
    return hpke.encrypt(recipient_storage_pub, sender.auth_pub, sender.auth_priv, psk=b"",
                        aad=join_aad(epoch.sequence_id), plaintext=plaintext)


def open_join(message: bytes, *, sequence_id: int, epoch_id: int, keys: DeviceKeys,
              sender_device_key_pub: bytes, sender_auth_pub: bytes,
              sender_auth_sig: bytes) -> tuple[Epoch, orf.ClientState | None]:
    """The epoch (and ORF state, if any) a join message hands over; the opener's 0x31
    auth-key signature must verify."""
    if len(sender_auth_pub) != X25519_LEN or not verify(
            sender_device_key_pub, sender_auth_sig, SIGNATURE_USE_EPOCH_STORAGE_AUTH_KEY,
            sender_auth_pub):
        raise DecryptionFailed("sender's epoch storage auth key signature does not verify")
    plaintext = hpke.decrypt(keys.storage_pub, keys.storage_priv, sender_auth_pub, psk=b"",
                             aad=join_aad(sequence_id), ciphertext=message)
    if len(plaintext) not in (KEY_LEN, 2 * KEY_LEN):
        raise InvalidEpoch("join message has the wrong length")
    state = None if len(plaintext) == KEY_LEN else orf.Scalar(plaintext[KEY_LEN:])
    return Epoch(sequence_id, epoch_id, plaintext[:KEY_LEN]), state
