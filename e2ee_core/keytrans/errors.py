"""The key-transparency exception hierarchy (one tree, rooted in :class:`E2EEError`).

Proofs come from the server and are untrusted input: every decoder and verifier here raises only
subclasses of :class:`KeyTransparencyError`. Messages name the failed check, never labels,
values, keys or proof bytes.
"""

from __future__ import annotations

from e2ee_core.errors import E2EEError


class KeyTransparencyError(E2EEError):
    """Base class of every error e2ee_core.keytrans raises on purpose."""


class InvalidVrfKey(KeyTransparencyError):
    """A VRF public or secret key does not decode, has the wrong length or has small order."""


class MalformedProof(KeyTransparencyError):
    """Proof bytes do not decode: bad protobuf, a missing required field or a field out of range
    (label longer than 32 bytes or 256 bits, hash not 32 bytes, VRF proof not 80 bytes, ...)."""


class VerificationFailed(KeyTransparencyError):
    """A well-formed proof does not prove what it claims."""


class InvalidVrfProof(VerificationFailed):
    """An ECVRF proof does not verify for this public key and input, or it proves a different
    tree label than the one the Merkle proof is about."""


class MembershipProofFailed(VerificationFailed):
    """A membership proof does not hash up to the published root, or its leaf hash does not
    match the value, commitment nonce and epoch it comes with."""


class NonMembershipProofFailed(VerificationFailed):
    """A non-membership proof is inconsistent (the label is present, the prefix is wrong, or the
    children do not hash to the prefix node)."""


class AppendOnlyProofFailed(VerificationFailed):
    """An append-only proof does not rebuild the start and end root hashes: the directory
    changed or removed something between the epochs, or the proof is wrong."""


class EpochOrVersionInvalid(VerificationFailed):
    """Versions or epochs are out of order, zero, ahead of the current epoch, or the number of
    proofs does not match the versions they must cover."""


class DirectoryError(KeyTransparencyError):
    """The directory (server side) refused an operation."""


class UnknownLabel(DirectoryError):
    """No value was ever published for this label."""


class InvalidUpdate(DirectoryError):
    """A publish batch is unacceptable: a label twice, or a label or value over its limit."""


class AuditorSignatureError(KeyTransparencyError):
    """An auditor's (Plexi) signature message or response does not decode, is for another log,
    epoch or root, or its Ed25519 signature does not verify under the auditor's key."""


class AuditFailed(VerificationFailed):
    """The auditor refuses an epoch: an append-only proof fails, the server changed the root of
    an epoch already audited, or its latest epoch went backwards. Signing stops for that log."""


class LogUnavailable(KeyTransparencyError):
    """The auditor could not get an answer it can use from the log's server or from an auditor
    (unreachable, an error status, a body that is not the expected shape). Nothing is signed or
    accepted; trying again later is safe."""
