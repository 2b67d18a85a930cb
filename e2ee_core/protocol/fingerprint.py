"""Safety numbers: libsignal's 60-digit numeric fingerprint and its scannable (QR) form."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from e2ee_core.errors import InvalidMessage
from e2ee_core.protocol.consts import (
    FINGERPRINT_HASH_VERSION,
    FINGERPRINT_ITERATIONS,
    SCANNABLE_FINGERPRINT_VERSION,
)
from e2ee_core.protocol.messages import PROTO


def _iterated_hash(stable_id: bytes, identity_key: bytes, iterations: int) -> bytes:
    digest = FINGERPRINT_HASH_VERSION.to_bytes(2, "big") + identity_key + stable_id
    for _ in range(iterations):
        digest = hashlib.sha512(digest + identity_key).digest()
    return digest


def _digits(digest: bytes) -> str:
    # Six 5-digit chunks, each a 40-bit big-endian integer modulo 100000.
    return "".join(f"{int.from_bytes(digest[i:i + 5], 'big') % 100000:05d}"
                   for i in range(0, 30, 5))


@dataclass(frozen=True)
class Fingerprint:
    """Both forms of a safety number, as seen from the local side."""

    display: str
    scannable: bytes

    def matches_scanned(self, scanned: bytes) -> bool:
        """True when ``scanned`` (the peer's QR payload) shows the same two identities."""
        theirs = PROTO["CombinedFingerprints"]()
        try:
            theirs.ParseFromString(scanned)
        except Exception as exc:
            raise InvalidMessage("malformed scannable fingerprint") from exc
        ours = PROTO["CombinedFingerprints"]()
        ours.ParseFromString(self.scannable)
        if theirs.version != ours.version:
            raise InvalidMessage("scannable fingerprint version mismatch")
        return (hmac.compare_digest(theirs.local_fingerprint.content,
                                    ours.remote_fingerprint.content)
                and hmac.compare_digest(theirs.remote_fingerprint.content,
                                        ours.local_fingerprint.content))


def fingerprint(local_id: str | bytes, local_identity_key: bytes, remote_id: str | bytes,
                remote_identity_key: bytes, *, iterations: int = FINGERPRINT_ITERATIONS,
                version: int = SCANNABLE_FINGERPRINT_VERSION) -> Fingerprint:
    """Safety number of two 33-byte identity keys and their stable ids (phone number/UUID)."""
    lid = local_id.encode() if isinstance(local_id, str) else local_id
    rid = remote_id.encode() if isinstance(remote_id, str) else remote_id
    local = _iterated_hash(lid, local_identity_key, iterations)
    remote = _iterated_hash(rid, remote_identity_key, iterations)
    ld, rd = _digits(local), _digits(remote)
    display = ld + rd if ld <= rd else rd + ld
    combined = PROTO["CombinedFingerprints"](version=version)
    combined.local_fingerprint.content = local[:32]
    combined.remote_fingerprint.content = remote[:32]
    return Fingerprint(display, combined.SerializeToString())


def safety_number(local_id: str | bytes, local_identity_key: bytes, remote_id: str | bytes,
                  remote_identity_key: bytes) -> str:
    """The 60-digit safety number both sides see (same value on each side)."""
    return fingerprint(local_id, local_identity_key, remote_id, remote_identity_key).display
