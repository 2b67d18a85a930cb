"""Errors of the Sender Keys / group layer. Messages never hold keys, plaintexts or member data."""

from __future__ import annotations

from e2ee_core.errors import E2EEError


class GroupError(E2EEError):
    """Base class of group and sender-key errors."""


class InvalidSenderKeyMessage(GroupError):
    """Bytes that are not a well-formed SenderKeyMessage or distribution message."""


class InvalidSenderKeySignature(GroupError):
    """The SenderKeyMessage's signature does not verify under the sender's signing key."""


class NoSenderKeyState(GroupError):
    """No sender key for this sender / distribution id / chain: a distribution message is missing
    (or the sender was removed and its keys deleted)."""


class DuplicateGroupMessage(GroupError):
    """The message key for this iteration was already used: a replay or a duplicate delivery."""


class TooFarInFuture(GroupError):
    """The message's iteration is more than MAX_FORWARD_JUMPS ahead of the chain."""


class GroupDecryptionFailed(GroupError):
    """The ciphertext did not decrypt (bad padding) although the signature verified."""


class InvalidSenderKeyRecord(GroupError):
    """A stored sender-key record or group state that does not parse."""


class ChainExhausted(GroupError):
    """The sending chain reached the largest iteration; rotate the sender key."""


class NotAMember(GroupError):
    """The sender (or this device) is not a member of the group."""


class EpochMismatch(GroupError):
    """A membership change that does not follow the current epoch (stale, replayed or
    concurrent with another change)."""


class InvalidGroupUpdate(GroupError):
    """A membership change or distribution that is inconsistent with the group state."""
