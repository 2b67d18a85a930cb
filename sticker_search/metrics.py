"""The sticker service's events (Prometheus; docs/metrics.md): counts only, never a query,
a language tag a client chose, or a sticker id."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Histogram

from service_kit.metrics import one_of

SEARCH_OUTCOMES: Final = frozenset({"served", "bad_query"})

SEARCHES = Counter("sticker_searches", "Searches (each spent one token), by outcome",
                   ["outcome"])
SEARCH_RESULTS = Histogram("sticker_search_results", "Results returned per served search",
                           buckets=(0, 1, 5, 10, 20, 50))
PICTURES = Counter("sticker_pictures_served", "Pictures served, by format", ["format"])

for _outcome in SEARCH_OUTCOMES:
    SEARCHES.labels(_outcome)
for _format in ("svg", "text"):
    PICTURES.labels(_format)


def searched(outcome: str, results: int | None = None) -> None:
    SEARCHES.labels(one_of(outcome, SEARCH_OUTCOMES)).inc()
    if results is not None:
        SEARCH_RESULTS.observe(results)
