"""Sampled event logging for the services' hot routes."""

from __future__ import annotations

import logging
import threading


class EventCounter:
    """Counts an event; logs its first occurrence and then every ``every``-th, with the count.

    Per-request log lines cost the hot path a record, the redaction filter and a write; the
    forwarding events are sampled, errors are still logged one by one.
    """

    def __init__(self, logger: logging.Logger, every: int = 1000) -> None:
        self.log = logger
        self.every = every
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def hit(self, event: str) -> None:
        with self._lock:
            count = self._counts.get(event, 0) + 1
            self._counts[event] = count
        if count == 1 or count % self.every == 0:
            self.log.info("%s count=%d", event, count)
