"""Enrolment and keys: a new account (device 1), a linked device, a saved device resumed,
and the prekeys the server hands out for this device kept topped up and rotated."""

from __future__ import annotations

import logging
from pathlib import Path

import requests

from e2ee_core.client import consts
from e2ee_core.client.context import DeviceContext
from e2ee_core.client.errors import StateError
from e2ee_core.client.store import ClientStore
from e2ee_core.client.transparency import Transparency
from e2ee_core.device import Device
from e2ee_core.server.client import ServerClient, credential_from_token
from e2ee_core.server.wire import DeviceKeys, PreKey, PreKeyUpload, SignedPreKey

log = logging.getLogger("e2ee_core.client")


def enrol(how: str, server_url: str, username: str, password: str, *,
          state: str | Path | None, session: requests.Session | None, prekeys: int,
          kem_prekeys: int, now_s: int) -> tuple[ClientStore, ServerClient]:
    """Create this device's keys, register (``how="register"``: a new account) or link it
    (``"link"``: another device of an existing account, with its password), and save the
    credential. Returns the store and an authenticated server client."""
    store = ClientStore(":memory:" if state is None else str(state))
    if store.get_meta("username") is not None:
        raise StateError("this state already holds a device")
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
    register = server.register if how == "register" else server.add_device
    credential = register(username, password, keys)
    with store.atomic():
        store.set_meta("server_url", server.base_url)
        store.set_meta("username", credential.username)
        store.set_meta("device_id", str(credential.device_id))
        store.set_meta("credential", credential.credential)
    # Our own account's devices as they are now: the reference for later notices. Key
    # transparency: the list is the one the directory proves (its VRF key trusted from now on),
    # and the device-list history's baseline is taken (our own key must be in it).
    kt = Transparency(store, server, clock=lambda: now_s * 1000,
                      username=credential.username, device_id=credential.device_id,
                      identity_key=device.identity_key)
    devices = kt.check_device_list(credential.username,
                                   *server.list_devices_proved(credential.username))
    for device_id, identity_key in devices.items():
        store.put_device(credential.username, device_id, identity_key)
    kt.monitor()
    log.info("client.enrolled how=%s", how)
    return store, server


def resume(state: str | Path, *,
           session: requests.Session | None) -> tuple[ClientStore, ServerClient]:
    """The device saved in ``state`` and its server client."""
    if not Path(state).exists():
        raise StateError("no saved state at this path")
    store = ClientStore(str(state))
    credential = credential_from_token(store.require_meta("credential"))
    return store, ServerClient(store.require_meta("server_url"), credential, session=session)


class Prekeys:
    """Keeps this device's one-time, signed and last-resort prekeys on the server."""

    def __init__(self, ctx: DeviceContext) -> None:
        self.ctx = ctx

    def maintain(self, *, threshold: int = consts.PREKEY_REFILL_THRESHOLD,
                 batch: int = consts.PREKEY_BATCH,
                 kem_batch: int = consts.KEM_PREKEY_BATCH) -> bool:
        """Refill one-time EC and KEM prekeys below ``threshold``, rotate the signed prekey and
        the last-resort KEM prekey when due (every 2 days, by the context's clock), upload
        what changed. Returns True when something was uploaded."""
        device, server = self.ctx.device, self.ctx.server
        now_s = self.ctx.clock() // 1000
        count = self.ctx.call(server.prekey_count)
        one_time = device.refill_pre_keys(count.one_time_prekeys, threshold=threshold,
                                          batch=batch)
        kem = (device.generate_kyber_pre_keys(kem_batch, now=now_s)
               if count.kem_prekeys < threshold else [])
        rotated = device.rotate_signed_pre_key(now=now_s)
        last_resort = device.ensure_last_resort_kyber_pre_key(now=now_s)
        if not (one_time or kem or rotated or last_resort):
            return False
        signed = device.current_signed_pre_key()
        lr = device.last_resort_kyber_pre_key()
        upload = PreKeyUpload(
            tuple(PreKey(i, k) for i, k in one_time),
            tuple(SignedPreKey(i, k, s) for i, k, s in kem),
            SignedPreKey(signed.id, signed.key_pair.public.serialize(), signed.signature)
            if rotated else None,
            SignedPreKey(lr.id, lr.key_pair.public.serialize(), lr.signature)
            if last_resort else None)
        self.ctx.call(server.upload_prekeys, upload)
        log.info("client.prekeys.uploaded one_time=%d kem=%d rotated=%d", len(one_time),
                 len(kem), int(rotated or last_resort))
        return True
