"""Wake-ups across server processes and hosts on one PostgreSQL, without polling: a send
NOTIFYs the channel :data:`CHANNEL` in its own transaction (so the notice leaves only if the
envelopes were stored), and each server process LISTENs on one dedicated connection and wakes
the push connections of the named devices (:class:`~e2ee_core.server.push.PushHub`).

The payload names the process that stored the envelopes (:func:`origin`, then ``\x1e``) and the
destination devices (``user/device`` joined by ``\x1f``); when they do not fit in one
notification (PostgreSQL's limit is 8,000 bytes) the devices are ``*``, which wakes every
connection of every process. A process skips its own notifications: its sends hand their
envelopes to its own connections directly (:meth:`~e2ee_core.server.hub.PushHub.deliver`).
SQLite is the single-process embedded default: sends wake the push connections of their own
process only.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable
from typing import Any

from e2ee_core.server.hub import PushHub

log = logging.getLogger("e2ee_core.server.wakeups")

CHANNEL = "e2ee_queue"
#: Bytes of one payload (PostgreSQL allows just under 8,000).
MAX_PAYLOAD = 7000
_SEP = "\x1f"
_ORIGIN_SEP = "\x1e"
WAKE_ALL = "*"

_origin: dict[int, str] = {}  # process id -> its name


def origin() -> str:
    """This process's name in the payloads: random, drawn once per process (workers fork after
    the app is built, so it is kept per process id)."""
    pid = os.getpid()
    name = _origin.get(pid)
    if name is None:
        _origin.clear()
        name = _origin[pid] = secrets.token_hex(8)
    return name


def payload(addresses: Iterable[tuple[str, int]], *, origin: str = "") -> str:
    """The NOTIFY payload for these destination devices, stored by the process ``origin``."""
    text = _SEP.join(sorted({f"{u}/{d}" for u, d in addresses}))
    if not text or len(text.encode()) + len(origin) + 1 > MAX_PAYLOAD:
        text = WAKE_ALL
    return f"{origin}{_ORIGIN_SEP}{text}" if origin else text


def parse(text: str) -> tuple[str, list[tuple[str, int]] | None]:
    """The origin a payload names ("" if none) and its devices (None: every device)."""
    sender, sep, rest = text.partition(_ORIGIN_SEP)
    if not sep:
        sender, rest = "", text
    if rest == WAKE_ALL:
        return sender, None
    out = []
    for item in rest.split(_SEP):
        user, _, device = item.rpartition("/")
        if user and device.isdigit():
            out.append((user, int(device)))
    return sender, out


class PgListener:
    """One thread per server process: LISTEN, and wake the hub on every notification. It
    reconnects with a growing pause when the connection breaks (PostgreSQL restarted)."""

    def __init__(self, dsn: str, hub: PushHub) -> None:
        self.dsn = dsn
        self.hub = hub
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="e2ee-pg-listen", daemon=True)
        self.listening = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        import psycopg

        pause = 0.1
        reported = False
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    if reported:
                        log.warning("event=listen_restored")
                    pause, reported = 0.1, False
                    while not self._stop.is_set():
                        for notice in conn.notifies(timeout=1.0):
                            self._deliver(notice)
            except Exception as exc:  # reconnect: a listener must outlive a database restart
                self.listening.clear()
                if not reported:  # once per outage, not once per retry
                    log.warning("event=listen_failed class=%s", type(exc).__name__)
                    reported = True
                self.hub.notify_all()  # waiters re-check: a wake-up may have been missed
                self._stop.wait(pause)
                pause = min(pause * 2, 5.0)
        # a final wake so that waiters re-check after a stop
        self.hub.notify_all()

    def _deliver(self, notice: Any) -> None:
        sender, devices = parse(str(notice.payload))
        if sender == origin():
            return  # this process's own send: its connections were handed the envelopes
        if devices is None:
            self.hub.notify_all()
        else:
            self.hub.notify(devices)


def wait_until_listening(listener: PgListener, timeout: float = 10.0) -> bool:
    """For tests and start-up: whether the listener got its LISTEN in within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listener.listening.wait(0.05):
            return True
    return False
