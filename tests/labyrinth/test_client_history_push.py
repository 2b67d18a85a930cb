"""A device listening on the push channel saves the current state of its messages: an edit
that arrives in a batch with no new visible message is saved on the listener's next idle turn
(the delivery server on its real stack, SQLite)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from e2ee_core.client import Message, Messenger
from e2ee_core.content import Text
from e2ee_core.server.app import create_app
from e2ee_core.server.labyrinth_client import LabyrinthClient
from e2ee_core.server.labyrinth_wire import LoadQuery
from tests.labyrinth.test_client_history import PASSWORD, _names
from tests.server.support import FAST_ARGON2
from tests.support import LiveServer


def _wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_an_edit_pushed_alone_is_saved_on_the_next_idle_turn(
        live_server: Callable[..., LiveServer], tmp_path: Path) -> None:
    server = live_server(create_app, db=str(tmp_path / "server.db"), **FAST_ARGON2)
    a, b = _names()
    alice = Messenger.register(server.url, a, PASSWORD, state=tmp_path / "alice.db")
    bob = Messenger.register(server.url, b, PASSWORD, state=tmp_path / "bob.db")
    bob.enable_history()
    got: list[str] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def seen(batch: list[Message]) -> None:
        got.extend(m.text for m in batch if m.text is not None)

    def run() -> None:
        try:
            bob.listen(seen, stop=stop)
        except BaseException as exc:  # the test reads it
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    watcher = Messenger.open(tmp_path / "bob.db")  # this thread's own view of bob's state
    try:
        sent = alice.send_text(b, "a typo")
        _wait_for(lambda: got == ["a typo"])
        alice.edit(b, sent.message_id, "fixed")  # a batch with no new visible message

        def saved() -> bool:
            row = watcher.store.message_row(a, sent.message_id)
            return (row is not None and row.edited
                    and watcher.store.history_queue_length() == 0)

        _wait_for(saved)
    finally:
        stop.set()
        thread.join(timeout=10)
        watcher.close()
    assert errors == [] and got == ["a typo"]
    records = list(LabyrinthClient(bob.server).iter_records(LoadQuery(thread_id=a)))
    [(_, payload)] = bob.history._open_all(records)
    assert payload.edited and payload.content.body == Text("fixed")
