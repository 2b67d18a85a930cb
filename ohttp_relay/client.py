"""The Oblivious HTTP client library: a ``requests``-like call through a relay.

>>> client = ObliviousClient("http://127.0.0.1:8081")            # doctest: +SKIP
>>> resp = client.request("GET", "http://127.0.0.1:9000/search?q=cat")  # doctest: +SKIP
>>> resp.status, resp.headers["content-type"], resp.json()        # doctest: +SKIP

The client fetches (and caches) the gateway's key configurations through the relay, encodes the
request as Binary HTTP with a ``Date`` field (RFC 9458 §6.5), seals it, POSTs it to
``<relay_url>/relay`` and opens the response. After an ``ohttp-key`` problem (keys rotated) it
refetches the keys and retries once.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
import urllib3

from ohttp_relay import bhttp, consts
from ohttp_relay.chunked import ChunkedResponseOpener, encapsulate_chunked_request
from ohttp_relay.errors import (
    DecodeError,
    KeyConfigError,
    KeyMismatch,
    RelayUnavailable,
    RequestRejected,
)
from ohttp_relay.ohttp import KeyConfig, encapsulate_request, parse_key_material
from ohttp_relay.replay import format_http_date


@dataclass
class ObliviousResponse:
    """The target's response as the gateway sealed it."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    trailers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    @classmethod
    def from_bhttp(cls, message: bhttp.Response) -> ObliviousResponse:
        headers: dict[str, str] = {}
        for name, value in message.headers:  # repeated fields are combined (RFC 9110 §5.3)
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return cls(message.status, headers, message.content, dict(message.trailers))


def build_request(method: str, url: str, headers: Mapping[str, str] | None,
                  data: bytes | None, *, now: float | None = None) -> bhttp.Request:
    """The Binary HTTP request for ``url`` (path keeps its query), with a ``Date`` field."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("url must be an absolute http(s) URL")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    fields = list((headers or {}).items())
    if not any(name.lower() == "date" for name, _ in fields):
        fields.append(("date", format_http_date(time.time() if now is None else now)))
    return bhttp.Request(method.upper(), parts.scheme, parts.netloc, path,
                         bhttp.normalize_fields(fields), data or b"")


def _own_session(relay_url: str) -> requests.Session:
    """The session used when the caller gives none.

    Environment settings (proxies, ``no_proxy``, CA bundle) are read once here instead of on
    every request (``trust_env`` costs about a fifth of a small request's client time,
    measured), and ``.netrc`` credentials are never attached: they would identify the user
    to the relay.
    """
    session = requests.Session()
    session.proxies.update(requests.utils.get_environ_proxies(relay_url))
    session.proxies.pop("no", None)
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    session.trust_env = False
    return session


class ObliviousClient:
    """Sends requests to targets through an Oblivious HTTP relay.

    ``relay_url`` is the relay's base URL. ``key_config_or_url`` is the gateway's key
    configuration(s) (``application/ohttp-keys`` or one encoded KeyConfig), a URL to fetch them
    from, or ``None`` for ``<relay_url>/ohttp-keys``.
    """

    def __init__(self, relay_url: str, key_config_or_url: bytes | str | None = None, *,
                 session: requests.Session | None = None, timeout: float = 10.0,
                 chunked: bool = False) -> None:
        self.relay_url = relay_url.rstrip("/")
        self._relay_endpoint = self.relay_url + "/relay"
        if session is None:
            session = _own_session(self.relay_url)
        self.session = session
        self.timeout = timeout
        self.chunked = chunked
        self._keys_url: str | None = None
        self._configs: list[KeyConfig] | None = None
        self._lock = threading.Lock()
        if isinstance(key_config_or_url, bytes):
            self._configs = self._usable(parse_key_material(key_config_or_url))
        elif isinstance(key_config_or_url, str):
            self._keys_url = key_config_or_url
        else:
            self._keys_url = self.relay_url + "/ohttp-keys"

    @staticmethod
    def _usable(configs: list[KeyConfig]) -> list[KeyConfig]:
        usable = [c for c in configs if c.supported]
        if not usable:
            raise KeyConfigError("no usable key configuration")
        return usable

    def key_config(self, *, refresh: bool = False) -> KeyConfig:
        """The key configuration in use (fetched on first use or when ``refresh``)."""
        with self._lock:
            if self._configs is None or (refresh and self._keys_url is not None):
                self._configs = self._usable(parse_key_material(self._fetch_keys()))
            return self._configs[0]

    def _fetch_keys(self) -> bytes:
        assert self._keys_url is not None
        try:
            resp = self._minimal("GET", self._keys_url, None, None, stream=False)
        except requests.RequestException:
            raise RelayUnavailable("key configuration unreachable") from None
        if resp.status_code >= 500:
            raise RelayUnavailable("key configuration unavailable")
        if resp.status_code != 200:
            raise KeyConfigError("key configuration request refused")
        return resp.content

    def request(self, method: str, url: str, headers: Mapping[str, str] | None = None,
                data: bytes | None = None) -> ObliviousResponse:
        """Send one request to ``url`` through the relay and return the target's response."""
        inner = build_request(method, url, headers, data)
        return self._with_key_retry(lambda config: self._send(inner, config))

    def stream(self, method: str, url: str, headers: Mapping[str, str] | None = None,
               data: bytes | None = None) -> StreamedResponse:
        """Like :meth:`request` over chunked OHTTP, returning as soon as the response head is
        in: the content then arrives piece by piece through ``iter_content()``."""
        inner = build_request(method, url, headers, data)
        return self._with_key_retry(lambda config: self._send_streaming(inner, config))

    def _with_key_retry(self, send: Callable[[KeyConfig], _T]) -> _T:
        try:
            return send(self.key_config())
        except _KeyProblem:
            pass
        try:
            return send(self.key_config(refresh=True))
        except _KeyProblem:
            raise KeyMismatch("gateway rejects the key configuration after a refetch") from None

    def _post(self, body: bytes, media: str, *, stream: bool = False) -> requests.Response:
        # A kept-alive connection the relay closes (its idle timeout) just as the request goes
        # out fails without any answer. Sending the same Encapsulated Request once more, on a
        # new connection, is safe: the gateway's replay cache answers a second copy with an
        # error, so the target never sees the request twice.
        for attempt in (1, 2):
            try:
                resp = self._minimal("POST", self._relay_endpoint, body, media, stream=stream)
                break
            except requests.ConnectionError as exc:
                if attempt == 1 and _aborted(exc):
                    continue
                raise RelayUnavailable("relay unreachable") from None
            except requests.RequestException:
                raise RelayUnavailable("relay unreachable") from None
        if resp.status_code != 200:
            try:
                _raise_outer(resp.status_code, _media(resp), resp.content)
            finally:
                resp.close()
        return resp

    def _minimal(self, method: str, url: str, body: bytes | None, media: str | None, *,
                 stream: bool) -> requests.Response:
        """One request to the relay (an Encapsulated Request, or the key configurations) with
        nothing that could identify the client beyond its address: ``Host``, the framing and
        ``Content-Type`` fields, plus only the headers and auth the caller set on the session
        itself. Never the session's cookies (a relay could set one to link requests across
        addresses), nor requests' default ``User-Agent``/``Accept*`` fields; redirects are not
        followed. (Also a quarter less client CPU than ``Session.post``, which merges all of
        that per request; measured.)"""
        session = self.session
        # Below requests, urllib3 would add "User-Agent: python-urllib3/x" and http.client
        # "Accept-Encoding: identity": SKIP_HEADER suppresses both unless the caller set them.
        headers: dict[str, str | bytes] = {"User-Agent": urllib3.util.SKIP_HEADER,
                                           "Accept-Encoding": urllib3.util.SKIP_HEADER}
        if media:
            headers["Content-Type"] = media
        for name, value in session.headers.items():
            if _DEFAULT_HEADERS.get(name.lower()) != value and name.lower() != "content-type":
                headers[_CANONICAL.get(name.lower(), name)] = value
        prepared = requests.PreparedRequest()
        prepared.prepare(method=method, url=url, headers=headers, data=body, auth=session.auth)
        settings: Any = {"proxies": session.proxies, "verify": session.verify,
                         "cert": session.cert}
        if session.trust_env:  # a caller's session that reads proxies and CAs from the env
            settings = session.merge_environment_settings(prepared.url, {}, stream, None, None)
            settings.pop("stream", None)
        return session.send(prepared, timeout=self.timeout, stream=stream,
                            allow_redirects=False, **settings)

    def _send(self, inner: bhttp.Request, config: KeyConfig) -> ObliviousResponse:
        if self.chunked:
            body, chunked_ctx = _chunked_request(inner, config)
            resp = self._post(body, consts.MEDIA_TYPE_CHUNKED_REQUEST)
        else:
            body, context = encapsulate_request(config, inner.to_bytes())
            resp = self._post(body, consts.MEDIA_TYPE_REQUEST)
        try:
            if self.chunked:
                _expect(resp, consts.MEDIA_TYPE_CHUNKED_RESPONSE)
                plaintext = chunked_ctx.open_all(resp.content)
            else:
                _expect(resp, consts.MEDIA_TYPE_RESPONSE)
                plaintext = context.decapsulate(resp.content)
            return ObliviousResponse.from_bhttp(bhttp.decode_response(plaintext))
        finally:
            resp.close()

    def _send_streaming(self, inner: bhttp.Request, config: KeyConfig) -> StreamedResponse:
        body, opener = _chunked_request(inner, config)
        resp = self._post(body, consts.MEDIA_TYPE_CHUNKED_REQUEST, stream=True)
        try:
            _expect(resp, consts.MEDIA_TYPE_CHUNKED_RESPONSE)
        except DecodeError:
            resp.close()
            raise
        return StreamedResponse(resp, opener)


_T = TypeVar("_T")
#: requests' default session headers (lower-case names): never sent to the relay as such.
_DEFAULT_HEADERS = {k.lower(): v for k, v in requests.utils.default_headers().items()}
#: A caller's own User-Agent or Accept-Encoding replaces the SKIP_HEADER entry (one spelling).
_CANONICAL = {"user-agent": "User-Agent", "accept-encoding": "Accept-Encoding"}


def _aborted(exc: requests.ConnectionError) -> bool:
    """An established connection dropped without an answer (not: relay unreachable)."""
    reason = exc.args[0] if exc.args else None
    return isinstance(reason, urllib3.exceptions.ProtocolError)


def _media(resp: requests.Response) -> str:
    return resp.headers.get("Content-Type", "").split(";")[0].strip().lower()


def _expect(resp: requests.Response, media: str) -> None:
    if _media(resp) != media:
        raise DecodeError("unexpected response media type")


def _chunked_request(inner: bhttp.Request, config: KeyConfig
                     ) -> tuple[bytes, ChunkedResponseOpener]:
    encoded = inner.to_bytes(bhttp.Mode.INDETERMINATE)
    step = consts.CHUNK_PLAINTEXT_BYTES
    return encapsulate_chunked_request(
        config, [encoded[i:i + step] for i in range(0, len(encoded), step)])


class StreamedResponse:
    """A response whose content is opened and decoded as it arrives (chunked OHTTP).

    ``status`` and ``headers`` are available at once; iterate ``iter_content()`` for the
    content; ``trailers`` is filled once the content is exhausted. Close it (or use it as a
    context manager) if you stop early.
    """

    def __init__(self, resp: requests.Response, opener: ChunkedResponseOpener) -> None:
        self._resp = resp
        self._opener = opener
        self._decoder = bhttp.ResponseStream()
        self._raw = resp.iter_content(chunk_size=None)
        self._pending: list[bytes] = []
        self._done = False
        self._final: bhttp.Response | None = None
        self.trailers: dict[str, str] = {}
        try:
            while self._decoder.head is None and self._pump():
                pass
            head = self._decoder.head or self._final  # _final: the stream ended early
            if head is None:
                raise DecodeError("response ended before its head")
        except BaseException:
            resp.close()
            raise
        self.status = head.status
        self.headers = ObliviousResponse.from_bhttp(head).headers

    def _pump(self) -> bool:
        """Read one piece from the network; ``False`` at end of stream."""
        try:
            data = next(self._raw)
        except StopIteration:
            final = self._opener.close()
            self._pending += self._decoder.feed(final)
            response = self._decoder.close()
            self._final = response
            self.trailers = dict(response.trailers)
            self._done = True
            self._resp.close()
            return False
        except requests.RequestException:
            self._resp.close()
            raise RelayUnavailable("response stream broken") from None
        for plaintext in self._opener.feed(data):
            self._pending += self._decoder.feed(plaintext)
        return True

    def iter_content(self) -> Iterator[bytes]:
        """Content pieces in order, each released as soon as it is authenticated."""
        while True:
            while self._pending:
                yield self._pending.pop(0)
            if self._done or not self._pump():
                while self._pending:
                    yield self._pending.pop(0)
                return

    def close(self) -> None:
        self._resp.close()

    def __enter__(self) -> StreamedResponse:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class _KeyProblem(Exception):
    """Internal: the gateway answered with the ``ohttp-key`` problem type."""


def _raise_outer(status: int, content_type: str, body: bytes) -> None:
    problem: dict[str, Any] = {}
    if content_type == "application/problem+json":
        try:
            loaded = json.loads(body)
            if isinstance(loaded, dict):
                problem = loaded
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the stack
            problem = {}
    if problem.get("type") == consts.PROBLEM_OHTTP_KEY:
        raise _KeyProblem()
    if status >= 500:
        raise RelayUnavailable(f"relay answered {status}")
    raise RequestRejected(status, str(problem.get("title", "refused")))
