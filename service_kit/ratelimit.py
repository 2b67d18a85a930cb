"""A fixed-window counter per key, in one process's memory (the relay's per-address limit, the
delivery server's per-address password attempts). Shared limits that must hold across several
processes live in the service's store instead."""

from __future__ import annotations

import threading
import time

#: Keys tracked before idle ones are forgotten (bounds memory under key churn).
MAX_KEYS = 50_000


class RateLimiter:
    """``limit`` hits per ``window`` seconds per key (``limit <= 0``: unlimited)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[float, int]] = {}

    def hit(self, key: str, now: float | None = None) -> float | None:
        """Count one hit; ``None`` if allowed, else seconds until the window resets."""
        if self.limit <= 0:
            return None
        now = time.monotonic() if now is None else now
        with self._lock:
            if len(self._counts) > MAX_KEYS:  # forget idle keys
                self._counts = {k: v for k, v in self._counts.items()
                                if now - v[0] < self.window}
            start, count = self._counts.get(key, (now, 0))
            if now - start >= self.window:
                start, count = now, 0
            if count >= self.limit:
                return max(0.0, start + self.window - now)
            self._counts[key] = (start, count + 1)
            return None
