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

The parts, behind the thin façade :class:`History` (each holds the device's
:class:`~e2ee_core.client.context.DeviceContext` and the one
:class:`~e2ee_core.server.labyrinth_client.LabyrinthClient`):

* :mod:`.history_payload`: :class:`HistoryPayload` (a record's plaintext) and its limits;
* :mod:`.history_epochs`: keys, membership and epochs (enable, join, catch-up, sync, rotation,
  admission, device removal);
* :mod:`.history_saving`: the save queue and its flush;
* :mod:`.history_attachments`: the attachment references;
* :mod:`.history_loading`: load_older, load_all;
* :mod:`.history_recovery`: recovery codes (create, restore).

The History errors are in :mod:`e2ee_core.client.errors` (re-exported here).

Not done here: a Labyrinth 1.1 key drop; receipts are not saved.
"""

from __future__ import annotations

from collections.abc import Sequence

from e2ee_core.client.context import DeviceContext
from e2ee_core.client.conversations import Conversations
from e2ee_core.client.devices import DeviceSets
from e2ee_core.client.errors import (
    HistoryError,
    HistoryNotEnabled,
    HistoryUnavailable,
    InvalidHistoryPayload,
)
from e2ee_core.client.history_attachments import HistoryAttachments
from e2ee_core.client.history_epochs import EPOCH_CHECK_INTERVAL_MS, HistoryEpochs, Known
from e2ee_core.client.history_loading import HistoryLoading
from e2ee_core.client.history_payload import (
    ATTACHMENT_DELETION,
    DELETION,
    INBOX,
    MAX_HISTORY_REACTIONS,
    MAX_SENDER_LEN,
    PAYLOAD_VERSION,
    HistoryPayload,
    Reactions,
)
from e2ee_core.client.history_recovery import HistoryRecovery
from e2ee_core.client.history_saving import FLUSH_RETRY_MS, MAX_SAVE_BATCH, HistorySaving
from e2ee_core.client.models import Message
from e2ee_core.content import Content
from e2ee_core.labyrinth import attachments, epochs, mailbox
from e2ee_core.labyrinth import virtual_devices as vd
from e2ee_core.server.labyrinth_client import LabyrinthClient
from e2ee_core.server.labyrinth_wire import StoredRecord

__all__ = [
    "ATTACHMENT_DELETION",
    "DELETION",
    "EPOCH_CHECK_INTERVAL_MS",
    "FLUSH_RETRY_MS",
    "INBOX",
    "MAX_HISTORY_REACTIONS",
    "MAX_SAVE_BATCH",
    "MAX_SENDER_LEN",
    "PAYLOAD_VERSION",
    "History",
    "HistoryError",
    "HistoryNotEnabled",
    "HistoryPayload",
    "HistoryUnavailable",
    "InvalidHistoryPayload",
    "Reactions",
]


class History:
    """One device's access to its account's encrypted message history: a façade over
    :class:`~.history_epochs.HistoryEpochs`, :class:`~.history_saving.HistorySaving`,
    :class:`~.history_attachments.HistoryAttachments`,
    :class:`~.history_loading.HistoryLoading` and :class:`~.history_recovery.HistoryRecovery`.
    """

    def __init__(self, ctx: DeviceContext, devices: DeviceSets,
                 conversations: Conversations) -> None:
        self.ctx = ctx
        self.devices = devices
        self.conversations = conversations
        self.lab = LabyrinthClient(ctx.server)
        self.epochs = HistoryEpochs(ctx, devices, self.lab)
        self.attachments = HistoryAttachments(ctx, self.lab, self.epochs)
        self.saving = HistorySaving(ctx, self.lab, self.epochs, self.attachments)
        self.loading = HistoryLoading(ctx, self.lab, self.epochs, conversations, self.saving)
        self.recovery = HistoryRecovery(ctx, self.lab, self.epochs)

    # -- membership and epochs (history_epochs) ------------------------------------------------
    @property
    def enabled(self) -> bool:
        return self.epochs.enabled

    @property
    def me(self) -> str:
        return self.epochs.me

    def enable(self) -> bool:
        """See :meth:`HistoryEpochs.enable`: keys made and published; whether this device is a
        member now."""
        return self.epochs.enable()

    def sync(self) -> bool:
        """See :meth:`HistoryEpochs.sync`: whether this device is a member of the newest
        epoch."""
        return self.epochs.sync()

    def device_removed(self) -> None:
        """See :meth:`HistoryEpochs.device_removed`: a new epoch without the removed device."""
        self.epochs.device_removed()

    def admit_devices(self) -> int:
        """See :meth:`HistoryEpochs.admit_devices`: how many devices were admitted."""
        return self.epochs.admit_devices()

    # -- saving (history_saving), called by the conversations store in its transaction --------
    def stored(self, conversation: str, content: Content, sender: str, sender_device: int, *,
               outgoing: bool) -> None:
        self.saving.stored(conversation, content, sender, sender_device, outgoing=outgoing)

    def changed(self, conversation: str, message_id: bytes) -> None:
        self.saving.changed(conversation, message_id)

    def deleted(self, conversation: str, message_id: bytes) -> None:
        self.saving.deleted(conversation, message_id)

    def flush(self) -> int:
        """See :meth:`HistorySaving.flush`: how many records were saved or deleted."""
        return self.saving.flush()

    def flush_pending(self) -> int:
        """See :meth:`HistorySaving.flush_pending`."""
        return self.saving.flush_pending()

    # -- attachments, loading, recovery codes --------------------------------------------------
    def attachment(self, conversation: str, message_id: bytes) -> bytes:
        """See :meth:`HistoryAttachments.attachment`."""
        return self.attachments.attachment(conversation, message_id)

    def load_older(self, conversation: str, limit: int = 100) -> list[Message]:
        """See :meth:`HistoryLoading.load_older`."""
        return self.loading.load_older(conversation, limit)

    def load_all(self) -> list[Message]:
        """See :meth:`HistoryLoading.load_all`."""
        return self.loading.load_all()

    def create_recovery_code(self) -> str:
        """See :meth:`HistoryRecovery.create_recovery_code`."""
        return self.recovery.create_recovery_code()

    def restore(self, typed_code: str) -> int:
        """See :meth:`HistoryRecovery.restore`."""
        return self.recovery.restore(typed_code)

    # -- internals the tests and bench/bench_labyrinth_client.py reach ----------------------------
    def _known(self) -> list[Known]:
        return self.epochs.known()

    def _keys(self) -> tuple[vd.DeviceKeys, epochs.SenderKeys]:
        return self.epochs.keys()

    def _stored_keys(self, output: bytes, reference: bytes) -> attachments.ReferenceKeys:
        return self.attachments.stored_keys(output, reference)

    def _open_all(self, records: Sequence[StoredRecord]) -> list[tuple[str, HistoryPayload]]:
        return self.loading.open_all(records)

    @staticmethod
    def _seal(keys: mailbox.EpochKeys, thread: str, message_id: str, timestamp: int,
              payload: bytes) -> tuple[str, str, str, int, int, int, bytes]:
        return HistorySaving.seal(keys, thread, message_id, timestamp, payload)
