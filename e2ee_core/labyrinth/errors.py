"""The Labyrinth exception hierarchy: every decoder and operation here raises only these.

Messages name the failure class, never a key, plaintext, recovery code, user or thread id.
"""

from __future__ import annotations

from e2ee_core.errors import E2EEError


class LabyrinthError(E2EEError):
    """Base class of every error e2ee_core.labyrinth raises on purpose."""


class LibsodiumUnavailable(LabyrinthError):
    """No libsodium exporting ``crypto_core_hchacha20`` could be loaded."""


class InvalidKeyLength(LabyrinthError):
    """A symmetric key, nonce, scalar or public key has the wrong length."""


class MessageTooLong(LabyrinthError):
    """A plaintext to encrypt or pad is longer than consts.MAX_PLAINTEXT_LEN."""


class InvalidPublicKey(LabyrinthError):
    """An X25519 or Ristretto255 public value is malformed or of small order."""


class DecryptionFailed(LabyrinthError):
    """A ciphertext is truncated, malformed, or fails authentication."""


class InvalidPadding(LabyrinthError):
    """A padded plaintext has a bad length prefix, a non-canonical size or non-zero padding."""


class InvalidLabel(LabyrinthError):
    """An identifier that goes into a KDF label (thread id, user id, epoch id) is not allowed."""


class InvalidEpoch(LabyrinthError):
    """An epoch value (sequence id, encrypted previous-epoch data) is malformed or out of range."""


class MembershipMacMismatch(LabyrinthError):
    """A device's epoch membership MAC does not verify under the epoch's device MAC key."""


class InvalidRecoveryCode(LabyrinthError):
    """A recovery code has the wrong length, characters, version or identifier."""


class RecoveryCodeUncorrectable(InvalidRecoveryCode):
    """No code within three corrected characters derives a registered virtual device."""


class RecoveryCodeAmbiguous(InvalidRecoveryCode):
    """More than one correction derives a registered virtual device; the user must re-enter."""


class InvalidRecord(LabyrinthError):
    """A mailbox record's fields (ids, timestamp, version) are malformed or out of range."""


class UnsupportedCipherVersion(InvalidRecord):
    """A mailbox record names a message cipher version this library does not speak."""


class InvalidVirtualDevice(LabyrinthError):
    """A virtual-device bundle is malformed, belongs to another code, or its keys disagree."""


class InvalidEpochHead(LabyrinthError):
    """An epoch head is malformed or its opener's signature does not verify."""


class EpochChainError(LabyrinthError):
    """The epoch chain the server served does not verify."""


class EpochChainTruncated(EpochChainError):
    """Epochs are missing: a gap, a chain ending before an epoch the device knows, or
    epochs whose keys the server withholds."""


class EpochChainForked(EpochChainError):
    """Two epoch heads disagree: a wrong predecessor hash, a duplicate sequence id, a head
    that does not match a known checkpoint or an epoch key the device derived."""


class InvalidAttachmentReference(LabyrinthError):
    """An attachment reference is malformed, forged, or its deletion MAC does not verify."""


class UnsupportedAttachmentReference(InvalidAttachmentReference):
    """An attachment reference of a version this library does not read (version 1 included:
    its keys came from the ORF output alone, which the server computes)."""
