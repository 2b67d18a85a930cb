"""Errors of the Messenger client. Messages are fixed strings: never plaintexts, keys or names.

Accounts and device ids a caller may need are attributes, never part of ``str(exc)``.
"""

from __future__ import annotations

from e2ee_core.errors import E2EEError


class ClientError(E2EEError):
    """Base class of every error :mod:`e2ee_core.client` raises on purpose."""


class StateError(ClientError):
    """The local state is missing, already holds an account, or is corrupt."""


class DeviceRemoved(ClientError):
    """This device was removed from its account: the server no longer accepts its credential."""


class ContactChanged(ClientError):
    """A **verified** contact's device set or identity keys changed: sending is refused until
    the user re-verifies (:meth:`Messenger.verify`) or accepts the change
    (:meth:`Messenger.accept_changes`). ``username`` names the contact."""

    def __init__(self, username: str) -> None:
        super().__init__("a verified contact's devices changed: re-verify or accept first")
        self.username = username


class SafetyNumberMismatch(ClientError):
    """The safety number the user compared is not the current combined safety number."""


class SendFailed(ClientError):
    """The server kept refusing the device set (too many 409 rounds in a row)."""


class AttachmentTooLarge(ClientError):
    """The encrypted attachment would exceed the server's blob limit (nothing was uploaded)."""


class UnknownGroup(ClientError):
    """No group with this id on this device (or this device is no longer a member)."""


class UnknownMessage(ClientError):
    """No message with this id in this conversation."""


class AccountBlocked(ClientError):
    """This user blocked the account: nothing is sent to it, and what it sends is dropped
    unread. ``username`` names the account."""

    def __init__(self, username: str) -> None:
        super().__init__("this account is blocked: unblock it first")
        self.username = username


class TransparencyError(ClientError):
    """The server's key-transparency evidence does not hold (issue #16): nothing was used.
    ``username`` names the account concerned (None when it is about the directory itself).
    A notice (``kt_*`` kinds) records it too."""

    def __init__(self, message: str, username: str | None = None) -> None:
        super().__init__(message)
        self.username = username


class KeyNotInDirectory(TransparencyError):
    """A bundle or device list whose keys are not those the directory's lookup proof commits
    to, a proof that fails, or a response without one: no session is started."""


class EpochRollback(TransparencyError):
    """The server answered from an older epoch than one this device already saw."""


class ForkedView(TransparencyError):
    """The server showed two different root hashes for one epoch: two views of the
    directory (one of them shown to others)."""


class DirectoryKeyChanged(TransparencyError):
    """The directory's VRF public key is not the one this device first saw (trust on first
    use): every later proof would be checked against the server's choice of key."""


class EpochNotAudited(TransparencyError):
    """This device requires an auditor's signature on every epoch it accepts
    (:meth:`~e2ee_core.client.messenger.Messenger.require_auditor`), and the auditor has not
    signed this epoch (yet), or its answer does not verify. Nothing was used; once the auditor
    has audited the epoch, trying again succeeds."""


class HistoryError(ClientError):
    """History could not be saved, loaded or restored (the local state is unchanged)."""


class HistoryNotEnabled(HistoryError):
    """This device has not enabled history, or is not (yet) a member of the mailbox."""


class HistoryUnavailable(HistoryError):
    """The mailbox served something this device cannot verify or decrypt."""


class InvalidHistoryPayload(HistoryError):
    """A decrypted mailbox record is not a well-formed history payload."""
