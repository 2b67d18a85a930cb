"""An in-memory :class:`~e2ee_core.server.store.Store`: one process, nothing persisted.

For tests and embedding (e.g. a client's unit tests that want a server without a database).
It follows the same contract as :class:`~e2ee_core.server.store.SqlStore`, and the store tests
run against both. One lock serialises every operation, which is what makes prekey
consumption and the device-set check atomic here.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from e2ee_core.server import consts
from e2ee_core.server.errors import (
    AccountExists,
    MismatchedDevices,
    NotFound,
    QueueFull,
    ServerError,
    TooManyDevices,
    TooManyPreKeys,
)
from e2ee_core.server.store import EventLimit, PurgeCounts, Submission
from e2ee_core.server.wire import (
    Acknowledgement,
    DeviceInfo,
    DeviceKeys,
    Envelope,
    EnvelopeKind,
    OutgoingEnvelope,
    PreKey,
    PreKeyBundle,
    PreKeyCount,
    PreKeyUpload,
    SignedPreKey,
)


@dataclass
class _Device:
    credential_hash: bytes
    registration_id: int
    identity_key: bytes
    signed_prekey: SignedPreKey
    last_resort_kem: SignedPreKey
    created_at_ms: int
    one_time: dict[int, PreKey] = field(default_factory=dict)
    kem: dict[int, SignedPreKey] = field(default_factory=dict)
    queue: list[Envelope] = field(default_factory=list)


@dataclass
class _Account:
    password_hash: str
    created_at_ms: int
    next_device_id: int = 1
    devices: dict[int, _Device] = field(default_factory=dict)
    contacts: set[str] = field(default_factory=set)


@dataclass
class _Attachment:
    data: bytes
    expires_at_ms: int


class MemoryStore:
    """:class:`~e2ee_core.server.store.Store` kept in dictionaries behind one lock."""

    def __init__(self, *, max_devices: int = consts.MAX_DEVICES_PER_ACCOUNT,
                 max_stored_prekeys: int = consts.MAX_STORED_PREKEYS) -> None:
        self.max_devices = max_devices
        self.max_stored_prekeys = max_stored_prekeys
        self._lock = threading.Lock()
        self._accounts: dict[str, _Account] = {}
        self._counts: dict[str, tuple[int, int]] = {}  # key -> (count, window start)
        # (username, device id) -> the credential hash a removed device had
        self._removed: dict[tuple[str, int], bytes] = {}
        self._attachments: dict[str, _Attachment] = {}
        self._next_envelope_id = 1

    # -- helpers (lock held) -----------------------------------------------------------------
    def _account(self, username: str) -> _Account:
        account = self._accounts.get(username)
        if account is None:
            raise NotFound()
        return account

    def _device(self, username: str, device_id: int) -> _Device:
        device = self._account(username).devices.get(device_id)
        if device is None:
            raise NotFound()
        return device

    def _enqueue(self, target: tuple[str, int], source: tuple[str, int], kind: EnvelopeKind,
                 content: bytes | None, *, now_ms: int, expires_at_ms: int) -> int:
        envelope = Envelope(self._next_envelope_id, kind, source[0], source[1], now_ms,
                            expires_at_ms, content)
        self._next_envelope_id += 1
        self._accounts[target[0]].devices[target[1]].queue.append(envelope)
        return envelope.id

    def _new_device(self, account: _Account, device_id: int, keys: DeviceKeys,
                    credential_hash: bytes, now_ms: int) -> None:
        device = _Device(credential_hash, keys.registration_id, keys.identity_key,
                         keys.signed_prekey, keys.last_resort_kem_prekey, now_ms)
        self._add_prekeys(device, keys.one_time_prekeys, keys.kem_prekeys)
        account.devices[device_id] = device

    def _add_prekeys(self, device: _Device, one_time: Sequence[PreKey],
                     kem: Sequence[SignedPreKey]) -> None:
        merged_one_time = dict(device.one_time) | {k.key_id: k for k in one_time}
        merged_kem = dict(device.kem) | {k.key_id: k for k in kem}
        if max(len(merged_one_time), len(merged_kem)) > self.max_stored_prekeys:
            raise TooManyPreKeys()
        device.one_time, device.kem = merged_one_time, merged_kem

    def _announce(self, username: str, device_id: int, kind: EnvelopeKind, now_ms: int,
                  expires_at_ms: int) -> None:
        account = self._accounts[username]
        targets = [(username, d) for d in account.devices if d != device_id]
        for contact in account.contacts:
            targets += [(contact, d) for d in self._accounts[contact].devices]
        for target in targets:
            self._enqueue(target, (username, device_id), kind, None, now_ms=now_ms,
                          expires_at_ms=expires_at_ms)

    # -- accounts and devices ----------------------------------------------------------------
    def create_account(self, username: str, password_hash: str, device: DeviceKeys,
                       credential_hash: bytes, *, now_ms: int) -> int:
        with self._lock:
            if username in self._accounts:
                raise AccountExists()
            account = _Account(password_hash, now_ms, next_device_id=2)
            self._new_device(account, 1, device, credential_hash, now_ms)
            self._accounts[username] = account
        return 1

    def password_hash(self, username: str) -> str | None:
        with self._lock:
            account = self._accounts.get(username)
            return None if account is None else account.password_hash

    def set_password_hash(self, username: str, password_hash: str) -> None:
        with self._lock:
            if username in self._accounts:
                self._accounts[username].password_hash = password_hash

    def add_device(self, username: str, device: DeviceKeys, credential_hash: bytes,
                   *, now_ms: int, expires_at_ms: int) -> int:
        with self._lock:
            account = self._account(username)
            if len(account.devices) >= self.max_devices:
                raise TooManyDevices()
            device_id = account.next_device_id
            if device_id > consts.MAX_DEVICE_ID:
                raise TooManyDevices()
            self._new_device(account, device_id, device, credential_hash, now_ms)
            account.next_device_id += 1
            self._announce(username, device_id, "device_added", now_ms, expires_at_ms)
        return device_id

    def remove_device(self, username: str, device_id: int, *, now_ms: int,
                      expires_at_ms: int) -> None:
        with self._lock:
            device = self._device(username, device_id)
            self._removed[(username, device_id)] = device.credential_hash
            del self._accounts[username].devices[device_id]
            self._announce(username, device_id, "device_removed", now_ms, expires_at_ms)

    def credential_hash(self, username: str, device_id: int) -> bytes | None:
        with self._lock:
            account = self._accounts.get(username)
            device = None if account is None else account.devices.get(device_id)
            return None if device is None else device.credential_hash

    def removed_credential_hash(self, username: str, device_id: int) -> bytes | None:
        with self._lock:
            return self._removed.get((username, device_id))

    def list_devices(self, username: str) -> list[DeviceInfo]:
        with self._lock:
            devices = self._account(username).devices
            return [DeviceInfo(d, devices[d].registration_id, devices[d].identity_key,
                               devices[d].created_at_ms) for d in sorted(devices)]

    # -- keys ----------------------------------------------------------------------------------
    def upload_prekeys(self, username: str, device_id: int, upload: PreKeyUpload) -> None:
        with self._lock:
            device = self._device(username, device_id)
            self._add_prekeys(device, upload.one_time_prekeys, upload.kem_prekeys)
            if upload.signed_prekey is not None:
                device.signed_prekey = upload.signed_prekey
            if upload.last_resort_kem_prekey is not None:
                device.last_resort_kem = upload.last_resort_kem_prekey

    def prekey_count(self, username: str, device_id: int) -> PreKeyCount:
        with self._lock:
            device = self._device(username, device_id)
            return PreKeyCount(len(device.one_time), len(device.kem))

    def take_bundles(self, username: str, device_id: int | None = None, *,
                     consume: bool = True) -> list[PreKeyBundle]:
        with self._lock:
            devices = self._account(username).devices
            if device_id is not None and device_id not in devices:
                raise NotFound()
            wanted = sorted(devices) if device_id is None else [device_id]
            bundles = []
            for dev_id in wanted:
                dev = devices[dev_id]
                otk = dev.one_time.pop(min(dev.one_time)) if consume and dev.one_time else None
                kem = dev.kem.pop(min(dev.kem)) if consume and dev.kem else None
                bundles.append(PreKeyBundle(
                    username, dev_id, dev.registration_id, dev.identity_key, dev.signed_prekey,
                    kem if kem is not None else dev.last_resort_kem, kem is None, otk))
            return bundles

    # -- envelopes -----------------------------------------------------------------------------
    def submit(self, sender: str, sender_device: int, recipient: str,
               messages: Sequence[OutgoingEnvelope], *, now_ms: int,
               expires_at_ms: int, max_queued_bytes: int | None = None) -> list[int]:
        return self.submit_multi(sender, sender_device, [recipient], messages, now_ms=now_ms,
                                 expires_at_ms=expires_at_ms,
                                 max_queued_bytes=max_queued_bytes)

    def submit_multi(self, sender: str, sender_device: int, recipients: Sequence[str],
                     messages: Sequence[OutgoingEnvelope], *, now_ms: int,
                     expires_at_ms: int, max_queued_bytes: int | None = None,
                     limit: EventLimit | None = None) -> list[int]:
        if limit is not None and self.count_event(limit.key, now_ms, limit.window_ms) > \
                limit.limit:
            raise limit.refusal()
        with self._lock:
            expected: set[tuple[str, int]] = set()
            for recipient in recipients:
                expected |= {(recipient, d) for d in self._account(recipient).devices}
            own = self._accounts.get(sender)
            if own is not None:
                expected |= {(sender, d) for d in own.devices}
            expected.discard((sender, sender_device))
            got = {(m.username, m.device_id) for m in messages}
            if got != expected:
                raise MismatchedDevices(sorted(expected - got), sorted(got - expected))
            if max_queued_bytes is not None:
                for m in messages:
                    queue = self._accounts[m.username].devices[m.device_id].queue
                    if sum(len(e.content or b"") for e in queue) + len(m.content) > \
                            max_queued_bytes:
                        raise QueueFull(retry_after=60)
            ids = [self._enqueue((m.username, m.device_id), (sender, sender_device), "message",
                                 m.content, now_ms=now_ms, expires_at_ms=expires_at_ms)
                   for m in messages]
            if own is not None:
                # the recipients hear of the sender's devices
                own.contacts.update(r for r in recipients if r != sender)
        return ids

    def submit_batch(self, submissions: Sequence[Submission], *, now_ms: int,
                     max_queued_bytes: int | None = None) -> list[list[int] | ServerError]:
        results: list[list[int] | ServerError] = []
        for sub in submissions:
            try:
                results.append(self.submit_multi(
                    sub.sender, sub.sender_device, sub.recipients, sub.messages, now_ms=now_ms,
                    expires_at_ms=sub.expires_at_ms, max_queued_bytes=max_queued_bytes,
                    limit=sub.limit))
            except ServerError as exc:
                results.append(exc)
        return results

    def fetch(self, username: str, device_id: int, now_ms: int,
              limit: int, after_id: int = 0) -> list[Envelope]:
        with self._lock:
            account = self._accounts.get(username)
            device = None if account is None else account.devices.get(device_id)
            if device is None:
                return []
            return [e for e in device.queue
                    if e.id > after_id and e.expires_at_ms > now_ms][:limit]

    def acknowledge_many(self, acks: Sequence[Acknowledgement]) -> int:
        return sum(self.acknowledge(a.username, a.device_id, a.ids, a.refused) for a in acks)

    def acknowledge(self, username: str, device_id: int, ids: Iterable[int],
                    refused: Iterable[int] = ()) -> int:
        wanted = set(ids)
        no = set(refused)
        with self._lock:
            account = self._accounts.get(username)
            device = None if account is None else account.devices.get(device_id)
            if account is None or device is None:
                return 0
            for e in device.queue:
                if (e.id in wanted and e.id not in no and e.kind == "message"
                        and e.source != username):
                    account.contacts.add(e.source)
            before = len(device.queue)
            device.queue = [e for e in device.queue if e.id not in wanted]
            return before - len(device.queue)

    # -- attachments and expiry ----------------------------------------------------------------
    def put_attachment(self, data: bytes, now_ms: int, expires_at_ms: int) -> str:
        attachment_id = secrets.token_hex(consts.ATTACHMENT_ID_BYTES)
        with self._lock:
            self._attachments[attachment_id] = _Attachment(bytes(data), expires_at_ms)
        return attachment_id

    def get_attachment(self, attachment_id: str, now_ms: int) -> bytes | None:
        with self._lock:
            found = self._attachments.get(attachment_id)
            return None if found is None or found.expires_at_ms <= now_ms else found.data

    def event_count(self, key: str, now_ms: int, window_ms: int) -> tuple[int, int]:
        with self._lock:
            count, start = self._counts.get(key, (0, now_ms))
            return (0, now_ms) if now_ms - start >= window_ms else (count, start)

    def count_event(self, key: str, now_ms: int, window_ms: int, amount: int = 1) -> int:
        with self._lock:
            count, start = self._counts.get(key, (0, now_ms))
            if now_ms - start >= window_ms:
                count, start = 0, now_ms
            self._counts[key] = (count + amount, start)
            return count + amount

    def clear_events(self, key: str) -> None:
        with self._lock:
            self._counts.pop(key, None)

    def purge_expired(self, now_ms: int) -> PurgeCounts:
        with self._lock:
            envelopes = 0
            for account in self._accounts.values():
                for device in account.devices.values():
                    kept = [e for e in device.queue if e.expires_at_ms > now_ms]
                    envelopes += len(device.queue) - len(kept)
                    device.queue = kept
            expired = [k for k, a in self._attachments.items() if a.expires_at_ms <= now_ms]
            for k in expired:
                del self._attachments[k]
            waiting = sum(len(d.queue) for a in self._accounts.values()
                          for d in a.devices.values())
            return PurgeCounts(envelopes, len(expired), waiting)
