"""The key-transparency auditor (issue #16 item 4): follow a log's epochs, check every
append-only proof, sign each audited epoch's root hash in plexi's format.

What one audit step (:meth:`Auditor.audit_once`) checks, from the last audited epoch ``a`` (at
first: 0, the empty tree, or ``start_epoch``, whose root is then trusted on first use and not
signed: for an auditor joining a long-running log) to the log's latest epoch ``n``:

1. the log's VRF public key is the one seen at the first audit (a changed key is an alarm);
2. ``n >= a``: the latest epoch never goes backwards (rollback alarm);
3. the root the log now shows for ``a`` is the root the auditor audited and signed (a
   changed root is an alarm: the log rewrote its history or shows a fork);
4. the head's root for ``n`` is the one the log serves for epoch ``n``;
5. the append-only proof from ``a`` to ``n`` (in chunks of at most
   :data:`~e2ee_core.keytrans.consts.AUDIT_MAX_EPOCHS_PER_PROOF` epochs, halved while a chunk's
   proof is refused or too large) rebuilds each epoch's root from the previous one by
   insertions only (:func:`~e2ee_core.keytrans.tree.audit_verify`); a failure is an alarm.

Only then is each new epoch signed (Ed25519 over plexi's SignatureMessage with the log's
namespace, the time in Unix milliseconds, the epoch and its root) and stored with its root, in
one transaction. An alarm is logged (the check and the epoch, nothing secret), counted
(``e2ee_kt_audit_alarms_total{check}``), recorded in the store, and *halts* the log: the
auditor refuses to sign anything more for it until an operator looks (:meth:`AuditStore.
clear_halt`). Errors that prove nothing (the log unreachable, a malformed answer) raise
:class:`LogUnavailable` or :class:`MalformedProof` and leave the state as it was.

The state (the log's VRF key, every audited epoch with its root and signature, alarms) lives in
:class:`AuditStore`, an SQLite file created 0600 (or PostgreSQL) through
:class:`service_kit.database.Database`. The log is read through the :class:`LogSource`
protocol; :class:`HttpLogSource` is the delivery server's ``/v1/kt`` API. :class:`AuditorClient`
is the client side: fetch an auditor's signature and check it (see
:func:`~e2ee_core.keytrans.plexi.require_auditor_signature`).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import quote

import requests
from prometheus_client import Counter, Gauge

from e2ee_core.keytrans import consts, plexi, tree
from e2ee_core.keytrans.errors import (
    AuditFailed,
    AuditorSignatureError,
    LogUnavailable,
    MalformedProof,
    VerificationFailed,
)
from e2ee_core.keytrans.proofs import AppendOnlyProof
from service_kit.database import Database

log = logging.getLogger("e2ee_core.keytrans.auditor")

#: The checks whose failure is an alarm (the ``check`` label of the alarm counter).
ALARM_CHECKS: Final = ("vrf_key_changed", "rollback", "root_changed", "append_only",
                       "head_mismatch")
ALARMS = Counter("e2ee_kt_audit_alarms", "Audit alarms raised (signing halted), by check",
                 ["check"])
EPOCHS_SIGNED = Counter("e2ee_kt_audit_epochs_signed", "Epochs audited and signed")
LAST_EPOCH = Gauge("e2ee_kt_audit_last_epoch", "The latest epoch audited and signed",
                   multiprocess_mode="max")
for _check in ALARM_CHECKS:
    ALARMS.labels(_check)

_HEX32 = re.compile(r"[0-9a-f]{64}")

SCHEMA = """
CREATE TABLE IF NOT EXISTS kt_audit_meta (name TEXT PRIMARY KEY, value {blob} NOT NULL);
CREATE TABLE IF NOT EXISTS kt_audit_logs (
    namespace TEXT PRIMARY KEY, vrf_public_key {blob} NOT NULL, halted TEXT,
    base_epoch {bigint} NOT NULL, base_root {blob} NOT NULL);
CREATE TABLE IF NOT EXISTS kt_audit_epochs (
    namespace TEXT NOT NULL, epoch {bigint} NOT NULL, root_hash {blob} NOT NULL,
    ciphersuite INTEGER NOT NULL, timestamp {bigint} NOT NULL, signature {blob} NOT NULL,
    PRIMARY KEY (namespace, epoch));
CREATE TABLE IF NOT EXISTS kt_audit_alarms (
    namespace TEXT NOT NULL, epoch {bigint} NOT NULL, check_name TEXT NOT NULL,
    at_ms {bigint} NOT NULL)
"""


@dataclass(frozen=True, slots=True)
class LogHead:
    """A log's latest epoch as its server states it (``GET /v1/kt/head``)."""

    epoch: int
    root_hash: bytes
    vrf_public_key: bytes


class LogSource(Protocol):
    """Read access to a key-transparency log (the delivery server's ``/v1/kt`` API)."""

    def head(self) -> LogHead: ...
    def epoch_root(self, epoch: int) -> bytes: ...
    def append_only(self, start: int, end: int) -> bytes: ...


def _u64(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= consts.MAX_U64:
        raise LogUnavailable("the log's answer has an epoch out of range")
    return value


def _hex32(value: Any) -> bytes:
    if not isinstance(value, str) or not _HEX32.fullmatch(value):
        raise LogUnavailable("the log's answer has a hash or key that is not 32 bytes of hex")
    return bytes.fromhex(value)


def _json_object(body: bytes) -> dict[str, Any]:
    if len(body) > consts.MAX_HEAD_RESPONSE_BYTES:
        raise LogUnavailable("the log's answer is too large")
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        raise LogUnavailable("the log's answer is not JSON") from None
    if not isinstance(obj, dict):
        raise LogUnavailable("the log's answer is not a JSON object")
    return obj


def decode_head(body: bytes) -> LogHead:
    """``GET /v1/kt/head``'s JSON (untrusted: only LogUnavailable on bad input)."""
    obj = _json_object(body)
    return LogHead(_u64(obj.get("epoch")), _hex32(obj.get("root_hash")),
                   _hex32(obj.get("vrf_public_key")))


def decode_epoch_root(body: bytes, epoch: int) -> bytes:
    """The root hash in ``GET /v1/kt/epochs/<epoch>``'s JSON, which must name that epoch."""
    obj = _json_object(body)
    if _u64(obj.get("epoch")) != epoch:
        raise LogUnavailable("the log answered for another epoch")
    return _hex32(obj.get("root_hash"))


def _read_limited(resp: requests.Response, limit: int, who: str) -> bytes:
    """The body, refused unread past ``limit`` bytes."""
    body = bytearray()
    for chunk in resp.iter_content(chunk_size=64 * 1024):
        body += chunk
        if len(body) > limit:
            raise LogUnavailable(f"the {who}'s answer is too large")
    return bytes(body)


class HttpLogSource:
    """The delivery server's key-transparency endpoints (``/v1/kt/head``,
    ``/v1/kt/epochs/<epoch>``, ``/v1/kt/append-only?start=&end=``)."""

    def __init__(self, base_url: str, *, session: requests.Session | None = None,
                 timeout: float = consts.AUDIT_HTTP_TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = session or requests.Session()

    def _get(self, path: str, params: dict[str, int] | None, limit: int) -> bytes:
        try:
            with self._session.get(self.base_url + path, params=params, timeout=self.timeout,
                                   stream=True) as resp:
                if resp.status_code != 200:
                    raise LogUnavailable(f"the log answered {resp.status_code}")
                return _read_limited(resp, limit, "log")
        except requests.RequestException:
            raise LogUnavailable("the log is unreachable") from None

    def head(self) -> LogHead:
        return decode_head(self._get("/v1/kt/head", None, consts.MAX_HEAD_RESPONSE_BYTES))

    def epoch_root(self, epoch: int) -> bytes:
        return decode_epoch_root(
            self._get(f"/v1/kt/epochs/{int(epoch)}", None, consts.MAX_HEAD_RESPONSE_BYTES), epoch)

    def append_only(self, start: int, end: int) -> bytes:
        return self._get("/v1/kt/append-only", {"start": int(start), "end": int(end)},
                         consts.MAX_APPEND_ONLY_PROOF_BYTES)


@dataclass(frozen=True, slots=True)
class AuditedEpoch:
    epoch: int
    root_hash: bytes


class AuditStore:
    """The auditor's state: ``database`` is a path / ``sqlite:///path`` (created 0600) or a
    PostgreSQL DSN."""

    def __init__(self, database: str | Database) -> None:
        self.db = database if isinstance(database, Database) else Database(database)
        self.db.create_schema(SCHEMA)

    # -- the auditor's own public key (what ``serve`` publishes) --------------------------------
    def set_public_key(self, verifying_key: bytes) -> None:
        stored = self.public_key()
        if stored is not None and stored != verifying_key:
            raise AuditFailed("this audit store belongs to another auditor key")
        if stored is None:
            self.db.execute("INSERT INTO kt_audit_meta (name, value) VALUES (?, ?)",
                            ("verifying_key", verifying_key))

    def public_key(self) -> bytes | None:
        row = self.db.fetchone("SELECT value FROM kt_audit_meta WHERE name = ?",
                               ("verifying_key",))
        return None if row is None else bytes(row[0])

    # -- logs ----------------------------------------------------------------------------------
    def namespaces(self) -> list[str]:
        return [row[0] for row in self.db.fetchall(
            "SELECT namespace FROM kt_audit_logs ORDER BY namespace")]

    def vrf_key(self, namespace: str) -> bytes | None:
        row = self.db.fetchone("SELECT vrf_public_key FROM kt_audit_logs WHERE namespace = ?",
                               (namespace,))
        return None if row is None else bytes(row[0])

    def register(self, namespace: str, vrf_public_key: bytes,
                 base: AuditedEpoch | None = None) -> None:
        """Start auditing ``namespace``: from the empty tree (epoch 0), or from ``base``, an
        epoch whose root is trusted without audit (an auditor joining a long-running log)."""
        base = base or AuditedEpoch(0, tree.root_hash(tree.EMPTY_SOURCE))
        self.db.execute("INSERT INTO kt_audit_logs (namespace, vrf_public_key, base_epoch, "
                        "base_root) VALUES (?, ?, ?, ?) ON CONFLICT (namespace) DO NOTHING",
                        (namespace, vrf_public_key, base.epoch, base.root_hash))

    def base(self, namespace: str) -> AuditedEpoch | None:
        """Where auditing of ``namespace`` started (not signed: trusted, or the empty tree)."""
        row = self.db.fetchone("SELECT base_epoch, base_root FROM kt_audit_logs "
                               "WHERE namespace = ?", (namespace,))
        return None if row is None else AuditedEpoch(int(row[0]), bytes(row[1]))

    def halted(self, namespace: str) -> str | None:
        row = self.db.fetchone("SELECT halted FROM kt_audit_logs WHERE namespace = ?",
                               (namespace,))
        return None if row is None else row[0]

    def halt(self, namespace: str, epoch: int, check: str, at_ms: int) -> None:
        with self.db.transaction() as tx:
            tx.execute("UPDATE kt_audit_logs SET halted = ? WHERE namespace = ?",
                       (check, namespace))
            tx.execute("INSERT INTO kt_audit_alarms (namespace, epoch, check_name, at_ms) "
                       "VALUES (?, ?, ?, ?)", (namespace, epoch, check, at_ms))

    def clear_halt(self, namespace: str) -> None:
        """An operator's decision after an alarm: audit (and sign) this log again."""
        self.db.execute("UPDATE kt_audit_logs SET halted = NULL WHERE namespace = ?",
                        (namespace,))

    def alarms(self, namespace: str) -> list[tuple[int, str]]:
        return [(int(e), c) for e, c in self.db.fetchall(
            "SELECT epoch, check_name FROM kt_audit_alarms WHERE namespace = ? ORDER BY at_ms",
            (namespace,))]

    # -- audited epochs ------------------------------------------------------------------------
    def last(self, namespace: str) -> AuditedEpoch | None:
        """The latest audited (signed) epoch, else where auditing starts; None if unknown."""
        row = self.db.fetchone(
            "SELECT epoch, root_hash FROM kt_audit_epochs WHERE namespace = ? "
            "ORDER BY epoch DESC LIMIT 1", (namespace,))
        if row is None:
            return self.base(namespace)
        return AuditedEpoch(int(row[0]), bytes(row[1]))

    def record(self, responses: Sequence[plexi.SignatureResponse]) -> None:
        with self.db.transaction() as tx:
            tx.executemany(
                "INSERT INTO kt_audit_epochs (namespace, epoch, root_hash, ciphersuite, "
                "timestamp, signature) VALUES (?, ?, ?, ?, ?, ?)",
                [(r.message.namespace, r.epoch, r.digest, r.message.ciphersuite,
                  r.message.timestamp, r.signature) for r in responses])

    def signature(self, namespace: str, epoch: int | None = None) -> plexi.SignatureResponse | None:
        """The stored signature of ``epoch`` (the latest one if None)."""
        sql = ("SELECT epoch, root_hash, ciphersuite, timestamp, signature FROM kt_audit_epochs "
               "WHERE namespace = ?")
        if epoch is None:
            row = self.db.fetchone(sql + " ORDER BY epoch DESC LIMIT 1", (namespace,))
        else:
            row = self.db.fetchone(sql + " AND epoch = ?", (namespace, epoch))
        if row is None:
            return None
        key = self.public_key()
        message = plexi.SignatureMessage(int(row[2]), namespace, int(row[3]), int(row[0]),
                                         bytes(row[1]))
        return plexi.SignatureResponse(message, bytes(row[4]),
                                       None if key is None else plexi.key_id(key))


@dataclass(frozen=True, slots=True)
class AuditReport:
    """What one audit step did: the epochs it signed (``start`` < epoch <= ``end``)."""

    namespace: str
    start: int
    end: int

    @property
    def signed(self) -> int:
        return self.end - self.start


def _now_ms() -> int:
    return int(time.time() * 1000)


class Auditor:
    """Audits one log (``namespace``) read through ``source`` and signs with ``signing_key``
    (a 32-byte Ed25519 secret key)."""

    def __init__(self, store: AuditStore, source: LogSource, namespace: str,
                 signing_key: bytes, *, ciphersuite: int = consts.PLEXI_PROTOBUF_ED25519,
                 clock_ms: Callable[[], int] = _now_ms,
                 max_epochs_per_proof: int = consts.AUDIT_MAX_EPOCHS_PER_PROOF,
                 start_epoch: int = 0) -> None:
        plexi.SignatureMessage(ciphersuite, namespace, 0, 0, b"")  # validates both
        if max_epochs_per_proof < 1 or start_epoch < 0:
            raise ValueError("max_epochs_per_proof must be positive, start_epoch not negative")
        self._start_epoch = start_epoch
        self.store = store
        self.source = source
        self.namespace = namespace
        self._signing_key = signing_key
        self.verifying_key = plexi.public_key(signing_key)
        self.ciphersuite = ciphersuite
        self._clock_ms = clock_ms
        self._max_epochs = max_epochs_per_proof
        store.set_public_key(self.verifying_key)

    def __repr__(self) -> str:  # never show the signing key
        return f"Auditor(namespace={self.namespace!r})"

    def _alarm(self, epoch: int, check: str, reason: str) -> AuditFailed:
        self.store.halt(self.namespace, epoch, check, self._clock_ms())
        ALARMS.labels(check).inc()
        log.error("kt audit ALARM: signing halted check=%s epoch=%d", check, epoch)
        return AuditFailed(reason)

    def audit_once(self) -> AuditReport:
        """Audit from the last audited epoch to the log's latest one and sign each new epoch.
        Raises AuditFailed (an alarm: signing halts), LogUnavailable or MalformedProof."""
        if self.store.halted(self.namespace) is not None:
            raise AuditFailed("signing is halted for this log after an alarm")
        head = self.source.head()
        pinned = self.store.vrf_key(self.namespace)
        if pinned is None:
            self.store.register(self.namespace, head.vrf_public_key, self._first_base(head))
        elif not hmac.compare_digest(pinned, head.vrf_public_key):
            raise self._alarm(head.epoch, "vrf_key_changed", "the log's VRF key changed")
        last = self.store.last(self.namespace)
        assert last is not None  # registered above
        if head.epoch < last.epoch:
            raise self._alarm(head.epoch, "rollback", "the log's latest epoch went backwards")
        if last.epoch > 0 and not hmac.compare_digest(self.source.epoch_root(last.epoch),
                                                      last.root_hash):
            raise self._alarm(last.epoch, "root_changed",
                              "the log changed the root of an audited epoch")
        if head.epoch == last.epoch:
            if not hmac.compare_digest(head.root_hash, last.root_hash):
                raise self._alarm(head.epoch, "root_changed",
                                  "the log changed the root of an audited epoch")
            return AuditReport(self.namespace, last.epoch, last.epoch)
        start, chunk = last, self._max_epochs
        while start.epoch < head.epoch:
            end = min(head.epoch, start.epoch + chunk)
            try:
                proof = AppendOnlyProof.from_bytes(self.source.append_only(start.epoch, end))
            except (LogUnavailable, MalformedProof):
                # Steps for past epochs are made from the latest tree, so a range far behind
                # can exceed the proof size limit (or the server's range cap): ask for less.
                if end - start.epoch == 1:
                    raise
                chunk = max(1, (end - start.epoch) // 2)
                continue
            if proof.epochs and proof.epochs[0] != start.epoch:
                raise MalformedProof("the append-only proof starts at another epoch")
            roots = [self.source.epoch_root(epoch) for epoch in range(start.epoch + 1, end + 1)]
            if end == head.epoch and not hmac.compare_digest(roots[-1], head.root_hash):
                raise self._alarm(end, "head_mismatch",
                                  "the log's head and its epoch list disagree")
            try:
                tree.audit_verify([start.root_hash, *roots], proof)
            except VerificationFailed:
                raise self._alarm(end, "append_only",
                                  "the append-only proof does not verify") from None
            self._sign(range(start.epoch + 1, end + 1), roots)
            start = AuditedEpoch(end, roots[-1])
        return AuditReport(self.namespace, last.epoch, head.epoch)

    def _first_base(self, head: LogHead) -> AuditedEpoch | None:
        """The first audit's starting point: the empty tree, or the root the log gives now
        for ``start_epoch`` (trusted on first use, never signed)."""
        if self._start_epoch == 0:
            return None
        if self._start_epoch > head.epoch:
            raise LogUnavailable("the log has not reached the start epoch yet")
        log.info("kt audit starts from a trusted epoch=%d", self._start_epoch)
        return AuditedEpoch(self._start_epoch, self.source.epoch_root(self._start_epoch))

    def _sign(self, epochs: range, roots: Sequence[bytes]) -> None:
        now = self._clock_ms()
        responses = [plexi.signature_response(self._signing_key, plexi.SignatureMessage(
            self.ciphersuite, self.namespace, now, epoch, root))
            for epoch, root in zip(epochs, roots, strict=True)]
        self.store.record(responses)
        EPOCHS_SIGNED.inc(len(responses))
        LAST_EPOCH.set(epochs[-1])
        log.info("kt audit signed epochs=%d..%d", epochs[0], epochs[-1])


class AuditorClient:
    """A client's view of one auditor: its URL and its Ed25519 public key(s)."""

    def __init__(self, base_url: str, auditor_keys: Sequence[bytes], *,
                 session: requests.Session | None = None,
                 timeout: float = consts.AUDIT_HTTP_TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self.auditor_keys = tuple(auditor_keys)
        self.timeout = timeout
        self._session = session or requests.Session()

    def signature(self, namespace: str, epoch: int) -> plexi.SignatureResponse:
        """The auditor's signature of ``epoch`` (LogUnavailable if it has none yet)."""
        url = f"{self.base_url}/v1/signatures/{quote(namespace, safe='')}/{int(epoch)}"
        try:
            with self._session.get(url, timeout=self.timeout, stream=True) as resp:
                if resp.status_code != 200:
                    raise LogUnavailable(f"the auditor answered {resp.status_code}")
                body = _read_limited(resp, consts.MAX_SIGNATURE_RESPONSE_BYTES, "auditor")
        except requests.RequestException:
            raise LogUnavailable("the auditor is unreachable") from None
        return plexi.SignatureResponse.from_json(body)

    def check_epoch(self, namespace: str, epoch: int, root_hash: bytes) -> None:
        """Raise AuditorSignatureError unless a trusted auditor signed ``root_hash`` as the root
        of ``epoch``; LogUnavailable if the auditor cannot be asked (or has not audited
        ``epoch`` yet): a client requiring auditor signatures accepts neither."""
        response = self.signature(namespace, epoch)
        plexi.require_auditor_signature(response, self.auditor_keys, namespace, epoch, root_hash)


__all__ = ["AuditFailed", "AuditReport", "AuditStore", "AuditedEpoch", "Auditor",
           "AuditorClient", "AuditorSignatureError", "HttpLogSource", "LogHead", "LogSource"]
