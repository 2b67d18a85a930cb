"""Client fanout: one envelope per device of the recipient accounts and per other device of
our own account, submitted in one request, with the server's 409 answers reconciled.

* A message to account B is encrypted once per device of B and once per other own device, each
  over its own pairwise session. The own copies are the *sync transcript*: the frame inside
  names the destination, so the other own devices file it under the right conversation.
* The server refuses a send that does not cover exactly the current devices
  (``missing``/``extra``): the device sets are reconciled (:meth:`DeviceSets.reconcile`), the
  group state the reconciliation queued for new devices goes out first, and the send is retried
  (at most ``MAX_SEND_ATTEMPTS`` rounds). For a verified contact a change raises
  :class:`~e2ee_core.client.errors.ContactChanged` before anything more is sent.
* A group message goes to every member account in one multi-recipient request, accepted or
  refused as a whole.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from e2ee_core.client import consts
from e2ee_core.client.context import Address, DeviceContext
from e2ee_core.client.devices import DeviceSets
from e2ee_core.client.errors import ContactChanged, SendFailed
from e2ee_core.client.frames import Frame, wrap_pairwise
from e2ee_core.content import Content
from e2ee_core.errors import NoSession
from e2ee_core.server.errors import MismatchedDevices, PayloadTooLarge, ServerUnreachable
from e2ee_core.server.wire import MultiSendRequest, OutgoingEnvelope, SendRequest

log = logging.getLogger("e2ee_core.client")

Build = Callable[[list[Address]], list[OutgoingEnvelope]]
"""Envelopes for the given target devices (called again after a 409)."""


class Fanout:
    """Encrypts per device and submits, reconciling device sets on 409."""

    def __init__(self, ctx: DeviceContext, devices: DeviceSets) -> None:
        self.ctx = ctx
        self.devices = devices
        self.mismatches = 0  # 409 answers handled so far (observability for tests and apps)

    def targets(self, recipient: str) -> list[Address]:
        """Every known device of ``recipient`` and every other device of our own account."""
        me, known = self.ctx.username, self.ctx.store.known_devices
        targets = [] if recipient == me else [(recipient, d) for d in known(recipient)]
        return targets + [(me, d) for d in known(me) if d != self.ctx.device_id]

    def pairwise_envelopes(self, targets: list[Address], frame: bytes) -> list[OutgoingEnvelope]:
        """``frame`` encrypted over the pairwise session of each target; every ratchet step
        commits in one local transaction before the envelopes are returned."""
        live = self.devices.live_sessions
        # Sessions known to exist are not re-checked (profiled: the check cost one extra
        # session load per device, about 15% of a fanout); a vanished one is re-made once.
        for attempt in (1, 2):
            self.devices.ensure_sessions([t for t in targets if t not in live])
            try:
                with self.ctx.store.write_behind():  # all or nothing: each record written once
                    encrypt = self.ctx.device.encrypt
                    envelopes = [OutgoingEnvelope(u, d, wrap_pairwise(
                        encrypt((u, d), frame).to_bytes())) for u, d in targets]
            except NoSession as exc:
                if attempt == 2 or exc.address is None:
                    raise
                live.discard(tuple(exc.address))
                continue
            live.update(targets)
            return envelopes
        raise AssertionError("unreachable")

    def send_pairwise(self, recipient: str, content: Content, *,
                      expires_at_ms: int | None = None) -> None:
        """``content`` to every device of ``recipient`` and our other devices."""
        frame = Frame(recipient, content).encode()
        self.send(recipient, lambda targets: self.pairwise_envelopes(targets, frame),
                  expires_at_ms=expires_at_ms)

    def send(self, recipient: str, build: Build, *, expires_at_ms: int | None = None,
             reconciled: Callable[[], None] | None = None) -> None:
        """One request to one account. ``reconciled()`` runs after a 409 was reconciled (a
        group send re-encrypts there, so a new device, which gets the sender key as it is
        now, can read the message)."""
        self._deliver([recipient], build, lambda e: self._submit(
            SendRequest(recipient, tuple(e), expires_at_ms)), reconciled)

    def send_many(self, recipients: list[str], build: Build, *,
                  expires_at_ms: int | None = None,
                  reconciled: Callable[[], None] | None = None) -> None:
        """One request for several accounts (a group message): an envelope per device of each
        and per other own device (those once), queued all or none; a 409 lists every
        mismatch, reconciled at once, and the send is retried."""
        self._deliver(recipients, build, lambda e: self._submit(
            MultiSendRequest(tuple(recipients), tuple(e), expires_at_ms)), reconciled)

    def _submit(self, request: SendRequest | MultiSendRequest) -> int:
        """Over the push channel while one is open (one frame, no HTTP request), else HTTP.
        A channel that breaks mid-send, or a send too large for a frame, goes over HTTP (a
        copy the server had already queued is a duplicate the recipients recognise)."""
        channel, server = self.ctx.channel, self.ctx.server
        if channel is not None:
            try:
                return channel.submit(request)
            except (ServerUnreachable, PayloadTooLarge):
                log.info("client.send.channel_fallback")
        if isinstance(request, SendRequest):
            return server.send(request.recipient, request.messages, request.expires_at_ms)
        return server.send_multi(request.recipients, request.messages, request.expires_at_ms)

    def _deliver(self, recipients: list[str], build: Build,
                 submit: Callable[[list[OutgoingEnvelope]], int],
                 reconciled: Callable[[], None] | None) -> None:
        for attempt in range(1, consts.MAX_SEND_ATTEMPTS + 1):
            for recipient in recipients:
                if recipient != self.ctx.username:
                    self.devices.ensure_known(recipient)
                    self.devices.check_sendable(recipient)
            targets = sorted({t for r in recipients for t in self.targets(r)})
            if not targets:
                return  # a note to self on a single-device account: nothing to deliver
            envelopes = build(targets)
            try:
                self.ctx.call(submit, envelopes)
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
        self.devices.reconcile(refused.missing, refused.extra)
        self.flush_outbox()
        if reconciled is not None:
            reconciled()

    def flush_outbox(self) -> None:
        """Send queued group-management content over the pairwise sessions: to every device of
        each recipient account (our own other devices get every send anyway)."""
        outbox = self.ctx.outbox
        while outbox:
            _, item = outbox.pop(0)
            recipients = sorted(item.recipients - {self.ctx.username})
            for recipient in recipients or [self.ctx.username]:
                try:
                    self.send_pairwise(recipient, item.content)
                except ContactChanged:
                    log.warning("client.group.distribution_blocked")
