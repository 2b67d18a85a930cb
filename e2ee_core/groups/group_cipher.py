"""Sender-key encryption and decryption over a :class:`SenderKeyStore` (libsignal
``group_cipher.rs``): create and process distribution messages, encrypt, decrypt.

Each load-modify-store runs inside ``store.atomic()``: with a persistent store, a crash or a
concurrent process never observes half an update and a message key is never used twice.

A decryption that fails for any reason (unknown chain, bad signature, duplicate, too far ahead,
bad padding) raises a :class:`~e2ee_core.groups.errors.GroupError` and stores nothing: the work
is done on a loaded copy and written back only after success.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from e2ee_core.groups.consts import DISTRIBUTION_ID_LENGTH, MAX_ITERATION
from e2ee_core.groups.errors import (
    ChainExhausted,
    GroupDecryptionFailed,
    GroupError,
    NoSenderKeyState,
)
from e2ee_core.groups.sender_keys import (
    SenderKeyDistributionMessage,
    SenderKeyMessage,
    SenderKeyRecord,
    SenderKeyState,
)
from e2ee_core.groups.store import SenderAddress, SenderKeyStore

__all__ = [
    "create_sender_key_distribution_message",
    "group_decrypt",
    "group_encrypt",
    "process_sender_key_distribution_message",
    "rotate_sender_key",
]


def _check_distribution_id(distribution_id: bytes) -> None:
    if not isinstance(distribution_id, bytes) or len(distribution_id) != DISTRIBUTION_ID_LENGTH:
        raise GroupError(f"distribution id must be {DISTRIBUTION_ID_LENGTH} bytes")


def create_sender_key_distribution_message(
        store: SenderKeyStore, sender: SenderAddress,
        distribution_id: bytes) -> SenderKeyDistributionMessage:
    """Our own sender key for ``distribution_id`` (created on first use), as a distribution
    message carrying the *current* chain key and iteration."""
    _check_distribution_id(distribution_id)
    with store.atomic():
        record = store.load_sender_key(sender, distribution_id)
        state = record.newest() if record is not None else None
        if state is None or state.signing_private is None:
            state = SenderKeyState.generate()
            store.store_sender_key(sender, distribution_id, SenderKeyRecord([state]))
    return SenderKeyDistributionMessage.from_state(distribution_id, state)


def rotate_sender_key(store: SenderKeyStore, sender: SenderAddress,
                      distribution_id: bytes) -> SenderKeyDistributionMessage:
    """Replace our own sender key with a fresh one (new chain id, chain key and signing key);
    holders of the old key cannot read anything encrypted afterwards."""
    _check_distribution_id(distribution_id)
    state = SenderKeyState.generate()
    store.store_sender_key(sender, distribution_id, SenderKeyRecord([state]))
    return SenderKeyDistributionMessage.from_state(distribution_id, state)


def process_sender_key_distribution_message(
        store: SenderKeyStore, sender: SenderAddress,
        message: SenderKeyDistributionMessage) -> None:
    """Remember ``sender``'s chain so its group messages decrypt (from the message's iteration)."""
    with store.atomic():
        record = store.load_sender_key(sender, message.distribution_id) or SenderKeyRecord()
        if record.add_state(message.to_state()):
            store.store_sender_key(sender, message.distribution_id, record)


def group_encrypt(store: SenderKeyStore, sender: SenderAddress, distribution_id: bytes,
                  plaintext: bytes) -> bytes:
    """One signed SenderKeyMessage that every holder of our sender key can decrypt."""
    _check_distribution_id(distribution_id)
    with store.atomic():
        record = store.load_sender_key(sender, distribution_id)
        state = record.newest() if record is not None else None
        if record is None or state is None or state.signing_private is None:
            raise NoSenderKeyState("no own sender key: create a distribution message first")
        if state.chain_key.iteration >= MAX_ITERATION:
            raise ChainExhausted("sender chain exhausted: rotate the sender key")
        message_key = state.chain_key.message_key()
        iv, key = message_key.iv_and_key()
        padder = padding.PKCS7(128).padder()
        padded = padder.update(plaintext) + padder.finalize()
        encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
        ciphertext = encryptor.update(padded) + encryptor.finalize()
        message = SenderKeyMessage.create(distribution_id, state.chain_id, message_key.iteration,
                                          ciphertext, state.signing_private)
        state.chain_key = state.chain_key.next()
        store.store_sender_key(sender, distribution_id, record)
    return message.encode()


def group_decrypt(store: SenderKeyStore, sender: SenderAddress, data: bytes) -> bytes:
    """Verify and decrypt a SenderKeyMessage from ``sender``; state changes only on success."""
    message = SenderKeyMessage.decode(data)
    with store.atomic():
        record = store.load_sender_key(sender, message.distribution_id)
        if record is None:
            raise NoSenderKeyState("no sender key for this sender and distribution id")
        state = record.state_for_chain_id(message.chain_id)
        if state is None:
            raise NoSenderKeyState("no sender key state for this chain")
        message.verify_signature(state.signing_public)
        message_key = state.take_message_key(message.iteration)
        iv, key = message_key.iv_and_key()
        decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        padded = decryptor.update(message.ciphertext) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        try:
            plaintext = unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            raise GroupDecryptionFailed("group message padding invalid") from None
        store.store_sender_key(sender, message.distribution_id, record)
    return plaintext


