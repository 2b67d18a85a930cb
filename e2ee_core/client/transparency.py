"""Key transparency on the client (issue #16): nothing the server says about keys is used
unless the directory proves it.

* **Bundles and device lists**: each response carries an AKD lookup proof of the account's
  device list (:mod:`e2ee_core.server.kt_wire`). The proof is verified against the epoch's
  root hash with the directory's VRF key; every bundle's identity key (and every listed device)
  must be the one the proven list holds for that device id. Else :class:`KeyNotInDirectory`,
  with a ``kt_key_mismatch`` or ``kt_proof_failed`` notice, and no session is started.
* **Epoch pinning**: the newest epoch seen and the root hashes of the last
  :data:`~e2ee_core.client.consts.KT_REMEMBERED_EPOCHS` epochs are kept. An older epoch is an
  :class:`EpochRollback`; another root for a remembered epoch is a :class:`ForkedView`.
* **Auditor** (optional, :meth:`Transparency.require_auditor`): every epoch accepted from then
  on must carry a trusted auditor's signature over the same root
  (:mod:`e2ee_core.keytrans.auditor`, plexi's format). A root the auditor signed differently
  for that epoch is a :class:`ForkedView` (the server shows others another view); an epoch not
  audited yet, or an answer that does not verify, is :class:`EpochNotAudited`.
* **VRF key**: trusted on first use from ``GET /v1/kt/head`` and stored; a different key later
  is :class:`DirectoryKeyChanged`.
* **Monitoring** (:meth:`Transparency.monitor`): the complete history of this account's own
  device list is verified; a device that appears in it without this device having heard of it
  (no ``device_added`` notice, not a device it knows) gets a ``kt_unknown_device`` notice, and a
  known device id published with another key (this device's own included) ``kt_key_changed``.
  The server cannot show others a device of this account without publishing it, and what it
  publishes stays in the history. The first check after enrolment sets the baseline (trust on
  first use of the history), apart from this device's own key. A head that has not moved for
  :data:`~e2ee_core.client.consts.KT_STALE_AFTER_MS` gets a ``kt_stale`` notice: the server
  publishes an epoch on a timer even when nothing changes, so a frozen head is a stale view.

Notices use the account concerned and a device id (0 for the directory itself).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from e2ee_core.client import consts
from e2ee_core.client.errors import (
    DirectoryKeyChanged,
    EpochNotAudited,
    EpochRollback,
    ForkedView,
    KeyNotInDirectory,
    TransparencyError,
)
from e2ee_core.client.store import ClientStore, Notice
from e2ee_core.keytrans import plexi
from e2ee_core.keytrans.auditor import AuditorClient
from e2ee_core.keytrans.errors import AuditorSignatureError, KeyTransparencyError, LogUnavailable
from e2ee_core.keytrans.history import HistoryParams, key_history_verify
from e2ee_core.keytrans.lookup import lookup_verify
from e2ee_core.server.client import ServerClient
from e2ee_core.server.kt_wire import KtEpoch, KtLookup, decode_device_list, device_list_label
from e2ee_core.server.wire import DeviceInfo, PreKeyBundle

log = logging.getLogger("e2ee_core.client")

_VRF_KEY = "kt_vrf_public_key"
_PINNED = "kt_pinned_epoch"  # JSON [epoch, root hex]
_ROOTS = "kt_roots"  # JSON {epoch: root hex}, the newest KT_REMEMBERED_EPOCHS
_OWN_VERSION = "kt_own_version"  # the newest version of the own device list checked
_MONITORED_AT = "kt_monitored_at_ms"
_MONITORED_NOTICE = "kt_monitored_notice"  # the newest notice id when last monitored
_PINNED_AT = "kt_pinned_at_ms"  # when the pinned epoch was first seen (this device's clock)
_STALE_EPOCH = "kt_stale_epoch"  # the pinned epoch a kt_stale notice was given for
_AUDITOR = "kt_auditor"  # JSON {"url", "namespace", "keys": [hex]}: require its signatures

#: Notices about our own account's devices that make the next receive check the history.
_DEVICE_NOTICES = frozenset({"device_added", "device_removed", "identity_changed"})


def _call_directly(request: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    return request(*args, **kwargs)


class Transparency:
    """Verifies the key-transparency proofs one device receives (one per device)."""

    def __init__(self, store: ClientStore, server: ServerClient, *, clock: Callable[[], int],
                 username: str, device_id: int, identity_key: bytes,
                 call: Callable[..., Any] = _call_directly) -> None:
        self.store = store
        self.server = server
        self.clock = clock
        self.username = username
        self.device_id = device_id
        self.identity_key = identity_key
        self._call = call

    # -- failures ------------------------------------------------------------------------------
    def _refuse(self, error: TransparencyError, kind: str, username: str,
                device_id: int = 0) -> NoReturn:
        self.store.add_notice(self.clock(), kind, username, device_id)
        log.warning("client.transparency.refused kind=%s", kind)
        raise error

    # -- the directory key and epochs ----------------------------------------------------------
    def vrf_public_key(self) -> bytes:
        """The directory's VRF key (fetched and pinned on first use)."""
        stored = self.store.get_meta(_VRF_KEY)
        if stored is not None:
            return bytes.fromhex(stored)
        head = self._call(self.server.kt_head)
        # Only the key: the head may be newer than the answer being checked (fetched before
        # it), which must not then look like a rollback. Epochs are pinned from proofs.
        self.store.set_meta(_VRF_KEY, head.vrf_public_key.hex())
        return bytes(head.vrf_public_key)

    def _check_vrf_key(self, key: bytes) -> None:
        if not hmac.compare_digest(self.vrf_public_key(), key):
            self._refuse(DirectoryKeyChanged("the directory's VRF key changed"),
                         "kt_directory_key_changed", self.username)

    def pinned(self) -> tuple[int, bytes] | None:
        """The newest epoch seen and its root hash."""
        raw = self.store.get_meta(_PINNED)
        if raw is None:
            return None
        epoch, root = json.loads(raw)
        return int(epoch), bytes.fromhex(root)

    def _roots(self) -> dict[int, bytes]:
        raw = self.store.get_meta(_ROOTS)
        return {} if raw is None else {int(e): bytes.fromhex(r) for e, r in
                                        json.loads(raw).items()}

    def accept_epoch(self, epoch: int, root_hash: bytes) -> None:
        """Pin ``epoch``: refuse a rollback or a second root for a remembered epoch."""
        roots = self._roots()
        known = roots.get(epoch)
        if known is not None and not hmac.compare_digest(known, root_hash):
            self._refuse(ForkedView("the server showed another root hash for an epoch"),
                         "kt_forked_view", self.username)
        pinned = self.pinned()
        if pinned is not None and epoch < pinned[0]:
            self._refuse(EpochRollback("the server answered from an older epoch"),
                         "kt_rollback", self.username)
        if known is not None:
            return
        self._require_audited(epoch, root_hash)
        roots[epoch] = root_hash
        newest = sorted(roots)[-consts.KT_REMEMBERED_EPOCHS:]
        with self.store.atomic():
            self.store.set_meta(_ROOTS, json.dumps({str(e): roots[e].hex() for e in newest}))
            if pinned is None or epoch > pinned[0]:
                self.store.set_meta(_PINNED, json.dumps([epoch, root_hash.hex()]))
                self.store.set_meta(_PINNED_AT, str(self.clock()))

    # -- the auditor ---------------------------------------------------------------------------
    def require_auditor(self, url: str, namespace: str, keys: Iterable[bytes]) -> None:
        """From now on accept only epochs that the auditor at ``url`` signed for ``namespace``
        with one of ``keys`` (Ed25519 public keys, 32 bytes)."""
        keys = list(keys)
        if not keys or any(len(k) != 32 for k in keys):
            raise ValueError("auditor keys are 32-byte Ed25519 public keys")
        self.store.set_meta(_AUDITOR, json.dumps(
            {"url": url, "namespace": namespace, "keys": [k.hex() for k in keys]}))

    def auditor(self) -> tuple[AuditorClient, str] | None:
        """The required auditor and the log's namespace, if one is configured."""
        raw = self.store.get_meta(_AUDITOR)
        if raw is None:
            return None
        config = json.loads(raw)
        client = AuditorClient(config["url"], [bytes.fromhex(k) for k in config["keys"]],
                               session=getattr(self.server, "_session", None))
        return client, str(config["namespace"])

    def _require_audited(self, epoch: int, root_hash: bytes) -> None:
        required = self.auditor()
        if required is None:
            return
        client, namespace = required
        try:
            response = self._call(client.signature, namespace, epoch)
        except (LogUnavailable, AuditorSignatureError):
            self._refuse(EpochNotAudited("no auditor signature for this epoch (yet)"),
                         "kt_not_audited", self.username)
        if response.message.namespace == namespace and response.epoch == epoch \
                and not hmac.compare_digest(response.digest, root_hash):
            try:  # a genuine signature over another root: the server forked its view
                response.verify_any(client.auditor_keys)
            except AuditorSignatureError:
                pass
            else:
                self._refuse(ForkedView("the auditor signed another root for this epoch"),
                             "kt_forked_view", self.username)
        try:
            plexi.require_auditor_signature(response, client.auditor_keys, namespace, epoch,
                                            root_hash)
        except AuditorSignatureError:
            self._refuse(EpochNotAudited("the auditor's signature does not verify"),
                         "kt_not_audited", self.username)

    # -- lookups -------------------------------------------------------------------------------
    def proven_devices(self, username: str, lookup: KtLookup | None) -> dict[int, bytes]:
        """``username``'s device list as the lookup proof shows it (verified, epoch pinned)."""
        if lookup is None:
            self._refuse(KeyNotInDirectory("the server sent no key-transparency proof",
                                           username), "kt_proof_failed", username)
        try:
            result = lookup_verify(self.vrf_public_key(), lookup.root_hash, lookup.epoch,
                                   device_list_label(username), lookup.proof)
            devices = decode_device_list(result.value)
        except KeyTransparencyError:
            self._refuse(KeyNotInDirectory("the key-transparency proof does not verify",
                                           username), "kt_proof_failed", username)
        self.accept_epoch(lookup.epoch, lookup.root_hash)
        return devices

    def _check_keys(self, username: str, proven: dict[int, bytes],
                    shown: Iterable[tuple[str, int, bytes]]) -> None:
        for user, device_id, key in shown:
            expected = proven.get(device_id)
            if user != username or expected is None or not hmac.compare_digest(expected, key):
                self._refuse(KeyNotInDirectory("a key is not the one the directory holds",
                                               username), "kt_key_mismatch", username,
                             device_id)

    def check_bundles(self, username: str, bundles: list[PreKeyBundle],
                      lookup: KtLookup | None) -> list[PreKeyBundle]:
        """``bundles`` once each identity key is the one published for its device."""
        proven = self.proven_devices(username, lookup)
        self._check_keys(username, proven,
                         ((b.username, b.device_id, b.identity_key) for b in bundles))
        return bundles

    def check_device_list(self, username: str, devices: list[DeviceInfo],
                          lookup: KtLookup | None) -> dict[int, bytes]:
        """The proven device list, once every listed device is in it with its key."""
        proven = self.proven_devices(username, lookup)
        self._check_keys(username, proven,
                         ((username, d.device_id, d.identity_key) for d in devices))
        return proven

    # -- monitoring ----------------------------------------------------------------------------
    def monitor_due(self) -> bool:
        """A receive should check the history: never checked, the interval passed, or a
        device notice about this account arrived since the last check."""
        at = self.store.get_meta(_MONITORED_AT)
        if at is None or self.clock() - int(at) >= consts.KT_MONITOR_INTERVAL_MS:
            return True
        after = int(self.store.get_meta(_MONITORED_NOTICE) or 0)
        return any(n.kind in _DEVICE_NOTICES and n.username == self.username
                   for n in self.store.notices(after))

    def monitor(self) -> list[Notice]:
        """Verify this account's device-list history; return the notices it raised."""
        before = self._last_notice_id()
        head = self._call(self.server.kt_head)
        self._check_vrf_key(head.vrf_public_key)
        pinned = self.pinned()
        if pinned is not None and pinned[0] <= head.epoch:
            # the server's record of the epoch we pinned must not have changed
            record = self._call(self.server.kt_epoch, pinned[0])
            if not hmac.compare_digest(record.root_hash, pinned[1]):
                self._refuse(ForkedView("the server now shows another root for an epoch"),
                             "kt_forked_view", self.username)
        self.accept_epoch(head.epoch, head.root_hash)
        self._check_fresh(head.epoch)
        checked = self.store.get_meta(_OWN_VERSION)
        record, lists = self._history(None if checked is None else int(checked))
        self.accept_epoch(record.epoch, record.root_hash)
        with self.store.atomic():
            if checked is None:  # the baseline: only our own key is checked
                self._check_new_devices(lists[-1][1], {})
            else:
                previous: dict[int, bytes] = {}
                for version, devices in lists:
                    if version > int(checked):
                        self._check_new_devices(devices, previous)
                    previous = devices
            self.store.set_meta(_OWN_VERSION, str(lists[-1][0]))
            self.store.set_meta(_MONITORED_AT, str(self.clock()))
            notices = self.store.notices(before)
            self.store.set_meta(_MONITORED_NOTICE, str(notices[-1].id if notices else before))
        return [n for n in notices if n.kind.startswith("kt_")]

    def _history(self, checked: int | None) -> tuple[KtEpoch, list[tuple[int, dict[int, bytes]]]]:
        """The verified versions of this account's device list, oldest first: the newest only
        for the baseline, else back to the version ``checked`` (whose list the newer ones are
        compared with). The most recent versions are asked for, more while they do not reach
        back that far (KT_HISTORY_PAGE, then four times as many, up to the complete history)."""
        want: int | None = 1 if checked is None else consts.KT_HISTORY_PAGE
        while True:
            record, proof = self._call(self.server.kt_history, self.username, want)
            try:
                versions = key_history_verify(
                    self.vrf_public_key(), record.root_hash, record.epoch,
                    device_list_label(self.username), proof,
                    params=None if want is None else HistoryParams.most_recent_n(want))
                lists = [(v.version, decode_device_list(v.value)) for v in reversed(versions)]
            except KeyTransparencyError:
                self._refuse(KeyNotInDirectory("the device-list history does not verify",
                                               self.username), "kt_proof_failed",
                             self.username)
            if want is None or checked is None or lists[0][0] <= max(checked, 1):
                return record, lists
            want = want * 4 if want * 4 <= consts.KT_MAX_HISTORY_VERSIONS else None

    def _check_fresh(self, epoch: int) -> None:
        """A ``kt_stale`` notice (once per epoch) when the head has not moved for
        KT_STALE_AFTER_MS: the server keeps this device on an old view, or stopped
        publishing (epochs advance on a timer even when nothing changes)."""
        since = self.store.get_meta(_PINNED_AT)
        if since is None or self.clock() - int(since) < consts.KT_STALE_AFTER_MS:
            return
        if self.store.get_meta(_STALE_EPOCH) == str(epoch):
            return
        with self.store.atomic():
            self.store.set_meta(_STALE_EPOCH, str(epoch))
            self.store.add_notice(self.clock(), "kt_stale", self.username, 0)
        log.warning("client.transparency.stale")

    def _last_notice_id(self) -> int:
        marker = int(self.store.get_meta(_MONITORED_NOTICE) or 0)
        notices = self.store.notices(marker)
        return notices[-1].id if notices else marker

    def _check_new_devices(self, devices: dict[int, bytes], previous: dict[int, bytes]) -> None:
        known = self.store.known_devices(self.username)
        for device_id, key in sorted(devices.items()):
            if previous.get(device_id) == key:
                continue
            if device_id == self.device_id:
                expected: bytes | None = self.identity_key
            else:
                expected = known.get(device_id)
            if expected is not None:
                if not hmac.compare_digest(expected, key) and not self.store.has_notice(
                        "kt_key_changed", self.username, device_id):
                    self.store.add_notice(self.clock(), "kt_key_changed", self.username,
                                          device_id)
                    log.warning("client.transparency.key_changed")
                continue
            if any(self.store.has_notice(kind, self.username, device_id) for kind in
                   ("device_added", "device_removed", "kt_unknown_device")):
                continue
            self.store.add_notice(self.clock(), "kt_unknown_device", self.username, device_id)
            log.warning("client.transparency.unknown_device")
