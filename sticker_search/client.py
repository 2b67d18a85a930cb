"""The private sticker search client for apps (``StickerClient``) and the CLI.

Two channels, each learning one half:

- **tokens** come from the issuer **directly**, authenticated as the account (the issuer must
  know who asks, to limit it), fetched in batches and cached locally, so the issuer sees
  "account A took 32 tokens at 10:02", never a query;
- **searches** go **through the OHTTP relay** (``ObliviousClient``): the relay sees the
  client's address and ciphertext, the gateway and the sticker service see the query and an
  unlinkable token, never the address or the account.

The origin's ``PrivateToken`` challenge is fetched once (through the relay, with a query-less
request) and reused: with an empty redemption context it is the same for every search, so
tokens can be fetched ahead of time.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode

import requests

from credentials.client import IssuerClient
from credentials.consts import ORIGIN_MAX_DIRECTORY_AGE
from credentials.errors import (
    CredentialsError,
    IssuanceRateLimited,
    IssuerUnavailable,
    StaleChallenge,
)
from ohttp_relay.client import ObliviousClient, ObliviousResponse
from ohttp_relay.errors import KeyMismatch, OHTTPError, RelayUnavailable, RequestRejected
from sticker_search.consts import (
    DEFAULT_LIMIT,
    LANGUAGES,
    MAX_LIMIT,
    MAX_OFFSET,
    MAX_QUERY_CHARS,
    MAX_QUERY_TERMS,
    STOPWORDS,
)
from sticker_search.errors import (
    AccessDenied,
    ProtocolError,
    QueryError,
    RateLimited,
    ServiceUnavailable,
    TargetRefused,
)
from sticker_search.text import normalize, tokenize

SEARCH_PATH = "/v1/search"
#: The gateway's sealed 403 detail for a target outside its allowlist.
_NOT_ALLOWED = "Target origin not allowed"
STICKER_PATH = "/v1/stickers/"
DEFAULT_BATCH_SIZE = 16

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StickerResult:
    """One search result as the service returned it."""

    id: str
    glyph: str
    title: str
    score: float


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of results; ``total`` counts every match."""

    total: int
    offset: int
    results: tuple[StickerResult, ...]


def parse_search_response(body: bytes) -> SearchPage:
    """Decode the service's JSON answer; raises :class:`ProtocolError` on anything else."""
    try:
        data = json.loads(body)
        results = tuple(
            StickerResult(str(r["id"]), str(r["glyph"]), str(r["title"]), float(r["score"]))
            for r in data["results"]
        )
        return SearchPage(int(data["total"]), int(data.get("offset", 0)), results)
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError):  # deep nesting
        raise ProtocolError("malformed search response") from None


def check_query(query: str, lang: str | None = None, limit: int = DEFAULT_LIMIT,
                offset: int = 0) -> None:
    """Refuse, before any token is spent, what the service would refuse: an empty or long
    query, too many words, an unknown language, a page out of range (:class:`QueryError`)."""
    if not query.strip() or len(query) > MAX_QUERY_CHARS:
        raise QueryError(f"query must hold 1..{MAX_QUERY_CHARS} characters")
    if not 1 <= limit <= MAX_LIMIT or not 0 <= offset <= MAX_OFFSET:
        raise QueryError("limit or offset out of range")
    if lang and normalize(lang) not in LANGUAGES:
        raise QueryError("unknown language")
    words = tokenize(query)
    # The service drops stopwords (but the last word) and repeats; it may split unspaced text
    # further, so this is a lower bound and the service checks again before redeeming.
    kept = {w for w in words[:-1] if w not in STOPWORDS} | set(words[-1:])
    if len(kept) > MAX_QUERY_TERMS:
        raise QueryError("too many query words")


def _problem_detail(response: ObliviousResponse, field: str = "detail") -> str | None:
    """A field of a problem+json answer (the service's fixed wording, no user data)."""
    if not response.headers.get("content-type", "").startswith("application/problem+json"):
        return None
    try:
        detail = json.loads(response.body).get(field)
    except (ValueError, AttributeError):
        return None
    if isinstance(detail, str) and 0 < len(detail) <= 120 and detail.isprintable():
        return detail
    return None


class StickerClient:
    """Private sticker search: tokens from the issuer, queries through the OHTTP relay.

    ``issuer_url``: the issuer's base URL; ``credential``: the account's bearer credential;
    ``relay_url``: the relay's base URL; ``target_url``: the sticker service's base URL as the
    gateway reaches it; ``key_config``: the gateway's key configuration (bytes), a URL to
    fetch it from, or ``None`` for the relay's ``/ohttp-keys``.
    """

    def __init__(
        self,
        *,
        issuer_url: str,
        credential: str,
        relay_url: str,
        target_url: str,
        key_config: bytes | str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        timeout: float = 10.0,
        session: requests.Session | None = None,
    ) -> None:
        self.target_url = target_url.rstrip("/")
        self.relay_url = relay_url.rstrip("/")
        self._key_config = key_config
        self._timeout = timeout
        # The relay-bound session is the caller's, or ObliviousClient's own (environment read
        # once, nothing identifying); the issuer, which knows the account anyway, gets another.
        self._relay_session = session
        self.tokens = IssuerClient(issuer_url, credential, batch_size=batch_size,
                                   session=session or requests.Session())
        self.oblivious = self._new_oblivious()
        self._challenge: str | None = None
        self._challenge_lock = threading.Lock()

    def _new_oblivious(self) -> ObliviousClient:
        return ObliviousClient(self.relay_url, self._key_config, session=self._relay_session,
                               timeout=self._timeout)

    # -- transport -----------------------------------------------------------------------------
    def _through_relay(self, method: str, url: str,
                       headers: dict[str, str] | None = None) -> ObliviousResponse:
        """One request through relay and gateway; keys rotated: refetch and retry once."""
        for attempt in (1, 2):
            try:
                response = self.oblivious.request(method, url, headers=headers)
            except KeyMismatch:
                if attempt == 2 or isinstance(self._key_config, bytes):
                    raise ServiceUnavailable(
                        "gateway keys changed and could not be refetched") from None
                self.oblivious = self._new_oblivious()
                continue
            except RelayUnavailable:
                raise ServiceUnavailable("relay or gateway unreachable") from None
            except RequestRejected as exc:
                if exc.status == 429:
                    raise ServiceUnavailable("relay rate limit reached; retry later") from None
                raise ServiceUnavailable(f"relay refused the request (HTTP {exc.status})") \
                    from None
            except OHTTPError as exc:
                raise ServiceUnavailable(f"oblivious HTTP failed ({type(exc).__name__})") \
                    from None
            if response.status in (502, 503, 504):
                raise ServiceUnavailable(f"sticker service unavailable (HTTP {response.status})")
            if response.status == 403 and _problem_detail(response, "title") == _NOT_ALLOWED:
                raise TargetRefused("the gateway does not forward to this target (not on its "
                                    "allowlist); check --target")
            return response
        raise ServiceUnavailable("gateway keys changed and could not be refetched")

    def _with_tokens(self, call: Callable[[str], T]) -> T:
        """Run an issuer-client call for the service's challenge, mapping its errors."""
        try:
            try:
                return call(self.challenge())
            except StaleChallenge:
                # The issuer retired the key this challenge names: ask the service again.
                return call(self.challenge(refresh=True))
        except StaleChallenge:
            raise ServiceUnavailable(
                "the sticker service still challenges with a retired issuer key; it switches "
                f"to the new key within {ORIGIN_MAX_DIRECTORY_AGE} s, retry then (if this "
                "persists, it trusts another issuer than --issuer)") from None
        except IssuanceRateLimited as exc:
            raise RateLimited(exc.retry_after) from None
        except IssuerUnavailable:
            raise ServiceUnavailable("token issuer unreachable") from None
        except CredentialsError as exc:
            raise AccessDenied(f"token issuer refused ({type(exc).__name__})") from None

    # -- public API ----------------------------------------------------------------------------
    def challenge(self, *, refresh: bool = False) -> str:
        """The sticker service's ``WWW-Authenticate`` challenge (fetched through the relay)."""
        with self._challenge_lock:
            if self._challenge is None or refresh:
                response = self._through_relay("GET", self.target_url + SEARCH_PATH)
                value = response.headers.get("www-authenticate")
                if response.status != 401 or not value:
                    raise ProtocolError("the target did not answer with a token challenge "
                                        f"(HTTP {response.status}): is it a sticker service?")
                self._challenge = value
            return self._challenge

    def prefetch_tokens(self, n: int) -> int:
        """Fetch tokens ahead of time (one batched issuer request per batch); return the count
        now cached."""
        return self._with_tokens(lambda challenge: self.tokens.prefetch(challenge, n))

    def cached_tokens(self) -> int:
        """Tokens cached for the sticker service's challenge."""
        return self._with_tokens(self.tokens.cached)

    def search(self, query: str, *, lang: str | None = None, limit: int = DEFAULT_LIMIT,
               offset: int = 0) -> SearchPage:
        """Search privately; spends one token.

        Raises :class:`QueryError` (bad query), :class:`RateLimited` (issuer allowance used
        up; ``retry_after``), :class:`ServiceUnavailable` (relay, gateway, service or issuer
        down), :class:`AccessDenied` (tokens refused twice), :class:`ProtocolError`.
        """
        check_query(query, lang, limit, offset)
        params: dict[str, Any] = {"q": query, "limit": limit}
        if lang:
            params["lang"] = lang
        if offset:
            params["offset"] = offset
        url = f"{self.target_url}{SEARCH_PATH}?{urlencode(params)}"
        for attempt in (1, 2):
            authorization = self._with_tokens(self.tokens.authorization_for)
            response = self._through_relay("GET", url, {"Authorization": authorization})
            if response.status == 200:
                return parse_search_response(response.body)
            if response.status == 401 and attempt == 1:
                # Spent or stale token (e.g. the issuer rotated its key): new challenge, retry.
                fresh = response.headers.get("www-authenticate")
                if fresh:
                    self._challenge = fresh
                continue
            if response.status == 401:
                raise AccessDenied("sticker service refused the token twice")
            if response.status == 400:
                raise QueryError(_problem_detail(response) or "sticker service refused the query")
            raise ProtocolError(f"sticker service answered HTTP {response.status}")
        raise AccessDenied("sticker service refused the token twice")

    def picture(self, sticker_id: str) -> tuple[str, bytes]:
        """``(media type, bytes)`` of a sticker's picture, fetched through the relay."""
        if not sticker_id or not all(c in "0123456789abcdef-" for c in sticker_id):
            raise QueryError("malformed sticker id")
        response = self._through_relay("GET", self.target_url + STICKER_PATH + sticker_id)
        if response.status == 404:
            raise QueryError("no such sticker")
        if response.status != 200:
            raise ProtocolError(f"sticker service answered HTTP {response.status}")
        return response.headers.get("content-type", ""), response.body
