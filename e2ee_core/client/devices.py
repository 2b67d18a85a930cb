"""Device sets: which devices each account has, as this device last accepted them.

First contact is trust on first use (no notice); afterwards every difference the server shows
(a new device, a removed one, a device id with a new identity key) becomes a
:class:`~e2ee_core.client.store.Notice`, and a verified contact with a change is blocked for
sending until the user re-verifies or accepts (:mod:`.verification`). Pairwise sessions are
started here from fetched prekey bundles. Groups hear of device changes through
:class:`DeviceEvents` (new devices get the group state, removed ones trigger a re-key).
"""

from __future__ import annotations

import logging
from typing import Protocol

from e2ee_core.client.context import Address, DeviceContext
from e2ee_core.client.errors import ContactChanged
from e2ee_core.client.transparency import Transparency
from e2ee_core.device import PreKeyBundle as SessionBundle
from e2ee_core.errors import UntrustedIdentity
from e2ee_core.server.errors import NotFound
from e2ee_core.server.wire import Envelope, PreKeyBundle

log = logging.getLogger("e2ee_core.client")


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


class DeviceEvents(Protocol):
    """What groups must hear about device changes (see :mod:`.group_chats`)."""

    def member_devices_changed(self, user: str) -> None:
        """``user`` has a new device (or was unblocked): send it the current group state."""

    def device_gone(self, user: str, device_id: int) -> None:
        """A device of ``user`` is gone: re-key the groups it was in (inside a transaction)."""


class DeviceSets:
    """The accepted device set of every account this device talks to, and the sessions."""

    def __init__(self, ctx: DeviceContext) -> None:
        self.ctx = ctx
        self.events: DeviceEvents | None = None
        # Sessions known to exist (not re-checked on each send; see Fanout).
        self.live_sessions: set[Address] = set()
        # Accounts first heard of in the current receive batch: their device lists are
        # fetched once the batch is done.
        self.first_contacts: set[str] = set()
        # Key transparency: every fetched bundle and device list is checked against the
        # directory before it is used (e2ee_core.client.transparency).
        self.kt = Transparency(ctx.store, ctx.server, clock=ctx.clock, username=ctx.username,
                               device_id=ctx.device_id, identity_key=ctx.device.identity_key,
                               call=ctx.call)

    def fetch_bundles(self, username: str, device_id: int | None = None) -> list[PreKeyBundle]:
        """Bundles of ``username`` (or one device) whose keys the directory proves."""
        bundles, lookup = self.ctx.call(self.ctx.server.fetch_bundles_proved, username,
                                        device_id)
        return self.kt.check_bundles(username, bundles, lookup)

    # -- sessions ------------------------------------------------------------------------------
    def ensure_known(self, username: str) -> None:
        """First contact: learn the account's devices (trust on first use, no notice)."""
        if self.ctx.store.knows_account(username):
            return
        for bundle in self.fetch_bundles(username):
            self.start_session(bundle, announce=False)

    def ensure_sessions(self, targets: list[Address]) -> None:
        """A session with every target, from fetched bundles where one is missing."""
        store = self.ctx.store
        missing = [a for a in targets if not self.ctx.device.has_session(a)]
        by_user: dict[str, list[int]] = {}
        for user, device_id in missing:
            by_user.setdefault(user, []).append(device_id)
        for user, ids in by_user.items():
            known = store.known_devices(user)
            if len(ids) > 1 and set(ids) == set(known):
                bundles = self.fetch_bundles(user)
            else:
                bundles = []
                for device_id in ids:
                    try:
                        bundles += self.fetch_bundles(user, device_id)
                    except NotFound:
                        self.device_gone(user, device_id)
            for bundle in bundles:
                self.start_session(bundle, announce=bundle.device_id not in known)

    def start_session(self, bundle: PreKeyBundle, *, announce: bool) -> None:
        address = (bundle.username, bundle.device_id)
        store, device = self.ctx.store, self.ctx.device
        known = store.known_devices(bundle.username).get(bundle.device_id)
        with store.atomic():
            if known is not None and known != bundle.identity_key:
                self.identity_changed(address, bundle.identity_key)
            try:
                device.start_session(address, session_bundle(bundle))
            except UntrustedIdentity:
                self.identity_changed(address, bundle.identity_key)
                device.start_session(address, session_bundle(bundle))
            store.put_device(bundle.username, bundle.device_id, bundle.identity_key)
            if announce:
                self.device_added(bundle.username, bundle.device_id)

    # -- changes -------------------------------------------------------------------------------
    def identity_changed(self, address: Address, identity_key: bytes) -> None:
        """A device id shows a new identity key: notice; verified contacts become blocked.
        The key is trusted so messages still flow in; sending to a verified contact stays
        refused until the user re-verifies or accepts."""
        user, device_id = address
        store = self.ctx.store
        store.add_notice(self.ctx.clock(), "identity_changed", user, device_id)
        if user != self.ctx.username:
            store.mark_changed(user)
        self.ctx.device.trust_identity(address, identity_key)
        self.live_sessions.discard(address)
        store.put_device(user, device_id, identity_key)
        log.warning("client.identity.changed")

    def device_added(self, user: str, device_id: int) -> None:
        self.ctx.store.add_notice(self.ctx.clock(), "device_added", user, device_id)
        if user != self.ctx.username:
            self.ctx.store.mark_changed(user)
        if self.events is not None:
            self.events.member_devices_changed(user)

    def device_gone(self, user: str, device_id: int) -> None:
        """A device was removed from ``user``: forget it, tell the user, re-key groups."""
        store = self.ctx.store
        if device_id not in store.known_devices(user):
            return
        with store.atomic():
            self.ctx.device.delete_session((user, device_id))
            self.live_sessions.discard((user, device_id))
            store.drop_device(user, device_id)
            store.add_notice(self.ctx.clock(), "device_removed", user, device_id)
            if user != self.ctx.username:
                store.mark_changed(user)
            if self.events is not None and (user, device_id) != self.ctx.address:
                self.events.device_gone(user, device_id)

    def reconcile(self, missing: list[Address], extra: list[Address]) -> None:
        """Apply a 409 answer: drop the extra devices, start sessions with the missing ones."""
        for user, device_id in extra:
            self.device_gone(user, device_id)
        for user, device_id in missing:
            try:
                bundles = self.fetch_bundles(user, device_id)
            except NotFound:
                continue  # removed again meanwhile: the next round's 409 says so
            for bundle in bundles:
                self.start_session(bundle, announce=True)

    def refresh(self, username: str, *, announce: bool = True) -> None:
        """Compare the server's device list of ``username`` with the accepted one; record
        notices for every difference (sessions for new devices are made when next needed)."""
        store = self.ctx.store
        listed = self.kt.check_device_list(
            username, *self.ctx.call(self.ctx.server.list_devices_proved, username))
        known = store.known_devices(username)
        announce = announce and bool(known)  # first sight of an account: trust, no notice
        for device_id in sorted(set(known) - set(listed)):
            self.device_gone(username, device_id)
        with store.atomic():
            for device_id, key in sorted(listed.items()):
                if device_id not in known:
                    store.put_device(username, device_id, key)
                    if announce:
                        self.device_added(username, device_id)
                elif known[device_id] != key:
                    self.identity_changed((username, device_id), key)

    def learn_first_contacts(self) -> None:
        """After a receive batch: the full device lists of accounts first heard of in it."""
        while self.first_contacts:
            self.refresh(self.first_contacts.pop(), announce=False)

    def note_sender_device(self, source: Address) -> None:
        """A message from a device we did not know: record it (with a notice unless the
        account itself is new to us)."""
        user, device_id = source
        store = self.ctx.store
        known = store.known_devices(user)
        if device_id in known or store.has_notice("device_removed", user, device_id):
            return  # known, or removed (ids are never reused): a late message, not a new device
        key = self.ctx.device.remote_identity(source)
        if key is None:
            return
        store.put_device(user, device_id, key)
        if known and user not in self.first_contacts:
            self.device_added(user, device_id)
        else:  # first heard of in this batch (maybe from several of its devices): no notice
            self.first_contacts.add(user)  # learn its other devices after this batch

    def handle_notice(self, envelope: Envelope) -> None:
        """The server's notice that a device was added to or removed from an account."""
        store = self.ctx.store
        user, device_id = envelope.source, envelope.source_device
        known = store.known_devices(user)
        if envelope.kind == "device_removed":
            if device_id in known:
                self.device_gone(user, device_id)
            elif known and not store.has_notice("device_removed", user, device_id):
                # added and removed before we looked: still worth telling, once
                store.add_notice(self.ctx.clock(), "device_removed", user, device_id)
        elif known:
            self.refresh(user)
            if device_id not in store.known_devices(user):
                self.device_added(user, device_id)  # already gone again
        store.mark_envelope(envelope.id)

    def check_sendable(self, username: str) -> None:
        """Refuse to send to a verified contact whose devices changed since."""
        state = self.ctx.store.contact(username)
        if state.verified and state.changed:
            raise ContactChanged(username)
