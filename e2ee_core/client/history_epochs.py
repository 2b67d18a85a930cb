"""The account's Labyrinth membership and epochs, for :class:`~e2ee_core.client.history.History`
(issue #15): this device's Labyrinth keys (its Signal identity key as the device key, fresh
X25519 storage and auth pairs in the local store), the epochs it reached (verified heads),
enabling history (the first device opens epoch 0), joining through a join message, catching up
by forward chaining, rotation (a new epoch on device removal or to admit newcomers), and the
admission of the account's other devices. See the history module's docstring for the design.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from e2ee_core.client.context import DeviceContext
from e2ee_core.client.devices import DeviceSets
from e2ee_core.client.errors import HistoryError, HistoryNotEnabled, HistoryUnavailable
from e2ee_core.labyrinth import epoch_chain, epochs, hpke, orf, primitives
from e2ee_core.labyrinth import virtual_devices as vd
from e2ee_core.labyrinth.consts import (
    SIGNATURE_USE_EPOCH_STORAGE_AUTH_KEY,
    SIGNATURE_USE_EPOCH_STORAGE_KEY,
)
from e2ee_core.labyrinth.errors import LabyrinthError
from e2ee_core.server.errors import NotFound, ServerError
from e2ee_core.server.labyrinth_client import LabyrinthClient
from e2ee_core.server.labyrinth_errors import EpochConflict
from e2ee_core.server.labyrinth_wire import (
    EpochMemberUpload,
    EpochRecord,
    MemberKeys,
    device_member,
    member_device_id,
)

log = logging.getLogger("e2ee_core.client")

# How long a save may rely on the newest epoch this device knows without asking the server,
# while its account's device set is unchanged: bounds how late a removal made by another
# device (and not yet announced to this one) is taken into account.
EPOCH_CHECK_INTERVAL_MS = 60_000


def _ids(device_ids: Iterable[int]) -> bytes:
    return ",".join(sorted(map(str, device_ids))).encode()


@dataclass(frozen=True)
class Known:
    """An epoch this device reached, with its verified head."""

    epoch: epochs.Epoch
    head: epoch_chain.EpochHead


class HistoryEpochs:
    """This device's membership in its account's mailbox and the epochs it reached."""

    def __init__(self, ctx: DeviceContext, devices: DeviceSets, lab: LabyrinthClient) -> None:
        self.ctx = ctx
        self.devices = devices
        self.lab = lab
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

    def identity(self) -> tuple[bytes, bytes]:
        identity = self.ctx.store.protocol.get_local_identity()
        assert identity is not None
        return identity.key_pair.private.raw, identity.key_pair.public.raw

    def keys(self) -> tuple[vd.DeviceKeys, epochs.SenderKeys]:
        store = self.ctx.store
        storage_priv, auth_priv = store.labyrinth_get("storage_priv"), store.labyrinth_get(
            "auth_priv")
        if storage_priv is None or auth_priv is None:
            raise HistoryNotEnabled("history is not enabled on this device")
        device_priv, _ = self.identity()
        return (vd.DeviceKeys.from_private(device_priv, storage_priv),
                epochs.SenderKeys(hpke.public_key(auth_priv), auth_priv))

    def member_keys(self) -> MemberKeys:
        keys, sender = self.keys()
        return MemberKeys(keys.device_pub, keys.storage_pub, keys.storage_signature(),
                          sender.auth_pub, primitives.sign(
                              keys.device_priv, SIGNATURE_USE_EPOCH_STORAGE_AUTH_KEY,
                              sender.auth_pub))

    def known(self) -> list[Known]:
        return [Known(epochs.Epoch(seq, epoch_id, root), epoch_chain.EpochHead.decode(head))
                for seq, epoch_id, root, head in self.ctx.store.labyrinth_epochs()]

    def remember(self, known: Iterable[Known]) -> None:
        self.ctx.store.labyrinth_put_epochs(
            [(k.epoch.sequence_id, k.epoch.epoch_id, k.epoch.root_key, k.head.encode())
             for k in known])

    def account_keys(self) -> set[bytes]:
        """The Curve25519 identity keys of this account's devices (the allowed openers)."""
        self.devices.refresh(self.ctx.username, announce=False)
        return {key[1:] if len(key) == 33 else key
                for key in self.ctx.store.known_devices(self.ctx.username).values()}

    # -- set-up --------------------------------------------------------------------------------
    def publish_keys(self) -> None:
        """Make this device's storage and auth keys (once) and publish its member keys."""
        if not self.enabled:
            store = self.ctx.store
            with store.atomic():
                store.labyrinth_set("storage_priv", hpke.generate_keypair()[0])
                store.labyrinth_set("auth_priv", hpke.generate_keypair()[0])
        self.ctx.call(self.lab.put_member_keys, self.member_keys())

    def enable(self) -> bool:
        """Turn history on for this device: keys made and published; the account's first
        device opens epoch 0. Returns whether this device is a member now (a linked device is
        admitted by an enabled one, see the module docstring)."""
        self.publish_keys()
        if self.known():
            return True
        try:
            self.ctx.call(self.lab.epoch)
        except NotFound:
            self._open_first_epoch()
            return True
        return self.join()

    def _open_first_epoch(self) -> None:
        keys, _ = self.keys()
        device_priv, device_pub = self.identity()
        root = epochs.first_epoch_root()
        head = epoch_chain.make_head(sequence_id=0, root_key=root, previous=None,
                                     opener_device_key_priv=device_priv,
                                     opener_device_key_pub=device_pub)
        member = EpochMemberUpload(self.me, epochs.membership_mac(root, 0, keys.device_pub))
        epoch_id = self.ctx.call(self.lab.open_epoch, 0, [member], head=head.encode())
        self.remember([Known(epochs.Epoch(0, epoch_id, root), head)])
        self.ctx.call(self.lab.orf_init)
        self.ctx.store.labyrinth_set("orf_state", orf.client_init().value)
        log.info("client.history.first_epoch")

    def records(self, member: str | None = None) -> list[EpochRecord]:
        return self.ctx.call(self.lab.all_epochs, member=member)

    def heads(self, records: Sequence[EpochRecord]) -> list[epoch_chain.EpochHead]:
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

    def verified(self, start: epochs.Epoch, start_hash: bytes, records: list[EpochRecord],
                  keys: vd.DeviceKeys) -> list[Known]:
        """Every epoch from the first to the newest, the chain verified (see restore_epochs)."""
        heads = self.heads(records)
        forward = self._forward(records, start.sequence_id)
        reached = vd.restore_epochs(start, start_hash, backward=self._backward(
            records, start.sequence_id), forward=forward, keys=keys, heads=heads)
        return [Known(epoch, head) for epoch, head in zip(reached, heads, strict=True)]

    def join(self) -> bool:
        """A device without epochs: find the join message addressed to it, if any."""
        keys, _ = self.keys()
        records = self.records()
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
                head = self.heads([record])[0]
                known = self.verified(start, head.hash(), records, keys)
            except LabyrinthError as exc:
                raise HistoryUnavailable(f"joining failed: {type(exc).__name__}") from None
            with self.ctx.store.atomic():
                self.remember(known)
                if orf_state is not None:
                    self.ctx.store.labyrinth_set("orf_state", orf_state.value)
            log.info("client.history.joined epochs=%d", len(known))
            return True
        return False

    def catch_up(self) -> Known:
        """Reach the server's newest epoch (forward chaining); the newest epoch this device is
        a member of. :class:`HistoryNotEnabled` when it is not a member at all."""
        known = self.known()
        if not known and not self.join():
            raise HistoryNotEnabled("this device is not a member of the mailbox yet")
        known = known or self.known()
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
        keys, _ = self.keys()
        added: list[Known] = []
        try:
            reached = vd.chain_forward(newest.epoch, self._forward(
                records, newest.epoch.sequence_id), keys)
            previous = newest.head
            for epoch, record in zip(reached[1:], records, strict=False):
                head = self.heads([record])[0]
                if head.sequence_id != epoch.sequence_id or not primitives.mac_equal(
                        head.previous_hash, previous.hash()):
                    raise HistoryUnavailable("the epoch chain does not continue")
                head.verify_signature()
                if not primitives.mac_equal(
                        head.commitment, epoch_chain.root_commitment(epoch.root_key,
                                                                     epoch.sequence_id)):
                    raise HistoryUnavailable("an epoch head does not verify")
                added.append(Known(epoch, head))
                previous = head
        except LabyrinthError as exc:
            raise HistoryUnavailable(f"epoch chaining failed: {type(exc).__name__}") from None
        if added:
            self.remember(added)
        if len(added) < len(records):
            raise HistoryNotEnabled("this device was removed from the mailbox's newest epoch")
        return added[-1] if added else newest

    def sync(self) -> bool:
        """Join (a device admitted by another) and reach the newest epoch; whether this device
        is a member of it."""
        if not self.enabled:
            return False
        try:
            self.catch_up()
        except HistoryNotEnabled:
            return False
        return True

    # -- rotation ------------------------------------------------------------------------------
    def rotate(self, newcomers: Sequence[tuple[str, MemberKeys]] = ()) -> None:
        """Open the epoch after the newest one, for the current members (those with a MAC in
        it) and ``newcomers`` (given a MAC now and the new root in a join message)."""
        for _ in range(3):  # another device may open one first: catch up and retry
            current = self.catch_up()
            _, sender = self.keys()
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
            device_priv, device_pub = self.identity()
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
            self.remember([Known(opened.epoch.with_id(epoch_id), head)])
            for index, token in tokens.items():  # the newcomers' ORF shares
                self.ctx.call(self.lab.orf_evolve, self.me, names[index], token.value)
            log.info("client.history.epoch_opened members=%d rejected=%d", len(uploads),
                     len(opened.rejected))
            return
        raise HistoryUnavailable("could not open a new epoch (other devices kept opening)")

    def device_removed(self) -> None:
        """After a device of the account was removed: a new epoch without it. Until that
        epoch is open (a failure here is retried by every :meth:`flush`), nothing is saved."""
        if self.enabled and self.known():
            self.ctx.store.labyrinth_set("rotate", b"1")
            try:
                self.rotate()
            except (HistoryError, ServerError, LabyrinthError) as exc:
                log.info("client.history.rotation_deferred reason=%s", type(exc).__name__)
                return
            self.ctx.store.labyrinth_set("rotate", b"")

    def admit_devices(self) -> int:
        """Admit the account's devices that published keys but are not members yet (checked
        against the account's device set); how many were admitted."""
        if not self.enabled or not self.known():
            return 0
        account_keys = self.account_keys()
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
            self.rotate(newcomers)
        members = {member_device_id(info.member) for info in self.ctx.call(self.lab.members)
                   if info.membership_mac is not None}
        self.ctx.store.labyrinth_set("admitted", _ids(d for d in own if d in members))
        self.ctx.store.labyrinth_set("admission_checked",
                                     str(self.ctx.clock()).encode() + b" " + _ids(own))
        return len(newcomers)

    def needs_admission(self) -> bool:
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

