"""``Messenger``: one device of a multi-device account, on top of the delivery server.

It composes the Signal sessions (:mod:`e2ee_core.device`), the content model
(:mod:`e2ee_core.content`), attachments, Sender-Key groups and disappearing messages, and talks
to the server only through :class:`~e2ee_core.server.client.ServerClient`.

* **Client fanout.** A message to account B is encrypted once per device of B and once per other
  device of the sender's own account (each over its own pairwise session) and submitted as one
  send. The own copies are the *sync transcript*: the frame inside names the destination, so the
  other own devices file it under the right conversation.
* **409 handling.** The server refuses a send that does not cover exactly the current devices
  (``missing``/``extra``). The client fetches bundles for the missing devices (new sessions),
  drops sessions of the extra ones, records a notice for each change and retries (at most
  ``MAX_SEND_ATTEMPTS`` rounds). For a *verified* contact a change raises
  :class:`~e2ee_core.client.errors.ContactChanged` before anything more is sent.
* **Receiving** decrypts and stores each envelope in one local transaction, then acknowledges:
  the local store's (conversation, message id) key and the processed-envelope table give
  exactly-once storage under the server's at-least-once delivery.

A ``Messenger`` is used from the thread that created it (its database connection is per
thread; an in-memory state lives only in that connection).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests

from e2ee_core.attachments import blob_size, decrypt_attachment, encrypt_attachment
from e2ee_core.client import consts
from e2ee_core.client.errors import (
    AttachmentTooLarge,
    ContactChanged,
    DeviceRemoved,
    SafetyNumberMismatch,
    SendFailed,
    StateError,
    UnknownGroup,
    UnknownMessage,
)
from e2ee_core.client.frames import (
    GROUP,
    PAIRWISE,
    Frame,
    InvalidFrame,
    unwrap,
    wrap_group,
    wrap_pairwise,
)
from e2ee_core.client.safety import combined_safety_number, device_safety_number
from e2ee_core.client.store import ClientStore, Notice, SqlMessageStore
from e2ee_core.content import (
    AttachmentPointer,
    Body,
    Content,
    Delete,
    Edit,
    GroupMembershipChange,
    Reaction,
    ReadReceipt,
    SenderKeyDistribution,
    Sticker,
    Text,
    TimerChange,
    Unknown,
)
from e2ee_core.device import Ciphertext, Device, MessageType
from e2ee_core.device import PreKeyBundle as SessionBundle
from e2ee_core.disappearing import (
    ConversationTimers,
    DisappearingMessages,
    ExpiryStart,
    StoredMessage,
    expires_at_ms,
    server_expiry_hint_ms,
)
from e2ee_core.errors import (
    DuplicateMessage,
    E2EEError,
    NoSession,
    UntrustedIdentity,
)
from e2ee_core.groups import (
    DuplicateGroupMessage,
    Group,
    GroupError,
    GroupState,
    NoSenderKeyState,
    Outgoing,
    SenderAddress,
    SenderKeyMessage,
)
from e2ee_core.server.client import ServerClient
from e2ee_core.server.errors import (
    DeviceWasRemoved,
    MismatchedDevices,
    NotFound,
    PayloadTooLarge,
    ServerError,
    ServerUnreachable,
)
from e2ee_core.server.push_client import PushConnection
from e2ee_core.server.wire import (
    DeviceKeys,
    Envelope,
    OutgoingEnvelope,
    PreKey,
    PreKeyBundle,
    PreKeyUpload,
    SignedPreKey,
)

__all__ = ["Clock", "ContactDevices", "DeviceSafety", "Message", "Messenger", "Notice",
           "group_conversation"]

log = logging.getLogger("e2ee_core.client")

Clock = Callable[[], int]
"""Milliseconds since the Unix epoch (injectable: tests move time by hand)."""

_T = TypeVar("_T")
_VISIBLE = (Text, Sticker, AttachmentPointer, TimerChange, Unknown)
_GROUP_PREFIX = "group:"


def _wall_clock() -> int:
    return int(time.time() * 1000)


def group_conversation(group_id: bytes) -> str:
    """The conversation id under which a group's messages are stored."""
    return _GROUP_PREFIX + group_id.hex()


def _group_id(conversation: str) -> bytes | None:
    if not conversation.startswith(_GROUP_PREFIX):
        return None
    try:
        return bytes.fromhex(conversation[len(_GROUP_PREFIX):])
    except ValueError:
        raise UnknownGroup("malformed group conversation id") from None


@dataclass(frozen=True)
class ChatSummary:
    """One conversation in the chat list: its last activity, unread count and last message."""

    conversation: str
    last_at_ms: int
    unread: int
    last: Message


@dataclass(frozen=True)
class Message:
    """A stored message as the app shows it (edits applied; ``content`` None once deleted
    for everyone). ``conversation`` is the other account's name, or ``group:<hex id>``."""

    conversation: str
    message_id: bytes
    sender: str
    sender_device: int
    outgoing: bool
    content: Content | None
    received_at_ms: int
    read_at_ms: int | None
    expires_at_ms: int | None
    edited: bool
    deleted: bool
    reactions: dict[str, str]

    @property
    def body(self) -> Body | None:
        return None if self.content is None else self.content.body

    @property
    def text(self) -> str | None:
        """The text of a text message, else None."""
        body = self.body
        return body.text if isinstance(body, Text) else None

    def __repr__(self) -> str:  # never print content
        kind = None if self.content is None else self.content.type_id
        return (f"Message(conversation=<{len(self.conversation)} chars>, type={kind}, "
                f"outgoing={self.outgoing}, deleted={self.deleted})")


@dataclass(frozen=True)
class DeviceSafety:
    """One device of a contact with the safety number between it and this device."""

    device_id: int
    identity_key: bytes
    safety_number: str


@dataclass(frozen=True)
class ContactDevices:
    """A contact's current devices, the combined safety number over both accounts' device sets
    (see :mod:`e2ee_core.client.safety`), and the verification state."""

    username: str
    devices: tuple[DeviceSafety, ...]
    combined_safety_number: str
    verified: bool
    changed: bool


def session_bundle(bundle: PreKeyBundle) -> SessionBundle:
    """The server's bundle as the session layer's (signatures are checked there)."""
    otk = bundle.one_time_prekey
    return SessionBundle(
        registration_id=bundle.registration_id, device_id=bundle.device_id,
        identity_key=bundle.identity_key, signed_pre_key_id=bundle.signed_prekey.key_id,
        signed_pre_key=bundle.signed_prekey.public_key,
        signed_pre_key_signature=bundle.signed_prekey.signature,
        pre_key_id=None if otk is None else otk.key_id,
        pre_key=None if otk is None else otk.public_key,
        kyber_pre_key_id=bundle.kem_prekey.key_id, kyber_pre_key=bundle.kem_prekey.public_key,
        kyber_pre_key_signature=bundle.kem_prekey.signature)


def _open_store(state: str | Path | None) -> ClientStore:
    return ClientStore(":memory:" if state is None else str(state))


class Messenger:
    """One device of an account: keys, sessions, local messages, groups, and the server link.

    Create with :meth:`register` (new account, device 1), :meth:`link` (another device of an
    existing account, needs the password) or :meth:`open` (resume a saved state). ``state`` is
    an SQLite file (created 0600) or None for an in-memory state.
    """

    def __init__(self, store: ClientStore, server: ServerClient, *,
                 clock: Clock | None = None, expiry_start: ExpiryStart = ExpiryStart.READ,
                 max_attachment_bytes: int = consts.SERVER_MAX_ATTACHMENT_BYTES) -> None:
        self.store = store
        self.server = server
        self.clock: Clock = clock or _wall_clock
        self.device = Device(store.protocol)
        self.username = store.require_meta("username")
        self.device_id = int(store.require_meta("device_id"))
        self.max_attachment_bytes = max_attachment_bytes
        self.mismatches = 0  # 409 answers handled so far (observability for tests and apps)
        self._refused: list[int] = []  # envelopes of this receive that could not be opened
        self._unparked: list[Message] = []  # parked group messages read during this receive
        self._expiry_start = expiry_start
        self._timers = ConversationTimers(store.timers())
        self._messages = SqlMessageStore(store, (self.username, self.device_id))
        self.disappearing = DisappearingMessages(self._messages, clock=self.clock,
                                                 timers=self._timers, start=expiry_start)
        self._groups: dict[bytes, Group] = {}
        for raw in store.group_states():
            state = GroupState.decode(raw)
            self._groups[state.group_id] = Group(state, store.sender_keys, clock=self.clock)
        self._outbox: list[tuple[bytes, Outgoing]] = []
        self._first_contacts: set[str] = set()
        self._live_sessions: set[tuple[str, int]] = set()

    def __repr__(self) -> str:
        return f"Messenger(device_id={self.device_id})"

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def register(cls, server_url: str, username: str, password: str, *,
                 state: str | Path | None = None, session: requests.Session | None = None,
                 prekeys: int = consts.PREKEY_BATCH, kem_prekeys: int = consts.KEM_PREKEY_BATCH,
                 clock: Clock | None = None,
                 expiry_start: ExpiryStart = ExpiryStart.READ,
                 max_attachment_bytes: int = consts.SERVER_MAX_ATTACHMENT_BYTES) -> Messenger:
        """Create the account ``username`` with this new device as device 1."""
        return cls._enrol("register", server_url, username, password, state=state,
                          session=session, prekeys=prekeys, kem_prekeys=kem_prekeys,
                          clock=clock, expiry_start=expiry_start,
                          max_attachment_bytes=max_attachment_bytes)

    @classmethod
    def link(cls, server_url: str, username: str, password: str, *,
             state: str | Path | None = None, session: requests.Session | None = None,
             prekeys: int = consts.PREKEY_BATCH, kem_prekeys: int = consts.KEM_PREKEY_BATCH,
             clock: Clock | None = None, expiry_start: ExpiryStart = ExpiryStart.READ,
             max_attachment_bytes: int = consts.SERVER_MAX_ATTACHMENT_BYTES) -> Messenger:
        """Add this new device to the existing account ``username`` (the account password is
        required). Other devices and contacts are told by the server; this device receives
        only what is sent from now on."""
        return cls._enrol("link", server_url, username, password, state=state,
                          session=session, prekeys=prekeys, kem_prekeys=kem_prekeys,
                          clock=clock, expiry_start=expiry_start,
                          max_attachment_bytes=max_attachment_bytes)

    @classmethod
    def open(cls, state: str | Path, *, session: requests.Session | None = None,
             clock: Clock | None = None, expiry_start: ExpiryStart = ExpiryStart.READ,
             max_attachment_bytes: int = consts.SERVER_MAX_ATTACHMENT_BYTES) -> Messenger:
        """Resume the device saved in ``state``."""
        if not Path(state).exists():
            raise StateError("no saved state at this path")
        store = ClientStore(str(state))
        from e2ee_core.server.client import credential_from_token

        credential = credential_from_token(store.require_meta("credential"))
        server = ServerClient(store.require_meta("server_url"), credential, session=session)
        return cls(store, server, clock=clock, expiry_start=expiry_start,
                   max_attachment_bytes=max_attachment_bytes)

    @classmethod
    def _enrol(cls, how: str, server_url: str, username: str, password: str, *,
               state: str | Path | None, session: requests.Session | None, prekeys: int,
               kem_prekeys: int, clock: Clock | None, expiry_start: ExpiryStart,
               max_attachment_bytes: int) -> Messenger:
        store = _open_store(state)
        if store.get_meta("username") is not None:
            raise StateError("this state already holds a device")
        now_s = (clock or _wall_clock)() // 1000
        device = Device.create(store.protocol, now=now_s)
        signed = device.current_signed_pre_key()
        last_resort = device.last_resort_kyber_pre_key()
        keys = DeviceKeys(
            registration_id=device.registration_id, identity_key=device.identity_key,
            signed_prekey=SignedPreKey(signed.id, signed.key_pair.public.serialize(),
                                       signed.signature),
            last_resort_kem_prekey=SignedPreKey(last_resort.id,
                                                last_resort.key_pair.public.serialize(),
                                                last_resort.signature),
            one_time_prekeys=tuple(PreKey(i, k) for i, k in device.generate_pre_keys(prekeys))
            if prekeys else (),
            kem_prekeys=tuple(SignedPreKey(i, k, s) for i, k, s in
                              device.generate_kyber_pre_keys(kem_prekeys, now=now_s))
            if kem_prekeys else ())
        server = ServerClient(server_url, session=session)
        enrol = server.register if how == "register" else server.add_device
        credential = enrol(username, password, keys)
        with store.atomic():
            store.set_meta("server_url", server.base_url)
            store.set_meta("username", credential.username)
            store.set_meta("device_id", str(credential.device_id))
            store.set_meta("credential", credential.credential)
        messenger = cls(store, server, clock=clock, expiry_start=expiry_start,
                        max_attachment_bytes=max_attachment_bytes)
        # Our own account's devices as they are now: the reference for later notices.
        for info in server.list_devices(credential.username):
            store.put_device(credential.username, info.device_id, info.identity_key)
        log.info("client.enrolled how=%s", how)
        return messenger

    def close(self) -> None:
        """Close the server connection and the local database."""
        self.server.close()
        self.store.close()

    # -- prekeys -------------------------------------------------------------------------------
    def maintain_prekeys(self, *, threshold: int = consts.PREKEY_REFILL_THRESHOLD,
                         batch: int = consts.PREKEY_BATCH,
                         kem_batch: int = consts.KEM_PREKEY_BATCH) -> bool:
        """Refill one-time EC and KEM prekeys below ``threshold``, rotate the signed prekey and
        the last-resort KEM prekey when due (every 2 days, by this Messenger's clock), upload
        what changed. Returns True when something was uploaded."""
        now_s = self.clock() // 1000
        count = self._call(self.server.prekey_count)
        one_time = self.device.refill_pre_keys(count.one_time_prekeys, threshold=threshold,
                                               batch=batch)
        kem = (self.device.generate_kyber_pre_keys(kem_batch, now=now_s)
               if count.kem_prekeys < threshold else [])
        rotated = self.device.rotate_signed_pre_key(now=now_s)
        last_resort = self.device.ensure_last_resort_kyber_pre_key(now=now_s)
        if not (one_time or kem or rotated or last_resort):
            return False
        signed = self.device.current_signed_pre_key()
        lr = self.device.last_resort_kyber_pre_key()
        upload = PreKeyUpload(
            tuple(PreKey(i, k) for i, k in one_time),
            tuple(SignedPreKey(i, k, s) for i, k, s in kem),
            SignedPreKey(signed.id, signed.key_pair.public.serialize(), signed.signature)
            if rotated else None,
            SignedPreKey(lr.id, lr.key_pair.public.serialize(), lr.signature)
            if last_resort else None)
        self._call(lambda: self.server.upload_prekeys(upload))
        log.info("client.prekeys.uploaded one_time=%d kem=%d rotated=%d", len(one_time),
                 len(kem), int(rotated or last_resort))
        return True

    # -- sending -------------------------------------------------------------------------------
    def send_text(self, conversation: str, text: str) -> Content:
        """Send a text message to an account (all its devices) or a group conversation."""
        return self.send(conversation, Text(text))

    def send(self, conversation: str, body: Body) -> Content:
        """Send any content body (sticker, reaction, edit, delete, receipt, attachment pointer,
        timer change...) to an account or a group; returns the sent content. The message is
        stored locally and synced to this account's other devices."""
        group_id = _group_id(conversation)
        if group_id is not None:
            for member in self._group(group_id).members:  # refuse before anyone gets it
                if member != self.username:
                    self._check_not_blocked(member)
        elif conversation != self.username:
            self._ensure_known(conversation)
            self._check_not_blocked(conversation)
        content = self._compose(conversation, body, group_id)
        if group_id is not None:
            self._send_group_content(group_id, content)
        else:
            self._send_pairwise(conversation, content,
                                expires_at_ms=server_expiry_hint_ms(content))
        with self.store.atomic():
            self._store_content(conversation, content, self.username, self.device_id,
                                outgoing=True)
        self._flush_outbox()
        return content

    def react(self, conversation: str, target_id: bytes, emoji: str | None) -> Content:
        """React to a message (None removes this account's reaction)."""
        return self.send(conversation, Reaction(target_id, emoji))

    def edit(self, conversation: str, target_id: bytes, text: str) -> Content:
        """Replace the text of one of this account's messages, for everyone."""
        return self.send(conversation, Edit(target_id, text))

    def delete_for_everyone(self, conversation: str, target_id: bytes) -> Content:
        """Delete one of this account's messages on every device of every participant."""
        return self.send(conversation, Delete(target_id))

    def set_timer(self, conversation: str, seconds: int | None) -> Content:
        """Turn disappearing messages on (``seconds``) or off (None) for a conversation."""
        return self.send(conversation, TimerChange(seconds))

    def mark_read(self, conversation: str, message_ids: Iterable[bytes]) -> Content | None:
        """Mark incoming messages read here (starting read-based timers) and send a read
        receipt to the conversation (and, through the sync, to this account's devices)."""
        ids = []
        for message_id in message_ids:
            message = self.disappearing.store.get(conversation, message_id)
            if message is None:
                raise UnknownMessage("no such message in this conversation")
            if not message.outgoing:
                with self.store.atomic():
                    self.disappearing.mark_read(conversation, message_id)
                ids.append(message_id)
        if not ids:
            return None
        return self.send(conversation, ReadReceipt(tuple(ids)))

    def send_attachment(self, conversation: str, data: bytes, *, content_type: str,
                        file_name: str | None = None) -> Content:
        """Encrypt ``data`` with a fresh key, upload the padded blob, send the pointer (the
        key travels only inside the end-to-end encrypted message)."""
        if blob_size(len(data)) > self.max_attachment_bytes:
            raise AttachmentTooLarge("attachment exceeds the server's blob limit")
        blob, pointer = encrypt_attachment(data, content_type=content_type,
                                           file_name=file_name)
        try:
            ref = self._call(lambda: self.server.upload_attachment(blob))
        except PayloadTooLarge:
            raise AttachmentTooLarge("attachment exceeds the server's blob limit") from None
        pointer = dataclasses.replace(pointer, blob_id=ref.id.encode("ascii"))
        return self.send(conversation, pointer)

    def download_attachment(self, pointer: AttachmentPointer) -> bytes:
        """Download and decrypt an attachment (digest, tag and padding checked)."""
        blob = self._call(lambda: self.server.download_attachment(pointer.blob_id.decode()))
        return decrypt_attachment(blob, pointer)

    def _compose(self, conversation: str, body: Body, group_id: bytes | None) -> Content:
        now = self.clock()
        timer = self._timers.get(conversation)
        if isinstance(body, TimerChange):
            # Strictly after the setting it replaces, so every device orders the two alike.
            now = max(now, self._timers.state(conversation).changed_at_ms + 1)
            timer = None  # the change notice itself stays
        return Content.new(body, sent_at_ms=now, expire_timer=timer, group_id=group_id)

    def fanout_envelopes(self, recipient: str, content: Content) -> list[OutgoingEnvelope]:
        """The client-fanout step of a send, without the server call: ``content`` encrypted
        over the pairwise session of every device of ``recipient`` this device knows and of
        every other own device (sessions are started from fetched bundles where missing).
        All ratchet steps commit in one local transaction before the envelopes are returned."""
        return self._pairwise_envelopes(self._targets(recipient),
                                        Frame(recipient, content).encode())

    def _targets(self, recipient: str) -> list[tuple[str, int]]:
        me = self.username
        targets = [] if recipient == me else [
            (recipient, d) for d in self.store.known_devices(recipient)]
        return targets + [(me, d) for d in self.store.known_devices(me) if d != self.device_id]

    def _pairwise_envelopes(self, targets: list[tuple[str, int]],
                            frame: bytes) -> list[OutgoingEnvelope]:
        # Sessions known to exist are not re-checked (profiled: the check cost one extra
        # session load per device, about 15% of a fanout); a vanished one is re-made once.
        for attempt in (1, 2):
            self._ensure_sessions([t for t in targets if t not in self._live_sessions])
            try:
                with self.store.atomic():
                    envelopes = [OutgoingEnvelope(u, d, wrap_pairwise(
                        self.device.encrypt((u, d), frame).to_bytes())) for u, d in targets]
            except NoSession as exc:
                if attempt == 2 or exc.address is None:
                    raise
                self._live_sessions.discard(tuple(exc.address))
                continue
            self._live_sessions.update(targets)
            return envelopes
        raise AssertionError("unreachable")

    def _send_pairwise(self, recipient: str, content: Content, *,
                       expires_at_ms: int | None = None) -> None:
        frame = Frame(recipient, content).encode()
        self._fanout(recipient, lambda targets: self._pairwise_envelopes(targets, frame),
                     expires_at_ms=expires_at_ms)

    def _fanout(self, recipient: str,
                build: Callable[[list[tuple[str, int]]], list[OutgoingEnvelope]], *,
                expires_at_ms: int | None = None,
                reconciled: Callable[[], None] | None = None) -> None:
        """One envelope per device of ``recipient`` and per other own device; 409 answers are
        reconciled (new sessions, dropped devices, notices) and the send retried. Group state
        the reconciliation queued for new devices (membership, sender keys) is sent first, then
        ``reconciled()`` runs (a group send re-encrypts there, so that a new device, which
        gets the sender key as it is now, can read the message)."""
        self._deliver([recipient], build, lambda e: self.server.send(recipient, e, expires_at_ms),
                      reconciled)

    def _fanout_many(self, recipients: list[str],
                     build: Callable[[list[tuple[str, int]]], list[OutgoingEnvelope]], *,
                     expires_at_ms: int | None = None,
                     reconciled: Callable[[], None] | None = None) -> None:
        """One request for several accounts (a group message): an envelope per device of each
        and per other own device (those once), queued all or none; a 409 lists every
        mismatch, reconciled at once, and the send is retried."""
        self._deliver(recipients, build,
                      lambda e: self.server.send_multi(recipients, e, expires_at_ms),
                      reconciled)

    def _deliver(self, recipients: list[str],
                 build: Callable[[list[tuple[str, int]]], list[OutgoingEnvelope]],
                 submit: Callable[[list[OutgoingEnvelope]], int],
                 reconciled: Callable[[], None] | None) -> None:
        for attempt in range(1, consts.MAX_SEND_ATTEMPTS + 1):
            for recipient in recipients:
                if recipient != self.username:
                    self._ensure_known(recipient)
                    self._check_not_blocked(recipient)
            targets = sorted({t for r in recipients for t in self._targets(r)})
            if not targets:
                return  # a note to self on a single-device account: nothing to deliver
            envelopes = build(targets)
            try:
                self._call(lambda e=envelopes: submit(e))  # type: ignore[misc]
            except MismatchedDevices as refused:
                self._mismatched(refused, reconciled)
                continue
            log.info("client.send envelopes=%d recipients=%d attempts=%d", len(envelopes),
                     len(recipients), attempt)
            return
        raise SendFailed("the device set kept changing; try again later")

    def _mismatched(self, refused: MismatchedDevices,
                    reconciled: Callable[[], None] | None) -> None:
        self.mismatches += 1
        log.info("client.send.mismatch missing=%d extra=%d", len(refused.missing),
                 len(refused.extra))
        self._reconcile(refused.missing, refused.extra)
        if self._outbox:
            self._flush_outbox()
        if reconciled is not None:
            reconciled()

    # -- device sets ---------------------------------------------------------------------------
    def _ensure_known(self, username: str) -> None:
        """First contact: learn the account's devices (trust on first use, no notice)."""
        if self.store.knows_account(username):
            return
        bundles = self._call(lambda: self.server.fetch_bundles(username))
        for bundle in bundles:
            self._start_session(bundle, announce=False)

    def _ensure_sessions(self, targets: list[tuple[str, int]]) -> None:
        missing = [a for a in targets if not self.device.has_session(a)]
        by_user: dict[str, list[int]] = {}
        for user, device_id in missing:
            by_user.setdefault(user, []).append(device_id)
        for user, ids in by_user.items():
            known = self.store.known_devices(user)
            if len(ids) > 1 and set(ids) == set(known):
                bundles = self._call(lambda u=user: self.server.fetch_bundles(u))  # type: ignore[misc]
            else:
                bundles = []
                for device_id in ids:
                    try:
                        bundles += self._call(lambda u=user, d=device_id:  # type: ignore[misc]
                                              self.server.fetch_bundles(u, d))
                    except NotFound:
                        self._device_gone(user, device_id)
            for bundle in bundles:
                self._start_session(bundle, announce=bundle.device_id not in known)

    def _start_session(self, bundle: PreKeyBundle, *, announce: bool) -> None:
        address = (bundle.username, bundle.device_id)
        known = self.store.known_devices(bundle.username).get(bundle.device_id)
        with self.store.atomic():
            if known is not None and known != bundle.identity_key:
                self._identity_changed(address, bundle.identity_key)
            try:
                self.device.start_session(address, session_bundle(bundle))
            except UntrustedIdentity:
                self._identity_changed(address, bundle.identity_key)
                self.device.start_session(address, session_bundle(bundle))
            self.store.put_device(bundle.username, bundle.device_id, bundle.identity_key)
            if announce:
                self._device_added(bundle.username, bundle.device_id)

    def _identity_changed(self, address: tuple[str, int], identity_key: bytes) -> None:
        """A device id shows a new identity key: notice; verified contacts become blocked.
        The key is trusted so messages still flow in; sending to a verified contact stays
        refused until the user re-verifies or accepts."""
        user, device_id = address
        self.store.add_notice(self.clock(), "identity_changed", user, device_id)
        if user != self.username:
            self.store.mark_changed(user)
        self.device.trust_identity(address, identity_key)
        self._live_sessions.discard(address)
        self.store.put_device(user, device_id, identity_key)
        log.warning("client.identity.changed")

    def _device_added(self, user: str, device_id: int) -> None:
        self.store.add_notice(self.clock(), "device_added", user, device_id)
        if user != self.username:
            self.store.mark_changed(user)
        self._bring_into_groups(user)

    def _bring_into_groups(self, user: str) -> None:
        """A member account has a new device: it gets our current sender key (never earlier
        chain keys); a new device of our own account also gets each group's membership, which
        it joins from (Group.join accepts our own account as the inviter)."""
        for group in self._groups.values():
            if not group.is_member or user not in group.members:
                continue
            if user == self.username:
                snapshot = GroupMembershipChange(group.epoch, group.members)
                self._outbox.append((group.group_id, Outgoing(frozenset([user]), Content.new(
                    snapshot, sent_at_ms=self.clock(), group_id=group.group_id))))
            skdm = SenderKeyDistribution(group.distribution_message())
            self._outbox.append((group.group_id, Outgoing(frozenset([user]), Content.new(
                skdm, sent_at_ms=self.clock(), group_id=group.group_id))))

    def _device_gone(self, user: str, device_id: int) -> None:
        """A device was removed from ``user``: forget it, tell the user, re-key groups."""
        if device_id not in self.store.known_devices(user):
            return
        with self.store.atomic():
            self.device.delete_session((user, device_id))
            self._live_sessions.discard((user, device_id))
            self.store.drop_device(user, device_id)
            self.store.add_notice(self.clock(), "device_removed", user, device_id)
            if user != self.username:
                self.store.mark_changed(user)
            for group in self._groups.values():
                if group.is_member and user in group.members and (
                        user, device_id) != (self.username, self.device_id):
                    out = group.forget_device(SenderAddress(user, device_id))
                    self._save_group(group)
                    self._outbox += [(group.group_id, o) for o in out]

    def _reconcile(self, missing: list[tuple[str, int]], extra: list[tuple[str, int]]) -> None:
        for user, device_id in extra:
            self._device_gone(user, device_id)
        for user, device_id in missing:
            try:
                bundles = self._call(lambda u=user, d=device_id:  # type: ignore[misc]
                                     self.server.fetch_bundles(u, d))
            except NotFound:
                continue  # removed again meanwhile: the next round's 409 says so
            for bundle in bundles:
                self._start_session(bundle, announce=True)

    def _refresh(self, username: str, *, announce: bool = True) -> None:
        """Compare the server's device list of ``username`` with the accepted one; record
        notices for every difference (sessions for new devices are made when next needed)."""
        listed = {d.device_id: d.identity_key
                  for d in self._call(lambda: self.server.list_devices(username))}
        known = self.store.known_devices(username)
        announce = announce and bool(known)  # first sight of an account: trust, no notice
        for device_id in set(known) - set(listed):
            self._device_gone(username, device_id)
        with self.store.atomic():
            for device_id, key in listed.items():
                if device_id not in known:
                    self.store.put_device(username, device_id, key)
                    if announce:
                        self._device_added(username, device_id)
                elif known[device_id] != key:
                    self._identity_changed((username, device_id), key)

    def _check_not_blocked(self, username: str) -> None:
        verified, _, changed = self.store.contact(username)
        if verified and changed:
            raise ContactChanged(username)

    # -- control over endpoints ----------------------------------------------------------------
    def devices(self, username: str) -> ContactDevices:
        """A contact's current devices (fetched now; differences become notices), each with
        its safety number against this device, and the combined safety number."""
        self._refresh(username)
        if username != self.username:
            self._refresh(self.username)
        theirs = self.store.known_devices(username)
        mine = self.store.known_devices(self.username)
        devices = tuple(
            DeviceSafety(d, key, device_safety_number(self.username, self.device.identity_key,
                                                      username, key))
            for d, key in sorted(theirs.items()))
        verified, _, changed = self.store.contact(username)
        return ContactDevices(username, devices,
                              combined_safety_number(self.username, mine.values(), username,
                                                     theirs.values()),
                              verified, changed)

    def verify(self, username: str, safety_number: str | None = None) -> ContactDevices:
        """Mark ``username`` verified (after the users compared the combined safety number;
        pass it to have it checked). Clears a pending change."""
        current = self.devices(username)
        if safety_number is not None and "".join(safety_number.split()) != \
                current.combined_safety_number:
            raise SafetyNumberMismatch("the compared safety number is not the current one")
        was_blocked = self.store.contact(username)[2]
        self.store.set_contact(username, verified=True,
                               number=current.combined_safety_number, changed=False)
        if was_blocked:
            self._unblocked(username)
        return dataclasses.replace(current, verified=True, changed=False)

    def accept_changes(self, username: str) -> None:
        """Accept a verified contact's changed devices without re-verifying: the contact
        becomes unverified and sending is allowed again."""
        was_blocked = self.store.contact(username)[2]
        self.store.set_contact(username, verified=False, number=None, changed=False)
        if was_blocked:
            self._unblocked(username)

    def _unblocked(self, username: str) -> None:
        """Sender keys held back while the contact was blocked go out now."""
        self._bring_into_groups(username)
        self._flush_outbox()

    def notices(self, after_id: int = 0) -> list[Notice]:
        """Device-change notices (added, removed, identity changed), oldest first."""
        return self.store.notices(after_id)

    def remove_device(self, device_id: int) -> None:
        """Remove one of this account's devices (this one included). The server stops
        delivering to it at once and tells the other devices and the contacts."""
        self._call(lambda: self.server.remove_device(device_id))
        if device_id == self.device_id:
            self.store.set_meta("removed", "1")
            return
        self._device_gone(self.username, device_id)
        self._flush_outbox()

    # -- receiving -----------------------------------------------------------------------------
    def receive(self, wait: float = 0.0) -> list[Message]:
        """Fetch, decrypt, store and acknowledge everything queued for this device (waiting up
        to ``wait`` seconds when nothing is). Returns the new visible messages."""
        wait = min(max(wait, 0.0), consts.MAX_WAIT_SECONDS)
        new: list[Message] = []
        used_prekeys = False
        for _ in range(consts.MAX_BATCHES_PER_RECEIVE):
            batch = self._call(lambda w=wait: self.server.receive(w))  # type: ignore[misc]
            got, prekeys = self._take(batch.envelopes, self.server.acknowledge)
            new += got
            used_prekeys |= prekeys or batch.prekeys_low  # the hint: prekeys fetched by others
            if not batch.more:
                break
            wait = 0.0
        self._flush_outbox()
        if used_prekeys:
            self.maintain_prekeys()
        return new

    def listen(self, on_messages: Callable[[list[Message]], object], *,
               stop: threading.Event, max_backoff: float = consts.PUSH_MAX_BACKOFF_SECONDS,
               on_idle: Callable[[], object] | None = None,
               idle_every: float = consts.PUSH_POLL_STOP_SECONDS) -> None:
        """Receive through the push channel until ``stop`` is set: the queue is drained, then
        envelopes arrive as they are stored and are acknowledged over the socket in batches;
        ``on_messages`` gets each batch's new visible messages. A broken connection is
        reopened with a growing pause (up to ``max_backoff`` seconds, reset once connected).
        Prekeys are checked on each connect. :class:`DeviceRemoved` ends it (only on the
        server's explicit answer); :class:`AuthenticationFailed` ends it and changes nothing.
        ``on_idle`` runs on this same thread at least every ``idle_every`` seconds while
        connected (an interactive app sends from there: the messenger is not shared across
        threads)."""
        pause = consts.PUSH_FIRST_BACKOFF_SECONDS
        while not stop.is_set():
            if self.store.get_meta("removed") is not None:
                raise DeviceRemoved("this device was removed from its account")
            credential = self.server.credential
            assert credential is not None
            try:
                with PushConnection(self.server.base_url, credential) as channel:
                    pause = consts.PUSH_FIRST_BACKOFF_SECONDS
                    self.maintain_prekeys()
                    while not stop.is_set():
                        if on_idle is not None:
                            on_idle()
                        event = channel.next_event(timeout=idle_every)
                        if event is None or not event.envelopes:
                            continue
                        new, prekeys = self._take(event.envelopes, channel.ack)
                        self._flush_outbox()
                        if prekeys:
                            self.maintain_prekeys()
                        if new:
                            on_messages(new)
            except DeviceWasRemoved:
                self.store.set_meta("removed", "1")
                raise DeviceRemoved("this device was removed from its account") from None
            except ServerUnreachable:
                log.info("client.push.reconnect pause_ms=%d", int(pause * 1000))
                stop.wait(pause)
                pause = min(pause * 2, max_backoff)

    def _take(self, envelopes: list[Envelope],
              acknowledge: Callable[[list[int], list[int]], object]) -> tuple[list[Message], bool]:
        """Handle one batch (each envelope in its own store transaction, as before) and
        acknowledge it: the new visible messages, and whether one-time prekeys were used."""
        new: list[Message] = []
        used_prekeys = False
        ids = [e.id for e in envelopes]
        for envelope in envelopes:
            if self.store.envelope_seen(envelope.id):
                continue
            if envelope.kind == "message":
                got, prekey = self._handle_envelope(envelope)
                new += got
                used_prekeys |= prekey
            else:
                self._handle_notice(envelope)
        new += self._unparked
        self._unparked = []
        if ids:
            refused, self._refused = self._refused, []
            self._call(lambda: acknowledge(ids, refused))
            self.store.forget_envelopes(ids)
        while self._first_contacts:
            self._refresh(self._first_contacts.pop(), announce=False)
        log.info("client.receive envelopes=%d", len(ids))
        return new, used_prekeys

    def _handle_notice(self, envelope: Envelope) -> None:
        user, device_id = envelope.source, envelope.source_device
        known = self.store.known_devices(user)
        if envelope.kind == "device_removed":
            if device_id in known:
                self._device_gone(user, device_id)
            elif known and not self.store.has_notice("device_removed", user, device_id):
                # added and removed before we looked: still worth telling, once
                self.store.add_notice(self.clock(), "device_removed", user, device_id)
        elif known:
            self._refresh(user)
            if device_id not in self.store.known_devices(user):
                self._device_added(user, device_id)  # already gone again
        self.store.mark_envelope(envelope.id)

    def _handle_envelope(self, envelope: Envelope) -> tuple[list[Message], bool]:
        assert envelope.content is not None
        source = (envelope.source, envelope.source_device)
        try:
            kind, payload = unwrap(envelope.content)
            if kind == PAIRWISE:
                ciphertext = Ciphertext.from_bytes(payload)
                try:
                    return self._decrypt_pairwise(envelope.id, source, ciphertext), \
                        ciphertext.type == MessageType.PREKEY
                except UntrustedIdentity as exc:
                    with self.store.atomic():
                        self._identity_changed(source, exc.identity_key)
                    return self._decrypt_pairwise(envelope.id, source, ciphertext), True
            assert kind == GROUP
            return self._decrypt_group(envelope.id, source, payload), False
        except (DuplicateMessage, DuplicateGroupMessage):
            reason = "duplicate"  # delivered before (or a group copy for our own devices)
        except (ServerError, DeviceRemoved):
            raise  # not this envelope's fault: it stays queued for the next receive
        except E2EEError as exc:  # InvalidMessage, NoSession, ContentError, GroupError, ...
            reason = type(exc).__name__  # a poisoned envelope must not block the queue
            self._refused.append(envelope.id)  # its sender does not become a contact
        log.info("client.envelope.dropped reason=%s", reason)
        self.store.mark_envelope(envelope.id)
        return [], False

    def _decrypt_pairwise(self, envelope_id: int, source: tuple[str, int],
                          ciphertext: Ciphertext) -> list[Message]:
        with self.store.atomic():
            frame = Frame.decode(self.device.decrypt(source, ciphertext))
            self._note_sender_device(source)
            messages = self._accept(frame, source)
            self.store.mark_envelope(envelope_id)
        return messages

    def _note_sender_device(self, source: tuple[str, int]) -> None:
        """A message from a device we did not know: record it (with a notice unless the
        account itself is new to us)."""
        user, device_id = source
        known = self.store.known_devices(user)
        if device_id in known or self.store.has_notice("device_removed", user, device_id):
            return  # known, or removed (ids are never reused): a late message, not a new device
        key = self.device.remote_identity(source)
        if key is None:
            return
        self.store.put_device(user, device_id, key)
        if known:
            self._device_added(user, device_id)
        else:
            self._first_contacts.add(user)  # learn its other devices after this batch

    def _accept(self, frame: Frame, source: tuple[str, int]) -> list[Message]:
        sender, sender_device = source
        if sender == self.username:
            conversation, outgoing = frame.destination, True  # sync from our other device
        elif frame.destination == self.username:
            conversation, outgoing = sender, False
        else:
            raise InvalidFrame("message addressed to another account")
        content = frame.content
        if content.group_id is not None:
            self._group_management(content, sender, sender_device)
            return []
        return self._store_content(conversation, content, sender, sender_device,
                                   outgoing=outgoing)

    def _store_content(self, conversation: str, content: Content, sender: str,
                       sender_device: int, *, outgoing: bool) -> list[Message]:
        """Store a content once and apply it (edit, delete, reaction, receipt, timer)."""
        body = content.body
        now = self.clock()
        visible = isinstance(body, _VISIBLE)
        read_at = now if outgoing else None
        expiry = expires_at_ms(content, outgoing=outgoing, received_at_ms=now,
                               read_at_ms=read_at, start=self._expiry_start) if visible else None
        if expiry is not None and expiry <= now:
            visible = False  # arrived already expired: never shown, still deduplicated
        if not self.store.insert_message(conversation, content, sender=sender,
                                         sender_device=sender_device, outgoing=outgoing,
                                         visible=visible, received_at_ms=now,
                                         read_at_ms=read_at, expires_at_ms=expiry):
            return []
        if isinstance(body, TimerChange):
            self._timers.apply(conversation, body, content.sent_at_ms)
            self.store.save_timer(conversation, self._timers.state(conversation))
        elif isinstance(body, Reaction):
            self.store.set_reaction(conversation, body.target_id, sender, body.emoji)
        elif isinstance(body, Edit | Delete):
            target = self.store.message_row(conversation, body.target_id)
            if target is not None and str(target[2]) == sender and target[5] is not None:
                if isinstance(body, Delete):
                    self._messages.delete(conversation, body.target_id)
                    self.store.execute(
                        "UPDATE client_messages SET visible = 1, deleted = 1 WHERE "
                        "conversation = ? AND message_id = ?", (conversation, body.target_id))
                else:
                    old = Content.decode(bytes(target[5]))
                    if isinstance(old.body, Text):
                        self.store.replace_content(
                            conversation, body.target_id,
                            dataclasses.replace(old, body=Text(body.text)), edited=True)
        elif isinstance(body, ReadReceipt):
            for message_id in body.message_ids:
                self.store.add_receipt(conversation, message_id, sender, content.sent_at_ms)
                if sender == self.username:  # read on one of our devices: read here too
                    stored = self._messages.get(conversation, message_id)
                    if stored is not None and not stored.outgoing:
                        self.disappearing.mark_read(conversation, message_id)
        if not visible:
            return []
        message = self.message(conversation, content.message_id)
        return [message]

    # -- stored messages -----------------------------------------------------------------------
    def message(self, conversation: str, message_id: bytes) -> Message:
        """One stored message (edits applied)."""
        row = self.store.message_row(conversation, message_id)
        if row is None:
            raise UnknownMessage("no such message in this conversation")
        return self._message(row)

    def messages(self, conversation: str | None = None) -> list[Message]:
        """Stored messages of one conversation (or all), in the order they were stored."""
        return [self._message(r) for r in self.store.message_rows(conversation)]

    def chats(self) -> list[ChatSummary]:
        """The conversations with stored messages, most recent first, with their unread
        (incoming, not marked read, not deleted) counts."""
        summaries: dict[str, ChatSummary] = {}
        for message in self.messages():
            old = summaries.get(message.conversation)
            unread = int(not message.outgoing and message.read_at_ms is None
                         and not message.deleted)
            summaries[message.conversation] = ChatSummary(
                message.conversation, message.received_at_ms,
                (old.unread if old else 0) + unread, message)
        return sorted(summaries.values(), key=lambda c: c.last_at_ms, reverse=True)

    def unread(self, conversation: str) -> list[Message]:
        """Incoming messages of ``conversation`` not marked read yet, oldest first."""
        return [m for m in self.messages(conversation)
                if not m.outgoing and m.read_at_ms is None and not m.deleted]

    def _message(self, row: Any) -> Message:
        conversation, message_id = str(row[0]), bytes(row[1])
        raw = row[5]
        content = None if raw is None else Content.decode(bytes(raw))
        return Message(conversation, message_id, str(row[2]), int(row[3]),
                       bool(row[4]), content, int(row[6]),
                       None if row[7] is None else int(row[7]),
                       None if row[8] is None else int(row[8]),
                       bool(row[9]), bool(row[10]),
                       self.store.reactions(conversation, message_id))

    def read_by(self, conversation: str, message_id: bytes) -> dict[str, int]:
        """Accounts whose read receipt for this message arrived, with their read time (ms)."""
        return self.store.readers(conversation, message_id)

    def sweep(self) -> list[StoredMessage]:
        """Delete every disappearing message whose time is up (by this Messenger's clock);
        returns what was deleted. Call it at :meth:`next_expiry_ms`."""
        with self.store.atomic():
            return self.disappearing.sweep()

    def next_expiry_ms(self) -> int | None:
        """When the next stored message expires, or None."""
        return self.disappearing.next_expiry_ms()

    def timer(self, conversation: str) -> int | None:
        """The conversation's disappearing timer in seconds (None: off)."""
        return self._timers.get(conversation)

    # -- groups --------------------------------------------------------------------------------
    @property
    def local_address(self) -> SenderAddress:
        return SenderAddress(self.username, self.device_id)

    def create_group(self, members: Iterable[str]) -> str:
        """Create a group with these other accounts; returns its conversation id."""
        others = sorted(set(members) - {self.username})
        for name in others:
            self._ensure_known(name)
        with self.store.atomic():
            group, out = Group.create(self.local_address, others, self.store.sender_keys,
                                      clock=self.clock)
            self._groups[group.group_id] = group
            self._save_group(group)
        self._outbox += [(group.group_id, o) for o in out]
        self._flush_outbox()
        return group_conversation(group.group_id)

    def group_members(self, conversation: str) -> tuple[str, ...]:
        return self._group(self._require_group_id(conversation)).members

    def groups(self) -> list[str]:
        """Conversation ids of the groups this device is a member of."""
        return [group_conversation(g) for g, group in self._groups.items() if group.is_member]

    def add_members(self, conversation: str, names: Iterable[str]) -> None:
        """Add accounts; they get our *current* chain key, so they cannot read earlier
        messages."""
        group = self._group(self._require_group_id(conversation))
        names = sorted(set(names))
        for name in names:
            self._ensure_known(name)
        with self.store.atomic():
            out = group.add_members(names)
            self._save_group(group)
        self._outbox += [(group.group_id, o) for o in out]
        self._flush_outbox()

    def remove_members(self, conversation: str, names: Iterable[str]) -> None:
        """Remove accounts: every remaining device replaces its sender key, so the removed
        ones cannot read later messages."""
        group = self._group(self._require_group_id(conversation))
        with self.store.atomic():
            out = group.remove_members(names)
            self._save_group(group)
        self._outbox += [(group.group_id, o) for o in out]
        self._flush_outbox()

    def leave_group(self, conversation: str) -> None:
        self.remove_members(conversation, [self.username])

    def _require_group_id(self, conversation: str) -> bytes:
        group_id = _group_id(conversation)
        if group_id is None:
            raise UnknownGroup("not a group conversation")
        return group_id

    def _group(self, group_id: bytes) -> Group:
        group = self._groups.get(group_id)
        if group is None or not group.is_member:
            raise UnknownGroup("not a member of this group")
        return group

    def _save_group(self, group: Group) -> None:
        self.store.save_group(group.group_id, group.state.encode())

    def _send_group_content(self, group_id: bytes, content: Content) -> None:
        group = self._group(group_id)
        wire: bytes | None = None

        def build(targets: list[tuple[str, int]]) -> list[OutgoingEnvelope]:
            nonlocal wire
            if wire is None:
                with self.store.atomic():
                    wire = wrap_group(group.encrypt(content))
            return [OutgoingEnvelope(u, d, wire) for u, d in targets]

        def reconciled() -> None:
            # A 409 refused the send whole and new devices got the sender key as it is now:
            # the retry carries a fresh encryption they can read (the refused one reached no
            # one; its chain step is skipped).
            nonlocal wire
            wire = None

        others = sorted(m for m in group.members if m != self.username)
        self._fanout_many(others or [self.username], build,
                          expires_at_ms=server_expiry_hint_ms(content), reconciled=reconciled)

    def _flush_outbox(self) -> None:
        """Send group-management content over the pairwise sessions: to every device of each
        recipient account (our own other devices get every send anyway)."""
        while self._outbox:
            _, item = self._outbox.pop(0)
            recipients = sorted(item.recipients - {self.username})
            for recipient in recipients or [self.username]:
                try:
                    self._send_pairwise(recipient, item.content)
                except ContactChanged:
                    log.warning("client.group.distribution_blocked")

    def _decrypt_group(self, envelope_id: int, source: tuple[str, int],
                       payload: bytes) -> list[Message]:
        group_id = SenderKeyMessage.decode(payload).distribution_id
        group = self._groups.get(group_id)
        if group is None or not group.is_member:
            # A new device can get a group message before the group's membership, which its
            # own account's devices or the inviter send pairwise: keep it until they arrive.
            self._park(envelope_id, group_id, source, payload)
            return []
        sender = SenderAddress(*source)
        try:
            with self.store.atomic():
                content = group.decrypt(sender, payload)
                messages = self._store_content(group_conversation(group_id), content,
                                               source[0], source[1],
                                               outgoing=source[0] == self.username)
                self.store.mark_envelope(envelope_id)
        except NoSenderKeyState:
            self._park(envelope_id, group_id, source, payload)  # the sender key is on its way
            return []
        return messages

    def _park(self, envelope_id: int, group_id: bytes, source: tuple[str, int],
              payload: bytes) -> None:
        with self.store.atomic():
            if not self.store.park_group_message(group_id, source[0], source[1], payload,
                                                 limit=consts.MAX_PENDING_GROUP_CONTENT):
                raise UnknownGroup("too many group messages waiting for their group")
            self.store.mark_envelope(envelope_id)
        log.info("client.group.message_parked")

    def _read_parked(self, group_id: bytes) -> list[Message]:
        """Group messages kept for ``group_id`` that can be read now (membership or a sender
        key arrived); the others stay parked."""
        group = self._groups.get(group_id)
        if group is None or not group.is_member:
            return []
        shown: list[Message] = []
        for parked_id, sender, sender_device, payload in self.store.parked_group_messages(
                group_id):
            try:
                with self.store.atomic():
                    content = group.decrypt(SenderAddress(sender, sender_device), payload)
                    shown += self._store_content(group_conversation(group_id), content, sender,
                                                 sender_device, outgoing=sender == self.username)
                    self.store.unpark_group_message(parked_id)
            except NoSenderKeyState:
                continue
            except GroupError as exc:  # a duplicate, or garbage: nothing more to wait for
                log.info("client.group.parked_dropped reason=%s", type(exc).__name__)
                self.store.unpark_group_message(parked_id)
        return shown

    def _group_management(self, content: Content, sender: str, sender_device: int) -> None:
        """Membership changes and sender-key distributions, received over a pairwise session
        (inside the decrypt's transaction)."""
        assert content.group_id is not None
        group_id = content.group_id
        if not self.store.insert_message(group_conversation(group_id), content, sender=sender,
                                         sender_device=sender_device,
                                         outgoing=sender == self.username, visible=False,
                                         received_at_ms=self.clock(), read_at_ms=None,
                                         expires_at_ms=None):
            return  # a copy we already applied
        self._apply_group_content(content, sender, sender_device)

    def _apply_group_content(self, content: Content, sender: str, sender_device: int) -> None:
        assert content.group_id is not None
        group_id = content.group_id
        group = self._groups.get(group_id)
        address = SenderAddress(sender, sender_device)
        body = content.body
        joins = isinstance(body, GroupMembershipChange) and (
            self.username in body.added or (sender == self.username and group is None))
        try:
            if (group is None or not group.is_member) and joins:
                group, out = Group.join(self.local_address, address, content,
                                        self.store.sender_keys, clock=self.clock)
                self._groups[group_id] = group
                self._save_group(group)
                self._outbox += [(group_id, o) for o in out]
                for p_sender, p_device, raw in self.store.take_pending(group_id):
                    self._apply_group_content(Content.decode(raw), p_sender, p_device)
                self._unparked += self._read_parked(group_id)
                return
            if group is None:
                # e.g. a member's sender key that overtook our invitation: keep it for later
                if not self.store.add_pending(group_id, sender, sender_device,
                                              content.encode(),
                                              limit=consts.MAX_PENDING_GROUP_CONTENT):
                    log.warning("client.group.pending_full")
                return
            if not group.is_member:
                return
            out = group.handle(address, content)
            self._save_group(group)
            self._outbox += [(group_id, o) for o in out]
            if isinstance(body, SenderKeyDistribution):
                self._unparked += self._read_parked(group_id)
        except GroupError as exc:
            log.info("client.group.content_refused reason=%s", type(exc).__name__)

    # -- plumbing ------------------------------------------------------------------------------
    def _call(self, request: Callable[[], _T]) -> _T:
        """Run a server request. Only the server's explicit ``device-removed`` answer (the right
        credential of a removed device) marks this device removed; any other authentication
        failure (a wrong server on the same address, a proxy) is raised and changes nothing."""
        if self.store.get_meta("removed") is not None:
            raise DeviceRemoved("this device was removed from its account")
        try:
            return request()
        except DeviceWasRemoved:
            self.store.set_meta("removed", "1")
            raise DeviceRemoved("this device was removed from its account") from None

