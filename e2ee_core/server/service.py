"""The delivery service: accounts, credentials, keys, fanout checks, queues, expiry.

Transport-free: the Flask adapter (:mod:`e2ee_core.server.app`) decodes HTTP into the wire
types and calls this class; the store (:mod:`e2ee_core.server.store`) keeps the rows. Time comes
from an injectable ``clock`` (seconds, like :func:`time.time`) so tests can move it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from e2ee_core.server import consts, metrics
from e2ee_core.server.errors import (
    AuthenticationFailed,
    ConfigurationError,
    DeviceWasRemoved,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    QueueFull,
    RateLimited,
    TooManyAttempts,
)
from e2ee_core.server.hub import PushHub
from e2ee_core.server.store import EventLimit, PurgeCounts, Store, Submission
from e2ee_core.server.wire import (
    AccountRequest,
    Acknowledgement,
    DeviceAddress,
    DeviceCredential,
    DeviceInfo,
    Envelope,
    MultiSendRequest,
    PreKeyBundle,
    PreKeyCount,
    PreKeyUpload,
    SendRequest,
    format_credential,
    parse_credential,
)
from service_kit.ratelimit import RateLimiter

log = logging.getLogger("e2ee_core.server")

Clock = Callable[[], float]


class DeviceChangePublisher(Protocol):
    """Key transparency (:mod:`e2ee_core.server.transparency`): told of each device change."""

    def changed(self, username: str) -> None:
        """Return once ``username``'s stored change is in a published epoch."""


@dataclass(frozen=True)
class Settings:
    """Limits and timings; every field can be set in the ``create_app`` config mapping."""

    envelope_ttl_seconds: float = consts.DEFAULT_ENVELOPE_TTL_SECONDS
    attachment_ttl_seconds: float = consts.DEFAULT_ATTACHMENT_TTL_SECONDS
    max_attachment_bytes: int = consts.DEFAULT_MAX_ATTACHMENT_BYTES
    max_devices: int = consts.MAX_DEVICES_PER_ACCOUNT
    max_stored_prekeys: int = consts.MAX_STORED_PREKEYS
    long_poll_max_seconds: float = consts.DEFAULT_LONG_POLL_MAX_SECONDS
    poll_interval_seconds: float = consts.DEFAULT_POLL_INTERVAL_SECONDS
    purge_interval_seconds: float = consts.PURGE_INTERVAL_SECONDS
    # Password guessing: wrong passwords per account per window (shared by every server
    # process through the store; then 429 until the window ends), password attempts per client
    # address per window (this process), and argon2 verifications at once (each takes
    # argon2_memory_kib: 7 parallel guessers once pushed a worker to 571 MiB).
    password_max_failures: int = consts.DEFAULT_PASSWORD_MAX_FAILURES
    password_window_seconds: float = consts.DEFAULT_PASSWORD_WINDOW_SECONDS
    password_attempts_per_address: int = consts.DEFAULT_PASSWORD_ATTEMPTS_PER_ADDRESS
    password_concurrency: int = consts.DEFAULT_PASSWORD_CONCURRENCY
    # Bundle fetches: per requesting account per window (then 429), and one-time prekeys
    # handed out per target account per window (then bundles without them).
    bundle_fetches_per_requester: int = consts.DEFAULT_BUNDLE_FETCHES_PER_REQUESTER
    one_time_prekey_fetches_per_target: int = consts.DEFAULT_ONE_TIME_FETCHES_PER_TARGET
    bundle_window_seconds: float = consts.DEFAULT_BUNDLE_WINDOW_SECONDS
    # Quotas: bytes queued per recipient device (429 queue-full), send requests per device per
    # minute and attachment bytes per account per hour (429 rate-limited).
    max_queued_bytes_per_device: int = consts.DEFAULT_MAX_QUEUED_BYTES_PER_DEVICE
    sends_per_device_per_minute: int = consts.DEFAULT_SENDS_PER_DEVICE_PER_MINUTE
    attachment_bytes_per_hour: int = consts.DEFAULT_ATTACHMENT_BYTES_PER_HOUR
    # argon2id cost (argon2-cffi's RFC 9106 "low memory" profile by default).
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4
    # Key transparency: an epoch is published at least this often, changes or not (a client
    # tells a quiet directory from a stale view); device changes are published at once.
    kt_epoch_seconds: float = consts.DEFAULT_KT_EPOCH_SECONDS

    @classmethod
    def keys(cls) -> set[str]:
        """The config keys this class reads."""
        return {f.name for f in fields(cls)}

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> Settings:
        """Read the known keys of ``config`` (others are ignored), checking types and ranges."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in config:
                continue
            value = config[f.name]
            kind = int if f.type in ("int", int) else float
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigurationError(f"{f.name} must be a number")
            if kind is int and not isinstance(value, int):
                raise ConfigurationError(f"{f.name} must be an integer")
            if not value > 0:
                raise ConfigurationError(f"{f.name} must be positive")
            values[f.name] = kind(value)
        return cls(**values)


def hash_credential_secret(secret: str) -> bytes:
    """Credentials are 256-bit random, so one SHA-256 suffices (no password stretching needed)."""
    return hashlib.sha256(secret.encode("ascii")).digest()


_DUMMY_CREDENTIAL_HASH = hash_credential_secret("x" * 43)


class _QueueSignal:
    """Wakes long-polling receivers in this process when any queue may have changed.

    Receivers in other worker processes are not signalled; they re-check the store every
    ``poll_interval_seconds``.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0

    def notify(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def generation(self) -> int:
        with self._cond:
            return self._generation

    def wait(self, seen: int, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._generation != seen, timeout)


class DeliveryService:
    """The server's behaviour over a :class:`~e2ee_core.server.store.Store`."""

    def __init__(self, store: Store, settings: Settings | None = None,
                 clock: Clock = time.time) -> None:
        self.store = store
        self.settings = settings or Settings()
        self.clock = clock
        self._hasher = PasswordHasher(time_cost=self.settings.argon2_time_cost,
                                      memory_cost=self.settings.argon2_memory_kib,
                                      parallelism=self.settings.argon2_parallelism)
        # Verified against when an account does not exist, so both cases cost the same.
        self._dummy_password_hash = self._hasher.hash(secrets.token_hex(16))
        self._argon2_slots = threading.BoundedSemaphore(self.settings.password_concurrency)
        self._address_attempts = RateLimiter(self.settings.password_attempts_per_address,
                                             self.settings.password_window_seconds)
        self._signal = _QueueSignal()
        self.push = PushHub()  # this process's push connections (WebSocket)
        postgres = getattr(getattr(store, "db", None), "dialect", None) == "postgres"
        #: Store calls the event loop may run at once (see consts.EVENT_LOOP_DB_THREADS_*).
        self.loop_db_threads = (consts.EVENT_LOOP_DB_THREADS_POSTGRES if postgres
                                else consts.EVENT_LOOP_DB_THREADS_SQLITE)
        self._last_purge = float("-inf")
        self._purge_lock = threading.Lock()
        #: Set by :func:`e2ee_core.server.transparency.install_transparency` (None: no key
        #: transparency, e.g. a service driven without its app).
        self.transparency: DeviceChangePublisher | None = None
        #: Called with (username, device_id) after a device was removed (the Labyrinth mailbox
        #: deletes the device's ORF share, keys and MACs: e2ee_core.server.labyrinth_api).
        self.device_removed_hooks: list[Callable[[str, int], None]] = []

    # -- time -----------------------------------------------------------------------------------
    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _envelope_expiry(self, now_ms: int) -> int:
        return now_ms + int(self.settings.envelope_ttl_seconds * 1000)

    # -- accounts and devices -------------------------------------------------------------------
    @staticmethod
    def _new_credential() -> tuple[str, bytes]:
        secret = secrets.token_urlsafe(consts.CREDENTIAL_SECRET_BYTES)
        return secret, hash_credential_secret(secret)

    def register(self, req: AccountRequest) -> DeviceCredential:
        """Create an account and its first device (id 1); return the device's credential."""
        secret, digest = self._new_credential()
        password_hash = self._hasher.hash(req.password)
        device_id = self.store.create_account(req.username, password_hash, req.device, digest,
                                              now_ms=self.now_ms())
        self._publish_devices(req.username)
        log.info("event=account_registered")
        return DeviceCredential(req.username, device_id,
                                format_credential(req.username, device_id, secret))

    def _check_password(self, username: str, password: str, client_address: str) -> None:
        """Refuse before hashing when the address or the account is over its limit (429);
        count a wrong password against the account; a right one clears its count."""
        window_ms = int(self.settings.password_window_seconds * 1000)
        wait = self._address_attempts.hit(client_address)
        if wait is not None:
            log.info("event=password_attempts_limited scope=address")
            raise TooManyAttempts(retry_after=math.ceil(wait))
        now = self.now_ms()
        key = "password:" + username
        failures, since = self.store.event_count(key, now, window_ms)
        if failures >= self.settings.password_max_failures:
            log.info("event=password_attempts_limited scope=account")
            raise TooManyAttempts(retry_after=math.ceil((since + window_ms - now) / 1000))
        stored = self.store.password_hash(username)
        try:
            with self._argon2_slots:
                self._hasher.verify(stored or self._dummy_password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            if stored is not None:
                self.store.count_event(key, self.now_ms(), window_ms)
            log.info("event=password_rejected")
            raise AuthenticationFailed() from None
        if stored is None:  # pragma: no cover - the dummy's password is never guessed
            raise AuthenticationFailed()
        if failures:
            self.store.clear_events(key)
        if self._hasher.check_needs_rehash(stored):
            self.store.set_password_hash(username, self._hasher.hash(password))

    def add_device(self, req: AccountRequest, client_address: str = "") -> DeviceCredential:
        """Link a new device with the account password; other devices and contacts are told.
        Password guessing is limited per account and per client address (429)."""
        self._check_password(req.username, req.password, client_address)
        secret, digest = self._new_credential()
        now = self.now_ms()
        device_id = self.store.add_device(req.username, req.device, digest, now_ms=now,
                                          expires_at_ms=self._envelope_expiry(now))
        self._publish_devices(req.username)
        self._signal.notify()
        self.push.notify_all()  # device notices go to many accounts
        log.info("event=device_added")
        return DeviceCredential(req.username, device_id,
                                format_credential(req.username, device_id, secret))

    def authenticate(self, token: str) -> DeviceAddress:
        """The device a bearer credential belongs to; compared in constant time."""
        try:
            username, device_id, secret = parse_credential(token)
        except InvalidRequest:
            raise AuthenticationFailed() from None
        digest = hash_credential_secret(secret)
        stored = self.store.credential_hash(username, device_id)
        matches = hmac.compare_digest(digest,
                                      stored if stored is not None else _DUMMY_CREDENTIAL_HASH)
        if stored is not None and matches:
            return DeviceAddress(username, device_id)
        if stored is None:
            removed = self.store.removed_credential_hash(username, device_id)
            if removed is not None and hmac.compare_digest(digest, removed):
                raise DeviceWasRemoved()
        raise AuthenticationFailed()

    def remove_device(self, actor: DeviceAddress, device_id: int) -> None:
        """Unlink one of the actor's own account's devices (possibly itself)."""
        now = self.now_ms()
        self.store.remove_device(actor.username, device_id, now_ms=now,
                                 expires_at_ms=self._envelope_expiry(now))
        self._publish_devices(actor.username)
        for hook in self.device_removed_hooks:
            hook(actor.username, device_id)
        self._signal.notify()
        self.push.notify_all()  # device notices go to many accounts
        log.info("event=device_removed")

    def list_devices(self, username: str) -> list[DeviceInfo]:
        return self.store.list_devices(username)

    def _publish_devices(self, username: str) -> None:
        """Key transparency: return once the account's device change is published."""
        if self.transparency is not None:
            self.transparency.changed(username)

    # -- keys -----------------------------------------------------------------------------------
    def upload_prekeys(self, actor: DeviceAddress, upload: PreKeyUpload) -> None:
        self.store.upload_prekeys(actor.username, actor.device_id, upload)
        log.info("event=prekeys_uploaded one_time=%d kem=%d", len(upload.one_time_prekeys),
                 len(upload.kem_prekeys))

    def prekey_count(self, actor: DeviceAddress) -> PreKeyCount:
        return self.store.prekey_count(actor.username, actor.device_id)

    def bundles(self, actor: DeviceAddress, username: str,
                device_id: int | None = None) -> list[PreKeyBundle]:
        """Bundles of ``username``'s devices. Per requesting account, fetches are limited
        (429 beyond); per target account, one-time prekeys are handed out at most
        ``one_time_prekey_fetches_per_target`` times a window, bundles without them after that
        (sessions still start, on the signed and last-resort keys): nobody can drain a
        device's one-time prekeys, and nobody can stop others from reaching it."""
        now = self.now_ms()
        window_ms = int(self.settings.bundle_window_seconds * 1000)
        fetched = self.store.count_event("bundles-by:" + actor.username, now, window_ms)
        if fetched > self.settings.bundle_fetches_per_requester:
            _, since = self.store.event_count("bundles-by:" + actor.username, now, window_ms)
            log.info("event=bundle_fetches_limited")
            raise RateLimited(retry_after=math.ceil((since + window_ms - now) / 1000))
        handed = self.store.count_event("bundles-of:" + username, now, window_ms)
        consume = handed <= self.settings.one_time_prekey_fetches_per_target
        found = self.store.take_bundles(username, device_id, consume=consume)
        log.info("event=bundles_served bundles=%d without_one_time=%d", len(found),
                 sum(b.one_time_prekey is None for b in found))
        return found

    def prekeys_low(self, actor: DeviceAddress) -> bool:
        """The hint on every receive: the device should upload more one-time prekeys."""
        count = self.store.prekey_count(actor.username, actor.device_id)
        return min(count.one_time_prekeys, count.kem_prekeys) < consts.PREKEY_LOW_HINT

    # -- envelopes ------------------------------------------------------------------------------
    def send(self, actor: DeviceAddress, req: SendRequest) -> int:
        """Queue the envelopes (all or none); see :meth:`Store.submit` for the device check."""
        return self._one(actor, req)

    def send_multi(self, actor: DeviceAddress, req: MultiSendRequest) -> int:
        """One message to several accounts in one request, all or none (409 lists every
        mismatch); see :meth:`Store.submit_multi`."""
        return self._one(actor, req)

    def _one(self, actor: DeviceAddress, req: SendRequest | MultiSendRequest) -> int:
        [result] = self.send_batch([(actor, req)])
        if isinstance(result, Exception):
            raise result
        return result

    def send_batch(self, sends: Sequence[tuple[DeviceAddress, SendRequest | MultiSendRequest]]
                   ) -> list[int | Exception]:
        """Several devices' sends in one store transaction (the push channel's, gathered by
        :class:`~e2ee_core.server.push.SendBatcher`), each accepted (its envelope count) or
        refused (the :class:`ServerError` in its place) on its own, exactly as if sent alone.
        Should the batch's transaction fail as a whole, its sends are tried again one by one,
        so that one cannot fail the others (a send that fails alone too has that exception in
        its place)."""
        self.maybe_purge()
        now = self.now_ms()
        expires = self._envelope_expiry(now)
        submissions = [Submission(
            actor.username, actor.device_id,
            (req.recipient,) if isinstance(req, SendRequest) else req.recipients, req.messages,
            expires if req.expires_at_ms is None else min(expires, req.expires_at_ms),
            EventLimit(f"sends:{actor.username}:{actor.device_id}", 60_000,
                       self.settings.sends_per_device_per_minute))
            for actor, req in sends]
        max_bytes = self.settings.max_queued_bytes_per_device
        stored: list[list[int] | Exception]
        try:
            stored = list(self.store.submit_batch(submissions, now_ms=now,
                                                  max_queued_bytes=max_bytes))
        except Exception:
            if len(submissions) == 1:
                raise
            log.warning("event=send_batch_failed sends=%d", len(submissions))
            stored = []
            for sub in submissions:
                try:
                    stored += self.store.submit_batch([sub], now_ms=now,
                                                      max_queued_bytes=max_bytes)
                except Exception as exc:  # e.g. the database went away: this send's failure
                    stored.append(exc)
        results: list[int | Exception] = []
        offers: list[tuple[tuple[str, int], Envelope]] = []
        for sub, ids in zip(submissions, stored, strict=True):
            if isinstance(ids, Exception):
                if isinstance(ids, QueueFull):
                    log.info("event=queue_full")
                    metrics.send_refused("queue_full")
                elif isinstance(ids, RateLimited):  # counted in the send's own transaction
                    log.info("event=sends_limited")
                    metrics.send_refused("rate_limited")
                results.append(ids)
                continue
            offers += [((m.username, m.device_id),
                        Envelope(i, "message", sub.sender, sub.sender_device, now,
                                 sub.expires_at_ms, m.content))
                       for m, i in zip(sub.messages, ids, strict=True)]
            results.append(len(ids))
            log.debug("event=envelopes_accepted envelopes=%d bytes=%d recipients=%d",
                      len(ids), sum(len(m.content) for m in sub.messages),
                      len(sub.recipients))
        if offers:
            self._signal.notify()
            self.push.deliver(offers)
            metrics.ENVELOPES_STORED.inc(len(offers))
        return results

    def receive(self, actor: DeviceAddress, wait_seconds: float = 0.0,
                limit: int = consts.MAX_ENVELOPES_PER_RECEIVE) -> tuple[list[Envelope], bool]:
        """Envelopes queued for the device, oldest first, waiting up to ``wait_seconds`` for one.

        Returns ``(envelopes, more)``; nothing is deleted until :meth:`acknowledge`.
        """
        self.maybe_purge()
        wait = min(max(wait_seconds, 0.0), self.settings.long_poll_max_seconds)
        deadline = time.monotonic() + wait
        while True:
            seen = self._signal.generation()
            found = self.queued(actor, limit + 1)
            remaining = deadline - time.monotonic()
            if found or remaining <= 0:
                break
            self._signal.wait(seen, min(remaining, self.settings.poll_interval_seconds))
        if found:
            log.debug("event=envelopes_delivered envelopes=%d", min(len(found), limit))
            metrics.ENVELOPES_DELIVERED.labels("http").inc(min(len(found), limit))
        return found[:limit], len(found) > limit

    def queued(self, actor: DeviceAddress, limit: int, after_id: int = 0) -> list[Envelope]:
        """Up to ``limit`` unexpired envelopes of the device's queue, oldest first, above
        ``after_id`` if given (both the HTTP receive and the push channel read the queue
        through here)."""
        return self.store.fetch(actor.username, actor.device_id, self.now_ms(), limit,
                                after_id)

    def acknowledge(self, actor: DeviceAddress, ids: tuple[int, ...],
                    refused: tuple[int, ...] = ()) -> int:
        deleted = self.store.acknowledge(actor.username, actor.device_id, ids, refused)
        log.debug("event=envelopes_acknowledged envelopes=%d", deleted)
        metrics.ENVELOPES_ACKED.inc(deleted)
        return deleted

    def acknowledge_many(self, acks: Sequence[Acknowledgement]) -> int:
        """Several devices' acknowledgements in one store transaction (the push channel's)."""
        deleted = self.store.acknowledge_many(acks)
        log.debug("event=envelopes_acknowledged envelopes=%d devices=%d", deleted, len(acks))
        metrics.ENVELOPES_ACKED.inc(deleted)
        return deleted

    # -- attachments ----------------------------------------------------------------------------
    def put_attachment(self, actor: DeviceAddress, data: bytes) -> tuple[str, int]:
        """Store an opaque (client-encrypted, padded) blob; return its id and expiry. The
        account's uploaded bytes per hour are counted (not which blobs: the uploader is not
        recorded with the blob)."""
        if len(data) > self.settings.max_attachment_bytes:
            raise PayloadTooLarge()
        if not data:
            raise InvalidRequest("attachment is empty")
        now = self.now_ms()
        key = "attachment-bytes:" + actor.username
        used, since = self.store.event_count(key, now, 3_600_000)
        if used + len(data) > self.settings.attachment_bytes_per_hour:
            log.info("event=attachment_quota_reached")
            raise RateLimited(retry_after=math.ceil((since + 3_600_000 - now) / 1000))
        self.store.count_event(key, now, 3_600_000, amount=len(data))
        expires = now + int(self.settings.attachment_ttl_seconds * 1000)
        attachment_id = self.store.put_attachment(data, now, expires)
        log.info("event=attachment_stored bytes=%d", len(data))
        return attachment_id, expires

    def get_attachment(self, attachment_id: str) -> bytes:
        if len(attachment_id) != 2 * consts.ATTACHMENT_ID_BYTES or not all(
                c in "0123456789abcdef" for c in attachment_id):
            raise NotFound()
        data = self.store.get_attachment(attachment_id, self.now_ms())
        if data is None:
            raise NotFound()
        log.info("event=attachment_served bytes=%d", len(data))
        return data

    # -- expiry ---------------------------------------------------------------------------------
    def purge(self) -> PurgeCounts:
        """Delete every expired envelope and attachment now."""
        counts = self.store.purge_expired(self.now_ms())
        metrics.ENVELOPES_EXPIRED.inc(counts.envelopes)
        metrics.ENVELOPES_WAITING.set(counts.waiting)
        if counts.envelopes or counts.attachments:
            log.info("event=expired_purged envelopes=%d attachments=%d", counts.envelopes,
                     counts.attachments)
        return counts

    def maybe_purge(self) -> None:
        """Purge at most once per ``purge_interval_seconds`` of the service clock."""
        now = self.clock()
        with self._purge_lock:
            if now - self._last_purge < self.settings.purge_interval_seconds:
                return
            self._last_purge = now
        self.purge()

