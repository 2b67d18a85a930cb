"""Control over endpoints: a contact's devices with their safety numbers, verification,
accepting changes, blocking, device-change notices and removing one of our own devices."""

from __future__ import annotations

import dataclasses

from e2ee_core.client.context import DeviceContext
from e2ee_core.client.devices import DeviceSets
from e2ee_core.client.errors import SafetyNumberMismatch, StateError
from e2ee_core.client.fanout import Fanout
from e2ee_core.client.models import ContactDevices, DeviceSafety
from e2ee_core.client.safety import combined_safety_number, device_safety_number
from e2ee_core.client.store import Notice


class Verification:
    """Safety numbers, verification state and the block list of one device."""

    def __init__(self, ctx: DeviceContext, devices: DeviceSets, fanout: Fanout) -> None:
        self.ctx = ctx
        self.devices = devices
        self.fanout = fanout

    def devices_of(self, username: str) -> ContactDevices:
        """A contact's current devices (fetched now; differences become notices), each with
        its safety number against this device, and the combined safety number."""
        ctx = self.ctx
        self.devices.refresh(username)
        if username != ctx.username:
            self.devices.refresh(ctx.username)
        theirs = ctx.store.known_devices(username)
        mine = ctx.store.known_devices(ctx.username)
        devices = tuple(
            DeviceSafety(d, key, device_safety_number(ctx.username, ctx.device.identity_key,
                                                      username, key))
            for d, key in sorted(theirs.items()))
        state = ctx.store.contact(username)
        return ContactDevices(username, devices,
                              combined_safety_number(ctx.username, mine.values(), username,
                                                     theirs.values()),
                              state.verified, state.changed)

    def verify(self, username: str, safety_number: str | None = None) -> ContactDevices:
        """Mark ``username`` verified (after the users compared the combined safety number;
        pass it to have it checked). Clears a pending change."""
        current = self.devices_of(username)
        if safety_number is not None and "".join(safety_number.split()) != \
                current.combined_safety_number:
            raise SafetyNumberMismatch("the compared safety number is not the current one")
        was_blocked = self.ctx.store.contact(username).changed
        self.ctx.store.set_contact(username, verified=True,
                                   number=current.combined_safety_number, changed=False)
        if was_blocked:
            self._sendable_again(username)
        return dataclasses.replace(current, verified=True, changed=False)

    def accept_changes(self, username: str) -> None:
        """Accept a verified contact's changed devices without re-verifying: the contact
        becomes unverified and sending is allowed again."""
        was_blocked = self.ctx.store.contact(username).changed
        self.ctx.store.set_contact(username, verified=False, number=None, changed=False)
        if was_blocked:
            self._sendable_again(username)

    def _sendable_again(self, username: str) -> None:
        """Sender keys held back while the contact was blocked go out now."""
        if self.devices.events is not None:
            self.devices.events.member_devices_changed(username)
        self.fanout.flush_outbox()

    def notices(self, after_id: int = 0) -> list[Notice]:
        """Device-change notices (added, removed, identity changed), oldest first."""
        return self.ctx.store.notices(after_id)

    # -- the block list ------------------------------------------------------------------------
    def block(self, username: str) -> None:
        """Block an account: nothing more is sent to it, and what it sends is dropped unread
        and acknowledged as refused (so the server does not make it a contact). Kept on this
        device; the server is not told."""
        if username == self.ctx.username:
            raise StateError("an account cannot block itself")
        self.ctx.store.block(username, self.ctx.clock())

    def unblock(self, username: str) -> None:
        self.ctx.store.unblock(username)

    def blocked(self) -> list[str]:
        return self.ctx.store.blocked()
