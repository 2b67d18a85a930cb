"""Real Signal sessions (e2ee_core.device) through the delivery server: keys published by
devices, bundles fetched from the server start PQXDH sessions, and every device decrypts the
fanout it receives. Neither the store nor the logs ever hold a plaintext."""

from __future__ import annotations

from pathlib import Path

from e2ee_core.client.devices import session_bundle
from e2ee_core.device import Ciphertext, Device
from e2ee_core.server.app import create_app
from e2ee_core.server.client import ServerClient
from e2ee_core.server.wire import DeviceKeys, OutgoingEnvelope, PreKey, SignedPreKey
from service_kit import logging_filter
from service_kit.database import Database
from tests.server.support import FAST_ARGON2, PASSWORD, in_process_session, unique_name


def published_keys(device: Device, one_time: int = 3, kem: int = 2) -> DeviceKeys:
    """What a device uploads: its public identity, signed and KEM prekeys."""
    signed = device.current_signed_pre_key()
    last_resort = device.last_resort_kyber_pre_key()
    return DeviceKeys(
        registration_id=device.registration_id,
        identity_key=device.identity_key,
        signed_prekey=SignedPreKey(signed.id, signed.key_pair.public.serialize(),
                                   signed.signature),
        last_resort_kem_prekey=SignedPreKey(last_resort.id,
                                            last_resort.key_pair.public.serialize(),
                                            last_resort.signature),
        one_time_prekeys=tuple(PreKey(i, k) for i, k in device.generate_pre_keys(one_time)),
        kem_prekeys=tuple(SignedPreKey(i, k, s)
                          for i, k, s in device.generate_kyber_pre_keys(kem)),
    )


class Phone:
    """One device: its Signal state and its server connection."""

    def __init__(self, client: ServerClient, device: Device) -> None:
        self.client, self.device = client, device
        self.inbox: list[bytes] = []

    @property
    def me(self) -> tuple[str, int]:
        a = self.client.address
        return a.username, a.device_id

    def send(self, recipient: str, plaintext: bytes) -> None:
        me = self.me
        targets = [(recipient, d.device_id) for d in self.client.list_devices(recipient)]
        targets += [(me[0], d.device_id) for d in self.client.list_devices(me[0])
                    if d.device_id != me[1]]
        for address in targets:
            if not self.device.has_session(address):
                (bundle,) = self.client.fetch_bundles(*address)
                self.device.start_session(address, session_bundle(bundle))
        self.client.send(recipient, [
            OutgoingEnvelope(u, d, self.device.encrypt((u, d), plaintext).to_bytes())
            for u, d in targets])

    def receive(self) -> None:
        batch = self.client.receive()
        for env in batch.envelopes:
            if env.kind == "message":
                assert env.content is not None
                self.inbox.append(self.device.decrypt((env.source, env.source_device),
                                                      Ciphertext.from_bytes(env.content)))
        self.client.acknowledge(e.id for e in batch.envelopes)


def test_signal_sessions_through_the_server(tmp_path: Path) -> None:
    db = str(tmp_path / "server.db")
    session = in_process_session(create_app({"db": db, **FAST_ARGON2}))
    phones: dict[str, list[Phone]] = {}
    with logging_filter.capture_logs(redacting=False) as cap:
        for _ in ("alice", "bob"):
            name = unique_name()
            phones[name] = []
            for i in range(2):
                device = Device.create()
                client = ServerClient("http://e2ee.test", session=session)
                register = client.register if i == 0 else client.add_device
                register(name, PASSWORD, published_keys(device))
                phones[name].append(Phone(client, device))
        (a_name, alice), (b_name, bob) = phones.items()
        texts = [b"hello bob, from alice's phone", b"hi alice, bob here",
                 b"second message on established sessions"]
        alice[0].send(b_name, texts[0])
        for p in [*alice, *bob]:
            p.receive()
        bob[1].send(a_name, texts[1])
        alice[0].send(b_name, texts[2])  # sessions exist now: plain ratchet messages
        for p in [*alice, *bob]:
            p.receive()
    assert alice[0].inbox == [texts[1]]
    assert alice[1].inbox == [texts[0], texts[1], texts[2]]
    assert bob[0].inbox == [texts[0], texts[1], texts[2]]
    assert bob[1].inbox == [texts[0], texts[2]]
    assert cap.leaks(texts) == []
    stored = Database(db)
    for table in ("envelopes", "devices", "one_time_prekeys", "kem_prekeys"):
        for row in stored.fetchall(f"SELECT * FROM {table}"):
            assert not any(t in bytes(v) for v in row if isinstance(v, bytes) for t in texts)
