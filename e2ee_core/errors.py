"""The e2ee_core exception hierarchy. Messages never contain keys, plaintexts or user data.

Every decoder and every session operation raises only subclasses of :class:`E2EEError` on any
input. Addresses are kept as attributes (for the application to act on), never in ``str(exc)``.
"""

from __future__ import annotations


class E2EEError(Exception):
    """Base class of every error e2ee_core raises on purpose."""


class InvalidKey(E2EEError):
    """A public or private key has the wrong type byte, length or is a low-order point."""


class InvalidSignature(E2EEError):
    """An XEdDSA signature (signed prekey, KEM prekey) does not verify."""


class InvalidMessage(E2EEError):
    """A ciphertext is malformed, truncated, fails its MAC or cannot be decrypted."""


class InvalidVersion(InvalidMessage):
    """The message's version byte is not one this library speaks (0x33 or 0x44)."""


class InvalidMac(InvalidMessage):
    """The 8-byte message MAC does not verify (wrong session, tampering or corruption)."""


class DuplicateMessage(InvalidMessage):
    """The message key was already used: the message was delivered before."""


class ReusedBaseKey(DuplicateMessage):
    """A PreKeySignalMessage repeats the base key of a session already set up with the same
    last-resort KEM prekey (and signed prekey): a replay, even after that session is gone."""


class MessageTooFarInFuture(InvalidMessage):
    """The counter jumps further ahead than ``consts.MAX_FORWARD_JUMPS``."""


class InvalidPreKey(InvalidMessage):
    """A PreKeySignalMessage names a one-time, signed or KEM prekey this device does not hold."""


class NoSession(E2EEError):
    """There is no session with this address (start one from a prekey bundle first)."""

    def __init__(self, message: str = "no session with this address",
                 address: tuple[str, int] | None = None) -> None:
        super().__init__(message)
        self.address = address


class UntrustedIdentity(E2EEError):
    """The remote identity key differs from the trusted one; the app must accept it first.

    ``address`` and ``identity_key`` (public, 33 bytes) are attributes for the app to act on;
    they are deliberately not part of the message.
    """

    def __init__(self, address: tuple[str, int], identity_key: bytes) -> None:
        super().__init__("remote identity key changed and is not trusted")
        self.address = address
        self.identity_key = identity_key


class StoreError(E2EEError):
    """The protocol store is corrupt or could not be read."""


class BatchAborted(StoreError):
    """A ``write_behind()`` transaction was rolled back whole: a step inside it failed (the
    caller caught the step's error, but deferred writes cannot be undone one step at a time).
    Redo the work with ``atomic()`` and a ``savepoint()`` per step."""


class ContentError(E2EEError):
    """Base class of message-content errors."""


class InvalidContent(ContentError, ValueError):
    """A content value breaks a rule (length, range, format). Raised on construction and decode."""


class ContentDecodeError(ContentError):
    """Bytes that are not a well-formed content envelope or body."""


class UnsupportedContentVersion(ContentDecodeError):
    """The envelope was written by a newer client with a version this one cannot read."""


class AttachmentError(E2EEError):
    """Base class of attachment errors. Messages never hold keys or file contents."""


class AttachmentTooLarge(AttachmentError):
    """The plaintext is over :data:`e2ee_core.content.MAX_ATTACHMENT_BYTES`."""


class AttachmentSizeMismatch(AttachmentError):
    """The blob's length is not the one the pointer's size implies (truncated or extended)."""


class AttachmentCorrupted(AttachmentError):
    """The blob's SHA-256 digest differs from the pointer's, or its padding is not zero."""


class AttachmentDecryptionFailed(AttachmentError):
    """The AEAD tag did not verify: wrong key, or a blob not made with this pointer."""


class DisappearingError(E2EEError):
    """Misuse of the disappearing-messages API (unknown message, bad conversation id)."""
