"""The Flask app in process, driven through ServerClient: auth, device linking, the exact
device-set rule, acknowledge-then-delete, long-poll, expiry with a moved clock, attachments,
problem responses for bad input, and logs that carry no contents."""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2ee_core.server.app import create_app, service_of
from e2ee_core.server.client import ServerClient, credential_from_token
from e2ee_core.server.errors import (
    AccountExists,
    AuthenticationFailed,
    InvalidRequest,
    MismatchedDevices,
    NotFound,
    PayloadTooLarge,
)
from e2ee_core.server.store import SqlStore
from e2ee_core.server.wire import DeviceCredential, OutgoingEnvelope, PreKey, PreKeyUpload
from service_kit import logging_filter
from tests.server.support import (
    FAST_ARGON2,
    PASSWORD,
    FakeClock,
    device_keys,
    in_process_session,
    unique_name,
)

BASE = "http://e2ee.test"


@dataclass
class InProcess:
    app: Any
    clock: FakeClock
    session: requests.Session

    def client(self, credential: DeviceCredential | None = None) -> ServerClient:
        return ServerClient(BASE, credential, session=self.session)

    def account(self, devices: int = 1) -> list[ServerClient]:
        name = unique_name()
        first = self.client()
        first.register(name, PASSWORD, device_keys())
        clients = [first]
        for _ in range(devices - 1):
            more = self.client()
            more.add_device(name, PASSWORD, device_keys())
            clients.append(more)
        for c in clients:  # start from empty queues
            c.acknowledge(e.id for e in c.receive().envelopes)
        return clients


@pytest.fixture(params=["sqlite", "memory"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> InProcess:
    clock = FakeClock()
    db = str(tmp_path / "server.db") if request.param == "sqlite" else "memory:"
    app = create_app({"db": db, "clock": clock,
                      "max_attachment_bytes": 64 * 1024, "poll_interval_seconds": 0.05,
                      **FAST_ARGON2})
    return InProcess(app, clock, in_process_session(app))


def _fanout(sender: ServerClient, recipient: str, payload: bytes,
            targets: list[ServerClient]) -> list[OutgoingEnvelope]:
    return [OutgoingEnvelope(t.address.username, t.address.device_id, payload + b"|" +
                             str(t.address.device_id).encode()) for t in targets
            if t.address != sender.address]


def test_credentials_are_checked(server: InProcess) -> None:
    (alice,) = server.account()
    assert alice.credential is not None
    assert alice.list_devices(alice.address.username)[0].device_id == 1
    forged = credential_from_token(alice.credential.credential[:-4] + "AAAA")
    with pytest.raises(AuthenticationFailed):
        server.client(forged).receive()
    other = DeviceCredential(alice.address.username, 2,
                             alice.credential.credential.replace(".1.", ".2."))
    with pytest.raises(AuthenticationFailed):
        server.client(other).receive()
    for header in ("", "Bearer", "Basic abc", "Bearer not.a.credential", "Bearer " + "x" * 500):
        resp = server.session.get(BASE + "/v1/messages", headers={"Authorization": header})
        assert resp.status_code == 401
        assert resp.headers["Content-Type"] == "application/problem+json"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_linking_a_device_needs_the_password(server: InProcess) -> None:
    (alice,) = server.account()
    name = alice.address.username
    with pytest.raises(AuthenticationFailed):
        server.client().add_device(name, PASSWORD + "x", device_keys())
    with pytest.raises(AuthenticationFailed):
        server.client().add_device(unique_name(), PASSWORD, device_keys())
    with pytest.raises(AccountExists):
        server.client().register(name, PASSWORD, device_keys())
    second = server.client()
    assert second.add_device(name, PASSWORD, device_keys()).device_id == 2
    notice = alice.receive().envelopes
    assert [(e.kind, e.source, e.source_device) for e in notice] == [("device_added", name, 2)]


def test_send_refused_on_skipped_device_then_retried(server: InProcess) -> None:
    alice = server.account(devices=2)
    bob = server.account(devices=3)
    bob_name = bob[0].address.username
    partial = _fanout(alice[0], bob_name, b"hello", [*alice, *bob[:2]])
    with pytest.raises(MismatchedDevices) as refused:
        alice[0].send(bob_name, partial)
    assert refused.value.missing == [(bob_name, 3)] and refused.value.extra == []
    (missing,) = alice[0].fetch_bundles(bob_name, 3)
    assert missing.device_id == 3
    assert alice[0].send(bob_name, _fanout(alice[0], bob_name, b"hello", [*alice, *bob])) == 4
    for device in [*bob, alice[1]]:
        (env,) = device.receive().envelopes
        assert env.content is not None and env.content.startswith(b"hello|")
        assert (env.source, env.source_device) == (alice[0].address.username, 1)
    assert alice[0].receive().envelopes == []


def test_acknowledge_then_delete(server: InProcess) -> None:
    (alice,), (bob,) = server.account(), server.account()
    bob_name = bob.address.username
    for i in range(3):
        alice.send(bob_name, [OutgoingEnvelope(bob_name, 1, b"m%d" % i)])
    first = bob.receive().envelopes
    assert [e.content for e in first] == [b"m0", b"m1", b"m2"]
    assert [e.content for e in bob.receive().envelopes] == [b"m0", b"m1", b"m2"]  # redelivered
    assert bob.acknowledge([first[0].id, first[1].id]) == 2
    assert alice.acknowledge([first[2].id]) == 0  # not alice's queue
    assert [e.content for e in bob.receive().envelopes] == [b"m2"]


def test_receive_pages_through_a_long_queue(server: InProcess) -> None:
    (alice,), (bob,) = server.account(), server.account()
    bob_name = bob.address.username
    for i in range(105):
        alice.send(bob_name, [OutgoingEnvelope(bob_name, 1, b"%d" % i)])
    batch = bob.receive()
    assert len(batch.envelopes) == 100 and batch.more
    bob.acknowledge(e.id for e in batch.envelopes)
    rest = bob.receive()
    assert [e.content for e in rest.envelopes] == [b"%d" % i for i in range(100, 105)]
    assert not rest.more


def test_long_poll_wakes_on_a_send(server: InProcess) -> None:
    (alice,), (bob,) = server.account(), server.account()
    bob_name = bob.address.username
    sender = threading.Timer(0.3, lambda: alice.send(
        bob_name, [OutgoingEnvelope(bob_name, 1, b"wake")]))
    sender.start()
    got = bob.receive(wait=10.0).envelopes
    sender.join()
    assert [e.content for e in got] == [b"wake"]
    assert bob.receive(wait=0.2).envelopes == [got[0]]  # unacknowledged: delivered again


def test_removed_device_gets_nothing_and_others_are_told(server: InProcess) -> None:
    alice = server.account(devices=3)
    (bob,) = server.account()
    name, bob_name = alice[0].address.username, bob.address.username
    bob.send(name, _fanout(bob, name, b"before", [*alice]))
    for a in alice:
        a.acknowledge(e.id for e in a.receive().envelopes)
    alice[0].remove_device(3)
    with pytest.raises(AuthenticationFailed):
        alice[2].receive()
    told = bob.receive().envelopes
    assert [(e.kind, e.source, e.source_device) for e in told] == [("device_removed", name, 3)]
    with pytest.raises(MismatchedDevices) as stale:
        bob.send(name, _fanout(bob, name, b"after", [*alice]))
    assert stale.value.extra == [(name, 3)]
    bob.send(name, _fanout(bob, name, b"after", alice[:2]))
    assert [e.kind for e in alice[1].receive().envelopes] == ["device_removed", "message"]
    assert [d.device_id for d in bob.list_devices(name)] == [1, 2]
    with pytest.raises(NotFound):
        alice[0].remove_device(3)
    alice[1].remove_device(2)  # a device may unlink itself
    with pytest.raises(AuthenticationFailed):
        alice[1].receive()
    del bob_name


def test_undelivered_envelopes_expire_with_the_clock(server: InProcess) -> None:
    (alice,), (bob,) = server.account(), server.account()
    bob_name = bob.address.username
    now_ms = int(server.clock() * 1000)
    alice.send(bob_name, [OutgoingEnvelope(bob_name, 1, b"disappearing")],
               expires_at_ms=now_ms + 24 * 3600 * 1000)
    alice.send(bob_name, [OutgoingEnvelope(bob_name, 1, b"kept")])
    server.clock.advance(24 * 3600 + 1)
    assert [e.content for e in bob.receive().envelopes] == [b"kept"]  # purged on the way
    store = service_of(server.app).store
    if isinstance(store, SqlStore):
        assert store.db.fetchone("SELECT COUNT(*) FROM envelopes")[0] == 1
    server.clock.advance(31 * 24 * 3600)  # past the server's own TTL
    assert bob.receive().envelopes == []
    assert store.purge_expired(int(server.clock() * 1000)).envelopes == 0  # already purged
    if isinstance(store, SqlStore):
        assert store.db.fetchone("SELECT COUNT(*) FROM envelopes")[0] == 0


def test_attachments_round_trip_expire_and_are_bounded(server: InProcess) -> None:
    (alice,), (bob,) = server.account(), server.account()
    blob = secrets.token_bytes(64 * 1024)
    ref = alice.upload_attachment(blob)
    assert ref.size == len(blob) and len(ref.id) == 32
    assert bob.download_attachment(ref.id) == blob
    with pytest.raises(PayloadTooLarge):
        alice.upload_attachment(blob + b"\x00")
    with pytest.raises(InvalidRequest):
        alice.upload_attachment(b"")
    with pytest.raises(NotFound):
        bob.download_attachment("0" * 32)
    resp = server.session.post(BASE + "/v1/attachments", data=b"x", headers={
        "Authorization": f"Bearer {alice.credential.credential}",  # type: ignore[union-attr]
        "Content-Type": "text/plain"})
    assert resp.status_code == 415
    assert requests.Session.get(server.session, BASE + f"/v1/attachments/{ref.id}").status_code \
        == 401
    server.clock.advance(31 * 24 * 3600)
    with pytest.raises(NotFound):
        bob.download_attachment(ref.id)


def test_prekey_replenishment(server: InProcess) -> None:
    (alice,), (bob,) = server.account(), server.account()
    assert bob.prekey_count().one_time_prekeys == 5
    for _ in range(5):
        alice.fetch_bundles(bob.address.username)
    assert bob.prekey_count().one_time_prekeys == 0
    assert alice.fetch_bundles(bob.address.username)[0].one_time_prekey is None
    bob.upload_prekeys(PreKeyUpload(one_time_prekeys=tuple(
        PreKey(100 + i, secrets.token_bytes(33)) for i in range(3))))
    assert bob.prekey_count().one_time_prekeys == 3
    assert alice.fetch_bundles(bob.address.username)[0].one_time_prekey.key_id == 100  # type: ignore[union-attr]


JSON_ENDPOINTS = [("POST", "/v1/accounts"), ("POST", "/v1/devices"), ("PUT", "/v1/keys"),
                  ("POST", "/v1/messages"), ("POST", "/v1/messages/ack")]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=16),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=12)


@settings(max_examples=120, suppress_health_check=[HealthCheck.function_scoped_fixture],
          deadline=None)
@given(endpoint=st.sampled_from(JSON_ENDPOINTS),
       body=st.one_of(json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=64)),
       content_type=st.sampled_from(["application/json", "text/plain"]))
def test_bad_http_input_gets_a_4xx_problem(server: InProcess, endpoint: tuple[str, str],
                                           body: bytes, content_type: str) -> None:
    if not hasattr(server, "_victim"):
        server._victim = server.account()[0]  # type: ignore[attr-defined]
    victim: ServerClient = server._victim  # type: ignore[attr-defined]
    method, path = endpoint
    headers = {"Content-Type": content_type,
               "Authorization": f"Bearer {victim.credential.credential}"}  # type: ignore[union-attr]
    resp = server.session.request(method, BASE + path, data=body, headers=headers)
    if resp.status_code < 300:  # a random body happened to be valid (e.g. empty ack list)
        return
    assert 400 <= resp.status_code < 500, resp.status_code
    assert resp.headers["Content-Type"] == "application/problem+json"
    assert resp.json()["status"] == resp.status_code


def test_bad_paths_and_queries_are_4xx(server: InProcess) -> None:
    (alice,) = server.account()
    auth = {"Authorization": f"Bearer {alice.credential.credential}"}  # type: ignore[union-attr]
    for path, status in [("/v1/messages?wait=abc", 400), ("/v1/messages?wait=1e9", 400),
                         ("/v1/messages?wait=999", 400), ("/v1/keys/NOT-VALID!", 400),
                         ("/v1/keys/" + unique_name(), 404), ("/v1/devices/" + "a" * 40, 400),
                         ("/v1/keys/x/99999999999999999999", 400), ("/v1/nothing", 404)]:
        resp = server.session.get(BASE + path, headers=auth)
        assert resp.status_code == status, path
        assert resp.headers["Content-Type"] == "application/problem+json"
    resp = server.session.delete(BASE + "/v1/devices/0", headers=auth)
    assert resp.status_code == 400


def test_logs_carry_no_contents_credentials_or_names(server: InProcess) -> None:
    payloads = [secrets.token_bytes(48) for _ in range(3)]
    with logging_filter.capture_logs(redacting=False) as cap:
        alice, bob = server.account(devices=2), server.account(devices=2)
        bob_name = bob[0].address.username
        for p in payloads:
            alice[0].send(bob_name, _fanout(alice[0], bob_name, p, [*alice, *bob]))
        for device in bob:
            device.acknowledge(e.id for e in device.receive().envelopes)
        ref = alice[0].upload_attachment(payloads[0])
        bob[1].download_attachment(ref.id)
    assert any("event=envelopes_accepted envelopes=3" in line for line in cap.lines)
    secrets_used: list[bytes | str] = [*payloads, PASSWORD, ref.id, bob_name,
                                       alice[0].address.username]
    secrets_used += [c.credential.credential for c in [*alice, *bob]]  # type: ignore[union-attr]
    assert cap.leaks(secrets_used) == []


def test_configuration_is_checked(tmp_path: Path) -> None:
    from e2ee_core.server.errors import ConfigurationError

    for bad in [{}, {"db": ""}, {"db": str(tmp_path / "x.db"), "max_devices": 0},
                {"db": str(tmp_path / "x.db"), "max_devices": 1.5},
                {"db": str(tmp_path / "x.db"), "envelope_ttl_seconds": "1"},
                {"db": str(tmp_path / "x.db"), "max_device": 3}]:
        with pytest.raises(ConfigurationError):
            create_app(bad)


def test_password_hashes_are_upgraded_on_login(tmp_path: Path) -> None:
    db = str(tmp_path / "server.db")
    old = create_app({"db": db, **FAST_ARGON2})
    client = ServerClient(BASE, session=in_process_session(old))
    name = unique_name()
    client.register(name, PASSWORD, device_keys())
    store = service_of(old).store
    before = store.password_hash(name)
    assert before is not None and before.startswith("$argon2id$") and "t=1" in before
    assert PASSWORD not in before
    new = create_app({"db": db, **FAST_ARGON2, "argon2_time_cost": 2})
    ServerClient(BASE, session=in_process_session(new)).add_device(name, PASSWORD, device_keys())
    after = service_of(new).store.password_hash(name)
    assert after is not None and "t=2" in after


def test_oversized_json_and_envelopes_get_413(server: InProcess) -> None:
    (alice,), (bob,) = server.account(), server.account()
    bob_name = bob.address.username
    with pytest.raises(PayloadTooLarge):
        alice.send(bob_name, [OutgoingEnvelope(bob_name, 1, bytes(256 * 1024 + 1))])
    auth = {"Authorization": f"Bearer {alice.credential.credential}",  # type: ignore[union-attr]
            "Content-Type": "application/json"}
    resp = server.session.post(BASE + "/v1/messages", data=b" " * (13 * 1024 * 1024),
                               headers=auth)
    assert resp.status_code == 413
    assert resp.headers["Content-Type"] == "application/problem+json"
    assert bob.receive().envelopes == []
