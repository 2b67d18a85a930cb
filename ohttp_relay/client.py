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
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from ohttp_relay import bhttp, consts
from ohttp_relay.chunked import encapsulate_chunked_request
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
        self.session = session or requests.Session()
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
            resp = self.session.get(self._keys_url, timeout=self.timeout)
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
        try:
            return self._send(inner, self.key_config())
        except _KeyProblem:
            pass
        try:
            return self._send(inner, self.key_config(refresh=True))
        except _KeyProblem:
            raise KeyMismatch("gateway rejects the key configuration after a refetch") from None

    def _send(self, inner: bhttp.Request, config: KeyConfig) -> ObliviousResponse:
        if self.chunked:
            encoded = inner.to_bytes(bhttp.Mode.INDETERMINATE)
            step = consts.CHUNK_PLAINTEXT_BYTES
            body, chunked_ctx = encapsulate_chunked_request(
                config, [encoded[i:i + step] for i in range(0, len(encoded), step)])
            media = consts.MEDIA_TYPE_CHUNKED_REQUEST
        else:
            body, context = encapsulate_request(config, inner.to_bytes())
            media = consts.MEDIA_TYPE_REQUEST
        try:
            resp = self.session.post(self.relay_url + "/relay", data=body,
                                     headers={"Content-Type": media}, timeout=self.timeout)
        except requests.RequestException:
            raise RelayUnavailable("relay unreachable") from None
        content_type = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if resp.status_code != 200:
            _raise_outer(resp.status_code, content_type, resp.content)
        try:
            if self.chunked:
                if content_type != consts.MEDIA_TYPE_CHUNKED_RESPONSE:
                    raise DecodeError("unexpected response media type")
                plaintext = chunked_ctx.open_all(resp.content)
            else:
                if content_type != consts.MEDIA_TYPE_RESPONSE:
                    raise DecodeError("unexpected response media type")
                plaintext = context.decapsulate(resp.content)
            return ObliviousResponse.from_bhttp(bhttp.decode_response(plaintext))
        finally:
            resp.close()


class _KeyProblem(Exception):
    """Internal: the gateway answered with the ``ohttp-key`` problem type."""


def _raise_outer(status: int, content_type: str, body: bytes) -> None:
    problem: dict[str, Any] = {}
    if content_type == "application/problem+json":
        try:
            loaded = json.loads(body)
            if isinstance(loaded, dict):
                problem = loaded
        except ValueError:
            problem = {}
    if problem.get("type") == consts.PROBLEM_OHTTP_KEY:
        raise _KeyProblem()
    if status >= 500:
        raise RelayUnavailable(f"relay answered {status}")
    raise RequestRejected(status, str(problem.get("title", "refused")))
