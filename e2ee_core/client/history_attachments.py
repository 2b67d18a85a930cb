"""Attachment references in the history mailbox (issue #15, Protocol: Attachments), for
:class:`~e2ee_core.client.history.History`: the ORF outputs of attachment ids (the server's
evaluation), a reference for every saved message with an attachment (keyed by the ORF output
and the root of the epoch the flush saves under, so the server cannot open it), the deletion of
a deleted message's reference (only if its MAC names that message), and fetching an attachment
through its reference on a restored or linked device.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from e2ee_core.attachments import decrypt_attachment
from e2ee_core.client.context import DeviceContext
from e2ee_core.client.errors import HistoryNotEnabled, HistoryUnavailable
from e2ee_core.client.history_epochs import HistoryEpochs
from e2ee_core.client.history_payload import HistoryPayload, pointer_content
from e2ee_core.content import AttachmentPointer, Content, ContentError
from e2ee_core.labyrinth import attachments, epochs, orf
from e2ee_core.labyrinth.errors import LabyrinthError
from e2ee_core.server.consts import LABYRINTH_MAX_ORF_POINTS
from e2ee_core.server.errors import NotFound, ServerError
from e2ee_core.server.labyrinth_client import LabyrinthClient
from e2ee_core.server.labyrinth_wire import AttachmentReference

log = logging.getLogger("e2ee_core.client")


class HistoryAttachments:
    """The ORF-indexed attachment references of this account's saved messages."""

    def __init__(self, ctx: DeviceContext, lab: LabyrinthClient, epochs: HistoryEpochs) -> None:
        self.ctx = ctx
        self.lab = lab
        self.epochs = epochs

    def orf_outputs(self, attachment_ids: Sequence[bytes]) -> list[bytes]:
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

    def stored_keys(self, output: bytes, reference: bytes) -> attachments.ReferenceKeys:
        """The keys of a stored reference: from the ORF output and the root of the epoch it
        names (the server alone cannot derive them); :class:`HistoryUnavailable` for an epoch
        this device does not know, a typed Labyrinth error for a malformed reference."""
        sequence_id = attachments.reference_sequence_id(reference)
        for attempt in range(2):
            known = self.epochs.known()
            for k in known:
                if k.epoch.sequence_id == sequence_id:
                    return attachments.reference_keys(output, k.epoch)
            if attempt or (known and sequence_id < known[-1].epoch.sequence_id):
                break
            try:  # sealed in an epoch newer than this device has reached yet
                self.epochs.catch_up()
            except HistoryNotEnabled:
                break  # removed from the newer epochs: it must not open their references
        raise HistoryUnavailable("a reference of an epoch this device cannot reach")

    def put_references(self, rows: Sequence[tuple[int, str, str, int, bytes]],
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
        outputs = self.orf_outputs([c.body.blob_id for _, _, c in found
                                     if isinstance(c.body, AttachmentPointer)])
        for (thread, message_id, content), output in zip(found, outputs, strict=True):
            pointer = pointer_content(content).encode()
            try:
                key = attachments.reference_keys(output, epoch)
                reference, mac = attachments.seal(key, pointer, thread_id=thread,
                                                  message_id=message_id)
            except LabyrinthError as exc:  # this message's own fault: not retried forever
                log.info("client.history.reference_skipped reason=%s", type(exc).__name__)
                continue
            self.ctx.call(self.lab.put_reference, key.index,
                          AttachmentReference(reference, mac))

    def drop_references(self, rows: Sequence[tuple[str, str, bytes]]) -> None:
        """Delete the references of deleted messages: only one whose MAC names that very
        (thread, message) (the same attachment may be referenced by a later message)."""
        if not rows or self.ctx.store.labyrinth_get("orf_state") is None:
            return
        for (thread, message_id, _), output in zip(rows, self.orf_outputs(
                [attachment_id for _, _, attachment_id in rows]), strict=True):
            index = attachments.reference_index(output)
            try:
                stored = self.ctx.call(self.lab.reference, index)
                key = self.stored_keys(output, stored.reference)
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
            [output] = self.orf_outputs([body.blob_id])
            stored = self.ctx.call(self.lab.reference, attachments.reference_index(output))
            key = self.stored_keys(output, stored.reference)
            if not attachments.matches(key, stored.mac, conversation, message_id.hex()):
                raise HistoryUnavailable("the reference belongs to another message")
            pointer = Content.decode(attachments.open_reference(key, stored.reference)).body
        except (ServerError, LabyrinthError, ContentError) as exc:
            raise HistoryUnavailable(f"no usable reference: {type(exc).__name__}") from None
        if not isinstance(pointer, AttachmentPointer) or pointer.blob_id != body.blob_id:
            raise HistoryUnavailable("the reference holds another attachment")
        blob = self.ctx.call(self.ctx.server.download_attachment, pointer.blob_id.decode())
        return decrypt_attachment(blob, pointer)

