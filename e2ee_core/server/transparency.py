"""Key transparency in the delivery server (issue #16): every device change is published into a
key-transparency directory (:mod:`e2ee_core.keytrans`, AKD's WhatsApp v1 format), and the
directory's proofs are served.

* **What is published**: one label per account, its device list (:mod:`.kt_wire`).
* **Outbox**: a device change writes the account's name into ``kt_pending`` in the same
  transaction as the change (:class:`~e2ee_core.server.store.SqlStore`); the in-memory store's
  changes are noted here after they happen (one process, nothing survives a restart anyway).
* **Group commit**: a request that changed devices returns only once its change is in a
  published epoch. One publishing round runs at a time per process; requests arriving during a
  round wait for the next, which publishes all of them as one epoch. Several processes (workers
  on PostgreSQL) publish from the same tables: the SQL directory refuses the second publisher
  of an epoch, which reloads and tries again (its change is often already published by then).
* **Timer**: an epoch is published every ``kt_epoch_seconds`` even when nothing changed, unless
  another process already advanced the epoch in that time.
* **VRF key**: 32 random bytes made at first start, kept in the ``kt_keys`` table (never logged,
  never in an error). The commitment key is derived from it (AKD's default).
* **Endpoints** (:func:`install_transparency` registers them): ``GET /v1/kt/head``,
  ``/v1/kt/epochs/<n>``, ``/v1/kt/append-only?start=&end=`` (no credential: auditors use them),
  and ``/v1/kt/history/<username>[?most_recent=n]`` (a device credential, like device
  lists). Bundle and
  device-list responses get a ``transparency`` member (:func:`lookup_stamp`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from flask import Blueprint, Flask, Response, request

from e2ee_core.keytrans.directory import Directory
from e2ee_core.keytrans.errors import DirectoryError, InvalidUpdate, UnknownLabel
from e2ee_core.keytrans.history import HistoryParams
from e2ee_core.keytrans.sql_storage import SqlDirectoryStorage
from e2ee_core.keytrans.storage import DirectoryStorage, EpochHead, MemoryDirectoryStorage
from e2ee_core.server import consts
from e2ee_core.server.errors import InvalidRequest, NotFound, ServerError
from e2ee_core.server.kt_wire import (
    KtEpoch,
    KtHead,
    KtLookup,
    decode_device_list,
    device_list_label,
    encode_device_list,
)
from e2ee_core.server.store import Store
from e2ee_core.server.wire import bearer_credential, decode_username
from service_kit.database import Database

if TYPE_CHECKING:
    from e2ee_core.server.service import DeliveryService

log = logging.getLogger("e2ee_core.server")

PROTOBUF = "application/x-protobuf"
KT_SCHEMA = "CREATE TABLE IF NOT EXISTS kt_keys (name TEXT PRIMARY KEY, value {blob} NOT NULL)"
_VRF_KEY_NAME = "vrf_secret_key"
_EPOCH_RE = re.compile(r"[0-9]{1,18}")


class PublishFailed(ServerError):
    """The directory could not publish an epoch (lost the race too many times in a row)."""

    status = 503
    slug = "transparency-unavailable"
    title = "Key transparency is unavailable"


# -- the outbox ----------------------------------------------------------------------------------
class Outbox(Protocol):
    """Accounts whose device lists changed and are not published yet."""

    def changed(self, username: str) -> None:
        """Called after a device change of ``username`` was stored."""

    def note(self, username: str) -> None:
        """Queue ``username`` (an account published before key transparency existed)."""

    def take(self, limit: int) -> list[tuple[int, str]]:
        """Up to ``limit`` pending (id, username), oldest first (nothing is removed)."""
        ...

    def done(self, ids: list[int]) -> None:
        """Forget the given pending rows (their accounts are published)."""

    def has_pending(self, username: str) -> bool:
        ...


class SqlOutbox:
    """The ``kt_pending`` table that :class:`~e2ee_core.server.store.SqlStore` fills in the
    transaction of each device change."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def changed(self, username: str) -> None:
        """Nothing to do: the store wrote the row with the change."""

    def note(self, username: str) -> None:
        self._db.execute("INSERT INTO kt_pending (username) VALUES (?)", (username,))

    def take(self, limit: int) -> list[tuple[int, str]]:
        rows = self._db.fetchall("SELECT id, username FROM kt_pending ORDER BY id LIMIT ?",
                                 (limit,))
        return [(int(r[0]), str(r[1])) for r in rows]

    def done(self, ids: list[int]) -> None:
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            self._db.execute(f"DELETE FROM kt_pending WHERE id IN ({','.join('?' * len(chunk))})",
                             tuple(chunk))

    def has_pending(self, username: str) -> bool:
        return self._db.fetchone("SELECT 1 FROM kt_pending WHERE username = ? LIMIT 1",
                                 (username,)) is not None


class MemoryOutbox:
    """The outbox of the in-memory store (one process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[int, str] = {}
        self._next = 1

    def changed(self, username: str) -> None:
        self.note(username)

    def note(self, username: str) -> None:
        with self._lock:
            self._rows[self._next] = username
            self._next += 1

    def take(self, limit: int) -> list[tuple[int, str]]:
        with self._lock:
            return sorted(self._rows.items())[:limit]

    def done(self, ids: list[int]) -> None:
        with self._lock:
            for i in ids:
                self._rows.pop(i, None)

    def has_pending(self, username: str) -> bool:
        with self._lock:
            return username in self._rows.values()


def load_vrf_secret_key(db: Database) -> bytes:
    """The directory's VRF secret key, made on first use (racing processes agree on one)."""
    db.create_schema(KT_SCHEMA)
    db.execute("INSERT INTO kt_keys (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
               (_VRF_KEY_NAME, secrets.token_bytes(32)))
    row = db.fetchone("SELECT value FROM kt_keys WHERE name = ?", (_VRF_KEY_NAME,))
    return bytes(row[0])


# -- the publisher -------------------------------------------------------------------------------
class KeyTransparency:
    """The server's directory, its outbox and the publisher (one per process)."""

    def __init__(self, store: Store, *, db: Database | None,
                 epoch_seconds: float = consts.DEFAULT_KT_EPOCH_SECONDS,
                 max_updates_per_epoch: int = consts.KT_MAX_UPDATES_PER_EPOCH) -> None:
        self._store = store
        storage: DirectoryStorage
        self._outbox: Outbox
        self._lock: AbstractContextManager[Any]
        if db is None:
            storage, self._outbox = MemoryDirectoryStorage(), MemoryOutbox()
            secret = secrets.token_bytes(32)
            # the memory storage is for one thread: publishes and proofs take turns
            self._lock = threading.RLock()
        else:
            storage, self._outbox = SqlDirectoryStorage(db), SqlOutbox(db)
            secret = load_vrf_secret_key(db)
            self._lock = contextlib.nullcontext()
        self._storage = storage
        self.directory = Directory(storage, secret)
        del secret
        self.vrf_public_key = self.directory.vrf_public_key
        self.epoch_seconds = epoch_seconds
        self.max_updates = max_updates_per_epoch
        self._cond = threading.Condition()
        self._running = False
        self._started = 0
        self._finished = 0
        self._force = False
        self._epoch_at_tick = self.head().epoch
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        self._cache_lock = threading.Lock()
        self._proofs: OrderedDict[tuple[bytes, int], KtLookup] = OrderedDict()

    # -- publishing ------------------------------------------------------------------------
    def changed(self, username: str) -> None:
        """A device change of ``username`` was stored: return once it is published."""
        self._outbox.changed(username)
        self.publish_pending()

    def publish_pending(self, *, force: bool = False) -> None:
        """Return once everything pending when called is in a published epoch (``force``:
        publish an epoch even when nothing is pending)."""
        with self._cond:
            if force:
                self._force = True
            need = self._started + 1  # a round that starts after this call
            while self._finished < need:
                if not self._running:
                    self._running = True
                    self._started += 1
                    mine, force_round = self._started, self._force
                    self._force = False
                    break
                self._cond.wait()
            else:
                return
        ok = False
        try:
            self._round(force_round)
            ok = True
        finally:
            with self._cond:
                self._running = False
                if ok:
                    self._finished = mine
                elif force_round:
                    self._force = True
                self._cond.notify_all()

    def _round(self, force: bool) -> None:
        while True:
            rows = self._outbox.take(self.max_updates)
            self._publish(rows, force)
            self._outbox.done([i for i, _ in rows])
            force = False
            if len(rows) < self.max_updates:
                return

    def _publish(self, rows: list[tuple[int, str]], force: bool) -> EpochHead | None:
        for _attempt in range(consts.KT_PUBLISH_ATTEMPTS):
            updates: dict[bytes, bytes] = {}
            for username in sorted({u for _, u in rows}):
                try:
                    devices = self._store.list_devices(username)
                except NotFound:
                    continue
                value = encode_device_list({d.device_id: d.identity_key for d in devices})
                label = device_list_label(username)
                states = self._storage.get_states(label)
                if not states or states[-1].value != value:
                    updates[label] = value
            if not updates and not force:
                return None
            before = self.head().epoch
            try:
                with self._lock:
                    head = self.directory.publish(updates)
            except DirectoryError as exc:
                # Another process published this epoch first: its commit is refused, or (read
                # half before and half after the other's commit) the tree looked inconsistent.
                if isinstance(exc, InvalidUpdate) and self.head().epoch == before:
                    raise
                log.info("event=kt_publish_raced")
                continue  # reload and retry
            log.info("event=kt_epoch_published epoch=%d updates=%d", head.epoch, len(updates))
            return head
        raise PublishFailed()

    def tick(self) -> None:
        """The timer: publish what is pending, and an empty epoch when no epoch was published
        (by any process) since the previous tick."""
        current = self.head().epoch
        self.publish_pending(force=current == self._epoch_at_tick)
        self._epoch_at_tick = self.head().epoch

    def start_timer(self) -> None:
        """Tick every ``epoch_seconds`` on a daemon thread, until :meth:`close` or until this
        object is collected (once; later calls do nothing)."""
        with self._cond:
            if self._timer is not None:
                return
            self._timer = threading.Thread(target=self._timer_loop(), name="e2ee-kt-epochs",
                                           daemon=True)
        self._timer.start()

    def _timer_loop(self) -> Callable[[], None]:
        ref = weakref.ref(self)
        stop, interval = self._stop, self.epoch_seconds
        weakref.finalize(self, stop.set)

        def loop() -> None:
            while not stop.wait(interval):
                kt = ref()
                if kt is None:
                    return
                try:
                    kt.tick()
                except Exception as exc:  # keep ticking; the next tick retries
                    log.warning("event=kt_tick_failed error=%s", type(exc).__name__)
                del kt

        return loop

    def close(self) -> None:
        self._stop.set()

    # -- reading -----------------------------------------------------------------------------
    def head(self) -> KtHead:
        with self._lock:
            head = self.directory.current()
        return KtHead(head.epoch, head.root_hash, self.vrf_public_key)

    def epoch(self, epoch: int) -> KtEpoch:
        with self._lock:
            latest = self.directory.current().epoch
            if epoch > latest:
                raise NotFound("no such epoch")
            try:
                return KtEpoch(epoch, self.directory.epoch_hash(epoch))
            except DirectoryError:
                raise NotFound("no such epoch") from None

    def append_only(self, start: int, end: int) -> bytes:
        if not 0 <= start < end or end - start > consts.KT_MAX_APPEND_ONLY_EPOCHS:
            raise InvalidRequest("the range must have start < end and span at most "
                                 f"{consts.KT_MAX_APPEND_ONLY_EPOCHS} epochs")
        with self._lock:
            if end > self.directory.current().epoch:
                raise InvalidRequest("the range ends after the latest epoch")
            try:
                return self.directory.append_only_proof(start, end).to_bytes()
            except DirectoryError:  # pragma: no cover - the range was checked above
                raise InvalidRequest("bad epoch range") from None

    def _ensure_listed(self, username: str) -> None:
        """Publish ``username``'s pending change, or (an account from before key
        transparency) its first device list; NotFound for an unknown account."""
        label = device_list_label(username)
        if self._outbox.has_pending(username):
            self.publish_pending()
        if not self._storage.get_states(label):
            self._store.list_devices(username)  # NotFound for an unknown account
            self._outbox.note(username)
            self.publish_pending()

    def lookup(self, username: str) -> KtLookup:
        """A lookup proof of ``username``'s device list against the latest epoch. A proof is
        fixed by the label and the epoch (the VRF proofs are deterministic and an epoch's
        tree never changes), so the latest ones are kept and served again within an epoch."""
        self._ensure_listed(username)
        label = device_list_label(username)
        latest = self.head().epoch
        with self._cache_lock:
            cached = self._proofs.get((label, latest))
            if cached is not None:
                self._proofs.move_to_end((label, latest))
                return cached
        try:
            with self._lock:
                head, proof = self.directory.lookup(label)
        except UnknownLabel:  # pragma: no cover - _ensure_listed published it
            raise NotFound() from None
        found = KtLookup(head.epoch, head.root_hash, proof.to_bytes())
        with self._cache_lock:
            self._proofs[(label, head.epoch)] = found
            while len(self._proofs) > consts.KT_CACHED_LOOKUP_PROOFS:
                self._proofs.popitem(last=False)
        return found

    def history(self, username: str,
                most_recent: int | None = None) -> tuple[EpochHead, bytes]:
        """A history proof of ``username``'s device list against the latest epoch: complete,
        or its ``most_recent`` versions (AKD's MostRecent(n))."""
        self._ensure_listed(username)
        params = None if most_recent is None else HistoryParams.most_recent_n(most_recent)
        try:
            with self._lock:
                head, proof = self.directory.key_history(device_list_label(username), params)
        except UnknownLabel:  # pragma: no cover - _ensure_listed published it
            raise NotFound() from None
        return head, proof.to_bytes()

    def published_devices(self, username: str) -> dict[int, bytes]:
        """The device list as published now (for tests and operators)."""
        states = self._storage.get_states(device_list_label(username))
        return decode_device_list(states[-1].value) if states else {}


# -- HTTP ------------------------------------------------------------------------------------------
def _epoch_arg(raw: str | None, name: str) -> int:
    if raw is None or not _EPOCH_RE.fullmatch(raw):
        raise InvalidRequest(f"{name} must be an epoch number")
    return int(raw)


def _protobuf(body: bytes, head: EpochHead | None = None) -> Response:
    response = Response(body, mimetype=PROTOBUF)
    if head is not None:
        response.headers["KT-Epoch"] = str(head.epoch)
        response.headers["KT-Root-Hash"] = head.root_hash.hex()
    return response


def _json(body: Any) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), mimetype="application/json")


def install_transparency(app: Flask, service: DeliveryService) -> KeyTransparency:
    """Publish ``service``'s device changes and serve the ``/v1/kt/`` endpoints on ``app``."""
    db = getattr(service.store, "db", None)
    kt = KeyTransparency(service.store, db=db if isinstance(db, Database) else None,
                         epoch_seconds=service.settings.kt_epoch_seconds)
    service.transparency = kt
    app.extensions["e2ee_transparency"] = kt
    # The timer starts with the first request: only processes that serve publish epochs (not
    # a supervisor that built the app once to check the configuration).
    app.before_request(kt.start_timer)
    bp = Blueprint("e2ee_kt", __name__)

    @bp.get("/v1/kt/head")
    def head() -> Response:
        return _json(kt.head().to_json())

    @bp.get("/v1/kt/epochs/<int:epoch>")
    def epoch(epoch: int) -> Response:
        return _json(kt.epoch(epoch).to_json())

    @bp.get("/v1/kt/append-only")
    def append_only() -> Response:
        start = _epoch_arg(request.args.get("start"), "start")
        end = _epoch_arg(request.args.get("end"), "end")
        return _protobuf(kt.append_only(start, end))

    @bp.get("/v1/kt/history/<username>")
    def history(username: str) -> Response:
        service.authenticate(bearer_credential(request.headers.get("Authorization", "")))
        raw = request.args.get("most_recent")
        most_recent = None if raw is None else _epoch_arg(raw, "most_recent")
        if most_recent is not None and not 1 <= most_recent <= consts.KT_MAX_HISTORY_VERSIONS:
            raise InvalidRequest("most_recent is out of range")
        head, proof = kt.history(decode_username(username), most_recent)
        return _protobuf(proof, head)

    app.register_blueprint(bp)
    return kt


def lookup_stamp(service: DeliveryService, username: str) -> dict[str, Any]:
    """``{"transparency": ...}``: the lookup proof to add to a bundle or device-list response
    about ``username`` (empty when the service publishes nothing)."""
    kt = service.transparency
    if not isinstance(kt, KeyTransparency):
        return {}
    return {"transparency": kt.lookup(username).to_json()}
