"""Virtual devices: bundles, restoring from a recovery code, chaining, revocation.

The scenario keeps the server's records in plain lists (the core is sans-I/O); the client
tests run the same flows against the real server.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2ee_core.labyrinth import epoch_chain, epochs, mailbox, orf, primitives, virtual_devices
from e2ee_core.labyrinth.consts import (
    RECOVERY_ALPHABET,
    SIGNATURE_USE_EPOCH_STORAGE_AUTH_KEY,
    SIGNATURE_USE_EPOCH_STORAGE_KEY,
    VDEVICE_BUNDLE_LEN,
)
from e2ee_core.labyrinth.errors import (
    DecryptionFailed,
    EpochChainTruncated,
    InvalidEpoch,
    InvalidVirtualDevice,
    LabyrinthError,
    RecoveryCodeUncorrectable,
)
from e2ee_core.labyrinth.recovery_codes import RecoveryCode, correct
from e2ee_core.labyrinth.virtual_devices import (
    BackwardStep,
    DeviceKeys,
    ForwardStep,
    VirtualDeviceBundle,
)

USER = "100012345678901"


@dataclass
class Device:
    keys: DeviceKeys
    auth_priv: bytes
    auth_pub: bytes

    @classmethod
    def new(cls) -> Device:
        from e2ee_core.labyrinth import hpke
        return cls(DeviceKeys.generate(), *hpke.generate_keypair())

    def member(self, epoch: epochs.Epoch) -> epochs.Member:
        return epochs.Member(self.keys.device_pub, self.keys.storage_pub,
                             self.keys.storage_signature(),
                             epochs.membership_mac(epoch.root_key, epoch.sequence_id,
                                                   self.keys.device_pub))

    def auth_sig(self) -> bytes:
        return primitives.sign(self.keys.device_priv, SIGNATURE_USE_EPOCH_STORAGE_AUTH_KEY,
                               self.auth_pub)


@dataclass
class Server:
    """What the mailbox server stores, as plain lists."""

    epochs: list[int] = field(default_factory=list)  # epoch ids by sequence id
    previous: dict[int, BackwardStep] = field(default_factory=dict)  # by sequence id
    entropy: dict[tuple[int, bytes], ForwardStep] = field(default_factory=dict)  # (seq, storage)
    heads: list[epoch_chain.EpochHead] = field(default_factory=list)
    records: list[mailbox.MailboxRecord] = field(default_factory=list)
    bundles: dict[bytes, bytes] = field(default_factory=dict)


@dataclass
class Account:
    server: Server
    opener: Device
    epoch: epochs.Epoch
    orf_state: orf.ClientState
    members: list[epochs.Member] = field(default_factory=list)

    @classmethod
    def start(cls, opener: Device) -> Account:
        server = Server(epochs=[1])
        epoch = epochs.Epoch(0, 1, epochs.first_epoch_root())
        server.heads.append(_head(epoch, None, opener))
        return cls(server, opener, epoch, orf.client_init(), [opener.member(epoch)])

    def save(self, message: str) -> None:
        self.server.records.append(mailbox.seal(
            self.epoch, inbox_id="inbox", thread_id="bob",
            message_id=f"m{len(self.server.records)}", timestamp=len(self.server.records),
            message=message.encode()))

    def open_epoch(self, members: list[epochs.Member]) -> None:
        opened = epochs.open_epoch(self.epoch, members, epochs.SenderKeys(
            self.opener.auth_pub, self.opener.auth_priv))
        assert not opened.rejected
        epoch_id = len(self.server.epochs) + 1
        self.server.epochs.append(epoch_id)
        new = opened.epoch.with_id(epoch_id)
        self.server.previous[new.sequence_id] = BackwardStep(self.epoch.epoch_id,
                                                             opened.previous)
        renewed: list[epochs.Member] = []
        for index, new_mac, message in opened.accepted:
            member = members[index]
            self.server.entropy[(new.sequence_id, member.epoch_storage_key_pub)] = ForwardStep(
                epoch_id, message, self.opener.keys.device_pub, self.opener.auth_pub,
                self.opener.auth_sig())
            renewed.append(replace(member, membership_mac=new_mac))
        self.server.heads.append(_head(new, self.server.heads[-1], self.opener))
        self.epoch, self.members = new, renewed

    def create_virtual_device(self, code: RecoveryCode) -> None:
        secrets = code.derive(USER)
        created = virtual_devices.create(secrets, epoch=self.epoch,
                                         head_hash=self.server.heads[-1].hash(),
                                         orf_state=self.orf_state)
        self.server.bundles[secrets.vdevice_id] = created.bundle.encode()
        self.members.append(created.bundle.member(created.membership_mac))


def _head(epoch: epochs.Epoch, previous: epoch_chain.EpochHead | None,
          opener: Device) -> epoch_chain.EpochHead:
    return epoch_chain.make_head(sequence_id=epoch.sequence_id, root_key=epoch.root_key,
                                 previous=previous,
                                 opener_device_key_priv=opener.keys.device_priv,
                                 opener_device_key_pub=opener.keys.device_pub)


def restore(server: Server, typed: str) -> tuple[list[str], virtual_devices.VirtualDeviceState]:
    """What a new device does with a typed recovery code: every message it can read."""
    code = correct(typed, USER, lambda vdevice_id: vdevice_id in server.bundles)
    secrets = code.derive(USER)
    state = virtual_devices.open_bundle(
        secrets, VirtualDeviceBundle.decode(server.bundles[secrets.vdevice_id]))
    start = state.epoch
    backward = [server.previous[seq] for seq in range(start.sequence_id, 0, -1)]
    forward = []
    sequence = start.sequence_id + 1
    while (sequence, state.keys.storage_pub) in server.entropy:
        forward.append(server.entropy[(sequence, state.keys.storage_pub)])
        sequence += 1
    known = virtual_devices.restore_epochs(start, state.head_hash, backward=backward,
                                           forward=forward, keys=state.keys,
                                           heads=server.heads)
    by_id = {e.epoch_id: e for e in known}
    return [mailbox.open_record(by_id[r.epoch_id], r).decode() for r in server.records], state


def test_bundle_round_trip_and_open() -> None:
    code = RecoveryCode.generate()
    secrets = code.derive(USER)
    epoch = epochs.Epoch(4, 99, epochs.first_epoch_root())
    state = orf.client_init()
    created = virtual_devices.create(secrets, epoch=epoch, head_hash=bytes(range(32)),
                                     orf_state=state)
    encoded = created.bundle.encode()
    assert len(encoded) == VDEVICE_BUNDLE_LEN
    opened = virtual_devices.open_bundle(secrets, VirtualDeviceBundle.decode(encoded))
    assert opened.epoch == epoch and opened.head_hash == bytes(range(32))
    assert opened.keys.device_pub == created.bundle.device_pub
    assert primitives.verify(opened.keys.device_pub, created.bundle.storage_sig,
                             SIGNATURE_USE_EPOCH_STORAGE_KEY, opened.keys.storage_pub)
    epochs.check_membership(epoch.root_key, epoch.sequence_id, opened.keys.device_pub,
                            created.membership_mac)
    # The ORF mapping is kept: creator (c, s) and virtual device (c*t, s/t).
    server = orf.server_init()
    derived_server = orf.server_evolve(server, created.orf_token)
    data, cd, sd = b"attachment-1", b"client", b"server"
    assert orf.server_map(server, sd, orf.client_map(state, cd, data)) == orf.server_map(
        derived_server, sd, orf.client_map(opened.orf_state, cd, data))
    # No secret of the bundle appears in clear in its encoding.
    assert epoch.root_key not in encoded and opened.keys.device_priv not in encoded
    assert opened.orf_state.value not in encoded and secrets.decryption_key not in encoded


def test_bundle_refuses_another_code_and_any_tampering() -> None:
    code, other = RecoveryCode.generate(), RecoveryCode.generate()
    epoch = epochs.Epoch(0, 1, epochs.first_epoch_root())
    created = virtual_devices.create(code.derive(USER), epoch=epoch, head_hash=bytes(32),
                                     orf_state=orf.client_init())
    with pytest.raises(InvalidVirtualDevice):
        virtual_devices.open_bundle(other.derive(USER), created.bundle)
    with pytest.raises(InvalidVirtualDevice):  # same code, another account
        virtual_devices.open_bundle(code.derive("another"), created.bundle)
    encoded = bytearray(created.bundle.encode())
    for position in (20, 60, 120, 170, 200, len(encoded) - 1):
        tampered = bytearray(encoded)
        tampered[position] ^= 1
        with pytest.raises((InvalidVirtualDevice, DecryptionFailed)):
            virtual_devices.open_bundle(code.derive(USER),
                                        VirtualDeviceBundle.decode(bytes(tampered)))
    # Another device's public keys in the header: the aad no longer matches.
    swapped = replace(created.bundle, device_pub=DeviceKeys.generate().device_pub)
    with pytest.raises((InvalidVirtualDevice, DecryptionFailed)):
        virtual_devices.open_bundle(code.derive(USER), swapped)


def test_decoder_is_strict() -> None:
    created = virtual_devices.create(RecoveryCode.generate().derive(USER),
                                     epoch=epochs.Epoch(0, 1, epochs.first_epoch_root()),
                                     head_hash=bytes(32), orf_state=orf.client_init())
    data = created.bundle.encode()
    for bad in (data[:-1], data + b"\x00", b"\x02" + data[1:], b""):
        with pytest.raises(InvalidVirtualDevice):
            VirtualDeviceBundle.decode(bad)


def _typo(text: str, positions: list[int]) -> str:
    chars = list(text)
    for position in positions:
        chars[position] = RECOVERY_ALPHABET[(RECOVERY_ALPHABET.index(chars[position]) + 7) % 32]
    return "".join(chars)


def _history() -> tuple[Account, RecoveryCode, Device]:
    alice_phone, alice_laptop = Device.new(), Device.new()
    account = Account.start(alice_phone)
    account.members.append(alice_laptop.member(account.epoch))
    account.save("epoch 0 before the code")
    account.open_epoch(account.members)
    account.save("epoch 1 before the code")
    code = RecoveryCode.generate()
    account.create_virtual_device(code)
    account.save("epoch 1 after the code")
    account.open_epoch(account.members)
    account.save("epoch 2")
    # The laptop is removed: the next epoch leaves it out.
    account.open_epoch([m for m in account.members if m.device_key_pub
                        != alice_laptop.keys.device_pub])
    account.save("epoch 3, after the laptop's revocation")
    return account, code, alice_laptop


EXPECTED = ["epoch 0 before the code", "epoch 1 before the code", "epoch 1 after the code",
            "epoch 2", "epoch 3, after the laptop's revocation"]


@pytest.mark.parametrize("wrong", [0, 1, 2, 3])
def test_restored_device_reads_the_whole_history(wrong: int) -> None:
    account, code, _ = _history()
    typed = _typo(code.text, [5, 17, 33][:wrong])
    messages, state = restore(account.server, typed)
    assert messages == EXPECTED
    # The new device joins the newest epoch with its own keys and an evolved ORF state.
    newest = virtual_devices.chain_forward(
        state.epoch, [account.server.entropy[(s, state.keys.storage_pub)] for s in (2, 3)],
        state.keys)[-1]
    assert newest == account.epoch
    new_device = DeviceKeys.generate()
    addition = virtual_devices.add_device(state, newest, new_device.device_pub)
    epochs.check_membership(newest.root_key, newest.sequence_id, new_device.device_pub,
                            addition.membership_mac)
    assert addition.orf_state != state.orf_state


def test_four_wrong_characters_are_refused_on_restore() -> None:
    account, code, _ = _history()
    with pytest.raises(RecoveryCodeUncorrectable):
        restore(account.server, _typo(code.text, [3, 9, 21, 30]))


def test_revoked_device_cannot_read_after_its_revocation() -> None:
    account, _, laptop = _history()
    # The laptop kept epoch 2's root and receives every record and every entropy message.
    laptop_epochs = virtual_devices.chain_forward(
        epochs.Epoch(0, 1, _root_of(account, 0)),
        [account.server.entropy[(s, laptop.keys.storage_pub)] for s in (1, 2)], laptop.keys)
    assert [e.sequence_id for e in laptop_epochs] == [0, 1, 2]
    assert (3, laptop.keys.storage_pub) not in account.server.entropy
    newest = account.server.records[-1]
    for message in [step.message for step in account.server.entropy.values()]:
        with pytest.raises(LabyrinthError):
            epochs.receive_epoch_entropy(
                laptop_epochs[-1], message, storage_pub=laptop.keys.storage_pub,
                storage_priv=laptop.keys.storage_priv,
                sender_device_key_pub=account.opener.keys.device_pub,
                sender_auth_pub=account.opener.auth_pub, sender_auth_sig=account.opener.auth_sig())
    for epoch in laptop_epochs:
        with pytest.raises(LabyrinthError):
            mailbox.open_record(replace(epoch, epoch_id=newest.epoch_id), newest)
    # Backward chaining from epoch 3 needs epoch 3's root, which the laptop never had.
    with pytest.raises(LabyrinthError):
        epochs.open_previous_epoch(replace(laptop_epochs[-1], sequence_id=3),
                                   account.server.previous[3].data, 3)


def _root_of(account: Account, sequence: int) -> bytes:
    chain = virtual_devices.chain_backward(
        account.epoch, [account.server.previous[s] for s in range(account.epoch.sequence_id,
                                                                  sequence, -1)])
    return chain[0].root_key


def test_truncated_chains_on_restore_are_detected() -> None:
    account, code, _ = _history()
    # The server hides the newest epoch: heads, entropy and records of epoch 3.
    account.server.heads.pop()
    for key in [k for k in account.server.entropy if k[0] == 3]:
        del account.server.entropy[key]
    account.server.records.pop()
    # Undetectable from the chain alone (only a KT anchor would show epoch 3 exists), but
    # a server that also drops the head of the virtual device's own epoch is caught:
    account.server.heads.pop()
    account.server.heads.pop()
    with pytest.raises(EpochChainTruncated):
        restore(account.server, code.text)


def test_withheld_entropy_is_detected() -> None:
    account, code, _ = _history()
    # Heads for epochs 2 and 3 exist, but the entropy for the virtual device is withheld.
    for key in [k for k in account.server.entropy if k[0] == 3]:
        del account.server.entropy[key]
    with pytest.raises(EpochChainTruncated):
        restore(account.server, code.text)


def test_chain_backward_refuses_going_below_the_first_epoch() -> None:
    epoch = epochs.Epoch(0, 1, epochs.first_epoch_root())
    with pytest.raises(InvalidEpoch):
        virtual_devices.chain_backward(epoch, [BackwardStep(0, epochs.PreviousEpochData(
            b"", b""))])


def test_add_device_refuses_an_older_epoch() -> None:
    code = RecoveryCode.generate()
    epoch = epochs.Epoch(5, 6, epochs.first_epoch_root())
    created = virtual_devices.create(code.derive(USER), epoch=epoch, head_hash=bytes(32),
                                     orf_state=orf.client_init())
    state = virtual_devices.open_bundle(code.derive(USER), created.bundle)
    with pytest.raises(InvalidEpoch):
        virtual_devices.add_device(state, epochs.Epoch(4, 5, epochs.first_epoch_root()),
                                   DeviceKeys.generate().device_pub)


_SECRETS = RecoveryCode.from_entropy("A" * 34).derive(USER)


@settings(max_examples=200)
@given(st.binary(max_size=2 * VDEVICE_BUNDLE_LEN))
def test_bundle_decoder_raises_only_typed_errors(data: bytes) -> None:
    try:
        virtual_devices.open_bundle(_SECRETS, VirtualDeviceBundle.decode(data))
    except LabyrinthError:
        pass


@settings(max_examples=200)
@given(st.binary(min_size=VDEVICE_BUNDLE_LEN - 17, max_size=VDEVICE_BUNDLE_LEN - 17))
def test_bundle_decoder_with_our_id(tail: bytes) -> None:
    try:
        virtual_devices.open_bundle(_SECRETS, VirtualDeviceBundle.decode(
            b"\x01" + _SECRETS.vdevice_id + tail))
    except LabyrinthError:
        pass


def test_join_message_hands_the_root_and_orf_state_to_the_newcomer_only() -> None:
    opener, newcomer, other = Device.new(), Device.new(), Device.new()
    previous = epochs.Epoch(2, 7, epochs.first_epoch_root())
    nxt = epochs.next_epoch(previous, bytes(range(32)))
    state = orf.client_init()
    message = virtual_devices.seal_join(nxt, newcomer.keys.storage_pub, epochs.SenderKeys(
        opener.auth_pub, opener.auth_priv), state)
    opened, got = virtual_devices.open_join(
        message, sequence_id=3, epoch_id=8, keys=newcomer.keys,
        sender_device_key_pub=opener.keys.device_pub, sender_auth_pub=opener.auth_pub,
        sender_auth_sig=opener.auth_sig())
    assert opened == nxt.with_id(8) and got == state
    without = virtual_devices.seal_join(nxt, newcomer.keys.storage_pub, epochs.SenderKeys(
        opener.auth_pub, opener.auth_priv))
    assert virtual_devices.open_join(
        without, sequence_id=3, epoch_id=8, keys=newcomer.keys,
        sender_device_key_pub=opener.keys.device_pub, sender_auth_pub=opener.auth_pub,
        sender_auth_sig=opener.auth_sig())[1] is None
    with pytest.raises(LabyrinthError):  # another device's keys
        virtual_devices.open_join(message, sequence_id=3, epoch_id=8, keys=other.keys,
                                  sender_device_key_pub=opener.keys.device_pub,
                                  sender_auth_pub=opener.auth_pub,
                                  sender_auth_sig=opener.auth_sig())
    with pytest.raises(LabyrinthError):  # bound to its epoch's sequence id
        virtual_devices.open_join(message, sequence_id=4, epoch_id=8, keys=newcomer.keys,
                                  sender_device_key_pub=opener.keys.device_pub,
                                  sender_auth_pub=opener.auth_pub,
                                  sender_auth_sig=opener.auth_sig())
    with pytest.raises(DecryptionFailed):  # the opener's auth key must be signed by it
        virtual_devices.open_join(message, sequence_id=3, epoch_id=8, keys=newcomer.keys,
                                  sender_device_key_pub=other.keys.device_pub,
                                  sender_auth_pub=opener.auth_pub,
                                  sender_auth_sig=opener.auth_sig())


_JOINER = Device.new()


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_join_decoder_raises_only_typed_errors(data: bytes) -> None:
    try:
        virtual_devices.open_join(data, sequence_id=1, epoch_id=1, keys=_JOINER.keys,
                                  sender_device_key_pub=_JOINER.keys.device_pub,
                                  sender_auth_pub=_JOINER.auth_pub,
                                  sender_auth_sig=_JOINER.auth_sig())
    except LabyrinthError:
        pass


def test_fuzz_seeds_reach_the_decoders_success_paths() -> None:
    from fuzz.targets import labyrinth_devices as target

    seeds = list(target.seeds())
    decoders = [target._head, target._chain, target._bundle, target._join, target._reference]
    for seed in seeds:
        decoders[seed[0]](seed[1:])  # raises if a seed does not decode
        target.test_one_input(seed)
