"""Message history in the account's Labyrinth mailbox (issue #15): the Messenger's client side.

The cryptography is :mod:`e2ee_core.labyrinth` (sans I/O); the server API is
:class:`~e2ee_core.server.labyrinth_client.LabyrinthClient`; every SQL statement is in
:class:`~e2ee_core.client.store.ClientStore`. History is opt-in per device
(:meth:`History.enable`), then:

* **Keys.** The Labyrinth device key *is* the device's Signal identity key (XEdDSA, the
  Labyrinth signatures carry their own use-case bytes 0x30-0x32, which no Signal signature
  starts with), so a device admits only keys of its account's device set; epoch openers are
  authenticated by the distribution PSK (only a member of the previous epoch can make an
  entropy message) and the signed head chain. Epoch storage and auth keys are fresh X25519
  pairs, kept in the local store.
* **First use.** The account's first enabled device opens epoch 0 (and its ORF share);
  another device publishes its keys and waits: an enabled device that sees it among the
  account's devices admits it by giving it a membership MAC in the current epoch and opening a
  new epoch that hands it the root (a *join* message, :func:`virtual_devices.seal_join`); the
  new device then reaches every earlier epoch by backward chaining.
* **Saving.** Every visible message sent or received (not disappearing ones) is queued in the
  local store by :class:`~e2ee_core.client.conversations.Conversations` *in the transaction that
  stores it* (a receive batch's, a send's), so a crash after that commit cannot lose it from the
  mailbox, and a batch attempt rolled back takes its queue rows with it. The queue is saved in
  one request per send or receive batch, sealed under the newest epoch (checked with the server
  at least every minute and whenever this account's device set changed, so nothing is saved
  under an epoch a removed device knows once this device has learned of the removal). A failed
  save keeps the queue, retried on the next flush; it never blocks or loses a message.
* **Current state, not a log.** A record holds a message *as it is now*: an edit or a reaction
  (sent or received) queues the message's record again, under the same message id, with the
  edited content, the edited flag and the reactions (:class:`HistoryPayload` version 2); the
  server's upsert replaces the old record and a queued older version is replaced in the queue.
  A delete for everyone (this account's, or a received one that this device applied) queues
  the record's deletion, so a restored device never sees it. Concurrent devices of the account
  converge: each saves a message's state as it applies the edits and deletes, in order, so the
  last save of every device that has them is the current state.
* **Disappearing messages are not saved** (nor their edits and reactions): they must
  disappear, and a mailbox copy would outlive the timer on every device that restores it; the
  mailbox would also have to be trusted to delete it on time.
* **Loading.** :meth:`History.load_older` fetches a page of a conversation, older than what
  was loaded, decrypts all of it and only then stores it in one transaction: a failed load
  (a forged record, an unknown epoch, the server unreachable) changes nothing locally.
* **Removing a device** opens a new epoch without it (entropy to each remaining member).
* **Recovery codes** create a virtual device; :meth:`History.restore` reads the code (up to
  three wrong characters corrected), opens the bundle, walks and verifies the whole epoch chain
  (:func:`virtual_devices.restore_epochs`) and joins the newest epoch.

* **Attachments.** A saved message with an attachment gets an ORF-indexed reference
  (:mod:`e2ee_core.labyrinth.attachments`) in the same flush, keyed by the ORF output and the
  root of the epoch the flush saves under (so the server, which computes the ORF outputs,
  cannot open it), deleted with the message (only if its MAC names that message);
  :meth:`History.attachment` fetches an attachment through it.

Not done here: a Labyrinth 1.1 key drop; receipts are not saved.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby

from e2ee_core.attachments import decrypt_attachment
from e2ee_core.client.context import DeviceContext
from e2ee_core.client.conversations import Conversations
from e2ee_core.client.devices import DeviceSets
from e2ee_core.client.errors import ClientError
from e2ee_core.client.models import Message
from e2ee_core.content import (
    MAX_EMOJI_BYTES,
    AttachmentPointer,
    Content,
    ContentError,
)
from e2ee_core.labyrinth import (
    attachments,
    epoch_chain,
    epochs,
    hpke,
    mailbox,
    orf,
    primitives,
)
from e2ee_core.labyrinth import virtual_devices as vd
from e2ee_core.labyrinth.consts import (
    SIGNATURE_USE_EPOCH_STORAGE_AUTH_KEY,
    SIGNATURE_USE_EPOCH_STORAGE_KEY,
)
from e2ee_core.labyrinth.errors import LabyrinthError
from e2ee_core.labyrinth.recovery_codes import RecoveryCode, correct
from e2ee_core.server.consts import LABYRINTH_MAX_ORF_POINTS, LABYRINTH_MAX_RECORDS_PER_SAVE
from e2ee_core.server.errors import NotFound, ServerError
from e2ee_core.server.labyrinth_client import LabyrinthClient
from e2ee_core.server.labyrinth_errors import EpochConflict
from e2ee_core.server.labyrinth_wire import (
    AttachmentReference,
    Cursor,
    EpochMemberUpload,
    EpochRecord,
    LoadQuery,
    MemberKeys,
    RecordKey,
    StoredRecord,
    device_member,
    member_device_id,
)

log = logging.getLogger("e2ee_core.client")

INBOX = "messages"  # the one inbox id this client uses
DELETION = b""  # a queued row with this payload deletes the message's record
# ... and one with 0x00 || attachment id also deletes the message's attachment reference
ATTACHMENT_DELETION = b"\x00"
PAYLOAD_VERSION = 2  # version 1 (no edited flag, no reactions) is still read
MAX_SAVE_BATCH = 500  # records per flush (the client splits them into server-sized requests)
MAX_SENDER_LEN = 255
# Reactions kept in a message's record (the first by reactor): a record must stay under the
# server's blob limit (256 KiB) after padding; 128 * (2 + 255 + 64) bytes is 41 KiB at most,
# beside the largest text (80 KiB). A group of more reactors loses the rest in the mailbox.
MAX_HISTORY_REACTIONS = 128
# After a failed save, how long a push-channel listener waits before it tries again on its
# own (a receive or a send always tries).
FLUSH_RETRY_MS = 30_000
# How long a save may rely on the newest epoch this device knows without asking the server,
# while its account's device set is unchanged: bounds how late a removal made by another
# device (and not yet announced to this one) is taken into account.
EPOCH_CHECK_INTERVAL_MS = 60_000


class HistoryError(ClientError):
    """History could not be saved, loaded or restored (the local state is unchanged)."""


class HistoryNotEnabled(HistoryError):
    """This device has not enabled history, or is not (yet) a member of the mailbox."""


class HistoryUnavailable(HistoryError):
    """The mailbox served something this device cannot verify or decrypt."""


class InvalidHistoryPayload(HistoryError):
    """A decrypted mailbox record is not a well-formed history payload."""


def _ids(device_ids: Iterable[int]) -> bytes:
    return ",".join(sorted(map(str, device_ids))).encode()


# -- the plaintext of a mailbox record -----------------------------------------------------------
Reactions = tuple[tuple[str, str], ...]
"""(reactor account, emoji) pairs, sorted by reactor, one per reactor."""


@dataclass(frozen=True)
class HistoryPayload:
    """What a mailbox record holds: one stored message, as it is now, of the conversation named
    by the record's thread id (bound by the record's aad). Version 2::

        0x02 || flags (bit 0: outgoing, bit 1: edited) || u32be(sender device)
        || u8 len || sender (UTF-8) || u16be n || n * (u8 len || reactor || u8 len || emoji)
        || Content.encode()

    (the content already carries an edit's text). Version 1, still read, is version 2 without
    the edited flag and the reactions: ``0x01 || flags (bit 0) || u32be || u8 len || sender
    || Content.encode()``. The reactors are strictly increasing (one canonical encoding).
    """

    sender: str
    sender_device: int
    outgoing: bool
    content: Content
    edited: bool = False
    reactions: Reactions = ()

    def encode(self) -> bytes:
        name = self.sender.encode("utf-8")
        if not 0 < len(name) <= MAX_SENDER_LEN or not 0 <= self.sender_device < 2**32:
            raise InvalidHistoryPayload("sender out of range")
        if len(self.reactions) > MAX_HISTORY_REACTIONS:
            raise InvalidHistoryPayload("too many reactions")
        out = [bytes([PAYLOAD_VERSION, int(self.outgoing) | int(self.edited) << 1]),
               self.sender_device.to_bytes(4, "big"), bytes([len(name)]), name,
               len(self.reactions).to_bytes(2, "big")]
        previous = b""
        for reactor, emoji in self.reactions:
            raw_reactor, raw_emoji = reactor.encode("utf-8"), emoji.encode("utf-8")
            if (not 0 < len(raw_reactor) <= MAX_SENDER_LEN or raw_reactor <= previous
                    or not 0 < len(raw_emoji) <= MAX_EMOJI_BYTES):
                raise InvalidHistoryPayload("reaction out of range")
            previous = raw_reactor
            out += [bytes([len(raw_reactor)]), raw_reactor, bytes([len(raw_emoji)]), raw_emoji]
        out.append(self.content.encode())
        return b"".join(out)

    @classmethod
    def decode(cls, data: bytes) -> HistoryPayload:
        """Strict decoder: :class:`InvalidHistoryPayload` on anything malformed."""
        if len(data) < 7 or data[0] not in (1, PAYLOAD_VERSION) or data[1] > (
                1 if data[0] == 1 else 3):
            raise InvalidHistoryPayload("unknown history payload")
        size = data[6]
        if size == 0 or len(data) < 7 + size:
            raise InvalidHistoryPayload("truncated history payload")
        pos = 7 + size
        reactions: list[tuple[str, str]] = []
        try:
            sender = data[7:pos].decode("utf-8")
            if data[0] == PAYLOAD_VERSION:
                if len(data) < pos + 2:
                    raise InvalidHistoryPayload("truncated history payload")
                count = int.from_bytes(data[pos:pos + 2], "big")
                pos += 2
                if count > MAX_HISTORY_REACTIONS:
                    raise InvalidHistoryPayload("too many reactions")
                previous = b""
                for _ in range(count):
                    raw_reactor, pos = _field(data, pos, MAX_SENDER_LEN)
                    raw_emoji, pos = _field(data, pos, MAX_EMOJI_BYTES)
                    if raw_reactor <= previous:
                        raise InvalidHistoryPayload("reactions out of order")
                    previous = raw_reactor
                    # Lengths and UTF-8 only: whether it is one emoji depends on the emoji
                    # data of the version that checks it, and a stored history must stay
                    # readable after an update (the reaction was checked when received).
                    reactions.append((raw_reactor.decode("utf-8"), raw_emoji.decode("utf-8")))
            content = Content.decode(data[pos:])
        except (UnicodeDecodeError, ContentError):
            raise InvalidHistoryPayload("malformed history payload") from None
        return cls(sender, int.from_bytes(data[2:6], "big"), bool(data[1] & 1), content,
                   edited=bool(data[1] & 2), reactions=tuple(reactions))


def _field(data: bytes, pos: int, limit: int) -> tuple[bytes, int]:
    """A u8-length-prefixed non-empty field of at most ``limit`` bytes at ``pos``."""
    if pos >= len(data) or not 0 < data[pos] <= limit or len(data) < pos + 1 + data[pos]:
        raise InvalidHistoryPayload("truncated history payload")
    end = pos + 1 + data[pos]
    return data[pos + 1:end], end


def _is_deletion(payload: bytes) -> bool:
    return payload == DELETION or payload[:1] == ATTACHMENT_DELETION


def _pointer_content(content: Content) -> Content:
    """What an attachment reference holds: the message's pointer alone (no group id, timer)."""
    return Content(content.body, content.message_id, content.sent_at_ms)


def _kept_reactions(reactions: dict[str, str]) -> Reactions:
    """The reactions a record keeps: the first MAX_HISTORY_REACTIONS by reactor."""
    # str order is code-point order, which is UTF-8 byte order: the decoder's order
    return tuple(sorted((r, e) for r, e in reactions.items()
                        if 0 < len(r.encode("utf-8")) <= MAX_SENDER_LEN)[:MAX_HISTORY_REACTIONS])


@dataclass(frozen=True)
class _Known:
    """An epoch this device reached, with its verified head."""

    epoch: epochs.Epoch
    head: epoch_chain.EpochHead


class History:
    """One device's access to its account's encrypted message history."""

    def __init__(self, ctx: DeviceContext, devices: DeviceSets,
                 conversations: Conversations) -> None:
        self.ctx = ctx
        self.devices = devices
        self.conversations = conversations
        self.lab = LabyrinthClient(ctx.server)
        self._loading = False  # storing what was loaded: not queued again
        self._failed_at: int | None = None  # the last failed flush (clock ms)
        self._enabled = False  # once seen enabled, it stays so (the keys are never dropped)

    # -- local state ---------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        if not self._enabled:
            self._enabled = self.ctx.store.labyrinth_get("storage_priv") is not None
        return self._enabled

    @property
    def me(self) -> str:
        return device_member(self.ctx.device_id)

    def _identity(self) -> tuple[bytes, bytes]:
        identity = self.ctx.store.protocol.get_local_identity()
        assert identity is not None
        return identity.key_pair.private.raw, identity.key_pair.public.raw

    def _keys(self) -> tuple[vd.DeviceKeys, epochs.SenderKeys]:
        store = self.ctx.store
        storage_priv, auth_priv = store.labyrinth_get("storage_priv"), store.labyrinth_get(
            "auth_priv")
        if storage_priv is None or auth_priv is None:
            raise HistoryNotEnabled("history is not enabled on this device")
        device_priv, _ = self._identity()
        return (vd.DeviceKeys.from_private(device_priv, storage_priv),
                epochs.SenderKeys(hpke.public_key(auth_priv), auth_priv))

    def _member_keys(self) -> MemberKeys:
        keys, sender = self._keys()
        return MemberKeys(keys.device_pub, keys.storage_pub, keys.storage_signature(),
                          sender.auth_pub, primitives.sign(
                              keys.device_priv, SIGNATURE_USE_EPOCH_STORAGE_AUTH_KEY,
                              sender.auth_pub))

    def _known(self) -> list[_Known]:
        return [_Known(epochs.Epoch(seq, epoch_id, root), epoch_chain.EpochHead.decode(head))
                for seq, epoch_id, root, head in self.ctx.store.labyrinth_epochs()]

    def _remember(self, known: Iterable[_Known]) -> None:
        self.ctx.store.labyrinth_put_epochs(
            [(k.epoch.sequence_id, k.epoch.epoch_id, k.epoch.root_key, k.head.encode())
             for k in known])

    def _account_keys(self) -> set[bytes]:
        """The Curve25519 identity keys of this account's devices (the allowed openers)."""
        self.devices.refresh(self.ctx.username, announce=False)
        return {key[1:] if len(key) == 33 else key
                for key in self.ctx.store.known_devices(self.ctx.username).values()}

    # -- set-up --------------------------------------------------------------------------------
    def enable(self) -> bool:
        """Turn history on for this device: keys made and published; the account's first
        device opens epoch 0. Returns whether this device is a member now (a linked device is
        admitted by an enabled one, see the module docstring)."""
        store = self.ctx.store
        if not self.enabled:
            with store.atomic():
                store.labyrinth_set("storage_priv", hpke.generate_keypair()[0])
                store.labyrinth_set("auth_priv", hpke.generate_keypair()[0])
        self.ctx.call(self.lab.put_member_keys, self._member_keys())
        if self._known():
            return True
        try:
            self.ctx.call(self.lab.epoch)
        except NotFound:
            self._open_first_epoch()
            return True
        return self._join()

    def _open_first_epoch(self) -> None:
        keys, _ = self._keys()
        device_priv, device_pub = self._identity()
        root = epochs.first_epoch_root()
        head = epoch_chain.make_head(sequence_id=0, root_key=root, previous=None,
                                     opener_device_key_priv=device_priv,
                                     opener_device_key_pub=device_pub)
        member = EpochMemberUpload(self.me, epochs.membership_mac(root, 0, keys.device_pub))
        epoch_id = self.ctx.call(self.lab.open_epoch, 0, [member], head=head.encode())
        self._remember([_Known(epochs.Epoch(0, epoch_id, root), head)])
        self.ctx.call(self.lab.orf_init)
        self.ctx.store.labyrinth_set("orf_state", orf.client_init().value)
        log.info("client.history.first_epoch")

    def _records(self, member: str | None = None) -> list[EpochRecord]:
        return self.ctx.call(self.lab.all_epochs, member=member)

    def _heads(self, records: Sequence[EpochRecord]) -> list[epoch_chain.EpochHead]:
        if any(r.head is None for r in records):
            raise HistoryUnavailable("an epoch has no head")
        return [epoch_chain.EpochHead.decode(r.head) for r in records if r.head is not None]

    @staticmethod
    def _backward(records: Sequence[EpochRecord], start: int) -> list[vd.BackwardStep]:
        by_seq = {r.sequence_id: r for r in records}
        steps: list[vd.BackwardStep] = []
        for seq in range(start, 0, -1):
            record = by_seq.get(seq)
            if (record is None or record.previous_epoch_id is None
                    or record.encrypted_previous_sequence_id is None
                    or record.encrypted_previous_root_key is None):
                raise HistoryUnavailable("a previous-epoch record is missing")
            steps.append(vd.BackwardStep(record.previous_epoch_id, epochs.PreviousEpochData(
                record.encrypted_previous_sequence_id, record.encrypted_previous_root_key)))
        return steps

    @staticmethod
    def _forward(records: Sequence[EpochRecord], after: int) -> list[vd.ForwardStep]:
        steps: list[vd.ForwardStep] = []
        for record in records:
            if record.sequence_id <= after:
                continue
            if record.entropy_message is None:
                break  # not a member of this epoch (removed): the chain stops here
            steps.append(vd.ForwardStep(record.epoch_id, record.entropy_message,
                                        record.opener_keys.device_key_pub,
                                        record.opener_keys.auth_key_pub,
                                        record.opener_keys.auth_key_sig))
        return steps

    def _verified(self, start: epochs.Epoch, start_hash: bytes, records: list[EpochRecord],
                  keys: vd.DeviceKeys) -> list[_Known]:
        """Every epoch from the first to the newest, the chain verified (see restore_epochs)."""
        heads = self._heads(records)
        forward = self._forward(records, start.sequence_id)
        reached = vd.restore_epochs(start, start_hash, backward=self._backward(
            records, start.sequence_id), forward=forward, keys=keys, heads=heads)
        return [_Known(epoch, head) for epoch, head in zip(reached, heads, strict=True)]

    def _join(self) -> bool:
        """A device without epochs: find the join message addressed to it, if any."""
        keys, _ = self._keys()
        records = self._records()
        for record in records:
            if record.entropy_message is None:
                continue
            try:
                start, orf_state = vd.open_join(
                    record.entropy_message, sequence_id=record.sequence_id,
                    epoch_id=record.epoch_id, keys=keys,
                    sender_device_key_pub=record.opener_keys.device_key_pub,
                    sender_auth_pub=record.opener_keys.auth_key_pub,
                    sender_auth_sig=record.opener_keys.auth_key_sig)
                head = self._heads([record])[0]
                known = self._verified(start, head.hash(), records, keys)
            except LabyrinthError as exc:
                raise HistoryUnavailable(f"joining failed: {type(exc).__name__}") from None
            with self.ctx.store.atomic():
                self._remember(known)
                if orf_state is not None:
                    self.ctx.store.labyrinth_set("orf_state", orf_state.value)
            log.info("client.history.joined epochs=%d", len(known))
            return True
        return False

    def _catch_up(self) -> _Known:
        """Reach the server's newest epoch (forward chaining); the newest epoch this device is
        a member of. :class:`HistoryNotEnabled` when it is not a member at all."""
        known = self._known()
        if not known and not self._join():
            raise HistoryNotEnabled("this device is not a member of the mailbox yet")
        known = known or self._known()
        newest = known[-1]
        records: list[EpochRecord] = []
        while True:  # every epoch after ours, page by page
            page = self.ctx.call(self.lab.epochs, records[-1].sequence_id if records
                                 else newest.epoch.sequence_id, member=self.me)
            if not page:
                break
            records += page
        if not records:
            return newest
        keys, _ = self._keys()
        added: list[_Known] = []
        try:
            reached = vd.chain_forward(newest.epoch, self._forward(
                records, newest.epoch.sequence_id), keys)
            previous = newest.head
            for epoch, record in zip(reached[1:], records, strict=False):
                head = self._heads([record])[0]
                if head.sequence_id != epoch.sequence_id or not primitives.mac_equal(
                        head.previous_hash, previous.hash()):
                    raise HistoryUnavailable("the epoch chain does not continue")
                head.verify_signature()
                if not primitives.mac_equal(
                        head.commitment, epoch_chain.root_commitment(epoch.root_key,
                                                                     epoch.sequence_id)):
                    raise HistoryUnavailable("an epoch head does not verify")
                added.append(_Known(epoch, head))
                previous = head
        except LabyrinthError as exc:
            raise HistoryUnavailable(f"epoch chaining failed: {type(exc).__name__}") from None
        if added:
            self._remember(added)
        if len(added) < len(records):
            raise HistoryNotEnabled("this device was removed from the mailbox's newest epoch")
        return added[-1] if added else newest

    def sync(self) -> bool:
        """Join (a device admitted by another) and reach the newest epoch; whether this device
        is a member of it."""
        if not self.enabled:
            return False
        try:
            self._catch_up()
        except HistoryNotEnabled:
            return False
        return True

    # -- rotation ------------------------------------------------------------------------------
    def _rotate(self, newcomers: Sequence[tuple[str, MemberKeys]] = ()) -> None:
        """Open the epoch after the newest one, for the current members (those with a MAC in
        it) and ``newcomers`` (given a MAC now and the new root in a join message)."""
        for _ in range(3):  # another device may open one first: catch up and retry
            current = self._catch_up()
            _, sender = self._keys()
            infos = self.ctx.call(self.lab.members)
            names: list[str] = []
            members: list[epochs.Member] = []
            for info in infos:
                if info.membership_mac is None:
                    continue
                names.append(info.member)
                members.append(epochs.Member(info.keys.device_key_pub, info.keys.storage_key_pub,
                                             info.keys.storage_key_sig, info.membership_mac))
            joining = len(members)
            for name, member_keys in newcomers:
                names.append(name)
                members.append(epochs.Member(
                    member_keys.device_key_pub, member_keys.storage_key_pub,
                    member_keys.storage_key_sig, epochs.membership_mac(
                        current.epoch.root_key, current.epoch.sequence_id,
                        member_keys.device_key_pub)))
            opened = epochs.open_epoch(current.epoch, members, sender)
            raw_state = self.ctx.store.labyrinth_get("orf_state")
            tokens: dict[int, orf.EvolveToken] = {}
            device_priv, device_pub = self._identity()
            head = epoch_chain.make_head(sequence_id=opened.epoch.sequence_id,
                                         root_key=opened.epoch.root_key, previous=current.head,
                                         opener_device_key_priv=device_priv,
                                         opener_device_key_pub=device_pub)
            uploads = []
            for index, new_mac, entropy_message in opened.accepted:
                if index < joining:
                    message = entropy_message
                else:  # a newcomer: the root and an ORF state evolved from ours
                    evolved = None
                    if raw_state is not None:
                        evolved, tokens[index] = orf.client_evolve(orf.Scalar(raw_state))
                    message = vd.seal_join(opened.epoch, members[index].epoch_storage_key_pub,
                                           sender, evolved)
                uploads.append(EpochMemberUpload(names[index], new_mac, message))
            if self.me not in {u.member for u in uploads}:
                raise HistoryNotEnabled("this device is not a member of the newest epoch")
            try:
                epoch_id = self.ctx.call(
                    self.lab.open_epoch, opened.epoch.sequence_id, uploads,
                    previous_epoch_id=current.epoch.epoch_id,
                    encrypted_previous_sequence_id=opened.previous.encrypted_sequence_id,
                    encrypted_previous_root_key=opened.previous.encrypted_root_key,
                    head=head.encode())
            except EpochConflict:
                continue
            self._remember([_Known(opened.epoch.with_id(epoch_id), head)])
            for index, token in tokens.items():  # the newcomers' ORF shares
                self.ctx.call(self.lab.orf_evolve, self.me, names[index], token.value)
            log.info("client.history.epoch_opened members=%d rejected=%d", len(uploads),
                     len(opened.rejected))
            return
        raise HistoryUnavailable("could not open a new epoch (other devices kept opening)")

    def device_removed(self) -> None:
        """After a device of the account was removed: a new epoch without it. Until that
        epoch is open (a failure here is retried by every :meth:`flush`), nothing is saved."""
        if self.enabled and self._known():
            self.ctx.store.labyrinth_set("rotate", b"1")
            try:
                self._rotate()
            except (HistoryError, ServerError, LabyrinthError) as exc:
                log.info("client.history.rotation_deferred reason=%s", type(exc).__name__)
                return
            self.ctx.store.labyrinth_set("rotate", b"")

    def admit_devices(self) -> int:
        """Admit the account's devices that published keys but are not members yet (checked
        against the account's device set); how many were admitted."""
        if not self.enabled or not self._known():
            return 0
        account_keys = self._account_keys()
        own = self.ctx.store.known_devices(self.ctx.username)
        newcomers: list[tuple[str, MemberKeys]] = []
        for info in self.ctx.call(self.lab.members):
            device_id = member_device_id(info.member)
            if info.membership_mac is not None or device_id is None or device_id not in own:
                continue
            keys = info.keys
            if (keys.device_key_pub not in account_keys or not primitives.verify(
                    keys.device_key_pub, keys.storage_key_sig, SIGNATURE_USE_EPOCH_STORAGE_KEY,
                    keys.storage_key_pub)):
                log.info("client.history.newcomer_refused")
                continue
            newcomers.append((info.member, keys))
        if newcomers:
            self._rotate(newcomers)
        members = {member_device_id(info.member) for info in self.ctx.call(self.lab.members)
                   if info.membership_mac is not None}
        self.ctx.store.labyrinth_set("admitted", _ids(d for d in own if d in members))
        self.ctx.store.labyrinth_set("admission_checked",
                                     str(self.ctx.clock()).encode() + b" " + _ids(own))
        return len(newcomers)

    def _needs_admission(self) -> bool:
        """Whether some device of the account is not a member yet, checked again when the
        device set changed or EPOCH_CHECK_INTERVAL_MS after the last check (a device may
        enable history after it was linked)."""
        store = self.ctx.store
        own = store.known_devices(self.ctx.username)
        admitted = set((store.labyrinth_get("admitted") or b"").decode().split(","))
        if {str(d) for d in own} <= admitted:
            return False
        at, _, checked = (store.labyrinth_get("admission_checked") or b"0 ").partition(b" ")
        return checked != _ids(own) or not 0 <= self.ctx.clock() - int(at) < \
            EPOCH_CHECK_INTERVAL_MS

    # -- saving: what the conversations store tells it, in the caller's transaction -----------
    def stored(self, conversation: str, content: Content, sender: str, sender_device: int, *,
               outgoing: bool) -> None:
        """A new visible message was stored: its record is queued in the same transaction (a
        local write; not for disappearing messages, nor while loading from the mailbox)."""
        if self._loading or content.expire_timer is not None or not self.enabled:
            return
        reactions = _kept_reactions(self.ctx.store.reactions(conversation, content.message_id))
        self.ctx.store.history_enqueue([(conversation, content.message_id.hex(),
                                         content.sent_at_ms, HistoryPayload(
                                             sender, sender_device, outgoing, content,
                                             reactions=reactions).encode())])

    def changed(self, conversation: str, message_id: bytes) -> None:
        """An edit or a reaction changed a stored message: its record is queued again with
        the message's current state, in place of a queued older one."""
        if self._loading or not self.enabled:
            return
        store = self.ctx.store
        row = store.message_row(conversation, message_id)
        if row is None or row.content is None or row.deleted:
            return
        content = Content.decode(row.content)
        if content.expire_timer is not None:
            return
        payload = HistoryPayload(row.sender, row.sender_device, row.outgoing, content,
                                 edited=row.edited, reactions=_kept_reactions(
                                     store.reactions(conversation, message_id)))
        store.history_replace(conversation, message_id.hex(), content.sent_at_ms,
                              payload.encode())

    def deleted(self, conversation: str, message_id: bytes) -> None:
        """A message is being deleted for everyone (by this account, or by its author as
        received here; called before its content is dropped): the deletion of its record, and
        of its attachment reference if it has one, is queued in place of a queued save."""
        if self._loading or not self.enabled:
            return
        payload = DELETION
        row = self.ctx.store.message_row(conversation, message_id)
        if row is not None and row.content is not None:
            body = Content.decode(row.content).body
            if isinstance(body, AttachmentPointer):
                payload = ATTACHMENT_DELETION + body.blob_id
        self.ctx.store.history_replace(conversation, message_id.hex(), 0, payload)

    def flush(self) -> int:
        """Save (and delete) what is queued, in order, sealed under the newest epoch; how many
        records were saved or deleted. Any failure keeps the rest of the queue for the next
        flush (logged, never raised)."""
        if not self.enabled:
            return 0
        store = self.ctx.store
        done = 0
        try:
            if self._known() and store.labyrinth_get("rotate") == b"1":
                self._rotate()
                store.labyrinth_set("rotate", b"")
            if self._known() and self._needs_admission():
                self.admit_devices()
            queued = store.history_queued(MAX_SAVE_BATCH)
            if not queued:
                self._failed_at = None
                return 0
            current = self._epoch_for_saving()
            while queued:
                for deletion, group in groupby(queued, key=lambda row: _is_deletion(row[4])):
                    run = list(group)
                    if deletion:
                        self._drop_references([(thread, message_id, payload[1:])
                                               for _, thread, message_id, _, payload in run
                                               if payload[:1] == ATTACHMENT_DELETION])
                        step = LABYRINTH_MAX_RECORDS_PER_SAVE
                        for i in range(0, len(run), step):
                            self.ctx.call(self.lab.delete, [
                                RecordKey(INBOX, thread, message_id)
                                for _, thread, message_id, _, _ in run[i:i + step]])
                    else:
                        self._put_references(run, current)
                        keys = mailbox.EpochKeys(current)  # each thread's key derived once
                        self.ctx.call(self.lab.save, [
                            StoredRecord(*self._seal(keys, thread, message_id, timestamp,
                                                     payload))
                            for _, thread, message_id, timestamp, payload in run])
                    store.history_dequeue([row[0] for row in run])
                    done += len(run)
                queued = store.history_queued(MAX_SAVE_BATCH)
            self._failed_at = None
        except (HistoryError, ServerError, LabyrinthError) as exc:
            self._failed_at = self.ctx.clock()
            log.info("client.history.save_deferred reason=%s queued=%d", type(exc).__name__,
                     store.history_queue_length())
        return done

    # -- attachment references (Protocol: Attachments) ----------------------------------------
    def _orf_outputs(self, attachment_ids: Sequence[bytes]) -> list[bytes]:
        """The ORF output of each attachment id (the server's evaluation, in chunks);
        :class:`HistoryNotEnabled` without an ORF state."""
        raw_state = self.ctx.store.labyrinth_get("orf_state")
        if raw_state is None:
            raise HistoryNotEnabled("this device has no ORF state")
        state = orf.Scalar(raw_state)
        outputs: list[bytes] = []
        step = LABYRINTH_MAX_ORF_POINTS
        for i in range(0, len(attachment_ids), step):
            blinded = [attachments.blind(state, a) for a in attachment_ids[i:i + step]]
            answer = self.ctx.call(self.lab.orf_evaluate, blinded, attachments.SERVER_DOMAIN)
            if len(answer) != len(blinded):
                raise HistoryUnavailable("the ORF evaluation answered the wrong count")
            outputs += answer
        return outputs

    def _stored_keys(self, output: bytes, reference: bytes) -> attachments.ReferenceKeys:
        """The keys of a stored reference: from the ORF output and the root of the epoch it
        names (the server alone cannot derive them); :class:`HistoryUnavailable` for an epoch
        this device does not know, a typed Labyrinth error for a malformed reference."""
        sequence_id = attachments.reference_sequence_id(reference)
        for attempt in range(2):
            known = self._known()
            for k in known:
                if k.epoch.sequence_id == sequence_id:
                    return attachments.reference_keys(output, k.epoch)
            if attempt or (known and sequence_id < known[-1].epoch.sequence_id):
                break
            try:  # sealed in an epoch newer than this device has reached yet
                self._catch_up()
            except HistoryNotEnabled:
                break  # removed from the newer epochs: it must not open their references
        raise HistoryUnavailable("a reference of an epoch this device cannot reach")

    def _put_references(self, rows: Sequence[tuple[int, str, str, int, bytes]],
                        epoch: epochs.Epoch) -> None:
        """An attachment reference for every queued message that carries an attachment: the
        pointer sealed under keys from the ORF output and ``epoch`` (the one the records are
        saved under), with the MAC over (thread, message)."""
        found: list[tuple[str, str, Content]] = []
        for _, thread, message_id, _, payload in rows:
            content = HistoryPayload.decode(payload).content
            if isinstance(content.body, AttachmentPointer):
                found.append((thread, message_id, content))
        if not found or self.ctx.store.labyrinth_get("orf_state") is None:
            return
        outputs = self._orf_outputs([c.body.blob_id for _, _, c in found
                                     if isinstance(c.body, AttachmentPointer)])
        for (thread, message_id, content), output in zip(found, outputs, strict=True):
            pointer = _pointer_content(content).encode()
            try:
                key = attachments.reference_keys(output, epoch)
                reference, mac = attachments.seal(key, pointer, thread_id=thread,
                                                  message_id=message_id)
            except LabyrinthError as exc:  # this message's own fault: not retried forever
                log.info("client.history.reference_skipped reason=%s", type(exc).__name__)
                continue
            self.ctx.call(self.lab.put_reference, key.index,
                          AttachmentReference(reference, mac))

    def _drop_references(self, rows: Sequence[tuple[str, str, bytes]]) -> None:
        """Delete the references of deleted messages: only one whose MAC names that very
        (thread, message) (the same attachment may be referenced by a later message)."""
        if not rows or self.ctx.store.labyrinth_get("orf_state") is None:
            return
        for (thread, message_id, _), output in zip(rows, self._orf_outputs(
                [attachment_id for _, _, attachment_id in rows]), strict=True):
            index = attachments.reference_index(output)
            try:
                stored = self.ctx.call(self.lab.reference, index)
                key = self._stored_keys(output, stored.reference)
                if attachments.matches(key, stored.mac, thread, message_id):
                    self.ctx.call(self.lab.delete_reference, index)
            except NotFound:
                continue  # never made (saved before references, or by a device without ORF)
            except (HistoryUnavailable, LabyrinthError) as exc:  # cannot check: left alone
                log.info("client.history.reference_kept reason=%s", type(exc).__name__)

    def attachment(self, conversation: str, message_id: bytes) -> bytes:
        """Download and decrypt a stored message's attachment through its reference in the
        mailbox (a restored or linked device): the reference must exist, open under this
        account's ORF and the root of the epoch it was sealed in, and name this very message.
        :class:`HistoryUnavailable` otherwise."""
        row = self.ctx.store.message_row(conversation, message_id)
        body = None if row is None or row.content is None else Content.decode(row.content).body
        if not isinstance(body, AttachmentPointer):
            raise HistoryUnavailable("no attachment in this message")
        try:
            [output] = self._orf_outputs([body.blob_id])
            stored = self.ctx.call(self.lab.reference, attachments.reference_index(output))
            key = self._stored_keys(output, stored.reference)
            if not attachments.matches(key, stored.mac, conversation, message_id.hex()):
                raise HistoryUnavailable("the reference belongs to another message")
            pointer = Content.decode(attachments.open_reference(key, stored.reference)).body
        except (ServerError, LabyrinthError, ContentError) as exc:
            raise HistoryUnavailable(f"no usable reference: {type(exc).__name__}") from None
        if not isinstance(pointer, AttachmentPointer) or pointer.blob_id != body.blob_id:
            raise HistoryUnavailable("the reference holds another attachment")
        blob = self.ctx.call(self.ctx.server.download_attachment, pointer.blob_id.decode())
        return decrypt_attachment(blob, pointer)

    def flush_pending(self) -> int:
        """:meth:`flush` when something is queued, unless a flush failed less than
        FLUSH_RETRY_MS ago (for a push-channel listener's idle turns: an edit, a reaction or a
        delete arrives in a batch with no new message)."""
        if not self.enabled or self.ctx.store.history_queue_length() == 0:
            return 0
        failed = self._failed_at
        if failed is not None and 0 <= self.ctx.clock() - failed < FLUSH_RETRY_MS:
            return 0
        return self.flush()

    def _epoch_for_saving(self) -> epochs.Epoch:
        """The newest epoch, checked with the server unless it was checked less than
        EPOCH_CHECK_INTERVAL_MS ago and this account's device set is unchanged since: a device
        removed by another device is then noticed at the latest when this device learns of the
        removal (the whitepaper's condition for post-revocation secrecy) or a minute later."""
        store = self.ctx.store
        own = ",".join(sorted(map(str, store.known_devices(self.ctx.username)))).encode()
        now = self.ctx.clock()
        last = store.labyrinth_get("epoch_checked")
        if last is not None and self._known():
            at, _, devices = last.partition(b" ")
            if devices == own and 0 <= now - int(at) < EPOCH_CHECK_INTERVAL_MS:
                return self._known()[-1].epoch
        epoch = self._catch_up().epoch
        store.labyrinth_set("epoch_checked", str(now).encode() + b" " + own)
        return epoch

    @staticmethod
    def _seal(keys: mailbox.EpochKeys, thread: str, message_id: str, timestamp: int,
              payload: bytes) -> tuple[str, str, str, int, int, int, bytes]:
        record = keys.seal(inbox_id=INBOX, thread_id=thread, message_id=message_id,
                           timestamp=timestamp, message=payload)
        return (record.inbox_id, record.thread_id, record.message_id, record.timestamp,
                record.epoch_id, record.version, record.blob)

    # -- loading -------------------------------------------------------------------------------
    def load_older(self, conversation: str, limit: int = 100) -> list[Message]:
        """Load up to ``limit`` messages of ``conversation`` older than those loaded so far
        (newest first from the mailbox). All or nothing: :class:`HistoryError` and no local
        change when anything fails."""
        store = self.ctx.store
        cursor_name = f"cursor:{conversation}"
        raw_cursor = store.labyrinth_get(cursor_name)
        if raw_cursor == b"end":
            return []
        try:
            self._catch_up()
            query = LoadQuery(inbox_id=INBOX, thread_id=conversation, limit=limit,
                              cursor=None if raw_cursor is None else Cursor.decode(
                                  raw_cursor.decode("ascii")))
            page = self.ctx.call(self.lab.load, query)
        except (ServerError, LabyrinthError) as exc:
            raise HistoryUnavailable(f"loading failed: {type(exc).__name__}") from None
        opened = self._open_all(page.records)
        with store.atomic():
            new = self._store(reversed(opened))
            store.labyrinth_set(cursor_name, b"end" if page.cursor is None
                                else page.cursor.encode().encode("ascii"))
        return new

    def load_all(self) -> list[Message]:
        """Load every record of the mailbox (a restored or linked device reading the whole
        history); all or nothing."""
        try:
            self._catch_up()
            records = list(self.lab.iter_records(LoadQuery(inbox_id=INBOX, limit=1000)))
        except (ServerError, LabyrinthError) as exc:
            raise HistoryUnavailable(f"loading failed: {type(exc).__name__}") from None
        opened = self._open_all(records)
        with self.ctx.store.atomic():
            return self._store(reversed(opened))

    def _open_all(self, records: Sequence[StoredRecord]
                  ) -> list[tuple[str, HistoryPayload]]:
        # Each thread's key derived once per epoch (mailbox.EpochKeys), not once per record.
        by_id = {k.epoch.epoch_id: mailbox.EpochKeys(k.epoch) for k in self._known()}
        out: list[tuple[str, HistoryPayload]] = []
        for record in records:
            keys = by_id.get(record.epoch_id)
            if keys is None:
                raise HistoryUnavailable("a record of an epoch this device cannot reach")
            try:
                plaintext = keys.open(record)
            except LabyrinthError as exc:
                raise HistoryUnavailable(f"a record does not open: {type(exc).__name__}"
                                         ) from None
            payload = HistoryPayload.decode(plaintext)
            if payload.content.message_id.hex() != record.message_id:
                raise HistoryUnavailable("a record's message id does not match its content")
            out.append((record.thread_id, payload))
        return out

    def _store(self, opened: Iterable[tuple[str, HistoryPayload]]) -> list[Message]:
        """Store loaded messages (the caller holds the transaction) with their edited flag and
        reactions; a message this device already has keeps its local state."""
        store = self.ctx.store
        new: list[Message] = []
        self._loading = True
        try:
            for conversation, payload in opened:
                got = self.conversations.store_content(
                    conversation, payload.content, payload.sender, payload.sender_device,
                    outgoing=payload.outgoing)
                if got and (payload.edited or payload.reactions):
                    message_id = payload.content.message_id
                    if payload.edited:
                        store.replace_content(conversation, message_id, payload.content,
                                              edited=True)
                    for reactor, emoji in payload.reactions:
                        store.set_reaction(conversation, message_id, reactor, emoji)
                    got = [self.conversations.message(conversation, message_id)]
                new += got
        finally:
            self._loading = False
        return new

    # -- recovery codes ------------------------------------------------------------------------
    def create_recovery_code(self) -> str:
        """A new recovery code for this account (shown once; nothing of it is kept)."""
        current = self._catch_up()
        code = RecoveryCode.generate()
        secrets = code.derive(self.ctx.username)
        raw_state = self.ctx.store.labyrinth_get("orf_state")
        state = orf.client_init() if raw_state is None else orf.Scalar(raw_state)
        created = vd.create(secrets, epoch=current.epoch, head_hash=current.head.hash(),
                            orf_state=state)
        member = "v" + secrets.vdevice_id.hex()
        bundle = created.bundle
        self.ctx.call(self.lab.create_vdevice, secrets.vdevice_id, bundle.encode())
        opened = vd.open_bundle(secrets, bundle)  # the signature for its auth slot
        self.ctx.call(self.lab.put_member_keys, MemberKeys(
            bundle.device_pub, bundle.storage_pub, bundle.storage_sig, bundle.storage_pub,
            primitives.sign(opened.keys.device_priv, SIGNATURE_USE_EPOCH_STORAGE_AUTH_KEY,
                            bundle.storage_pub)), member)
        self.ctx.call(self.lab.put_membership_mac, created.membership_mac, member)
        if raw_state is not None:
            self.ctx.call(self.lab.orf_evolve, self.me, member, created.orf_token.value)
        log.info("client.history.recovery_code_created")
        return code.formatted()

    def restore(self, typed_code: str) -> int:
        """Join the mailbox with a recovery code (up to three wrong characters corrected);
        returns how many epochs this device can now read. Its epochs and ORF state change
        only on success (its Labyrinth keys are made and published first)."""
        if not self.enabled:
            store = self.ctx.store
            with store.atomic():
                store.labyrinth_set("storage_priv", hpke.generate_keypair()[0])
                store.labyrinth_set("auth_priv", hpke.generate_keypair()[0])
        self.ctx.call(self.lab.put_member_keys, self._member_keys())
        try:
            registered = set(self.ctx.call(self.lab.vdevice_ids))
            code = correct(typed_code, self.ctx.username, registered.__contains__)
            secrets = code.derive(self.ctx.username)
            bundle = vd.VirtualDeviceBundle.decode(
                self.ctx.call(self.lab.vdevice, secrets.vdevice_id).bundle)
            state = vd.open_bundle(secrets, bundle)
            member = "v" + secrets.vdevice_id.hex()
            known = self._verified(state.epoch, state.head_hash, self._records(member),
                                   state.keys)
        except ServerError as exc:
            raise HistoryUnavailable(f"restoring failed: {type(exc).__name__}") from None
        keys, _ = self._keys()
        newest = known[-1].epoch
        addition = vd.add_device(state, newest, keys.device_pub)
        self.ctx.call(self.lab.put_membership_mac, addition.membership_mac)
        self.ctx.call(self.lab.orf_evolve, member, self.me, addition.orf_token.value)
        with self.ctx.store.atomic():
            self._remember(known)
            self.ctx.store.labyrinth_set("orf_state", addition.orf_state.value)
        log.info("client.history.restored epochs=%d", len(known))
        return len(known)
