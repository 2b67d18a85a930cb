"""The in-memory :class:`~e2ee_core.state.stores.ProtocolStore` (tests, benchmarks, ephemeral use).

Session records are handed out as clones, so a caller mutating a loaded record never changes
the store; a stored record belongs to the store. ``atomic()`` is a re-entrant lock; the
device writes only after every check passed, and in-memory writes cannot fail halfway.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from e2ee_core.protocol.prekeys import KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord
from e2ee_core.protocol.session import SessionRecord
from e2ee_core.state.stores import Address, LocalIdentity


class InMemoryProtocolStore:
    """All five stores in dictionaries."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._local: LocalIdentity | None = None
        self._identities: dict[tuple[str, int], bytes] = {}
        self._pre_keys: dict[int, PreKeyRecord] = {}
        self._signed: dict[int, SignedPreKeyRecord] = {}
        self._kyber: dict[int, KyberPreKeyRecord] = {}
        self._kyber_base_keys: dict[int, set[tuple[int, bytes]]] = {}
        self._sessions: dict[tuple[str, int], SessionRecord] = {}
        self._counters: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"InMemoryProtocolStore(sessions={len(self._sessions)})"

    @contextmanager
    def atomic(self) -> Iterator[None]:
        with self._lock:
            yield

    # identity
    def get_local_identity(self) -> LocalIdentity | None:
        return self._local

    def set_local_identity(self, identity: LocalIdentity) -> None:
        self._local = identity

    def get_identity(self, address: Address) -> bytes | None:
        return self._identities.get((address[0], address[1]))

    def save_identity(self, address: Address, identity_key: bytes) -> None:
        self._identities[(address[0], address[1])] = bytes(identity_key)

    # one-time prekeys
    def get_pre_key(self, key_id: int) -> PreKeyRecord | None:
        return self._pre_keys.get(key_id)

    def save_pre_keys(self, records: Sequence[PreKeyRecord]) -> None:
        for record in records:
            self._pre_keys[record.id] = record

    def remove_pre_key(self, key_id: int) -> None:
        self._pre_keys.pop(key_id, None)

    def pre_key_count(self) -> int:
        return len(self._pre_keys)

    # signed prekeys
    def get_signed_pre_key(self, key_id: int) -> SignedPreKeyRecord | None:
        return self._signed.get(key_id)

    def save_signed_pre_key(self, record: SignedPreKeyRecord) -> None:
        self._signed[record.id] = record

    def remove_signed_pre_key(self, key_id: int) -> None:
        self._signed.pop(key_id, None)

    def signed_pre_keys(self) -> list[SignedPreKeyRecord]:
        return sorted(self._signed.values(), key=lambda r: (r.timestamp, r.id))

    # KEM prekeys
    def get_kyber_pre_key(self, key_id: int) -> KyberPreKeyRecord | None:
        return self._kyber.get(key_id)

    def save_kyber_pre_key(self, record: KyberPreKeyRecord) -> None:
        self._kyber[record.id] = record

    def remove_kyber_pre_key(self, key_id: int) -> None:
        self._kyber.pop(key_id, None)
        self._kyber_base_keys.pop(key_id, None)

    def kyber_pre_keys(self) -> list[KyberPreKeyRecord]:
        return sorted(self._kyber.values(), key=lambda r: (r.timestamp, r.id))

    def mark_kyber_pre_key_used(self, key_id: int, signed_pre_key_id: int,
                                base_key: bytes) -> bool:
        used = self._kyber_base_keys.setdefault(key_id, set())
        entry = (signed_pre_key_id, bytes(base_key))
        if entry in used:
            return False
        used.add(entry)
        return True

    # sessions
    def load_session(self, address: Address) -> SessionRecord | None:
        record = self._sessions.get((address[0], address[1]))
        return record.clone() if record is not None else None

    def store_session(self, address: Address, record: SessionRecord) -> None:
        self._sessions[(address[0], address[1])] = record  # the store takes ownership

    def delete_session(self, address: Address) -> None:
        self._sessions.pop((address[0], address[1]), None)

    def session_addresses(self) -> list[Address]:
        return [Address(u, d) for u, d in sorted(self._sessions)]

    # counters
    def get_counter(self, name: str) -> int:
        return self._counters.get(name, 0)

    def set_counter(self, name: str, value: int) -> None:
        self._counters[name] = value
