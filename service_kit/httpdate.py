"""HTTP dates (RFC 9110 §5.6.7), formatted once a second; I/O-free, for protocol cores."""

from __future__ import annotations

import math
import time
from email.utils import formatdate


class _DateCache:
    entry: tuple[int, str] = (-1, "")


def http_date(now: float | None = None) -> str:
    """The IMF-fixdate of the second holding ``now`` (default: the current time)."""
    second = math.floor(time.time() if now is None else now)
    cached = _DateCache.entry
    if cached[0] == second:
        return cached[1]
    text = formatdate(second, usegmt=True)
    _DateCache.entry = (second, text)
    return text
