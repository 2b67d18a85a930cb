"""Gateway key lifecycle, sans-I/O: key records, id allocation, rotation rules.

Several key configurations live at once. ``active`` keys are advertised and decrypt; a rotated
key moves to ``grace``: no longer advertised, still decrypting until ``retire_at`` (clients may
hold a cached configuration); ``retired`` keys have their private key erased. A key id (one
byte) is never shared by two keys that are not retired.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ohttp_relay.errors import StoreError
from ohttp_relay.ohttp import GatewayKey, KeyConfig, SymmetricSuite

ACTIVE = "active"
GRACE = "grace"
RETIRED = "retired"
STATES = (ACTIVE, GRACE, RETIRED)


@dataclass(frozen=True)
class KeyRecord:
    """One stored key; ``key`` is ``None`` once retired (private key erased)."""

    key_id: int
    kem_id: int
    state: str
    created_at: int
    retire_at: int | None
    key: GatewayKey | None

    def __repr__(self) -> str:
        return (f"KeyRecord(key_id={self.key_id}, kem_id={self.kem_id:#06x}, "
                f"state={self.state!r})")

    def decrypts_at(self, now: float) -> bool:
        """Whether this key may still open requests at ``now``."""
        if self.key is None or self.state == RETIRED:
            return False
        return self.state == ACTIVE or (self.retire_at is not None and now < self.retire_at)

    @property
    def config(self) -> KeyConfig | None:
        return self.key.config if self.key is not None else None


def allocate_key_id(records: Iterable[KeyRecord]) -> int:
    """The lowest id no key uses; else the id of the longest-retired key."""
    records = list(records)
    used = {r.key_id for r in records}
    for key_id in range(256):
        if key_id not in used:
            return key_id
    retired = sorted((r for r in records if r.state == RETIRED),
                     key=lambda r: (r.retire_at or 0, r.key_id))
    if not retired:
        raise StoreError("all 256 key ids are in use")
    return retired[0].key_id


def encode_symmetric(suites: Iterable[SymmetricSuite]) -> bytes:
    """Storage form of a symmetric-suite list (the RFC 9458 wire form without length)."""
    return b"".join(s.kdf_id.to_bytes(2, "big") + s.aead_id.to_bytes(2, "big") for s in suites)


def decode_symmetric(data: bytes) -> tuple[SymmetricSuite, ...]:
    if len(data) % 4 or not data:
        raise StoreError("corrupt symmetric-suite list")
    return tuple(SymmetricSuite(int.from_bytes(data[i:i + 2], "big"),
                                int.from_bytes(data[i + 2:i + 4], "big"))
                 for i in range(0, len(data), 4))
