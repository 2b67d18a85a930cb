"""The auditor (e2ee_core/keytrans/auditor.py) over real directories: it signs every epoch of an
honest log and only those; an append-only violation, a changed root of an audited epoch, a
rollback, a changed VRF key and a head that disagrees with the epoch list are alarms that halt
signing; a forked view is caught by a client that requires the auditor's signature. The same
flow on PostgreSQL."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from e2ee_core.keytrans import consts, plexi
from e2ee_core.keytrans.auditor import AuditedEpoch, Auditor, AuditStore, LogHead
from e2ee_core.keytrans.directory import Directory
from e2ee_core.keytrans.errors import (
    AuditFailed,
    AuditorSignatureError,
    LogUnavailable,
    MalformedProof,
)
from e2ee_core.keytrans.node_label import NodeLabel
from e2ee_core.keytrans.proofs import (
    AppendOnlyProof,
    AzksElement,
    LookupProof,
    SingleAppendOnlyProof,
)
from e2ee_core.keytrans.storage import MemoryDirectoryStorage
from service_kit.logging_filter import capture_logs

VRF_KEY = bytes(range(32))
AUDITOR_KEY = bytes(range(100, 132))
NS = "chat.example"


class DirectoryLog:
    """A log server's answers, straight from a real Directory (what /v1/kt serves)."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    def head(self) -> LogHead:
        current = self.directory.current()
        return LogHead(current.epoch, current.root_hash, self.directory.vrf_public_key)

    def epoch_root(self, epoch: int) -> bytes:
        return self.directory.epoch_hash(epoch)

    def append_only(self, start: int, end: int) -> bytes:
        return self.directory.append_only_proof(start, end).to_bytes()


class SplicedLog(DirectoryLog):
    """A lying server: the first ``cut`` epochs from ``old``, everything later (roots and
    proofs) from ``new``, a directory that rewrote its history."""

    def __init__(self, old: Directory, new: Directory, cut: int) -> None:
        super().__init__(new)
        self.old, self.cut = old, cut

    def epoch_root(self, epoch: int) -> bytes:
        return (self.old if epoch <= self.cut else self.directory).epoch_hash(epoch)


def directory(*epochs: dict[bytes, bytes], vrf_key: bytes = VRF_KEY) -> Directory:
    d = Directory(MemoryDirectoryStorage(), vrf_secret_key=vrf_key)
    for updates in epochs:
        d.publish(updates)
    return d


def alarms(check: str) -> float:
    return REGISTRY.get_sample_value("e2ee_kt_audit_alarms_total", {"check": check}) or 0.0


@pytest.fixture
def store(tmp_path: Path) -> AuditStore:
    return AuditStore(str(tmp_path / "audit.db"))


def auditor(store: AuditStore, log: DirectoryLog, **kwargs: int) -> Auditor:
    return Auditor(store, log, NS, AUDITOR_KEY, clock_ms=lambda: 1_700_000_000_000, **kwargs)


def assert_signed(store: AuditStore, d: Directory, epochs: range) -> None:
    vk = plexi.public_key(AUDITOR_KEY)
    for epoch in epochs:
        response = store.signature(NS, epoch)
        assert response is not None
        plexi.require_auditor_signature(response, [vk], NS, epoch, d.epoch_hash(epoch))


def test_an_honest_log_is_signed_epoch_by_epoch(store: AuditStore, tmp_path: Path) -> None:
    d = directory({b"alice/1": b"k1"}, {b"bob/1": b"k2"}, {b"alice/1": b"k3"})
    a = auditor(store, DirectoryLog(d))
    report = a.audit_once()
    assert (report.start, report.end, report.signed) == (0, 3, 3)
    assert_signed(store, d, range(1, 4))
    assert store.signature(NS, 0) is None and store.signature(NS, 4) is None
    assert a.audit_once().signed == 0  # nothing new
    d.publish({})  # a quiet epoch: same root, still audited and signed
    d.publish({b"carol/1": b"k4", b"alice/1": b"k5"})
    report = a.audit_once()
    assert (report.start, report.end) == (3, 5)
    assert_signed(store, d, range(1, 6))
    latest = store.signature(NS)
    assert latest is not None and latest.epoch == 5
    # the state is in the 0600 SQLite file and survives a restart
    assert (tmp_path / "audit.db").stat().st_mode & 0o777 == 0o600
    again = auditor(AuditStore(str(tmp_path / "audit.db")), DirectoryLog(d))
    assert again.audit_once().signed == 0


def test_long_ranges_are_fetched_in_chunks(store: AuditStore) -> None:
    d = directory(*({f"u{i}/1".encode(): b"k"} for i in range(7)))
    assert auditor(store, DirectoryLog(d), max_epochs_per_proof=3).audit_once().signed == 7
    assert_signed(store, d, range(1, 8))


@pytest.mark.parametrize("suite", plexi.CIPHERSUITES)
def test_both_plexi_ciphersuites(store: AuditStore, suite: int) -> None:
    d = directory({b"alice/1": b"k1"})
    Auditor(store, DirectoryLog(d), NS, AUDITOR_KEY, ciphersuite=suite).audit_once()
    response = store.signature(NS, 1)
    assert response is not None and response.message.ciphersuite == suite
    response.verify(plexi.public_key(AUDITOR_KEY))


def test_an_append_only_violation_is_an_alarm_and_halts_signing(store: AuditStore) -> None:
    honest = directory({b"alice/1": b"k1"}, {b"bob/1": b"k2"})
    a = auditor(store, DirectoryLog(honest))
    a.audit_once()
    # The server rebuilt its history with alice's key substituted in epoch 1, but keeps showing
    # the audited root for epoch 1: the proof from 1 to 3 comes from the rewritten tree.
    rewritten = directory({b"alice/1": b"evil"}, {b"bob/1": b"k2"}, {b"carol/1": b"k3"})
    before = alarms("append_only")
    a.source = SplicedLog(honest, rewritten, cut=2)
    with capture_logs() as logs, pytest.raises(AuditFailed):
        a.audit_once()
    assert alarms("append_only") == before + 1
    assert any("ALARM" in line and "append_only" in line for line in logs.lines)
    assert not logs.leaks([AUDITOR_KEY, VRF_KEY])
    assert store.signature(NS, 3) is None
    assert store.halted(NS) == "append_only"
    assert store.alarms(NS) == [(3, "append_only")]
    # halted: even an honest answer is not signed until an operator clears the halt
    honest.publish({b"carol/1": b"k3"})
    a.source = DirectoryLog(honest)
    with pytest.raises(AuditFailed):
        a.audit_once()
    store.clear_halt(NS)
    assert a.audit_once().end == 3
    assert_signed(store, honest, range(1, 4))


def test_a_changed_root_of_an_audited_epoch_is_an_alarm(store: AuditStore) -> None:
    honest = directory({b"alice/1": b"k1"}, {b"bob/1": b"k2"})
    a = auditor(store, DirectoryLog(honest))
    a.audit_once()
    forked = directory({b"alice/1": b"evil"}, {b"bob/1": b"k2"}, {b"x/1": b"y"})
    a.source = DirectoryLog(forked)  # consistent with itself, not with what was audited
    with pytest.raises(AuditFailed, match="changed the root"):
        a.audit_once()
    assert store.halted(NS) == "root_changed"


def test_a_changed_root_at_the_same_epoch_is_an_alarm(store: AuditStore) -> None:
    honest = directory({b"alice/1": b"k1"})
    a = auditor(store, DirectoryLog(honest))
    a.audit_once()
    a.source = DirectoryLog(directory({b"alice/1": b"evil"}))
    with pytest.raises(AuditFailed):
        a.audit_once()
    assert store.halted(NS) == "root_changed"


def test_a_rollback_is_an_alarm(store: AuditStore) -> None:
    honest = directory({b"alice/1": b"k1"}, {b"bob/1": b"k2"})
    a = auditor(store, DirectoryLog(honest))
    a.audit_once()
    a.source = DirectoryLog(directory({b"alice/1": b"k1"}))
    before = alarms("rollback")
    with pytest.raises(AuditFailed, match="backwards"):
        a.audit_once()
    assert alarms("rollback") == before + 1


def test_a_changed_vrf_key_is_an_alarm(store: AuditStore) -> None:
    a = auditor(store, DirectoryLog(directory({b"alice/1": b"k1"})))
    a.audit_once()
    a.source = DirectoryLog(directory({b"alice/1": b"k1"}, {b"b/1": b"k"}, vrf_key=bytes(32)))
    with pytest.raises(AuditFailed, match="VRF key"):
        a.audit_once()


def test_a_head_that_disagrees_with_the_epoch_list_is_an_alarm(store: AuditStore) -> None:
    honest = directory({b"alice/1": b"k1"}, {b"bob/1": b"k2"})

    class TwoFaced(DirectoryLog):
        def head(self) -> LogHead:
            return LogHead(2, bytes(32), self.directory.vrf_public_key)

    with pytest.raises(AuditFailed):
        auditor(store, TwoFaced(honest)).audit_once()
    assert store.halted(NS) == "head_mismatch"
    assert store.signature(NS, 1) is None  # nothing of the failed range is signed


def test_a_malformed_proof_is_refused_without_an_alarm(store: AuditStore) -> None:
    class Garbage(DirectoryLog):
        def append_only(self, start: int, end: int) -> bytes:
            return b"\xff" * 10

    with pytest.raises(MalformedProof):
        auditor(store, Garbage(directory({b"alice/1": b"k1"}))).audit_once()
    assert store.halted(NS) is None and store.signature(NS, 1) is None


def test_a_forked_view_is_caught_by_a_client_requiring_the_auditor(store: AuditStore) -> None:
    """The server shows root A for epoch 2 to the auditor (and client 1), root B for the same
    epoch to client 2: the auditor signs only A, so client 2 refuses B."""
    view_a = directory({b"alice/1": b"k1"}, {b"bob/1": b"k2"})
    view_b = directory({b"alice/1": b"k1"}, {b"bob/1": b"evil"})
    assert view_a.epoch_hash(2) != view_b.epoch_hash(2)
    auditor(store, DirectoryLog(view_a)).audit_once()
    response = store.signature(NS, 2)
    assert response is not None
    keys = [plexi.public_key(AUDITOR_KEY)]
    plexi.require_auditor_signature(response, keys, NS, 2, view_a.epoch_hash(2))
    with pytest.raises(AuditorSignatureError, match="another root"):
        plexi.require_auditor_signature(response, keys, NS, 2, view_b.epoch_hash(2))
    with pytest.raises(AuditorSignatureError, match="another epoch"):
        plexi.require_auditor_signature(response, keys, NS, 1, view_a.epoch_hash(2))
    with pytest.raises(AuditorSignatureError, match="another log"):
        plexi.require_auditor_signature(response, keys, "other.example", 2, view_a.epoch_hash(2))
    with pytest.raises(AuditorSignatureError, match="no trusted auditor"):
        plexi.require_auditor_signature(response, [plexi.public_key(bytes(32))], NS, 2,
                                        view_a.epoch_hash(2))


def test_a_store_belongs_to_one_auditor_key(store: AuditStore) -> None:
    auditor(store, DirectoryLog(directory({b"a/1": b"k"})))
    with pytest.raises(AuditFailed):
        Auditor(store, DirectoryLog(directory()), NS, bytes(32))


def test_bad_namespaces_are_refused(store: AuditStore) -> None:
    for ns in ("", "x" * (consts.MAX_NAMESPACE_BYTES + 1)):
        with pytest.raises(AuditorSignatureError):
            Auditor(store, DirectoryLog(directory()), ns, AUDITOR_KEY)


def test_the_same_on_postgresql(pg_dsn: str) -> None:
    store = AuditStore(pg_dsn)
    honest = directory({b"alice/1": b"k1"}, {b"bob/1": b"k2"})
    a = auditor(store, DirectoryLog(honest))
    assert a.audit_once().signed == 2
    assert_signed(store, honest, range(1, 3))
    rewritten = directory({b"alice/1": b"evil"}, {b"bob/1": b"k2"}, {b"carol/1": b"k3"})
    a.source = SplicedLog(honest, rewritten, cut=2)
    with pytest.raises(AuditFailed):
        a.audit_once()
    assert AuditStore(pg_dsn).halted(NS) == "append_only"


def test_repr_hides_the_key(store: AuditStore) -> None:
    a: Callable[..., Auditor] = auditor
    assert AUDITOR_KEY.hex() not in repr(a(store, DirectoryLog(directory())))


def test_a_range_too_large_for_one_proof_is_fetched_in_smaller_chunks(store: AuditStore) -> None:
    """A server that caps append-only ranges at 2 epochs (as the delivery server caps them):
    the auditor halves its chunk until the proofs come."""
    d = directory(*({f"u{i}/1".encode(): b"k"} for i in range(9)))
    asked: list[tuple[int, int]] = []

    class Capped(DirectoryLog):
        def append_only(self, start: int, end: int) -> bytes:
            asked.append((start, end))
            if end - start > 2:
                raise LogUnavailable("the log answered 400")
            return super().append_only(start, end)

    assert auditor(store, Capped(d), max_epochs_per_proof=8).audit_once().signed == 9
    assert_signed(store, d, range(1, 10))
    assert asked[:3] == [(0, 8), (0, 4), (0, 2)]
    assert all(end - start <= 2 for start, end in asked[3:])


def test_a_single_epoch_the_log_cannot_prove_is_an_error_not_an_alarm(store: AuditStore) -> None:
    class Refusing(DirectoryLog):
        def append_only(self, start: int, end: int) -> bytes:
            raise LogUnavailable("the log answered 500")

    with pytest.raises(LogUnavailable):
        auditor(store, Refusing(directory({b"a/1": b"k"}, {b"b/1": b"k"}))).audit_once()
    assert store.halted(NS) is None and store.signature(NS, 1) is None


def test_append_only_proofs_over_one_mebibyte_decode() -> None:
    """An epoch of ~1,000 updates over 1,000,000 labels makes a ~1 MB append-only step
    (bench keytrans): the auditor's decoder takes up to MAX_APPEND_ONLY_PROOF_BYTES, the other
    proofs stay capped at MAX_PROOF_BYTES."""
    rng = random.Random(7)
    inserted = tuple(AzksElement(NodeLabel(rng.randbytes(32), 256), rng.randbytes(32))
                     for _ in range(25_000))
    raw = AppendOnlyProof((SingleAppendOnlyProof((), inserted),), (4,)).to_bytes()
    assert consts.MAX_PROOF_BYTES < len(raw) < consts.MAX_APPEND_ONLY_PROOF_BYTES
    assert len(AppendOnlyProof.from_bytes(raw).proofs[0].inserted) == 25_000
    with pytest.raises(MalformedProof):
        AppendOnlyProof.from_bytes(bytes(consts.MAX_APPEND_ONLY_PROOF_BYTES + 1))
    with pytest.raises(MalformedProof):
        LookupProof.from_bytes(bytes(consts.MAX_PROOF_BYTES + 1))


def test_an_auditor_joining_late_starts_from_a_trusted_epoch(store: AuditStore) -> None:
    d = directory(*({f"u{i}/1".encode(): b"k"} for i in range(5)))
    late = Auditor(store, DirectoryLog(d), NS, AUDITOR_KEY, start_epoch=3)
    report = late.audit_once()
    assert (report.start, report.end, report.signed) == (3, 5, 2)
    assert store.signature(NS, 3) is None  # trusted, not audited: never signed
    assert_signed(store, d, range(4, 6))
    assert store.base(NS) == AuditedEpoch(3, d.epoch_hash(3))
    # from there on the same checks (here: a changed root of an audited epoch)
    rewritten = directory({b"u0/1": b"evil"}, *({f"u{i}/1".encode(): b"k"} for i in range(1, 6)))
    late.source = DirectoryLog(rewritten)
    with pytest.raises(AuditFailed):
        late.audit_once()


def test_the_trusted_start_root_is_pinned_too(store: AuditStore) -> None:
    d = directory({b"a/1": b"k"}, {b"b/1": b"k"})
    late = Auditor(store, DirectoryLog(d), NS, AUDITOR_KEY, start_epoch=2)
    assert late.audit_once().signed == 0
    late.source = DirectoryLog(directory({b"a/1": b"k"}, {b"b/1": b"evil"}))
    with pytest.raises(AuditFailed):
        late.audit_once()
    assert store.halted(NS) == "root_changed"


def test_a_start_epoch_the_log_has_not_reached_is_refused(store: AuditStore) -> None:
    with pytest.raises(LogUnavailable):
        Auditor(store, DirectoryLog(directory({b"a/1": b"k"})), NS, AUDITOR_KEY,
                start_epoch=5).audit_once()
    assert store.vrf_key(NS) is None  # nothing registered
    with pytest.raises(ValueError):
        Auditor(store, DirectoryLog(directory()), NS, AUDITOR_KEY, start_epoch=-1)
