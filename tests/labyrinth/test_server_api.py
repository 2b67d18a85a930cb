"""The Labyrinth mailbox API of the delivery server (/v1/labyrinth), in process through
LabyrinthClient, on the memory: store, SQLite and PostgreSQL: every endpoint, bad input as 4xx
problems, accounts kept apart, the ORF share deleted with its device, paging."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from e2ee_core.labyrinth import epochs, mailbox, orf
from e2ee_core.server.app import create_app
from e2ee_core.server.client import ServerClient
from e2ee_core.server.errors import (
    DeviceWasRemoved,
    Forbidden,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
)
from e2ee_core.server.labyrinth_api import labyrinth_of
from e2ee_core.server.labyrinth_client import LabyrinthClient
from e2ee_core.server.labyrinth_errors import AlreadyExists, EpochConflict, QuotaExceeded
from e2ee_core.server.labyrinth_wire import (
    AttachmentReference,
    Cursor,
    EpochMemberUpload,
    LoadQuery,
    MemberKeys,
    RecordKey,
    StoredRecord,
)
from tests.server.support import (
    FAST_ARGON2,
    PASSWORD,
    FakeClock,
    device_keys,
    in_process_session,
    unique_name,
)

BASE = "http://e2ee.test"


def member_keys() -> MemberKeys:
    return MemberKeys(os.urandom(32), os.urandom(32), os.urandom(64), os.urandom(32),
                      os.urandom(64))


@dataclass
class Server:
    app: Any
    session: requests.Session

    def account(self, devices: int = 1) -> list[LabyrinthClient]:
        name = unique_name()
        first = ServerClient(BASE, session=self.session)
        first.register(name, PASSWORD, device_keys(0, 0))
        clients = [first]
        for _ in range(devices - 1):
            more = ServerClient(BASE, session=self.session)
            more.add_device(name, PASSWORD, device_keys(0, 0))
            clients.append(more)
        labs = [LabyrinthClient(c) for c in clients]
        for lab in labs:
            lab.put_member_keys(member_keys())
        return labs

    def raw(self, lab: LabyrinthClient, method: str, path: str, body: Any = None, *,
            content_type: str = "application/json") -> requests.Response:
        assert lab.server.credential is not None
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.session.request(method, BASE + path, data=data, headers={
            "Authorization": f"Bearer {lab.server.credential.credential}",
            "Content-Type": content_type})


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    if request.param == "postgres":
        db = request.getfixturevalue("pg_dsn")
    else:
        db = "memory:" if request.param == "memory" else str(tmp_path / "server.db")
    app = create_app({"db": db, "clock": FakeClock(), **FAST_ARGON2})
    yield Server(app, in_process_session(app))
    listener = app.extensions.get("e2ee_wakeups")
    if listener is not None:  # PostgreSQL: stop LISTEN before the test database is dropped
        listener.stop()


def first_epoch(lab: LabyrinthClient, *others: LabyrinthClient) -> epochs.Epoch:
    members = [EpochMemberUpload(lab.member, os.urandom(32))]
    members += [EpochMemberUpload(o.member, os.urandom(32), os.urandom(81)) for o in others]
    root = epochs.first_epoch_root()
    return epochs.Epoch(0, lab.open_epoch(0, members), root)


def stored(r: mailbox.MailboxRecord) -> StoredRecord:
    return StoredRecord(r.inbox_id, r.thread_id, r.message_id, r.timestamp, r.epoch_id,
                        r.version, r.blob)


# -- members and epochs -------------------------------------------------------------------------
def test_members_list_keys_and_current_macs(server: Server) -> None:
    a, b = server.account(2)
    keys = member_keys()
    a.put_member_keys(keys)
    listed = {m.member: m for m in b.members()}
    assert set(listed) == {"d1", "d2"} and listed["d1"].keys == keys
    assert listed["d1"].membership_mac is None
    epoch = first_epoch(a, b)
    assert all(m.membership_mac is not None for m in b.members())
    assert b.epoch().epoch_id == epoch.epoch_id


def test_a_device_writes_only_its_own_member_keys(server: Server) -> None:
    a, _b = server.account(2)
    with pytest.raises(Forbidden):
        a.put_member_keys(member_keys(), member="d2")
    with pytest.raises(NotFound):  # an unregistered virtual device
        a.put_member_keys(member_keys(), member="v" + "00" * 16)


def test_epochs_chain_by_compare_and_set(server: Server) -> None:
    a, b = server.account(2)
    first = first_epoch(a, b)
    with pytest.raises(AlreadyExists):
        first_epoch(a)
    opened = epochs.open_epoch(first, [], epochs.SenderKeys(os.urandom(32), os.urandom(32)))
    ups = [EpochMemberUpload("d1", os.urandom(32), os.urandom(81))]
    with pytest.raises(EpochConflict):  # wrong sequence id
        b.open_epoch(2, ups, previous_epoch_id=first.epoch_id,
                     encrypted_previous_sequence_id=opened.previous.encrypted_sequence_id,
                     encrypted_previous_root_key=opened.previous.encrypted_root_key)
    with pytest.raises(EpochConflict):  # the opener (d2) is not among the members
        b.open_epoch(1, ups, previous_epoch_id=first.epoch_id,
                     encrypted_previous_sequence_id=b"s", encrypted_previous_root_key=b"r")
    second = b.open_epoch(1, [*ups, EpochMemberUpload("d2", os.urandom(32))],
                          previous_epoch_id=first.epoch_id,
                          encrypted_previous_sequence_id=opened.previous.encrypted_sequence_id,
                          encrypted_previous_root_key=opened.previous.encrypted_root_key,
                          head=b"signed head")
    with pytest.raises(EpochConflict):  # a stale opener loses the race
        a.open_epoch(1, ups, previous_epoch_id=first.epoch_id,
                     encrypted_previous_sequence_id=b"s", encrypted_previous_root_key=b"r")
    listed = a.all_epochs()
    assert [e.sequence_id for e in listed] == [0, 1]
    assert listed[1].epoch_id == second and listed[1].previous_epoch_id == first.epoch_id
    assert listed[1].encrypted_previous_root_key == opened.previous.encrypted_root_key
    assert listed[1].head == b"signed head" and listed[1].opener == "d2"
    assert listed[1].entropy_message is not None  # d1's, addressed to it
    assert b.epochs(after_sequence=0)[0].entropy_message is None  # d2 got none
    assert a.epoch(first.epoch_id).sequence_id == 0
    assert a.epochs(after_sequence=0, limit=1)[0].epoch_id == second


def test_entropy_messages_go_to_their_addressee(server: Server) -> None:
    a, b = server.account(2)
    first_epoch(a, b)
    with pytest.raises(Forbidden):
        a.epochs(member="d2")
    with pytest.raises(Forbidden):
        a.epoch(member="d2")
    assert b.epoch().entropy_message is not None


def test_epoch_members_must_exist(server: Server) -> None:
    (a,) = server.account(1)
    with pytest.raises(NotFound):
        a.open_epoch(0, [EpochMemberUpload("d1", os.urandom(32)),
                         EpochMemberUpload("d9", os.urandom(32), os.urandom(81))])
    with pytest.raises(NotFound):
        a.open_epoch(0, [EpochMemberUpload("d1", os.urandom(32)),
                         EpochMemberUpload("v" + "11" * 16, os.urandom(32))])
    with pytest.raises(NotFound):
        a.epoch()


def test_membership_mac_of_a_new_device(server: Server) -> None:
    a, b = server.account(2)
    first_epoch(a)
    assert b.epoch().membership_mac is None
    mac = os.urandom(32)
    b.put_membership_mac(mac)
    assert b.epoch().membership_mac == mac
    with pytest.raises(Forbidden):
        b.put_membership_mac(mac, member="d1")


# -- ORF ----------------------------------------------------------------------------------------
def test_orf_shares_keep_one_mapping_across_devices(server: Server) -> None:
    a, b = server.account(2)
    a.orf_init()
    with pytest.raises(AlreadyExists):
        b.orf_init()
    client_a = orf.client_init()
    client_b, token = orf.client_evolve(client_a)
    with pytest.raises(NotFound):  # b has no share yet
        b.orf_evaluate([orf.client_map(client_b, b"c", b"x")])
    a.orf_evolve("d1", "d2", token.value)
    with pytest.raises(AlreadyExists):
        a.orf_evolve("d1", "d2", token.value)
    out_a = a.orf_evaluate([orf.client_map(client_a, b"c", b"x"),
                            orf.client_map(client_a, b"c", b"y")], domain="attachments")
    out_b = b.orf_evaluate([orf.client_map(client_b, b"c", b"x"),
                            orf.client_map(client_b, b"c", b"y")], domain="attachments")
    assert out_a == out_b and out_a[0] != out_a[1]
    assert a.orf_evaluate([orf.client_map(client_a, b"c", b"x")]) != out_a[:1]  # domain


def test_removed_device_loses_its_share(server: Server) -> None:
    a, b = server.account(2)
    a.orf_init()
    client_b, token = orf.client_evolve(orf.client_init())
    a.orf_evolve("d1", "d2", token.value)
    lab = labyrinth_of(server.app)
    username = a.server.address.username
    assert lab.store.share(username, "d2") is not None
    a.server.remove_device(2)
    assert lab.store.share(username, "d2") is None
    assert "d2" not in {m.member for m in a.members()}
    with pytest.raises(DeviceWasRemoved):
        b.orf_evaluate([orf.client_map(client_b, b"c", b"x")])
    with pytest.raises(NotFound):  # nor can anyone evolve to it again
        a.orf_evolve("d1", "d2", token.value)


def test_orf_refuses_bad_points_scalars_and_others_shares(server: Server) -> None:
    a, b = server.account(2)
    a.orf_init()
    with pytest.raises(InvalidRequest):
        a.orf_evaluate([bytes(32)])  # the identity is not a valid point
    with pytest.raises(InvalidRequest):
        a.orf_evaluate([b"\xff" * 32])
    with pytest.raises(InvalidRequest):
        a.orf_evolve("d1", "d2", bytes(32))  # zero scalar
    with pytest.raises(InvalidRequest):
        a.orf_evolve("d1", "d2", b"\xff" * 32)  # not canonical
    with pytest.raises(Forbidden):
        b.orf_evolve("d1", "d2", orf.Scalar.random().value)
    with pytest.raises(NotFound):
        a.orf_evolve("d1", "d7", orf.Scalar.random().value)


def test_orf_evaluations_per_device_are_limited(server: Server) -> None:
    a, b = server.account(2)
    a.orf_init()
    client_b, token = orf.client_evolve(orf.client_init())
    a.orf_evolve("d1", "d2", token.value)
    labyrinth_of(server.app).orf_points_per_minute = 3
    point = orf.client_map(orf.client_init(), b"c", b"x")
    a.orf_evaluate([point, point])
    with pytest.raises(RateLimited) as refused:
        a.orf_evaluate([point, point])
    assert 1 <= refused.value.retry_after <= 60
    assert len(b.orf_evaluate([orf.client_map(client_b, b"c", b"x")] * 3)) == 3  # per device


# -- virtual devices ----------------------------------------------------------------------------
def test_virtual_device_lifecycle(server: Server) -> None:
    a, b = server.account(2)
    vid = os.urandom(16)
    member = "v" + vid.hex()
    a.create_vdevice(vid, b"bundle bytes")
    with pytest.raises(AlreadyExists):
        b.create_vdevice(vid, b"other")
    got = b.vdevice(vid)
    assert got.bundle == b"bundle bytes" and got.created_by == 1
    assert b.vdevice_ids() == [vid]
    keys = member_keys()
    a.put_member_keys(keys, member=member)
    epoch = first_epoch(a)
    a.put_membership_mac(os.urandom(32), member=member)
    a.orf_init()
    a.orf_evolve("d1", member, orf.Scalar.random().value)  # enrolled device -> vdevice
    b.orf_evolve(member, "d2", orf.Scalar.random().value)  # restoring device <- vdevice
    assert b.epoch(epoch.epoch_id, member=member).membership_mac is not None
    b.delete_vdevice(vid)
    assert b.vdevice_ids() == []
    assert member not in {m.member for m in a.members()}
    assert labyrinth_of(server.app).store.share(a.server.address.username, member) is None
    with pytest.raises(NotFound):
        b.vdevice(vid)
    with pytest.raises(NotFound):
        b.delete_vdevice(vid)


def test_only_an_enrolled_device_registers_a_virtual_device(server: Server) -> None:
    (a,) = server.account(1)
    newcomer = ServerClient(BASE, session=server.session)
    newcomer.add_device(a.server.address.username, PASSWORD, device_keys(0, 0))
    with pytest.raises(Forbidden):  # no Labyrinth keys published yet
        LabyrinthClient(newcomer).create_vdevice(os.urandom(16), b"bundle")
    assert a.vdevice_ids() == []


def test_virtual_device_quota(server: Server) -> None:
    (a,) = server.account(1)
    labyrinth_of(server.app).store.max_vdevices = 2
    a.create_vdevice(os.urandom(16), b"1")
    a.create_vdevice(os.urandom(16), b"2")
    with pytest.raises(QuotaExceeded):
        a.create_vdevice(os.urandom(16), b"3")


# -- mailbox ------------------------------------------------------------------------------------
def _seal_many(epoch: epochs.Epoch, count: int, *, threads: int = 3,
               same_time: bool = False) -> list[StoredRecord]:
    return [stored(mailbox.seal(epoch, inbox_id="inbox", thread_id=f"t{k % threads}",
                                message_id=f"m{k:05d}", timestamp=1000 if same_time else 1000 + k,
                                message=f"message {k}".encode())) for k in range(count)]


def test_records_round_trip_and_open(server: Server) -> None:
    a, b = server.account(2)
    epoch = first_epoch(a, b)
    records = _seal_many(epoch, 5)
    assert a.save(records) == 5
    page = b.load()
    assert page.cursor is None and [r.message_id for r in page.records] == [
        "m00004", "m00003", "m00002", "m00001", "m00000"]
    opened = [mailbox.open_record(epoch, mailbox.MailboxRecord(
        r.inbox_id, r.thread_id, r.message_id, r.timestamp, r.epoch_id, r.version, r.blob))
        for r in page.records]
    assert opened[-1] == b"message 0"


@pytest.mark.parametrize("same_time", [False, True])
def test_paging_returns_every_record_once_newest_first(server: Server, same_time: bool) -> None:
    (a,) = server.account(1)
    epoch = first_epoch(a)
    records = _seal_many(epoch, 53, same_time=same_time)
    a.save(records)
    got = list(a.iter_records(LoadQuery(limit=7)))
    key = lambda r: (r.timestamp, r.inbox_id, r.thread_id, r.message_id)  # noqa: E731
    assert got == sorted(records, key=key, reverse=True)
    thread = list(a.iter_records(LoadQuery(thread_id="t1", limit=4)))
    assert thread == [r for r in got if r.thread_id == "t1"]
    window = list(a.iter_records(LoadQuery(since=1010, until=1020, limit=3)))
    assert window == [r for r in got if 1010 <= r.timestamp < 1020]
    by_id = a.load(LoadQuery(message_id="m00010")).records
    assert [r.message_id for r in by_id] == ["m00010"]


def test_save_replaces_and_delete_frees(server: Server) -> None:
    (a,) = server.account(1)
    epoch = first_epoch(a)
    record = _seal_many(epoch, 1)[0]
    a.save([record])
    newer = StoredRecord(record.inbox_id, record.thread_id, record.message_id, 5000,
                         record.epoch_id, record.version, b"replacement blob")
    assert a.save([newer]) == 1
    assert a.load().records == (newer,)
    key = RecordKey(record.inbox_id, record.thread_id, record.message_id)
    assert a.delete([key, RecordKey("inbox", "t", "absent")]) == 1
    assert a.load().records == ()
    assert a.delete([key]) == 0


def test_records_name_an_epoch_of_the_account(server: Server) -> None:
    (a,) = server.account(1)
    (other,) = server.account(1)
    foreign = first_epoch(other)
    with pytest.raises(NotFound):
        a.save([StoredRecord("i", "t", "m", 1, foreign.epoch_id, 3, b"x")])


def test_mailbox_quotas(server: Server) -> None:
    (a,) = server.account(1)
    epoch = first_epoch(a)
    store = labyrinth_of(server.app).store
    store.max_messages = 3
    records = _seal_many(epoch, 4)
    with pytest.raises(QuotaExceeded):
        a.save(records)
    assert a.load().records == ()  # all or nothing
    a.save(records[:3])
    a.save(records[:3])  # replacing does not count twice
    store.max_message_bytes = sum(len(r.blob) for r in records[:3])
    a.delete([RecordKey(records[0].inbox_id, records[0].thread_id, records[0].message_id)])
    big = StoredRecord("inbox", "t", "big", 1, epoch.epoch_id, 3, b"x" * 1000)
    with pytest.raises(QuotaExceeded):
        a.save([big])


def test_accounts_are_kept_apart(server: Server) -> None:
    (a,) = server.account(1)
    (eve,) = server.account(1)
    epoch = first_epoch(a)
    a.save(_seal_many(epoch, 3))
    vid = os.urandom(16)
    a.create_vdevice(vid, b"bundle")
    index = os.urandom(32)
    a.put_reference(index, AttachmentReference(b"ref", os.urandom(32)))
    a.orf_init()
    assert eve.load().records == ()
    assert eve.members()[0].member == "d1" and eve.members()[0].keys != a.members()[0].keys
    with pytest.raises(NotFound):
        eve.epoch()
    with pytest.raises(NotFound):
        eve.vdevice(vid)
    with pytest.raises(NotFound):
        eve.reference(index)
    assert eve.vdevice_ids() == []
    eve.orf_init()  # its own account's first share, not a's
    with pytest.raises(NotFound):
        eve.orf_evolve("v" + vid.hex(), "d1", orf.Scalar.random().value)


# -- attachment references ----------------------------------------------------------------------
def test_attachment_references(server: Server) -> None:
    a, b = server.account(2)
    index = os.urandom(32)
    ref = AttachmentReference(b"opaque reference", os.urandom(32))
    a.put_reference(index, ref)
    assert b.reference(index) == ref
    replaced = AttachmentReference(b"other", os.urandom(32))
    a.put_reference(index, replaced)
    assert b.reference(index) == replaced
    b.delete_reference(index)
    with pytest.raises(NotFound):
        a.reference(index)
    with pytest.raises(NotFound):
        a.delete_reference(index)
    labyrinth_of(server.app).store.max_refs = 1
    a.put_reference(index, ref)
    with pytest.raises(QuotaExceeded):
        a.put_reference(os.urandom(32), ref)


# -- bad input: always a 4xx problem ------------------------------------------------------------
BAD_REQUESTS: list[tuple[str, str, Any]] = [
    ("PUT", "/v1/labyrinth/members/d1", {"device_key_pub": "AAAA"}),
    ("PUT", "/v1/labyrinth/members/x1", {}),
    ("PUT", "/v1/labyrinth/members/d0", {}),
    ("PUT", "/v1/labyrinth/members/d99999999999", {}),
    ("POST", "/v1/labyrinth/epochs", {"sequence_id": 0, "members": []}),
    ("POST", "/v1/labyrinth/epochs", {"sequence_id": -1, "members": [
        {"member": "d1", "membership_mac": "A" * 43 + "="}]}),
    ("POST", "/v1/labyrinth/epochs", {"sequence_id": 0, "previous_epoch_id": 5, "members": [
        {"member": "d1", "membership_mac": "A" * 43 + "="}]}),
    ("POST", "/v1/labyrinth/epochs", {"sequence_id": 0, "members": [
        {"member": "d1", "membership_mac": "AAAA"}]}),
    ("POST", "/v1/labyrinth/epochs", {"sequence_id": 0, "members": [
        {"member": "d1", "membership_mac": "A" * 43 + "="},
        {"member": "d1", "membership_mac": "A" * 43 + "="}]}),
    ("POST", "/v1/labyrinth/epochs", [1, 2]),
    ("GET", "/v1/labyrinth/epochs?after_sequence=-1", None),
    ("GET", "/v1/labyrinth/epochs?limit=0", None),
    ("GET", "/v1/labyrinth/epochs?limit=%C2%B2", None),
    ("GET", "/v1/labyrinth/epochs?member=zz", None),
    ("GET", "/v1/labyrinth/epochs?bogus=1", None),
    ("GET", "/v1/labyrinth/epochs/0", None),
    ("GET", "/v1/labyrinth/epochs/99999999999999999999999", None),
    ("PUT", "/v1/labyrinth/epochs/current/members/d1", {"membership_mac": 3}),
    ("POST", "/v1/labyrinth/orf/evolve", {"from": "d1", "to": "d1", "token": "A" * 43 + "="}),
    ("POST", "/v1/labyrinth/orf/evolve", {"from": "d1", "to": "d2", "token": "AAAA"}),
    ("POST", "/v1/labyrinth/orf/evaluate", {"domain": "Bad Domain", "blinded": ["A" * 43 + "="]}),
    ("POST", "/v1/labyrinth/orf/evaluate", {"domain": "d", "blinded": []}),
    ("POST", "/v1/labyrinth/orf/evaluate", {"domain": "d", "blinded": ["A" * 43 + "="] * 65}),
    ("PUT", "/v1/labyrinth/vdevices/XYZ", {"bundle": "AAAA"}),
    ("PUT", "/v1/labyrinth/vdevices/" + "00" * 16, {"bundle": "not base64!"}),
    ("PUT", "/v1/labyrinth/vdevices/" + "00" * 16, {"bundle": "A" * 100_000}),
    ("GET", "/v1/labyrinth/vdevices/" + "0" * 31, None),
    ("POST", "/v1/labyrinth/messages", {"records": []}),
    ("POST", "/v1/labyrinth/messages", {"records": [{"inbox_id": "", "thread_id": "t",
                                                     "message_id": "m", "timestamp": 1,
                                                     "epoch_id": 1, "version": 3,
                                                     "blob": "AAAA"}]}),
    ("POST", "/v1/labyrinth/messages", {"records": [{"inbox_id": "i", "thread_id": "t\x00",
                                                     "message_id": "m", "timestamp": 1,
                                                     "epoch_id": 1, "version": 3,
                                                     "blob": "AAAA"}]}),
    ("POST", "/v1/labyrinth/messages", {"records": [{"inbox_id": "i", "thread_id": "t",
                                                     "message_id": "m", "timestamp": 1.5,
                                                     "epoch_id": 1, "version": 3,
                                                     "blob": "AAAA"}]}),
    ("POST", "/v1/labyrinth/messages", {"records": [{"inbox_id": "i", "thread_id": "t",
                                                     "message_id": "m", "timestamp": 1,
                                                     "epoch_id": 1, "version": 3,
                                                     "blob": "AAAA"}] * 201}),
    ("GET", "/v1/labyrinth/messages?cursor=!!!", None),
    ("GET", "/v1/labyrinth/messages?cursor=WzEsMiwzXQ", None),
    ("GET", "/v1/labyrinth/messages?limit=1001", None),
    ("GET", "/v1/labyrinth/messages?since=1e3", None),
    ("GET", "/v1/labyrinth/messages?thread_id=", None),
    ("GET", "/v1/labyrinth/messages?other=1", None),
    ("POST", "/v1/labyrinth/messages/delete", {"keys": [{"inbox_id": "i"}]}),
    ("PUT", "/v1/labyrinth/attachment-refs/" + "00" * 31, {"reference": "AA==",
                                                           "mac": "A" * 43 + "="}),
    ("PUT", "/v1/labyrinth/attachment-refs/" + "00" * 32, {"reference": "AA==", "mac": "AA=="}),
    ("PUT", "/v1/labyrinth/attachment-refs/" + "00" * 32, {"reference": "AA==",
                                                           "mac": "A" * 43 + "=", "x": 1}),
]


@pytest.mark.parametrize(("method", "path", "body"), BAD_REQUESTS)
def test_bad_input_is_a_4xx_problem(server: Server, method: str, path: str, body: Any) -> None:
    a, _ = server.account(2)
    answer = server.raw(a, method, path, body)
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)
    assert answer.headers["Content-Type"].startswith("application/problem+json")


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"[" * 10_000 + b"]" * 10_000])
def test_malformed_bodies(server: Server, body: bytes) -> None:
    (a,) = server.account(1)
    answer = server.raw(a, "POST", "/v1/labyrinth/messages", body)
    assert answer.status_code == 400


def test_wrong_media_type_and_no_credential(server: Server) -> None:
    (a,) = server.account(1)
    answer = server.raw(a, "POST", "/v1/labyrinth/messages", b"{}", content_type="text/plain")
    assert answer.status_code == 415
    anonymous = server.session.get(BASE + "/v1/labyrinth/messages")
    assert anonymous.status_code == 401
    assert anonymous.headers["Content-Type"].startswith("application/problem+json")


def test_oversized_field_is_413(server: Server) -> None:
    (a,) = server.account(1)
    epoch = first_epoch(a)
    with pytest.raises(PayloadTooLarge):
        a.save([StoredRecord("i", "t", "m", 1, epoch.epoch_id, 3, b"x" * (256 * 1024 + 1))])


def test_a_foreign_cursor_is_only_a_position(server: Server) -> None:
    (a,) = server.account(1)
    epoch = first_epoch(a)
    a.save(_seal_many(epoch, 4))
    page = a.load(LoadQuery(cursor=Cursor(1002, "inbox", "t2", "m00003")))
    assert [r.timestamp for r in page.records] == [1002, 1001, 1000]


# -- a client facing a malicious or broken server -----------------------------------------------
_RECORD = {"inbox_id": "i", "thread_id": "t", "message_id": "m", "timestamp": 5, "epoch_id": 1,
           "version": 3, "blob": "AAAA"}
_KEYS = {"device_key_pub": "AAAA", "storage_key_pub": "AAAA", "storage_key_sig": "AAAA",
         "auth_key_pub": "AAAA", "auth_key_sig": "AAAA"}
_EPOCH = {"epoch_id": 7, "sequence_id": 0, "previous_epoch_id": None,
          "encrypted_previous_sequence_id": None, "encrypted_previous_root_key": None,
          "head": None, "opener": "d1", "opener_keys": _KEYS, "created_at_ms": 1,
          "entropy_message": None, "membership_mac": None}
MALFORMED_ANSWERS: list[tuple[str, str, Any]] = [
    ("load", "/v1/labyrinth/messages", {"records": "nope", "cursor": None}),
    ("load", "/v1/labyrinth/messages", {"records": [{"inbox_id": "i"}], "cursor": None}),
    ("load", "/v1/labyrinth/messages", {"records": [], "cursor": "!!"}),
    ("epochs", "/v1/labyrinth/epochs", {"epochs": [{"epoch_id": 0}]}),
    ("epochs", "/v1/labyrinth/epochs", [1]),
    ("members", "/v1/labyrinth/members", {"members": [{"member": "x"}]}),
    ("vdevices", "/v1/labyrinth/vdevices", {"vdevices": ["zz"]}),
    ("evaluate", "/v1/labyrinth/orf/evaluate", {"outputs": ["AAAA"]}),
    ("evaluate", "/v1/labyrinth/orf/evaluate", {"outputs": []}),
    # A server that would keep a client paging for ever: the same page and cursor again.
    ("iter", "/v1/labyrinth/messages", {"records": [_RECORD], "cursor": Cursor(
        5, "i", "t", "m").encode()}),
    ("iter", "/v1/labyrinth/messages", {"records": [], "cursor": Cursor(5, "i", "t", "m")
                                        .encode()}),
    ("iter", "/v1/labyrinth/messages", {"records": [_RECORD, _RECORD], "cursor": None}),
    ("all_epochs", "/v1/labyrinth/epochs", {"epochs": [_EPOCH]}),
]


@pytest.mark.parametrize(("call", "path", "answer"), MALFORMED_ANSWERS)
def test_malformed_answers_are_unexpected_responses(call: str, path: str, answer: Any) -> None:
    from flask import Flask, Response

    from e2ee_core.server.errors import UnexpectedResponse
    from e2ee_core.server.wire import DeviceCredential

    broken = Flask("broken")

    @broken.route(path, methods=["GET", "POST"])
    def answer_route() -> Response:
        return Response(json.dumps(answer), mimetype="application/json")

    client = ServerClient(BASE, DeviceCredential("alice", 1, "alice.1." + "A" * 43),
                          session=in_process_session(broken))
    lab = LabyrinthClient(client)
    calls: dict[str, Callable[[], object]] = {
        "load": lambda: lab.load(),
        "iter": lambda: list(lab.iter_records()),
        "epochs": lambda: lab.epochs(),
        "all_epochs": lambda: lab.all_epochs(),
        "members": lambda: lab.members(),
        "vdevices": lambda: lab.vdevice_ids(),
        "evaluate": lambda: lab.orf_evaluate([os.urandom(32)]),
    }
    with pytest.raises(UnexpectedResponse):
        calls[call]()
