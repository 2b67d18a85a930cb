"""Labyrinth records a restoring or linked device reads from the server (e2ee_core.labyrinth):
epoch heads (decode, signature, chain verification), virtual-device bundles (decode, then open
with a fixed recovery code's secrets, so the seeds reach the code after a successful
decryption), join messages and attachment references. The first input byte picks the
decoder."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from e2ee_core.labyrinth import attachments, epoch_chain, epochs, hpke, orf, virtual_devices
from e2ee_core.labyrinth.consts import EPOCH_HEAD_LEN, SIGNATURE_USE_EPOCH_STORAGE_AUTH_KEY
from e2ee_core.labyrinth.errors import LabyrinthError
from e2ee_core.labyrinth.primitives import sign
from e2ee_core.labyrinth.recovery_codes import RecoveryCode
from fuzz.targets._select import select

ACCEPTED: tuple[type[Exception], ...] = (LabyrinthError,)
MAX_LEN = 1024

_SECRETS = RecoveryCode.from_entropy("A" * 34).derive("100012345678901")
_OPENER_PRIV = bytes(range(4, 36))
_OPENER_PUB = hpke.public_key(_OPENER_PRIV)
_ROOT = bytes(range(5, 37))
_GENESIS = epoch_chain.make_head(sequence_id=0, root_key=_ROOT, previous=None,
                                 opener_device_key_priv=_OPENER_PRIV,
                                 opener_device_key_pub=_OPENER_PUB, random=bytes(64))


def _head(data: bytes) -> None:
    epoch_chain.EpochHead.decode(data).verify_signature()


def _chain(data: bytes) -> None:
    heads = [epoch_chain.EpochHead.decode(data[i:i + EPOCH_HEAD_LEN])
             for i in range(0, len(data) - EPOCH_HEAD_LEN + 1, EPOCH_HEAD_LEN)]
    epoch_chain.verify_chain([_GENESIS, *heads], roots={0: _ROOT})


def _bundle(data: bytes) -> None:
    virtual_devices.open_bundle(_SECRETS, virtual_devices.VirtualDeviceBundle.decode(data))


_JOINER = virtual_devices.DeviceKeys.from_private(bytes(range(7, 39)), bytes(range(8, 40)))
_AUTH_PRIV = bytes(range(9, 41))
_AUTH_PUB = hpke.public_key(_AUTH_PRIV)
_JOIN_SIG = sign(_OPENER_PRIV, SIGNATURE_USE_EPOCH_STORAGE_AUTH_KEY, _AUTH_PUB, bytes(64))
_REF_KEYS = attachments.reference_keys(bytes(range(10, 42)), epochs.Epoch(3, 9, _ROOT))


def _join(data: bytes) -> None:
    virtual_devices.open_join(data, sequence_id=1, epoch_id=5, keys=_JOINER,
                              sender_device_key_pub=_OPENER_PUB, sender_auth_pub=_AUTH_PUB,
                              sender_auth_sig=_JOIN_SIG)


def _reference(data: bytes) -> None:
    attachments.reference_sequence_id(data)  # which epoch's root the device would use
    attachments.open_reference(_REF_KEYS, data)


_DECODERS: tuple[Callable[[bytes], None], ...] = (_head, _chain, _bundle, _join, _reference)


def test_one_input(data: bytes) -> None:
    select(_DECODERS, ACCEPTED, data)


def seeds() -> Iterator[bytes]:
    yield b"\x00" + _GENESIS.encode()
    second = epoch_chain.make_head(sequence_id=1, root_key=bytes(range(6, 38)),
                                   previous=_GENESIS, opener_device_key_priv=_OPENER_PRIV,
                                   opener_device_key_pub=_OPENER_PUB, random=bytes(64))
    yield b"\x01" + second.encode()
    created = virtual_devices.create(_SECRETS, epoch=epochs.Epoch(3, 9, _ROOT),
                                     head_hash=_GENESIS.hash(), orf_state=orf.client_init())
    yield b"\x02" + created.bundle.encode()
    nxt = epochs.next_epoch(epochs.Epoch(0, 4, _ROOT), bytes(32))
    yield b"\x03" + virtual_devices.seal_join(nxt, _JOINER.storage_pub, epochs.SenderKeys(
        _AUTH_PUB, _AUTH_PRIV), orf.client_init())
    yield b"\x04" + attachments.seal(_REF_KEYS, b"a pointer", thread_id="t", message_id="m")[0]
