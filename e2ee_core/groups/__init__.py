"""Groups with Sender Keys (libsignal's design): one signed ciphertext per group message.

Modules: :mod:`.consts` (limits), :mod:`.errors`, :mod:`.sender_keys` (chain, state, record,
wire messages), :mod:`.store` (store Protocol, in-memory store), :mod:`.group_cipher`
(encrypt/decrypt over a store) and :mod:`.group` (membership, epochs, re-keying).
"""

from e2ee_core.groups.errors import (
    ChainExhausted,
    DuplicateGroupMessage,
    EpochMismatch,
    GroupDecryptionFailed,
    GroupError,
    InvalidGroupUpdate,
    InvalidSenderKeyMessage,
    InvalidSenderKeyRecord,
    InvalidSenderKeySignature,
    NoSenderKeyState,
    NotAMember,
    TooFarInFuture,
)
from e2ee_core.groups.group import Clock, Group, GroupState, Outgoing
from e2ee_core.groups.group_cipher import (
    create_sender_key_distribution_message,
    group_decrypt,
    group_encrypt,
    process_sender_key_distribution_message,
    rotate_sender_key,
)
from e2ee_core.groups.sender_keys import (
    SenderKeyDistributionMessage,
    SenderKeyMessage,
    SenderKeyRecord,
    SenderKeyState,
)
from e2ee_core.groups.store import InMemorySenderKeyStore, SenderAddress, SenderKeyStore

__all__ = [
    "ChainExhausted",
    "Clock",
    "DuplicateGroupMessage",
    "EpochMismatch",
    "Group",
    "GroupDecryptionFailed",
    "GroupError",
    "GroupState",
    "InMemorySenderKeyStore",
    "InvalidGroupUpdate",
    "InvalidSenderKeyMessage",
    "InvalidSenderKeyRecord",
    "InvalidSenderKeySignature",
    "NoSenderKeyState",
    "NotAMember",
    "Outgoing",
    "SenderAddress",
    "SenderKeyDistributionMessage",
    "SenderKeyMessage",
    "SenderKeyRecord",
    "SenderKeyState",
    "SenderKeyStore",
    "TooFarInFuture",
    "create_sender_key_distribution_message",
    "group_decrypt",
    "group_encrypt",
    "process_sender_key_distribution_message",
    "rotate_sender_key",
]
