"""Logs never leak content: a redaction filter every service installs, and test helpers.

Meta's "logging limitations": telemetry must not carry message content. Services log event
names and counts only; this filter is the safety net under that rule. It rewrites each record's
text so that credentials, addresses, query strings and long opaque blobs (keys, tokens,
ciphertexts) become ``[redacted]`` before any handler formats them.

Tests prove the rule with :func:`find_leaks` / :class:`LogCapture`: given the secrets a scenario
used, they search every captured line for each secret in raw, hex and base64 forms.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

REDACTED = "[redacted]"

_PATTERNS: tuple[re.Pattern[str], ...] = (
    # Authorization / WWW-Authenticate parameters: Bearer and PrivateToken credentials.
    re.compile(r"(?i)\b(bearer|privatetoken|basic)\s+[^\s,;\"']+(\s*=\s*[^\s,;\"']+)?"),
    re.compile(r"(?i)\b(token|challenge|token-key|credential|password|secret|key)\s*[=:]\s*[^\s,;&\"']+"),
    # URL query strings may carry search terms.
    re.compile(r"\?[^\s\"']+"),
    # IPv4 and IPv6 client addresses.
    re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"),
    re.compile(r"(?i)\b(?:[0-9a-f]{1,4}:){2,7}[0-9a-f]{1,4}\b|::1\b"),
    # Long hex or base64 runs: key material, tokens, ciphertexts.
    re.compile(r"\b[0-9a-fA-F]{24,}\b"),
    re.compile(r"[A-Za-z0-9+/_-]{32,}={0,2}"),
)


def redact(text: str) -> str:
    """Return ``text`` with every sensitive-looking run replaced by ``[redacted]``."""
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


_LISTENING = re.compile(r"Uvicorn running on (?:http|https|unix)://[\w.:\[\]/-]{1,128}"
                        r"(?: \(Press CTRL\+C to quit\))?")


class RedactionFilter(logging.Filter):
    """A handler filter that redacts the rendered message and any traceback text.

    It renders ``msg % args`` itself, so arguments can never reach a formatter unredacted,
    and drops ``exc_info`` in favour of a redacted ``exc_text``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = f"{record.msg!s} [unformattable arguments dropped]"
        # The server's own listening address is the operator's configuration, not client data:
        # only uvicorn's start-up line keeps it (it was "http://[redacted]:8001").
        listening = record.name == "uvicorn.error" and _LISTENING.fullmatch(message)
        record.msg = message if listening else redact(message)
        record.args = None
        if record.exc_info:
            formatter = logging.Formatter()
            record.exc_text = redact(formatter.formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_SERVICE_LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "werkzeug", "flask.app")


def install(level: int = logging.INFO) -> RedactionFilter:
    """Install the filter on every handler of the root and server loggers.

    Filters on handlers (not loggers) see records propagated from every child logger. A root
    handler is created when none exists so that nothing is emitted unfiltered.
    """
    flt = RedactionFilter()
    root = logging.getLogger()
    if not root.handlers:
        handler: logging.Handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root.addHandler(handler)
    root.setLevel(min(root.level or level, level))
    for name in _SERVICE_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactionFilter) for f in handler.filters):
                handler.addFilter(flt)
    return flt


def secret_forms(secret: bytes | str) -> set[str]:
    """The spellings in which ``secret`` could appear in a log (raw, hex, base64, base64url)."""
    raw = secret.encode() if isinstance(secret, str) else secret
    forms: set[str] = set()
    if isinstance(secret, str):
        forms.add(secret)
    else:
        try:
            forms.add(raw.decode("utf-8"))
        except UnicodeDecodeError:
            pass
        forms.add(repr(raw)[2:-1])
    forms.add(raw.hex())
    forms.add(raw.hex().upper())
    forms.add(binascii.b2a_base64(raw, newline=False).decode().rstrip("="))
    forms.add(base64.urlsafe_b64encode(raw).decode().rstrip("="))
    # Very short values would match by accident; tests pass meaningful secrets.
    return {f for f in forms if len(f) >= 4}


def find_leaks(lines: Iterable[str], secrets: Iterable[bytes | str]) -> list[tuple[int, str]]:
    """Return ``(line_number, form)`` for every secret form found in ``lines`` (empty is good)."""
    forms = sorted({f for s in secrets for f in secret_forms(s)})
    leaks: list[tuple[int, str]] = []
    for number, line in enumerate(lines, 1):
        for form in forms:
            if form in line:
                leaks.append((number, form[:6] + "..."))
    return leaks


class LogCapture(logging.Handler):
    """Collects every formatted record (message and traceback) that reaches the root logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def leaks(self, secrets: Iterable[bytes | str]) -> list[tuple[int, str]]:
        return find_leaks(self.lines, secrets)


@contextmanager
def capture_logs(*, redacting: bool = True) -> Iterator[LogCapture]:
    """Capture all logging (DEBUG and up) while the block runs, through the redaction filter."""
    capture = LogCapture()
    if redacting:
        capture.addFilter(RedactionFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)
