"""The sticker service: a thin Flask adapter over the search core (``sticker-search serve``).

Deployed as the OHTTP gateway's target, it sees queries and tokens but neither the client's
address (the relay keeps that) nor the account (the issuer keeps that). Each search spends one
Privacy Pass token (``credentials`` redemption); pictures are free to fetch.

Routes:

- ``GET /v1/search?q=&lang=&limit=&offset=``: JSON results; 401 ``PrivateToken`` challenge
  without a valid, unspent token; 400 problem for a bad query.
- ``GET /v1/stickers/<id>``: the picture as ``image/svg+xml`` (``?format=text`` or an
  ``Accept: text/plain`` request: the bare glyph as ``text/plain``).

It logs event names, counts and latencies, never a query. With ``query_stats_db`` set it keeps
aggregate counts per normalised query (no time, no address, no account, no token): the record a
provider keeps to improve search, and what the privacy ledger shows it knows.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, jsonify, request

from credentials.flask_origin import require_private_token
from credentials.origin import TokenVerifier
from service_kit.database import Database
from service_kit.errors import ConfigError
from service_kit.problem import ProblemError, install_problem_handlers
from service_kit.settings import load_settings
from sticker_search import metrics
from sticker_search.catalog import load_catalog
from sticker_search.consts import DEFAULT_LIMIT, MAX_LIMIT, MAX_OFFSET, MAX_QUERY_CHARS
from sticker_search.errors import QueryError, UnknownSticker
from sticker_search.index import SearchIndex
from sticker_search.picture import SVG_MEDIA_TYPE, TEXT_MEDIA_TYPE, render_svg
from sticker_search.text import normalize, tokenize

log = logging.getLogger("sticker_search.service")

DEFAULT_ORIGIN_INFO = "sticker-search"
PICTURE_MAX_AGE = 86400
PROBLEM_BAD_QUERY = "https://e2ee-messenger.example/problems/bad-query"

_STATS_SCHEMA = """
CREATE TABLE IF NOT EXISTS sticker_query_stats (
    query TEXT NOT NULL,
    lang TEXT NOT NULL,
    searches {bigint} NOT NULL,
    PRIMARY KEY (query, lang)
)
"""


@functools.lru_cache(maxsize=4)
def shared_index(catalog_path: str | None = None) -> SearchIndex:
    """The index over the shipped (or given) catalog, built once per process."""
    return SearchIndex(load_catalog(catalog_path))


class QueryStats:
    """Aggregate search counts per normalised query and language (no time, no requester)."""

    def __init__(self, url: str) -> None:
        self.db = Database(url)
        self.db.create_schema(_STATS_SCHEMA)

    def record(self, query: str, lang: str) -> None:
        normalised = " ".join(tokenize(query))
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO sticker_query_stats (query, lang, searches) VALUES (?, ?, 1) "
                "ON CONFLICT (query, lang) DO UPDATE SET searches = "
                "sticker_query_stats.searches + 1",
                (normalised, lang),
            )


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6 or not low <= int(raw) <= high:
        metrics.searched("bad_query")
        raise ProblemError(400, "Bad Request", type_=PROBLEM_BAD_QUERY,
                           detail=f"{name} must be an integer in {low}..{high}")
    return int(raw)


@dataclass(frozen=True)
class StickerSettings:
    """The sticker service's settings (the ``create_app`` config mapping; unknown keys are
    refused)."""

    #: The issuer's base URL, whose directory is fetched.
    issuer_url: str
    #: The spent-token store: a SQLite path or a ``postgresql://`` DSN.
    spent_db: str
    #: Origin names bound into challenges (default ``["sticker-search"]``).
    origin_info: Sequence[str] | None = None
    #: Optional aggregate query statistics store (see the module docstring).
    query_stats_db: str | None = None
    #: Another catalog file.
    catalog: str | None = None


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the sticker service from :class:`StickerSettings` (``config``)."""
    settings = load_settings(StickerSettings, config)
    issuer_url = settings.issuer_url
    spent_db = settings.spent_db
    if not issuer_url.startswith(("http://", "https://")) or not spent_db:
        raise ConfigError("sticker service needs 'issuer_url' (http URL) and 'spent_db'")
    origin_info = list(settings.origin_info or [DEFAULT_ORIGIN_INFO])
    index = shared_index(settings.catalog)
    verifier = TokenVerifier(issuer_url=issuer_url, origin_info=origin_info, spent_db=spent_db)
    stats = QueryStats(settings.query_stats_db) if settings.query_stats_db else None

    app = Flask("sticker_search")
    install_problem_handlers(app)
    log.info("sticker service ready stickers=%d terms=%d", len(index.catalog), index.term_count)

    def check_search_args() -> None:
        """A 400 problem for a query the search would refuse, raised before the token is
        redeemed: a malformed query never costs the client a token."""
        _int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        _int_arg("offset", 0, 0, MAX_OFFSET)
        query = request.args.get("q", "")
        lang = request.args.get("lang") or None
        try:
            if not query.strip() or len(query) > MAX_QUERY_CHARS:
                raise QueryError(f"q must hold 1..{MAX_QUERY_CHARS} characters")
            if lang and normalize(lang) not in index.languages:
                raise QueryError("unknown language")
            index.query_words(query)
        except QueryError as exc:
            metrics.searched("bad_query")
            raise ProblemError(400, "Bad Request", type_=PROBLEM_BAD_QUERY,
                               detail=str(exc)) from None

    @app.get("/v1/search")
    def search() -> Response:
        if request.headers.get("Authorization"):
            check_search_args()
        return redeemed_search()

    @require_private_token(verifier)
    def redeemed_search() -> Response:
        started = time.perf_counter()
        query = request.args.get("q", "")
        lang = request.args.get("lang") or None
        limit = _int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = _int_arg("offset", 0, 0, MAX_OFFSET)
        if not query.strip() or len(query) > MAX_QUERY_CHARS:
            metrics.searched("bad_query")
            raise ProblemError(400, "Bad Request", type_=PROBLEM_BAD_QUERY,
                               detail=f"q must hold 1..{MAX_QUERY_CHARS} characters")
        try:
            result = index.search(query, lang=lang, limit=limit, offset=offset)
        except QueryError as exc:
            metrics.searched("bad_query")
            raise ProblemError(400, "Bad Request", type_=PROBLEM_BAD_QUERY,
                               detail=str(exc)) from None
        if stats is not None:
            stats.record(query, lang or "")
        body = {
            "total": result.total,
            "offset": offset,
            "limit": limit,
            "results": [
                {"id": hit.sticker.id, "glyph": hit.sticker.glyph,
                 "title": hit.sticker.title(lang), "score": hit.score,
                 "picture": f"/v1/stickers/{hit.sticker.id}"}
                for hit in result.hits
            ],
        }
        response = jsonify(body)
        response.headers["Cache-Control"] = "no-store"
        metrics.searched("served", len(result.hits))
        log.info("search served results=%d total=%d ms=%.2f", len(result.hits), result.total,
                 (time.perf_counter() - started) * 1000)
        return response

    @app.get("/v1/stickers/<sticker_id>")
    def sticker(sticker_id: str) -> Response:
        try:
            item = index.catalog.get(sticker_id)
        except UnknownSticker:
            raise ProblemError(404, "Not Found", detail="no such sticker") from None
        lang = request.args.get("lang") or None
        wants_text = (request.args.get("format") == "text"
                      or request.accept_mimetypes.best_match(
                          [SVG_MEDIA_TYPE, "text/plain"]) == "text/plain")
        if wants_text:
            response = Response(item.glyph.encode(), content_type=TEXT_MEDIA_TYPE)
        else:
            response = Response(render_svg(item, lang), content_type=SVG_MEDIA_TYPE)
        response.headers["Cache-Control"] = f"public, max-age={PICTURE_MAX_AGE}"
        response.set_etag(hashlib.sha256(response.get_data()).hexdigest()[:16])
        log.info("picture served format=%s", "text" if wants_text else "svg")
        metrics.PICTURES.labels("text" if wants_text else "svg").inc()
        response.make_conditional(request)
        return response

    return app
