"""Recovery codes for the history mailbox (issue #15), for
:class:`~e2ee_core.client.history.History`: a code creates a virtual device (its bundle, member
keys, membership MAC and ORF share on the server; nothing of the code is kept), and
:meth:`HistoryRecovery.restore` reads a typed code (up to three wrong characters corrected),
opens the bundle, walks and verifies the whole epoch chain and joins the newest epoch.
"""

from __future__ import annotations

import logging

from e2ee_core.client.context import DeviceContext
from e2ee_core.client.errors import HistoryUnavailable
from e2ee_core.client.history_epochs import HistoryEpochs
from e2ee_core.labyrinth import orf, primitives
from e2ee_core.labyrinth import virtual_devices as vd
from e2ee_core.labyrinth.consts import SIGNATURE_USE_EPOCH_STORAGE_AUTH_KEY
from e2ee_core.labyrinth.recovery_codes import RecoveryCode, correct
from e2ee_core.server.errors import ServerError
from e2ee_core.server.labyrinth_client import LabyrinthClient
from e2ee_core.server.labyrinth_wire import MemberKeys

log = logging.getLogger("e2ee_core.client")


class HistoryRecovery:
    """Creating recovery codes and restoring from one."""

    def __init__(self, ctx: DeviceContext, lab: LabyrinthClient, epochs: HistoryEpochs) -> None:
        self.ctx = ctx
        self.lab = lab
        self.epochs = epochs

    def create_recovery_code(self) -> str:
        """A new recovery code for this account (shown once; nothing of it is kept)."""
        current = self.epochs.catch_up()
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
            self.ctx.call(self.lab.orf_evolve, self.epochs.me, member, created.orf_token.value)
        log.info("client.history.recovery_code_created")
        return code.formatted()

    def restore(self, typed_code: str) -> int:
        """Join the mailbox with a recovery code (up to three wrong characters corrected);
        returns how many epochs this device can now read. Its epochs and ORF state change
        only on success (its Labyrinth keys are made and published first)."""
        self.epochs.publish_keys()
        try:
            registered = set(self.ctx.call(self.lab.vdevice_ids))
            code = correct(typed_code, self.ctx.username, registered.__contains__)
            secrets = code.derive(self.ctx.username)
            bundle = vd.VirtualDeviceBundle.decode(
                self.ctx.call(self.lab.vdevice, secrets.vdevice_id).bundle)
            state = vd.open_bundle(secrets, bundle)
            member = "v" + secrets.vdevice_id.hex()
            known = self.epochs.verified(state.epoch, state.head_hash, self.epochs.records(member),
                                   state.keys)
        except ServerError as exc:
            raise HistoryUnavailable(f"restoring failed: {type(exc).__name__}") from None
        keys, _ = self.epochs.keys()
        newest = known[-1].epoch
        addition = vd.add_device(state, newest, keys.device_pub)
        self.ctx.call(self.lab.put_membership_mac, addition.membership_mac)
        self.ctx.call(self.lab.orf_evolve, member, self.epochs.me, addition.orf_token.value)
        with self.ctx.store.atomic():
            self.epochs.remember(known)
            self.ctx.store.labyrinth_set("orf_state", addition.orf_state.value)
        log.info("client.history.restored epochs=%d", len(known))
        return len(known)
