"""The HTTP client of the service hops (relay -> gateway, gateway -> target), on ``urllib3``.

``urllib3`` (over the standard library's ``http.client``) does the HTTP/1.1 framing and keeps a
pool of kept-alive connections per origin. What a privacy hop adds on top, and what this module
is for:

* **no field of its own**: the request carries exactly the caller's fields plus ``Host`` and
  ``Content-Length`` (``urllib3``'s default ``User-Agent`` and ``Accept-Encoding`` are skipped);
  no proxies from the environment, no redirects followed, no cookies;
* **unambiguous responses only**: a response with more than one ``Content-Length``, one that is
  not a canonical decimal number, or one beside ``Transfer-Encoding`` is refused and its
  connection closed, never returned to the pool (``http.client`` would take the first value and
  leave the rest on the connection as the start of the next response);
* a **size cap** on the content and **timeouts** on connecting and reading;
* one retry, only where repeating is harmless: a request whose kept-alive connection was closed
  by the upstream before any response byte is sent again on a fresh connection when the method
  is idempotent or the caller says the request is replay-safe (an OHTTP request: the gateway's
  replay cache refuses a second copy).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import urllib3
from urllib3 import HTTPHeaderDict
from urllib3.util import SKIP_HEADER

from ohttp_relay import consts
from ohttp_relay.errors import (
    UpstreamError,
    UpstreamTimeout,
    UpstreamTooLarge,
    UpstreamUnreachable,
)
from service_kit.request_rules import canonical_length

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass
class UpstreamResponse:
    """A response whose content is read through :meth:`chunks` or :meth:`read_all`."""

    status: int
    headers: list[tuple[str, str]]
    _raw: urllib3.BaseHTTPResponse
    _limit: int
    _chunk_size: int
    _done: bool = False

    def header(self, name: str) -> str | None:
        """The first field called ``name`` (case-insensitive)."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def chunks(self) -> Iterator[bytes]:
        """The content as it arrives; more than the limit raises :class:`UpstreamTooLarge`."""
        total = 0
        clean = False
        try:
            for piece in self._raw.stream(self._chunk_size, decode_content=False):
                total += len(piece)
                if total > self._limit:
                    raise UpstreamTooLarge("upstream response too large")
                yield piece
            clean = True
        except urllib3.exceptions.TimeoutError:
            raise UpstreamTimeout("upstream timed out") from None
        except urllib3.exceptions.HTTPError:
            raise UpstreamError("upstream response failed") from None
        finally:
            self._finish(clean)

    def read_all(self) -> bytes:
        return b"".join(self.chunks())

    def close(self) -> None:
        """Give up on the content: the connection is closed, never reused half-read."""
        self._finish(False)

    def _finish(self, clean: bool) -> None:
        if self._done:
            return
        self._done = True
        if not clean:
            self._raw.close()  # never pooled half-read
        self._raw.release_conn()


class UpstreamClient:
    """A pool of kept-alive connections to the hop's upstreams (thread-safe)."""

    def __init__(self, *, connect_timeout: float = 5.0, read_timeout: float = 30.0,
                 replay_safe: bool = False, maxsize: int = consts.HOP_POOL_CONNECTIONS,
                 chunk_size: int = consts.HOP_CHUNK_BYTES) -> None:
        self.pool = urllib3.PoolManager(
            num_pools=consts.HOP_POOLS, maxsize=maxsize, retries=False,
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout))
        self.replay_safe = replay_safe
        self.chunk_size = chunk_size

    def request(self, method: str, url: str, *, headers: Sequence[tuple[str, str]],
                body: bytes, limit: int = consts.MAX_CONTENT_BYTES) -> UpstreamResponse:
        """Send one request with exactly ``headers`` (plus ``Host`` and ``Content-Length``).

        The response's content is not read yet: use :meth:`UpstreamResponse.read_all` or
        :meth:`UpstreamResponse.chunks`. A ``Content-Length`` over ``limit`` is refused at once.
        """
        fields = HTTPHeaderDict()
        for name, value in headers:
            fields.add(name, value)
        for name in ("User-Agent", "Accept-Encoding"):
            if name not in fields:
                fields[name] = SKIP_HEADER
        if body or method in ("POST", "PUT", "PATCH"):
            fields["Content-Length"] = str(len(body))
        retry = self.replay_safe or method in IDEMPOTENT
        for attempt in (1, 2):
            try:
                raw = self.pool.request(method, url, headers=fields, body=body or None,
                                        redirect=False, preload_content=False,
                                        decode_content=False, assert_same_host=False)
                break
            except urllib3.exceptions.NewConnectionError:  # (a TimeoutError subclass)
                raise UpstreamUnreachable("upstream unreachable") from None
            except urllib3.exceptions.TimeoutError:
                raise UpstreamTimeout("upstream timed out") from None
            except urllib3.exceptions.ProtocolError:
                # The upstream closed the (kept-alive) connection before any response byte.
                if retry and attempt == 1:
                    continue
                raise UpstreamError("upstream closed the connection") from None
            except (urllib3.exceptions.HTTPError, ValueError):
                raise UpstreamError("upstream request failed") from None
        else:  # pragma: no cover - the loop always breaks or raises
            raise UpstreamError("upstream request failed")
        response = UpstreamResponse(raw.status, list(raw.headers.iteritems()), raw, limit,
                                    self.chunk_size)
        try:
            _check_framing(raw.headers, limit)
        except UpstreamError:
            response.close()
            raise
        return response


def _check_framing(headers: HTTPHeaderDict, limit: int) -> None:
    lengths = headers.getlist("content-length")
    if not lengths:
        return
    value = lengths[0].strip()
    if (len(lengths) != 1 or headers.getlist("transfer-encoding")
            or not canonical_length(value.encode("latin-1"))):
        raise UpstreamError("upstream response framing is ambiguous")
    if int(value) > limit:
        raise UpstreamTooLarge("upstream response too large")
