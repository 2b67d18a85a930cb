"""Replay defences for the gateway (RFC 9458 §6.5), sans-I/O.

Two layers: the inner request's ``Date`` must lie within ``window`` seconds of the gateway's
clock, and every accepted Encapsulated Request's ``enc`` (unique per HPKE encapsulation) is
remembered per key id for as long as a request carrying it could still pass the Date check, so a
byte-identical replay inside the window is refused (the store does the remembering).

The two layers only cover each other when every request is dated: an undated request would be
forgotten after ``remember_for`` and then pass again. So a request without ``Date`` is refused
by default (``require_date``; the client library always adds one). A gateway that allows undated
requests (or turns the Date check off, ``window = 0``) is protected against replays only for
``remember_for`` seconds.
"""

from __future__ import annotations

import email.utils
import functools
from dataclasses import dataclass

from ohttp_relay import consts
from ohttp_relay.errors import ReplayError
from service_kit.httpdate import http_date


@dataclass(frozen=True)
class ReplayPolicy:
    """``window`` seconds either side of now (0 disables the Date check)."""

    window: int = consts.DEFAULT_DATE_WINDOW
    #: Refuse requests without ``Date`` (see the module docstring for why this is the default).
    require_date: bool = True
    #: How long a seen ``enc`` is remembered when the Date check is disabled.
    ttl_without_window: int = consts.DEFAULT_REPLAY_TTL

    @property
    def remember_for(self) -> int:
        """Seconds to keep a seen request: twice the window covers both clock directions."""
        return 2 * self.window + 1 if self.window > 0 else self.ttl_without_window


@functools.lru_cache(maxsize=256)  # the same Date arrives many times a second; bounded
def parse_http_date(value: str) -> float | None:
    """Seconds since the epoch of an HTTP date (RFC 9110 §5.6.7), or ``None`` if unparseable."""
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()


def format_http_date(now: float) -> str:
    """An IMF-fixdate for ``now`` (formatted once per second)."""
    return http_date(now)


def check_date(value: str | None, now: float, policy: ReplayPolicy) -> None:
    """Raise :class:`ReplayError` if the request's Date is missing (when required) or stale."""
    if policy.window <= 0:
        return
    if value is None:
        if policy.require_date:
            raise ReplayError("request has no Date")
        return
    when = parse_http_date(value)
    if when is None:
        raise ReplayError("request Date is not an HTTP date")
    if abs(when - now) > policy.window:
        raise ReplayError("request Date outside the accepted window")
