"""The public API: a :class:`Device` (identity + stores) talking to many remote devices.

Example (two devices in one process; a server would carry the bundle and the ciphertexts)::

    >>> from e2ee_core.device import Device
    >>> alice, bob = Device.create(), Device.create()
    >>> alice.start_session(("bob", 1), bob.prekey_bundle(device_id=1))
    >>> wire = alice.encrypt(("bob", 1), b"hi Bob").to_bytes()
    >>> bob.decrypt(("alice", 1), Ciphertext.from_bytes(wire))
    b'hi Bob'
    >>> alice.decrypt(("bob", 1), bob.encrypt(("alice", 1), b"hi Alice"))
    b'hi Alice'

Every :meth:`Device.encrypt` / :meth:`Device.decrypt` commits its state change in one store
transaction before it returns; a decrypt that fails changes nothing. Logs carry event names
only, never keys, plaintexts or addresses.
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2ee_core.errors import (
    InvalidKey,
    InvalidMessage,
    InvalidPreKey,
    NoSession,
    ReusedBaseKey,
    StoreError,
    UntrustedIdentity,
)
from e2ee_core.protocol import prekeys as pk
from e2ee_core.protocol.bundle import PreKeyBundle
from e2ee_core.protocol.consts import (
    PREKEY_BATCH,
    PREKEY_MIN_SERVER_COUNT,
    SIGNED_PREKEY_GRACE_SECONDS,
    SIGNED_PREKEY_ROTATION_SECONDS,
    VERSION_PQXDH,
)
from e2ee_core.protocol.fingerprint import Fingerprint, fingerprint, safety_number
from e2ee_core.protocol.keys import KeyPair, PublicKey
from e2ee_core.protocol.messages import PreKeySignalMessage, SignalMessage
from e2ee_core.protocol.session import (
    SessionRecord,
    decrypt_with_record,
    encrypt_with_record,
    initialize_alice,
    initialize_bob,
)
from e2ee_core.state.memory import InMemoryProtocolStore
from e2ee_core.state.stores import Address, LocalIdentity, ProtocolStore

__all__ = ["Address", "Ciphertext", "Device", "Fingerprint", "MessageType", "PreKeyBundle",
           "safety_number"]

log = logging.getLogger("e2ee_core.device")

_PRE_KEY_COUNTER = "next_pre_key_id"
_SIGNED_COUNTER = "next_signed_pre_key_id"
_KYBER_COUNTER = "next_kyber_pre_key_id"


class MessageType(enum.IntEnum):
    """libsignal-client's numbering (libsignal-node calls a SignalMessage type 1)."""

    WHISPER = 2
    PREKEY = 3


@dataclass(frozen=True)
class Ciphertext:
    """An encrypted message: its type and the wire bytes (opaque to servers)."""

    type: MessageType
    body: bytes

    def to_bytes(self) -> bytes:
        """``type byte || body``: one opaque blob for transport."""
        return bytes([self.type]) + self.body

    @classmethod
    def from_bytes(cls, data: bytes) -> Ciphertext:
        if len(data) < 2 or data[0] not in (MessageType.WHISPER, MessageType.PREKEY):
            raise InvalidMessage("unknown ciphertext type")
        return cls(MessageType(data[0]), bytes(data[1:]))

    def to_dict(self) -> dict[str, Any]:
        return {"type": int(self.type), "body": self.body.hex()}

    @classmethod
    def from_dict(cls, data: Any) -> Ciphertext:
        try:
            return cls(MessageType(data["type"]), bytes.fromhex(data["body"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidMessage("malformed ciphertext object") from exc


def _address(address: tuple[str, int]) -> Address:
    user_id, device_id = address
    if not isinstance(user_id, str) or not isinstance(device_id, int):
        raise TypeError("address is (user_id: str, device_id: int)")
    return Address(user_id, device_id)


class Device:
    """One device's identity and protocol state, talking to any number of remote devices.

    Remote devices are addressed by ``(user_id, device_id)`` tuples. The store decides
    persistence: :class:`InMemoryProtocolStore` or :class:`SQLiteProtocolStore`
    (``Device.open("path.db")``).
    """

    def __init__(self, store: ProtocolStore) -> None:
        local = store.get_local_identity()
        if local is None:
            raise StoreError("store holds no local identity (use Device.create)")
        self.store = store
        self._identity = local.key_pair
        self.registration_id = local.registration_id

    def __repr__(self) -> str:
        return f"Device(registration_id={self.registration_id})"

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def create(cls, store: ProtocolStore | None = None, *, pre_keys: int = 0,
               now: int | None = None) -> Device:
        """Open ``store`` (a new in-memory one by default), creating an identity if it has none.

        A new identity comes with a signed prekey and a last-resort KEM prekey, plus
        ``pre_keys`` one-time prekeys.
        """
        store = store if store is not None else InMemoryProtocolStore()
        with store.atomic():
            if store.get_local_identity() is None:
                store.set_local_identity(LocalIdentity(KeyPair.generate(),
                                                       pk.generate_registration_id()))
                device = cls(store)
                device.rotate_signed_pre_key(now=now, force=True)
                device.ensure_last_resort_kyber_pre_key(now=now)
                if pre_keys:
                    device.generate_pre_keys(pre_keys)
                log.info("e2ee.device.created")
                return device
        return cls(store)

    @classmethod
    def open(cls, path: str | Path, *, pre_keys: int = 0) -> Device:
        """A device persisted in the SQLite file at ``path`` (created 0600 if missing)."""
        from e2ee_core.state.sqlite import SQLiteProtocolStore

        return cls.create(SQLiteProtocolStore(path), pre_keys=pre_keys)

    @property
    def identity_key(self) -> bytes:
        """This device's public identity key (33 bytes, 0x05 prefix)."""
        return self._identity.public.serialize()

    # -- prekey lifecycle -----------------------------------------------------------------
    def _take_ids(self, counter: str, count: int) -> int:
        first = pk.next_prekey_id(self.store.get_counter(counter))
        last = first
        for _ in range(count - 1):
            last = pk.next_prekey_id(last)
        self.store.set_counter(counter, last)
        return first

    def generate_pre_keys(self, count: int = PREKEY_BATCH) -> list[tuple[int, bytes]]:
        """Create and store ``count`` one-time prekeys; return ``(id, public key)`` to upload."""
        with self.store.atomic():
            records = pk.generate_pre_keys(self._take_ids(_PRE_KEY_COUNTER, count), count)
            self.store.save_pre_keys(records)
        log.info("e2ee.prekeys.generated count=%d", count)
        return [(r.id, r.key_pair.public.serialize()) for r in records]

    def generate_kyber_pre_keys(self, count: int,
                                now: int | None = None) -> list[tuple[int, bytes, bytes]]:
        """Create one-time KEM prekeys; return ``(id, public key, signature)`` to upload."""
        ts = int(time.time()) if now is None else now
        out = []
        with self.store.atomic():
            key_id = self._take_ids(_KYBER_COUNTER, count)
            for _ in range(count):
                record = pk.generate_kyber_pre_key(self._identity, key_id, ts, last_resort=False)
                self.store.save_kyber_pre_key(record)
                out.append((record.id, record.key_pair.public.serialize(), record.signature))
                key_id = pk.next_prekey_id(key_id)
        return out

    def refill_pre_keys(self, server_count: int, *, threshold: int = PREKEY_MIN_SERVER_COUNT,
                        batch: int = PREKEY_BATCH) -> list[tuple[int, bytes]]:
        """When the server holds fewer than ``threshold`` prekeys, generate ``batch`` more."""
        if server_count >= threshold:
            return []
        return self.generate_pre_keys(batch)

    def current_signed_pre_key(self) -> pk.SignedPreKeyRecord:
        records = self.store.signed_pre_keys()
        if not records:
            raise StoreError("no signed prekey")
        return records[-1]

    def rotate_signed_pre_key(self, *, now: int | None = None, force: bool = False,
                              period: int = SIGNED_PREKEY_ROTATION_SECONDS,
                              grace: int = SIGNED_PREKEY_GRACE_SECONDS) -> bool:
        """Replace the signed prekey when older than ``period``; drop ones past ``grace``.

        The newest superseded key is always kept, so in-flight PreKey messages still decrypt.
        Returns True when a new key was made.
        """
        ts = int(time.time()) if now is None else now
        with self.store.atomic():
            records = self.store.signed_pre_keys()
            rotated = False
            if force or not records or pk.needs_rotation(records[-1].timestamp, ts, period):
                key_id = self._take_ids(_SIGNED_COUNTER, 1)
                self.store.save_signed_pre_key(
                    pk.generate_signed_pre_key(self._identity, key_id, ts))
                rotated = True
                records = self.store.signed_pre_keys()
            for old in records[:-2]:
                if ts - old.timestamp > grace:
                    self.store.remove_signed_pre_key(old.id)
        if rotated:
            log.info("e2ee.signed_prekey.rotated")
        return rotated

    def ensure_last_resort_kyber_pre_key(self, *, now: int | None = None,
                                         period: int = SIGNED_PREKEY_ROTATION_SECONDS,
                                         grace: int = SIGNED_PREKEY_GRACE_SECONDS) -> bool:
        """Keep a fresh last-resort KEM prekey (rotated like the signed prekey)."""
        ts = int(time.time()) if now is None else now
        with self.store.atomic():
            last = [r for r in self.store.kyber_pre_keys() if r.last_resort]
            made = False
            if not last or pk.needs_rotation(last[-1].timestamp, ts, period):
                key_id = self._take_ids(_KYBER_COUNTER, 1)
                self.store.save_kyber_pre_key(
                    pk.generate_kyber_pre_key(self._identity, key_id, ts, last_resort=True))
                made = True
                last = [r for r in self.store.kyber_pre_keys() if r.last_resort]
            for old in last[:-2]:
                if ts - old.timestamp > grace:
                    self.store.remove_kyber_pre_key(old.id)
        return made

    def last_resort_kyber_pre_key(self) -> pk.KyberPreKeyRecord:
        last = [r for r in self.store.kyber_pre_keys() if r.last_resort]
        if not last:
            raise StoreError("no last-resort KEM prekey")
        return last[-1]

    def upload_material(self, pre_keys: list[tuple[int, bytes]] | None = None) -> dict[str, Any]:
        """What a server needs to hand out bundles (JSON-able, public keys only, hex)."""
        signed = self.current_signed_pre_key()
        kyber = self.last_resort_kyber_pre_key()
        return {
            "registration_id": self.registration_id,
            "identity_key": self.identity_key.hex(),
            "signed_pre_key": {"id": signed.id, "key": signed.key_pair.public.serialize().hex(),
                               "signature": signed.signature.hex()},
            "last_resort_kyber_pre_key": {
                "id": kyber.id, "key": kyber.key_pair.public.serialize().hex(),
                "signature": kyber.signature.hex()},
            "pre_keys": [{"id": i, "key": k.hex()} for i, k in (pre_keys or [])],
        }

    def prekey_bundle(self, device_id: int = 1, *, one_time: bool = True,
                      kyber: bool = True, kyber_one_time: bool = False) -> PreKeyBundle:
        """A bundle for direct exchange (tests, QR codes): a fresh one-time prekey each call.

        ``kyber=False`` gives a classic X3DH bundle (what libsignal-node understands).
        """
        signed = self.current_signed_pre_key()
        pre_key_id = pre_key = None
        if one_time:
            [(pre_key_id, pre_key)] = self.generate_pre_keys(1)
        k_id = k_key = k_sig = None
        if kyber:
            if kyber_one_time:
                [(k_id, k_key, k_sig)] = self.generate_kyber_pre_keys(1)
            else:
                record = self.last_resort_kyber_pre_key()
                k_id, k_key, k_sig = (record.id, record.key_pair.public.serialize(),
                                      record.signature)
        return PreKeyBundle(
            registration_id=self.registration_id, device_id=device_id,
            identity_key=self.identity_key, signed_pre_key_id=signed.id,
            signed_pre_key=signed.key_pair.public.serialize(),
            signed_pre_key_signature=signed.signature, pre_key_id=pre_key_id, pre_key=pre_key,
            kyber_pre_key_id=k_id, kyber_pre_key=k_key, kyber_pre_key_signature=k_sig)

    # -- identities ---------------------------------------------------------------------------
    def _check_trust(self, address: Address, identity_key: bytes) -> None:
        known = self.store.get_identity(address)
        if known is not None and known != identity_key:
            log.warning("e2ee.identity.untrusted")
            raise UntrustedIdentity(address, identity_key)

    def trust_identity(self, address: tuple[str, int], identity_key: bytes) -> None:
        """Accept ``identity_key`` for ``address`` (after the user checked the safety number).

        When it replaces another key, the current session is archived: the next message to
        that device needs a fresh bundle (or arrives as the peer's new PreKey message).
        """
        addr = _address(address)
        PublicKey.deserialize(identity_key)
        with self.store.atomic():
            known = self.store.get_identity(addr)
            if known == identity_key:
                return
            self.store.save_identity(addr, identity_key)
            record = self.store.load_session(addr)
            if known is not None and record is not None and record.current is not None:
                record.promote_none()
                self.store.store_session(addr, record)
        log.info("e2ee.identity.trusted")

    def remote_identity(self, address: tuple[str, int]) -> bytes | None:
        return self.store.get_identity(_address(address))

    def fingerprint(self, address: tuple[str, int], local_id: str | bytes,
                    remote_id: str | bytes) -> Fingerprint:
        """Safety number (display and scannable) with the trusted key of ``address``."""
        remote = self.remote_identity(address)
        if remote is None:
            raise NoSession("no identity known for this address", _address(address))
        return fingerprint(local_id, self.identity_key, remote_id, remote)

    # -- sessions ----------------------------------------------------------------------------
    def has_session(self, address: tuple[str, int]) -> bool:
        record = self.store.load_session(_address(address))
        return record is not None and record.current is not None

    def session_version(self, address: tuple[str, int]) -> int:
        record = self.store.load_session(_address(address))
        if record is None or record.current is None:
            raise NoSession(address=_address(address))
        return record.current.version

    def delete_session(self, address: tuple[str, int]) -> None:
        with self.store.atomic():
            self.store.delete_session(_address(address))

    def start_session(self, address: tuple[str, int], bundle: PreKeyBundle, *,
                      allow_x3dh: bool = True) -> None:
        """Process ``bundle`` (verifying its signatures) into a new outgoing session.

        PQXDH (version 4) when the bundle has a KEM prekey, else X3DH (version 3, libsignal
        wire-compatible) unless ``allow_x3dh`` is False. Raises :class:`UntrustedIdentity`
        when the bundle's identity differs from the trusted one.
        """
        addr = _address(address)
        with self.store.atomic():
            self._check_trust(addr, bundle.identity_key)
            state = initialize_alice(self._identity, self.registration_id, bundle,
                                     allow_x3dh=allow_x3dh)
            record = self.store.load_session(addr) or SessionRecord()
            record.promote(state)
            if self.store.get_identity(addr) is None:
                self.store.save_identity(addr, bundle.identity_key)
            self.store.store_session(addr, record)
        log.info("e2ee.session.started version=%d", state.version)

    def encrypt(self, address: tuple[str, int], plaintext: bytes) -> Ciphertext:
        """Encrypt for ``address``; the advanced chain is committed before this returns."""
        addr = _address(address)
        with self.store.atomic():
            record = self.store.load_session(addr)
            if record is None or record.current is None:
                raise NoSession(address=addr)
            self._check_trust(addr, record.current.remote_identity)
            message = encrypt_with_record(record, bytes(plaintext))
            self.store.store_session(addr, record)
        if isinstance(message, PreKeySignalMessage):
            return Ciphertext(MessageType.PREKEY, message.serialized)
        return Ciphertext(MessageType.WHISPER, message.serialized)

    def decrypt(self, address: tuple[str, int], ciphertext: Ciphertext) -> bytes:
        """Decrypt a message from ``address``; on any error nothing is changed.

        Raises :class:`InvalidMessage` (and its subclasses ``InvalidMac``, ``InvalidVersion``,
        ``DuplicateMessage``, ``InvalidPreKey``, ``MessageTooFarInFuture``),
        :class:`UntrustedIdentity` or :class:`NoSession`.
        """
        addr = _address(address)
        try:
            with self.store.atomic():
                if ciphertext.type == MessageType.PREKEY:
                    plaintext = self._decrypt_prekey(addr, ciphertext.body)
                elif ciphertext.type == MessageType.WHISPER:
                    plaintext = self._decrypt_whisper(addr, ciphertext.body)
                else:
                    raise InvalidMessage("unknown ciphertext type")
        except (InvalidMessage, NoSession, UntrustedIdentity) as exc:
            log.info("e2ee.decrypt.failed reason=%s", type(exc).__name__)
            raise
        return plaintext

    def _decrypt_whisper(self, addr: Address, body: bytes) -> bytes:
        message = SignalMessage.from_bytes(body)
        record = self.store.load_session(addr)
        if record is None:
            raise NoSession(address=addr)
        plaintext = decrypt_with_record(record, message)
        assert record.current is not None
        self._check_trust(addr, record.current.remote_identity)
        self.store.store_session(addr, record)
        return plaintext

    def _decrypt_prekey(self, addr: Address, body: bytes) -> bytes:
        message = PreKeySignalMessage.from_bytes(body)
        identity = message.identity_key.serialize()
        self._check_trust(addr, identity)
        record = self.store.load_session(addr) or SessionRecord()
        used_pre_key: int | None = None
        used_kyber: int | None = None
        last_resort: tuple[int, int] | None = None  # (KEM prekey id, signed prekey id)
        if record.find_base_key(message.version, message.base_key.raw) is None:
            signed = self.store.get_signed_pre_key(message.signed_pre_key_id)
            if signed is None:
                raise InvalidPreKey("unknown signed prekey")
            one_time = None
            if message.pre_key_id is not None:
                pre_key = self.store.get_pre_key(message.pre_key_id)
                if pre_key is None:
                    raise InvalidPreKey("unknown or used one-time prekey")
                one_time = pre_key.key_pair
                used_pre_key = pre_key.id
            kem_pair = None
            if message.version == VERSION_PQXDH:
                assert message.kyber_pre_key_id is not None
                kyber = self.store.get_kyber_pre_key(message.kyber_pre_key_id)
                if kyber is None:
                    raise InvalidPreKey("unknown or used KEM prekey")
                kem_pair = kyber.key_pair
                if kyber.last_resort:
                    last_resort = (kyber.id, signed.id)
                else:
                    used_kyber = kyber.id
            try:
                state = initialize_bob(
                    self._identity, self.registration_id, signed_pre_key=signed.key_pair,
                    one_time_pre_key=one_time, kyber_pre_key=kem_pair, message=message)
            except InvalidKey as exc:
                raise InvalidMessage("unusable key in PreKeySignalMessage") from exc
            record.promote(state)
        plaintext = decrypt_with_record(record, message.message)
        # A last-resort KEM prekey outlives the sessions it set up: remember each base key
        # used with it (Signal's PQXDH guidance), so a replay is refused even once its session
        # left the record. Checked after the MAC (nobody else can burn a base key) and before
        # any other write (a refusal changes nothing).
        if last_resort is not None and not self.store.mark_kyber_pre_key_used(
                last_resort[0], last_resort[1], message.base_key.serialize()):
            raise ReusedBaseKey("base key already used with this last-resort KEM prekey")
        if self.store.get_identity(addr) is None:
            self.store.save_identity(addr, identity)
        self.store.store_session(addr, record)
        if used_pre_key is not None:
            self.store.remove_pre_key(used_pre_key)
        if used_kyber is not None:
            self.store.remove_kyber_pre_key(used_kyber)
        log.info("e2ee.session.accepted version=%d", message.version)
        return plaintext
