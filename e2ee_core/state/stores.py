"""Store interfaces (``typing.Protocol``), as in libsignal's ``storage/traits.rs``.

A :class:`ProtocolStore` bundles the identity, prekey, signed prekey, KEM prekey and session
stores with :meth:`ProtocolStore.atomic`: every ``Device.encrypt``/``decrypt`` runs its reads
and writes inside one ``atomic()`` block, so its state change commits entirely or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import NamedTuple, Protocol, runtime_checkable

from e2ee_core.protocol.keys import KeyPair
from e2ee_core.protocol.prekeys import KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord
from e2ee_core.protocol.session import SessionRecord


class Address(NamedTuple):
    """A remote device: ``(user_id, device_id)``; plain tuples work wherever this is taken."""

    user_id: str
    device_id: int


class LocalIdentity(NamedTuple):
    key_pair: KeyPair
    registration_id: int


@runtime_checkable
class IdentityKeyStore(Protocol):
    def get_local_identity(self) -> LocalIdentity | None: ...
    def set_local_identity(self, identity: LocalIdentity) -> None: ...
    def get_identity(self, address: Address) -> bytes | None:
        """The trusted 33-byte identity key of ``address`` (None: never seen)."""
    def save_identity(self, address: Address, identity_key: bytes) -> None: ...


@runtime_checkable
class PreKeyStore(Protocol):
    def get_pre_key(self, key_id: int) -> PreKeyRecord | None: ...
    def save_pre_keys(self, records: Sequence[PreKeyRecord]) -> None: ...
    def remove_pre_key(self, key_id: int) -> None: ...
    def pre_key_count(self) -> int: ...


@runtime_checkable
class SignedPreKeyStore(Protocol):
    def get_signed_pre_key(self, key_id: int) -> SignedPreKeyRecord | None: ...
    def save_signed_pre_key(self, record: SignedPreKeyRecord) -> None: ...
    def remove_signed_pre_key(self, key_id: int) -> None: ...
    def signed_pre_keys(self) -> list[SignedPreKeyRecord]: ...


@runtime_checkable
class KyberPreKeyStore(Protocol):
    def get_kyber_pre_key(self, key_id: int) -> KyberPreKeyRecord | None: ...
    def save_kyber_pre_key(self, record: KyberPreKeyRecord) -> None: ...
    def remove_kyber_pre_key(self, key_id: int) -> None:
        """Delete the key and the base keys :meth:`mark_kyber_pre_key_used` recorded for it."""
    def kyber_pre_keys(self) -> list[KyberPreKeyRecord]: ...
    def mark_kyber_pre_key_used(self, key_id: int, signed_pre_key_id: int,
                                base_key: bytes) -> bool:
        """Record that a session was set up with this (last-resort) KEM prekey, signed prekey
        and base key, for as long as the KEM prekey lives; False when it was recorded
        before (a replayed PreKeySignalMessage), changing nothing. As libsignal's
        ``KyberPreKeyStore::mark_kyber_pre_key_used``."""


@runtime_checkable
class SessionStore(Protocol):
    def load_session(self, address: Address) -> SessionRecord | None:
        """A fresh copy of the stored record: mutating it never changes the store."""
    def store_session(self, address: Address, record: SessionRecord) -> None:
        """Persist ``record``; the store owns it afterwards (callers must not mutate it)."""
    def delete_session(self, address: Address) -> None: ...
    def session_addresses(self) -> list[Address]: ...


@runtime_checkable
class ProtocolStore(IdentityKeyStore, PreKeyStore, SignedPreKeyStore, KyberPreKeyStore,
                    SessionStore, Protocol):
    def atomic(self) -> AbstractContextManager[None]:
        """One all-or-nothing unit of reads and writes (re-entrant)."""
    def get_counter(self, name: str) -> int:
        """A persistent counter (next prekey ids); 0 when never set."""
    def set_counter(self, name: str, value: int) -> None: ...
