"""Groups of 20 with joins and leaves, simulated in-process.

Management content (invitations, membership changes, sender-key distributions) is delivered
directly as encoded bytes to every device of the named members; the pairwise-session transport
around it is the Messenger's job and is not simulated here.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2ee_core.content import Content, GroupMembershipChange, SenderKeyDistribution, Text
from e2ee_core.groups import (
    DuplicateGroupMessage,
    EpochMismatch,
    Group,
    GroupError,
    GroupState,
    InMemorySenderKeyStore,
    InvalidGroupUpdate,
    InvalidSenderKeyRecord,
    NoSenderKeyState,
    NotAMember,
    Outgoing,
    SenderAddress,
    SenderKeyRecord,
    group_decrypt,
    group_encrypt,
)
from e2ee_core.groups.group import pad, unpad


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        self.now += 1
        return self.now


@dataclass
class Device:
    address: SenderAddress
    store: InMemorySenderKeyStore = field(default_factory=InMemorySenderKeyStore)
    group: Group | None = None
    management_received: int = 0


class World:
    """Devices of many accounts and a direct, in-order delivery of management content."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.devices: dict[SenderAddress, Device] = {}

    def add_account(self, name: str, devices: int = 1) -> list[Device]:
        made = [Device(SenderAddress(name, d)) for d in range(1, devices + 1)]
        for device in made:
            self.devices[device.address] = device
        return made

    def device(self, name: str, device_id: int = 1) -> Device:
        return self.devices[SenderAddress(name, device_id)]

    def deliver(self, sender: SenderAddress, outgoing: list[Outgoing]) -> None:
        queue = deque((sender, item) for item in outgoing)
        while queue:
            origin, item = queue.popleft()
            wire = item.content.encode()  # what the pairwise session would carry
            for device in list(self.devices.values()):
                if device.address.name not in item.recipients or device.address == origin:
                    continue
                device.management_received += 1
                content = Content.decode(wire)
                group = device.group
                if group is None or not group.is_member:
                    body = content.body
                    if isinstance(body, GroupMembershipChange) and (
                            device.address.name in body.added
                            or device.address.name == origin.name):
                        device.group, more = Group.join(device.address, origin, content,
                                                        device.store, clock=self.clock)
                        queue.extend((device.address, m) for m in more)
                    continue
                more = group.handle(origin, content)
                queue.extend((device.address, m) for m in more)

    def create_group(self, creator: str, others: list[str]) -> Group:
        device = self.device(creator)
        device.group, outgoing = Group.create(device.address, others, device.store,
                                              clock=self.clock)
        self.deliver(device.address, outgoing)
        return device.group

    def send(self, name: str, text: str, device_id: int = 1) -> bytes:
        group = self.device(name, device_id).group
        assert group is not None
        content = Content.new(Text(text), sent_at_ms=self.clock(), group_id=group.group_id)
        return group.encrypt(content)

    def readers(self, sender: SenderAddress, wire: bytes) -> dict[SenderAddress, str]:
        """Which devices can read ``wire`` (with their current group state)."""
        result = {}
        for device in self.devices.values():
            if device.address == sender or device.group is None or not device.group.is_member:
                continue
            try:
                body = device.group.decrypt(sender, wire).body
            except GroupError:
                continue
            assert isinstance(body, Text)
            result[device.address] = body.text
        return result


def hoard(store: InMemorySenderKeyStore) -> InMemorySenderKeyStore:
    """An independent copy of every sender key a device holds."""
    copy = InMemorySenderKeyStore()
    for (address, dist), record in store.snapshot().items():
        copy.store_sender_key(address, dist, SenderKeyRecord.decode(record))
    return copy


def member_devices(world: World, group_id: bytes) -> set[SenderAddress]:
    return {d.address for d in world.devices.values()
            if d.group is not None and d.group.is_member and d.group.group_id == group_id}


def test_a_group_of_twenty_with_joins_and_leaves() -> None:
    world = World()
    names = [f"user{i:02d}" for i in range(20)]
    for name in names:
        world.add_account(name, devices=2 if name == "user00" else 1)
    for name in ("late1", "late2"):
        world.add_account(name)
    group = world.create_group("user00", names[1:])
    assert group.members == tuple(sorted(names)) and group.epoch == 0
    everyone = member_devices(world, group.group_id)
    assert len(everyone) == 21  # user00 has two devices

    # Every member device can send; one ciphertext is read by all 20 other devices.
    for sender in [SenderAddress("user00", 1), SenderAddress("user00", 2),
                   SenderAddress("user07", 1), SenderAddress("user19", 1)]:
        wire = world.send(sender.name, f"hi from {sender}", sender.device_id)
        readers = world.readers(sender, wire)
        assert set(readers) == everyone - {sender}
        assert set(readers.values()) == {f"hi from {sender}"}

    before_join = world.send("user05", "before the join")

    # user03 adds two accounts: they can read what follows, not what came before.
    world.deliver(SenderAddress("user03", 1), world.device("user03").group.add_members(  # type: ignore[union-attr]
        ["late1", "late2"]))
    late = world.device("late1").group
    assert late is not None and late.epoch == 1 and "late2" in late.members
    with pytest.raises(GroupError):
        late.decrypt(SenderAddress("user05", 1), before_join)
    wire = world.send("user05", "after the join")
    assert set(world.readers(SenderAddress("user05", 1), wire)) == (
        member_devices(world, group.group_id) - {SenderAddress("user05", 1)})
    wire = world.send("late2", "hello, I'm new")
    assert SenderAddress("user00", 2) in world.readers(SenderAddress("late2", 1), wire)

    # user00 removes three members; everyone rotates; the removed cannot read anything later.
    removed = ["user11", "user12", "late1"]
    # The removed members hoard every key they hold before the removal.
    removed_stores = {name: hoard(world.device(name).store) for name in removed}
    received_before = {name: world.device(name).management_received for name in removed}
    world.deliver(SenderAddress("user00", 1),
                  world.device("user00").group.remove_members(removed))  # type: ignore[union-attr]
    for name in removed:
        gone = world.device(name).group
        assert gone is not None and not gone.is_member
        # Only the removal notice itself reached them: no new sender key.
        assert world.device(name).management_received == received_before[name] + 1
    remaining = member_devices(world, group.group_id)
    assert len(remaining) == 20 and all(a.name not in removed for a in remaining)
    for sender_name in ("user00", "user04", "late2"):
        sender = SenderAddress(sender_name, 1)
        wire = world.send(sender_name, f"after removal from {sender_name}")
        assert set(world.readers(sender, wire)) == remaining - {sender}
        for name, store in removed_stores.items():
            # Even with every key it ever held, a removed member cannot decrypt.
            with pytest.raises(NoSenderKeyState):
                group_decrypt(store, sender, wire)
            del name

    # A member leaves on its own; the remaining ones rotate again.
    leaver_store = hoard(world.device("user08").store)
    world.deliver(SenderAddress("user08", 1), world.device("user08").group.leave())  # type: ignore[union-attr]
    wire = world.send("user01", "after user08 left")
    assert SenderAddress("user08", 1) not in world.readers(SenderAddress("user01", 1), wire)
    with pytest.raises(NoSenderKeyState):
        group_decrypt(leaver_store, SenderAddress("user01", 1), wire)
    final = world.device("user19").group
    assert final is not None and final.epoch == 3 and "user08" not in final.members


def test_messages_from_removed_members_are_refused() -> None:
    world = World()
    for name in ("a", "b", "c"):
        world.add_account(name)
    group = world.create_group("a", ["b", "c"])
    c = world.device("c")
    kept = hoard(c.store)  # c keeps its own sender key after being removed
    world.deliver(SenderAddress("a", 1), group.remove_members(["c"]))
    wire = group_encrypt(kept, c.address, group.group_id,
                         pad(Content.new(Text("sneaky"), sent_at_ms=1,
                                         group_id=group.group_id).encode()))
    b = world.device("b")
    assert b.group is not None
    with pytest.raises(NotAMember):
        b.group.decrypt(c.address, wire)
    with pytest.raises(NoSenderKeyState):  # b deleted c's keys too
        group_decrypt(b.store, c.address, wire)
    assert c.group is not None
    with pytest.raises(NotAMember):
        c.group.encrypt(Content.new(Text("x"), sent_at_ms=1, group_id=group.group_id))


def test_out_of_order_group_messages_within_limits_and_duplicates() -> None:
    world = World()
    for name in ("a", "b"):
        world.add_account(name)
    world.create_group("a", ["b"])
    wires = [world.send("a", f"m{i}") for i in range(30)]
    b = world.device("b").group
    assert b is not None
    for i in reversed(range(30)):
        assert b.decrypt(SenderAddress("a", 1), wires[i]).body == Text(f"m{i}")
    with pytest.raises(DuplicateGroupMessage):
        b.decrypt(SenderAddress("a", 1), wires[3])


def test_stale_replayed_or_inconsistent_changes_are_refused() -> None:
    world = World()
    for name in ("a", "b", "c", "d"):
        world.add_account(name)
    world.create_group("a", ["b", "c"])
    a, b = world.device("a").group, world.device("b").group
    assert a is not None and b is not None
    add = a.add_members(["d"])
    world.deliver(SenderAddress("a", 1), add)
    with pytest.raises(EpochMismatch):  # the same change again
        b.handle(SenderAddress("a", 1), add[0].content)
    # Two concurrent changes at the same epoch: the second one loses.
    first = b.remove_members(["c"])
    second = a.remove_members(["d"])
    with pytest.raises(EpochMismatch):
        b.handle(SenderAddress("a", 1), second[0].content)
    del first
    bogus = Content.new(GroupMembershipChange(b.epoch + 1, ("a", "b", "zed")), sent_at_ms=1,
                        group_id=b.group_id)
    with pytest.raises(InvalidGroupUpdate):
        b.handle(SenderAddress("a", 1), bogus)
    outsider = Content.new(GroupMembershipChange(b.epoch + 1, ("a",), removed=("b",)),
                           sent_at_ms=1, group_id=b.group_id)
    with pytest.raises(NotAMember):
        b.handle(SenderAddress("mallory", 1), outsider)


def test_a_distribution_cannot_overwrite_the_own_sender_key_or_come_from_outside() -> None:
    world = World()
    for name in ("a", "b"):
        world.add_account(name)
    group = world.create_group("a", ["b"])
    b = world.device("b").group
    assert b is not None
    skdm = Content.new(SenderKeyDistribution(group.distribution_message()), sent_at_ms=1,
                       group_id=group.group_id)
    with pytest.raises(InvalidGroupUpdate):
        b.handle(SenderAddress("b", 1), skdm)
    with pytest.raises(NotAMember):
        b.handle(SenderAddress("eve", 1), skdm)
    wire = world.send("b", "still works")
    assert group.decrypt(SenderAddress("b", 1), wire).body == Text("still works")


def test_group_state_round_trips_and_a_restored_group_keeps_working() -> None:
    world = World()
    for name in ("a", "b", "c"):
        world.add_account(name)
    world.create_group("a", ["b", "c"])
    b = world.device("b")
    assert b.group is not None
    restored = Group(GroupState.decode(b.group.state.encode()), b.store, clock=world.clock)
    assert restored.state == b.group.state
    wire = world.send("c", "after restore")
    assert restored.decrypt(SenderAddress("c", 1), wire).body == Text("after restore")


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_group_state_decoder_raises_only_typed_errors(data: bytes) -> None:
    try:
        GroupState.decode(data)
    except InvalidSenderKeyRecord:
        pass


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=500))
def test_padding_round_trips_one_short_of_160_byte_blocks(data: bytes) -> None:
    padded = pad(data)
    assert len(padded) % 160 == 159 and len(padded) > len(data)
    assert unpad(padded) == data


def test_many_members_sending_interleaved_all_decrypt() -> None:
    world = World()
    names = [f"m{i}" for i in range(6)]
    for name in names:
        world.add_account(name)
    world.create_group("m0", names[1:])
    wires = [(n, world.send(n, f"{n}-{k}")) for k, n in itertools.product(range(3), names)]
    reader = world.device("m3").group
    assert reader is not None
    for name, wire in reversed(wires):
        if name == "m3":
            continue
        assert isinstance(reader.decrypt(SenderAddress(name, 1), wire).body, Text)


def test_group_padding_matches_the_one_to_one_session_padding() -> None:
    from e2ee_core.protocol.padding import pad as session_pad

    for length in range(0, 500):
        assert pad(b"m" * length) == session_pad(b"m" * length)


def test_a_removed_device_of_a_member_cannot_read_later_group_messages() -> None:
    world = World()
    world.add_account("alice")
    world.add_account("bob", devices=2)
    world.add_account("carol")
    group = world.create_group("alice", ["bob", "carol"])
    bob2 = SenderAddress("bob", 2)
    before = world.send("alice", "bob's old phone can read this")
    assert bob2 in world.readers(SenderAddress("alice", 1), before)
    stolen = hoard(world.devices.pop(bob2).store)  # the server removed the device
    for device in list(world.devices.values()):  # everyone got the device_removed notice
        assert device.group is not None
        world.deliver(device.address, device.group.forget_device(bob2))
    for sender in (SenderAddress("alice", 1), SenderAddress("bob", 1), SenderAddress("carol", 1)):
        wire = world.send(sender.name, "after the phone was removed", sender.device_id)
        assert set(world.readers(sender, wire)) == set(world.devices) - {sender}
        with pytest.raises(NoSenderKeyState):
            group_decrypt(stolen, sender, wire)
    assert group.members == ("alice", "bob", "carol") and group.epoch == 0


def test_a_scheduled_rotation_locks_out_a_stolen_chain_key() -> None:
    world = World()
    for name in ("a", "b", "c"):
        world.add_account(name)
    world.create_group("a", ["b", "c"])
    stolen = hoard(world.device("c").store)  # an attacker copies c's keys once
    a = SenderAddress("a", 1)
    first = world.send("a", "before the rotation")
    assert group_decrypt(stolen, a, first)  # the stolen copy reads a's chain for now
    world.deliver(a, world.device("a").group.rotate())  # type: ignore[union-attr]
    later = world.send("a", "after the rotation")
    assert set(world.readers(a, later)) == {SenderAddress("b", 1), SenderAddress("c", 1)}
    with pytest.raises(NoSenderKeyState):
        group_decrypt(stolen, a, later)
