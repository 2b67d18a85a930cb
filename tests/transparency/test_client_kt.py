"""The Messenger against a malicious server (issue #16): a key substituted in a bundle, a
response without proof, a device added behind the user's back, the user's own key replaced in
the directory, an epoch rollback, a forked view and a changed directory key. Each on SQLite and
PostgreSQL, with the real server app in this process; the attacker works on the server's
database and on its answers (the transport of :mod:`tests.transparency.conftest`)."""

from __future__ import annotations

import base64
import dataclasses
import secrets
from pathlib import Path
from typing import Any

import pytest
import requests

from e2ee_core.client import (
    DirectoryKeyChanged,
    EpochRollback,
    ForkedView,
    KeyNotInDirectory,
    Messenger,
)
from e2ee_core.client.devices import session_bundle
from e2ee_core.client.store import ClientStore
from e2ee_core.client.transparency import Transparency
from e2ee_core.device import Device
from e2ee_core.keytrans.proofs import HistoryProof, LookupProof
from e2ee_core.server.kt_wire import KtLookup, encode_device_list
from e2ee_core.server.service import hash_credential_secret
from e2ee_core.server.wire import DeviceKeys, PreKey, PreKeyBundle, SignedPreKey
from service_kit.database import Database
from tests.server.support import PASSWORD, unique_name
from tests.transparency.conftest import URL, Server, make_server


class Clock:
    """The Messenger's clock (milliseconds), moved by hand."""

    def __init__(self) -> None:
        self.now = 1_800_000_000_000

    def __call__(self) -> int:
        return self.now


def register(server: Server, name: str | None = None, clock: Clock | None = None,
             link: bool = False) -> Messenger:
    enrol = Messenger.link if link else Messenger.register
    return enrol(URL, name or unique_name(), PASSWORD, session=server.session, prekeys=4,
                 kem_prekeys=1, clock=clock)


def kt_notices(device: Messenger) -> list[tuple[str, str, int]]:
    return [(n.kind, n.username, n.device_id) for n in device.notices()
            if n.kind.startswith("kt_")]


def attacker_bundle(username: str, device_id: int) -> tuple[Device, dict[str, Any]]:
    """A complete, correctly signed bundle of a device the attacker made."""
    attacker = Device.create()
    b = attacker.prekey_bundle(device_id)
    assert b.kyber_pre_key_id is not None and b.kyber_pre_key is not None
    assert b.kyber_pre_key_signature is not None
    wire = PreKeyBundle(
        username, device_id, b.registration_id, b.identity_key,
        SignedPreKey(b.signed_pre_key_id, b.signed_pre_key, b.signed_pre_key_signature),
        SignedPreKey(b.kyber_pre_key_id, b.kyber_pre_key, b.kyber_pre_key_signature), True,
        None if b.pre_key is None or b.pre_key_id is None else PreKey(b.pre_key_id, b.pre_key))
    return attacker, wire.to_json()


def test_honest_server_gives_no_notice(server: Server) -> None:
    alice, bob = register(server), register(server)
    alice2 = register(server, alice.username, link=True)
    alice.send_text(bob.username, "hi")
    assert [m.body.text for m in bob.receive()] == ["hi"]  # type: ignore[union-attr]
    bob.send_text(alice.username, "hello both")
    alice.receive()
    alice2.receive()
    for device in (alice, alice2, bob):
        assert kt_notices(device) == []
        assert device.check_transparency() == []
    pinned = bob.device_sets.kt.pinned()
    assert pinned is not None
    head = server.kt.head()
    assert pinned == (head.epoch, head.root_hash)


def test_substituted_bundle_key_is_refused(server: Server) -> None:
    alice, bob = register(server), register(server)
    attacker, forged = attacker_bundle(bob.username, 1)
    # Without key transparency nothing would stop it: the forged bundle is well signed.
    Device.create().start_session((bob.username, 1),
                                  session_bundle(PreKeyBundle.from_json(forged)))

    def substitute(request: requests.PreparedRequest, body: Any) -> Any:
        if request.path_url.startswith(f"/v1/keys/{bob.username}"):
            body["bundles"] = [forged]
        return body

    server.adapter.tamper = substitute
    with pytest.raises(KeyNotInDirectory) as caught:
        alice.send_text(bob.username, "for bob only")
    assert caught.value.username == bob.username
    assert not alice.device.has_session((bob.username, 1))
    assert kt_notices(alice) == [("kt_key_mismatch", bob.username, 1)]
    assert bob.receive() == []
    # The honest answer goes through.
    server.adapter.tamper = None
    alice.send_text(bob.username, "for bob only")
    assert [m.body.text for m in bob.receive()] == ["for bob only"]  # type: ignore[union-attr]
    assert attacker.identity_key != bob.device.identity_key


def test_a_device_list_without_proof_or_with_a_bad_one_is_refused(server: Server) -> None:
    alice, bob = register(server), register(server)

    def strip(request: requests.PreparedRequest, body: Any) -> Any:
        body.pop("transparency", None)
        return body

    server.adapter.tamper = strip
    with pytest.raises(KeyNotInDirectory):
        alice.devices(bob.username)

    def corrupt(request: requests.PreparedRequest, body: Any) -> Any:
        if "transparency" in body:  # the proof claims another device list (with it, the keys)
            lookup = KtLookup.from_json(body["transparency"])
            proof = LookupProof.from_bytes(lookup.proof)
            forged = dataclasses.replace(proof, value=encode_device_list(
                {d["device_id"]: base64.b64decode(d["identity_key"]) for d in body["devices"]}
                | {7: b"\x05" + bytes(32)}))
            body["transparency"] = KtLookup(lookup.epoch, lookup.root_hash,
                                            forged.to_bytes()).to_json()
        return body

    server.adapter.tamper = corrupt
    with pytest.raises(KeyNotInDirectory):
        alice.devices(bob.username)

    def extra_device(request: requests.PreparedRequest, body: Any) -> Any:
        if "devices" in body:  # a device the directory does not hold
            body["devices"].append({**body["devices"][0], "device_id": 7})
        return body

    server.adapter.tamper = extra_device
    with pytest.raises(KeyNotInDirectory):
        alice.devices(bob.username)
    assert [k for k, _, _ in kt_notices(alice)] == [
        "kt_proof_failed", "kt_proof_failed", "kt_key_mismatch"]
    server.adapter.tamper = None
    assert [d.device_id for d in alice.devices(bob.username).devices] == [1]


def real_device_keys() -> DeviceKeys:
    """The public keys of a real device (the attacker's), as a registration carries them."""
    device = Device.create()
    signed, last_resort = device.current_signed_pre_key(), device.last_resort_kyber_pre_key()
    return DeviceKeys(
        registration_id=device.registration_id, identity_key=device.identity_key,
        signed_prekey=SignedPreKey(signed.id, signed.key_pair.public.serialize(),
                                   signed.signature),
        last_resort_kem_prekey=SignedPreKey(last_resort.id,
                                            last_resort.key_pair.public.serialize(),
                                            last_resort.signature))


def _add_device_silently(server: Server, username: str) -> int:
    """The server links a device of its own to ``username`` and drops the notices."""
    device_id: int = server.store.add_device(
        username, real_device_keys(), hash_credential_secret(secrets.token_urlsafe(32)),
        now_ms=0, expires_at_ms=2**62)
    db: Database = server.store.db
    db.execute("DELETE FROM envelopes WHERE kind = 'device_added' AND source = ?", (username,))
    server.kt.publish_pending()  # it must publish, or others would refuse the device
    return device_id


def test_a_device_added_behind_the_users_back_is_reported(server: Server) -> None:
    clock = Clock()
    alice = register(server, clock=clock)
    bob = register(server)
    linked = register(server, alice.username, link=True)  # a device the user added
    assert alice.receive() == []
    rogue = _add_device_silently(server, alice.username)
    # Others see the rogue device (and would encrypt to it): the directory lists it.
    assert [d.device_id for d in bob.devices(alice.username).devices] == [1, 2, rogue]
    assert rogue not in alice.store.known_devices(alice.username)
    alice.receive()  # no notice arrived; the check is not due yet
    assert kt_notices(alice) == []
    clock.now += 15 * 60 * 1000  # the periodic check on the next receive
    alice.receive()
    assert kt_notices(alice) == [("kt_unknown_device", alice.username, rogue)]
    # Reported once; the device the user linked never is.
    assert alice.check_transparency() == []
    assert linked.device_id not in [d for _, _, d in kt_notices(alice)]


def test_the_users_own_key_replaced_in_the_directory_is_reported(server: Server) -> None:
    alice = register(server)
    db: Database = server.store.db
    db.execute("UPDATE devices SET identity_key = ? WHERE username = ? AND device_id = 1",
               (b"\x05" + secrets.token_bytes(32), alice.username))
    db.execute("INSERT INTO kt_pending (username) VALUES (?)", (alice.username,))
    server.kt.publish_pending()
    notices = alice.check_transparency()
    assert [(n.kind, n.device_id) for n in notices] == [("kt_key_changed", 1)]


def test_an_epoch_rollback_is_refused(server: Server) -> None:
    alice, bob = register(server), register(server)
    old_bundles = alice.server.fetch_bundles_proved(bob.username)
    old_body = server.adapter.recorded[-1][1]
    alice.device_sets.kt.check_bundles(bob.username, *old_bundles)
    register(server)  # the directory moves on
    alice.device_sets.fetch_bundles(bob.username)  # alice sees the newer epoch
    server.adapter.replay = old_body  # the server answers from the older epoch
    with pytest.raises(EpochRollback):
        alice.device_sets.fetch_bundles(bob.username)
    assert ("kt_rollback", alice.username, 0) in kt_notices(alice)
    server.adapter.replay = None
    alice.device_sets.fetch_bundles(bob.username)


def _fork_of(server: Server, tmp_path: Path) -> Server:
    """Another server on another database with the same VRF key: the second view the
    attacker shows (each of its epochs with other contents)."""
    key = server.kt.directory._vrf_secret_key  # the attacker holds the server's keys
    db = str(tmp_path / f"fork-{secrets.token_hex(4)}.db")
    Database(db).create_schema(
        "CREATE TABLE IF NOT EXISTS kt_keys (name TEXT PRIMARY KEY, value {blob} NOT NULL)")
    Database(db).execute("INSERT INTO kt_keys (name, value) VALUES ('vrf_secret_key', ?)",
                         (key,))
    fork = make_server(db)
    assert fork.kt.vrf_public_key == server.kt.vrf_public_key
    while fork.kt.head().epoch < server.kt.head().epoch:
        fork.kt.publish_pending(force=True)
    return fork


def test_a_forked_view_is_refused(server: Server, tmp_path: Path) -> None:
    alice, bob = register(server), register(server)
    alice.send_text(bob.username, "hi")
    seen = alice.device_sets.kt.pinned()
    assert seen is not None
    fork = _fork_of(server, tmp_path)
    fork_head = fork.kt.head()
    assert fork_head.epoch == seen[0] and fork_head.root_hash != seen[1]
    # A device that only ever saw the fork has nothing to compare with (the auditor's part);
    # alice, who saw the other root for that epoch, refuses.
    server.adapter.app = fork.app
    with pytest.raises(ForkedView):
        alice.check_transparency()
    assert ("kt_forked_view", alice.username, 0) in kt_notices(alice)
    # The same through a lookup: a second root for an epoch alice remembers.
    other = register(fork)
    server.adapter.app = fork.app
    _, lookup = other.server.fetch_bundles_proved(other.username)
    assert lookup is not None and lookup.epoch > seen[0]
    alice.device_sets.kt.accept_epoch(lookup.epoch, lookup.root_hash)
    with pytest.raises(ForkedView):
        alice.device_sets.kt.accept_epoch(lookup.epoch, bytes(32))


def test_a_changed_directory_key_is_refused(server: Server, tmp_path: Path) -> None:
    alice = register(server)
    other = make_server(str(tmp_path / "other.db"))
    assert other.kt.vrf_public_key != server.kt.vrf_public_key
    server.adapter.app = other.app
    with pytest.raises(DirectoryKeyChanged):
        alice.check_transparency()
    assert ("kt_directory_key_changed", alice.username, 0) in kt_notices(alice)


def test_a_tampered_history_is_refused(server: Server) -> None:
    alice = register(server)
    register(server, alice.username, link=True)
    original = server.adapter.send

    def flip(request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        response = original(request, *args, **kwargs)
        if request.path_url.startswith("/v1/kt/history/"):  # the newest list without device 2
            proof = HistoryProof.from_bytes(response.content)
            newest = proof.update_proofs[0]
            hidden = dataclasses.replace(newest, value=encode_device_list(
                {1: alice.device.identity_key}))
            response._content = dataclasses.replace(
                proof, update_proofs=(hidden, *proof.update_proofs[1:])).to_bytes()
        return response

    server.adapter.send = flip  # type: ignore[method-assign]
    with pytest.raises(KeyNotInDirectory):
        alice.check_transparency()
    assert ("kt_proof_failed", alice.username, 0) in kt_notices(alice)


def test_the_first_check_of_an_answer_older_than_the_head_is_no_rollback(
        server: Server) -> None:
    """The VRF key is fetched (trust on first use) after the answer it checks; the newer head
    must not make that answer look rolled back."""
    alice, bob = register(server), register(server)
    store = ClientStore(":memory:")
    fresh = Transparency(store, alice.server, clock=lambda: 0, username="nobody",
                         device_id=1, identity_key=b"\x05" + bytes(32))
    answer = alice.server.fetch_bundles_proved(bob.username)
    server.kt.publish_pending(force=True)  # the head moves on before the key is fetched
    assert fresh.check_bundles(bob.username, *answer) == answer[0]
    assert answer[1] is not None and fresh.pinned() == (answer[1].epoch, answer[1].root_hash)


def test_a_head_that_stops_moving_is_reported_once(server: Server) -> None:
    clock = Clock()
    alice = register(server, clock=clock)
    assert alice.check_transparency() == []
    clock.now += 2 * 60 * 60 * 1000  # two hours, and the server published nothing
    assert [n.kind for n in alice.check_transparency()] == ["kt_stale"]
    assert alice.check_transparency() == []  # once per epoch
    server.kt.publish_pending(force=True)  # what the epoch timer does: an empty epoch
    assert alice.check_transparency() == []
    clock.now += 30 * 60 * 1000  # the new epoch was first seen half an hour ago: fresh
    assert alice.check_transparency() == []
    clock.now += 60 * 60 * 1000
    assert [n.kind for n in alice.check_transparency()] == ["kt_stale"]


def test_monitoring_pages_back_to_the_last_version_checked(server: Server) -> None:
    """The check asks for the newest versions only, and more while they do not reach back to
    the version it checked last: 2 x 12 versions since then, every rogue device reported."""
    alice = register(server)  # the baseline: one version asked for
    assert "/v1/kt/history/" + alice.username + "?most_recent=1" in [
        path for path, _ in server.adapter.recorded]
    rogues = []
    for _ in range(12):  # each added and removed again: two versions
        rogues.append(_add_device_silently(server, alice.username))
        server.store.remove_device(alice.username, rogues[-1], now_ms=0, expires_at_ms=2**62)
        server.store.db.execute("DELETE FROM envelopes WHERE source = ?", (alice.username,))
        server.kt.publish_pending()
    server.adapter.recorded.clear()
    notices = alice.check_transparency()
    assert [(n.kind, n.device_id) for n in notices] == [("kt_unknown_device", r) for r in rogues]
    asked = [path.rpartition("=")[2] for path, _ in server.adapter.recorded
             if path.startswith("/v1/kt/history/")]
    assert asked == ["16", "64"]
    assert alice.check_transparency() == []
