"""Prekey records and their lifecycle helpers (pure functions: the device persists them)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from e2ee_core.protocol.consts import MAX_PREKEY_ID, MAX_REGISTRATION_ID
from e2ee_core.protocol.keys import KemKeyPair, KeyPair


@dataclass(frozen=True)
class PreKeyRecord:
    """A one-time Curve25519 prekey; deleted once a PreKeySignalMessage used it."""

    id: int
    key_pair: KeyPair


@dataclass(frozen=True)
class SignedPreKeyRecord:
    """The medium-term signed prekey; rotated on a schedule, kept for a grace period."""

    id: int
    key_pair: KeyPair
    signature: bytes
    timestamp: int


@dataclass(frozen=True)
class KyberPreKeyRecord:
    """A signed ML-KEM-1024 prekey: one-time (deleted on use) or last-resort (kept)."""

    id: int
    key_pair: KemKeyPair
    signature: bytes
    timestamp: int
    last_resort: bool


def next_prekey_id(current: int) -> int:
    """Ids run 1..MAX_PREKEY_ID and wrap to 1: libsignal-node ignores a prekey with id 0."""
    return 1 if current >= MAX_PREKEY_ID else current + 1


def generate_registration_id() -> int:
    return 1 + secrets.randbelow(MAX_REGISTRATION_ID)


def generate_pre_keys(first_id: int, count: int) -> list[PreKeyRecord]:
    """``count`` fresh one-time prekeys with consecutive (wrapping) ids from ``first_id``."""
    records = []
    key_id = first_id if 1 <= first_id <= MAX_PREKEY_ID else 1
    for _ in range(count):
        records.append(PreKeyRecord(key_id, KeyPair.generate()))
        key_id = next_prekey_id(key_id)
    return records


def generate_signed_pre_key(identity: KeyPair, key_id: int, timestamp: int) -> SignedPreKeyRecord:
    """A new signed prekey: XEdDSA signature by the identity over its 33-byte encoding."""
    pair = KeyPair.generate()
    return SignedPreKeyRecord(key_id, pair, identity.private.sign(pair.public.serialize()),
                              timestamp)


def generate_kyber_pre_key(identity: KeyPair, key_id: int, timestamp: int, *,
                           last_resort: bool) -> KyberPreKeyRecord:
    """A new ML-KEM-1024 prekey signed over its 0x08-prefixed encoding."""
    pair = KemKeyPair.generate()
    return KyberPreKeyRecord(key_id, pair, identity.private.sign(pair.public.serialize()),
                             timestamp, last_resort)


def needs_rotation(created: int, now: int, period: int) -> bool:
    return now - created >= period
