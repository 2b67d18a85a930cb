"""Cost of the redaction filter on a service log line, against the same line unfiltered."""

from __future__ import annotations

import io
import logging

from bench.harness import Case, compare, header
from service_kit.logging_filter import RedactionFilter


def _logger(name: str, redacting: bool) -> logging.Logger:
    log = logging.getLogger(name)
    log.propagate = False
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    if redacting:
        handler.addFilter(RedactionFilter())
    log.handlers = [handler]
    log.setLevel(logging.INFO)
    return log


def main(argv: list[str]) -> None:
    header("logging: redaction filter overhead per record")
    filtered = _logger("bench.filtered", True)
    plain = _logger("bench.plain", False)
    args = ("search", 12, 3.25)
    result = compare(
        Case("log record with RedactionFilter",
             lambda: filtered.info("event=%s n=%d ms=%.2f", *args)),
        Case("log record, no filter", lambda: plain.info("event=%s n=%d ms=%.2f", *args)),
    )
    print(result.line())
