"""Disappearing messages with a fake clock: timers, expiry from sent/read time, the sweep."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import e2ee_core.attachments
import e2ee_core.content
import e2ee_core.disappearing
from e2ee_core.content import DEFAULT_TIMER_SECONDS, Content, Reaction, Sticker, Text, TimerChange
from e2ee_core.disappearing import (
    ConversationTimers,
    DisappearingError,
    DisappearingMessages,
    ExpiryStart,
    InMemoryMessageStore,
    MessageStore,
    server_expiry_hint_ms,
)

HOUR = 3600 * 1000
DAY = 24 * HOUR
T0 = 1_700_000_000_000


class FakeClock:
    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


def pair(start: ExpiryStart = ExpiryStart.READ) -> tuple[FakeClock, DisappearingMessages,
                                                          DisappearingMessages]:
    clock = FakeClock()
    return (clock, DisappearingMessages(InMemoryMessageStore(), clock=clock, start=start),
            DisappearingMessages(InMemoryMessageStore(), clock=clock, start=start))


def send(src: DisappearingMessages, dst: DisappearingMessages, body: object) -> Content:
    content = src.compose("chat", body)  # type: ignore[arg-type]
    dst.receive("chat", Content.decode(content.encode()))
    return content


@pytest.mark.parametrize("module", [e2ee_core.content, e2ee_core.attachments,
                                    e2ee_core.disappearing])
def test_module_usage_examples_run(module: object) -> None:
    failures, tried = doctest.testmod(module)  # type: ignore[arg-type]
    assert tried > 0 and failures == 0


def test_the_store_satisfies_the_protocol() -> None:
    assert isinstance(InMemoryMessageStore(), MessageStore)


def test_off_by_default_and_24_hours_when_turned_on() -> None:
    clock, alice, bob = pair()
    plain = send(alice, bob, Text("stays"))
    assert plain.expire_timer is None and alice.timers.get("chat") is None
    change = alice.turn_on("chat")
    assert change.body == TimerChange(DEFAULT_TIMER_SECONDS) and DEFAULT_TIMER_SECONDS == 86400
    bob.receive("chat", Content.decode(change.encode()))
    assert bob.timers.get("chat") == alice.timers.get("chat") == 86400
    reply = send(bob, alice, Text("this one disappears"))
    assert reply.expire_timer == 86400
    clock.advance(DAY - 1)
    assert bob.sweep() == []
    clock.advance(1)
    assert [m.message_id for m in bob.sweep()] == [reply.message_id]
    clock.advance(365 * DAY)
    assert bob.sweep() == []
    assert bob.store.get("chat", plain.message_id) is not None
    assert bob.store.get("chat", change.message_id) is not None


def test_outgoing_expires_from_sent_time_incoming_from_read_time() -> None:
    clock, alice, bob = pair()
    alice.turn_on("chat", 3600)
    bob.receive("chat", Content.decode(alice.compose("chat", TimerChange(3600)).encode()))
    sent = send(alice, bob, Text("secret plan"))
    clock.advance(30 * 60 * 1000)
    bob.mark_read("chat", sent.message_id)  # read after 30 minutes
    clock.advance(30 * 60 * 1000 - 1)
    assert alice.sweep() == [] and bob.sweep() == []
    clock.advance(1)  # one hour after sending
    assert [m.message_id for m in alice.sweep()] == [sent.message_id]
    assert bob.store.get("chat", sent.message_id) is not None  # bob read it 30 min in
    assert bob.next_expiry_ms() == clock.now + 30 * 60 * 1000
    clock.advance(30 * 60 * 1000)
    assert [m.message_id for m in bob.sweep()] == [sent.message_id]
    assert bob.store.get("chat", sent.message_id) is None
    assert bob.next_expiry_ms() is None


def test_unread_incoming_messages_wait_for_reading_under_the_read_rule() -> None:
    clock, alice, bob = pair()
    bob.receive("chat", Content.decode(alice.turn_on("chat", 60).encode()))
    sent = send(alice, bob, Sticker("cat_01"))
    clock.advance(10 * DAY)
    assert bob.sweep() == []
    bob.mark_read("chat", sent.message_id)
    clock.advance(60 * 1000)
    assert [m.message_id for m in bob.sweep()] == [sent.message_id]


def test_sent_rule_clamps_a_sender_clock_in_the_future() -> None:
    clock, _, bob = pair(ExpiryStart.SENT)
    future = Content.new(Text("from the future"), sent_at_ms=T0 + 10 * DAY, expire_timer=60)
    bob.receive("chat", future)
    clock.advance(60 * 1000)
    assert [m.message_id for m in bob.sweep()] == [future.message_id]


def test_a_message_delivered_after_its_expiry_is_never_stored() -> None:
    _clock, _, bob = pair(ExpiryStart.SENT)
    old = Content.new(Text("late"), sent_at_ms=T0 - 2 * HOUR, expire_timer=3600)
    bob.receive("chat", old)
    assert bob.store.get("chat", old.message_id) is None


def test_turning_off_stops_new_messages_from_expiring_but_not_earlier_ones() -> None:
    clock, alice, _bob = pair()
    alice.turn_on("chat", 120)
    early = alice.compose("chat", Text("early"))
    off = alice.turn_off("chat")
    assert off.body == TimerChange(None) and alice.timers.get("chat") is None
    late = alice.compose("chat", Text("late"))
    assert early.expire_timer == 120 and late.expire_timer is None
    clock.advance(120 * 1000)
    assert [m.message_id for m in alice.sweep()] == [early.message_id]
    assert alice.store.get("chat", late.message_id) is not None


def test_concurrent_timer_changes_converge_on_every_device() -> None:
    a, b = ConversationTimers(), ConversationTimers()
    first = (TimerChange(60), T0)
    second = (TimerChange(3600), T0 + 5)
    a.apply("c", *first)
    a.apply("c", *second)
    b.apply("c", *second)
    assert b.apply("c", *first) is False  # an older change arriving late is ignored
    assert a.get("c") == b.get("c") == 3600


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), st.integers(1, 10**6)), st.integers(0, 50)),
                min_size=1, max_size=8), st.randoms())
def test_timer_changes_converge_in_any_delivery_order(changes: list[tuple[int | None, int]],
                                                      rng: object) -> None:
    a, b = ConversationTimers(), ConversationTimers()
    for seconds, at in changes:
        a.apply("c", TimerChange(seconds), at)
    shuffled = list(changes)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    for seconds, at in shuffled:
        b.apply("c", TimerChange(seconds), at)
    assert a.get("c") == b.get("c")


def test_sweep_handles_many_messages_and_re_reads() -> None:
    clock, alice, bob = pair()
    bob.receive("chat", Content.decode(alice.turn_on("chat", 10).encode()))
    sent = [send(alice, bob, Text(f"m{i}")) for i in range(50)]
    for i, content in enumerate(sent):
        clock.advance(1000)
        bob.mark_read("chat", content.message_id)
        bob.mark_read("chat", content.message_id)  # a second read does not restart the timer
        del i
    deleted = bob.sweep()
    assert len(deleted) == 40  # the first 40 were read at least 10 s ago
    clock.advance(10 * 1000)
    assert len(bob.sweep()) == 10
    assert bob.sweep() == []


def test_reactions_and_other_bodies_follow_the_message_timer() -> None:
    clock, alice, bob = pair(ExpiryStart.SENT)
    bob.receive("chat", Content.decode(alice.turn_on("chat", 5).encode()))
    target = send(alice, bob, Text("x"))
    reaction = send(bob, alice, Reaction(target.message_id, "👍"))
    assert reaction.expire_timer == 5
    clock.advance(5000)
    assert {m.message_id for m in alice.sweep()} == {target.message_id, reaction.message_id}


def test_server_hint_is_rounded_up_to_the_hour() -> None:
    content = Content.new(Text("x"), sent_at_ms=T0, expire_timer=60)
    hint = server_expiry_hint_ms(content)
    assert hint is not None and hint % HOUR == 0 and T0 + 60_000 <= hint < T0 + 60_000 + HOUR
    assert server_expiry_hint_ms(Content.new(Text("x"), sent_at_ms=T0)) is None


def test_unknown_message_is_a_typed_error() -> None:
    _, alice, _ = pair()
    with pytest.raises(DisappearingError):
        alice.mark_read("chat", b"\x00" * 16)


def test_timer_settings_survive_a_restart() -> None:
    clock, alice, _ = pair()
    alice.turn_on("chat", 600)
    restored = DisappearingMessages(alice.store, clock=clock,
                                    timers=ConversationTimers(alice.timers.snapshot()))
    assert restored.compose("chat", Text("still disappearing")).expire_timer == 600
    assert restored.timers.get("other chat") is None
