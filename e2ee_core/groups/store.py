"""Where sender keys live: a ``typing.Protocol`` and an in-memory implementation.

Like libsignal's ``SenderKeyStore`` trait, records are keyed by (sender address, distribution
id). :class:`e2ee_core.groups.sql_store.SqlSenderKeyStore` is the persistent implementation
(SQLite or PostgreSQL); it stores :meth:`SenderKeyRecord.encode` bytes.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from e2ee_core.groups.errors import GroupError
from e2ee_core.groups.sender_keys import SenderKeyRecord

__all__ = ["InMemorySenderKeyStore", "SenderAddress", "SenderKeyStore"]

MAX_NAME_CHARS = 128
MAX_DEVICE_ID = 2**31 - 1


@dataclass(frozen=True, order=True)
class SenderAddress:
    """One sending device: account ``name`` (the group member) and ``device_id``
    (libsignal's ProtocolAddress)."""

    name: str
    device_id: int

    def __post_init__(self) -> None:
        if (not isinstance(self.name, str) or not self.name or len(self.name) > MAX_NAME_CHARS
                or not self.name.isprintable()):
            raise GroupError(f"address name must be 1..{MAX_NAME_CHARS} printable characters")
        if (not isinstance(self.device_id, int) or isinstance(self.device_id, bool)
                or not 0 <= self.device_id <= MAX_DEVICE_ID):
            raise GroupError("device id must be 0..2**31-1")


@runtime_checkable
class SenderKeyStore(Protocol):
    """Storage of sender-key records. Loads return an independent object: mutating it changes
    nothing until it is stored again."""

    def load_sender_key(self, sender: SenderAddress,
                        distribution_id: bytes) -> SenderKeyRecord | None:
        """The record for this sender and distribution id, or None."""
        ...

    def store_sender_key(self, sender: SenderAddress, distribution_id: bytes,
                         record: SenderKeyRecord) -> None:
        """Replace the record atomically."""
        ...

    def delete_sender_key(self, sender: SenderAddress, distribution_id: bytes) -> None:
        """Forget the record (no error if absent)."""
        ...

    def atomic(self) -> AbstractContextManager[None]:
        """A transaction: the group cipher wraps each load-modify-store in one, so a crash or a
        concurrent process never sees half an update or reuses a message key. Re-entrant."""
        ...


class InMemorySenderKeyStore:
    """A :class:`SenderKeyStore` in a dict. Records are kept serialized so that a loaded record
    never aliases the stored one (a failed decryption cannot leak a state change)."""

    def __init__(self) -> None:
        self._records: dict[tuple[SenderAddress, bytes], bytes] = {}

    def load_sender_key(self, sender: SenderAddress,
                        distribution_id: bytes) -> SenderKeyRecord | None:
        data = self._records.get((sender, bytes(distribution_id)))
        return None if data is None else SenderKeyRecord.decode(data)

    def store_sender_key(self, sender: SenderAddress, distribution_id: bytes,
                         record: SenderKeyRecord) -> None:
        self._records[(sender, bytes(distribution_id))] = record.encode()

    def delete_sender_key(self, sender: SenderAddress, distribution_id: bytes) -> None:
        self._records.pop((sender, bytes(distribution_id)), None)

    def atomic(self) -> AbstractContextManager[None]:
        """Nothing to do in one process: every store is a single dict assignment."""
        return nullcontext()

    def snapshot(self) -> dict[tuple[SenderAddress, bytes], bytes]:
        """A copy of every serialized record (tests compare snapshots to prove no change)."""
        return dict(self._records)
