"""The Privacy Pass issuer (RFC 9578 §4-§6, type 0x0002) as a Flask app factory.

Layers: HTTP checks (method, bearer credential, media type, size) -> decoding -> key lookup ->
per-account allowance -> blind signing. Each failure class has its own status; bodies are
``application/problem+json`` and logs name events and counts only.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, request

from credentials import consts, metrics
from credentials.batched import (
    decode_batch_request,
    encode_batch_response,
)
from credentials.errors import DecodeError, IssuanceError, IssuanceRateLimited
from credentials.issuance import DirectoryKey, IssuerDirectory, IssuerKey, IssuerKeys
from credentials.issuer_store import IssuerStore, load_kek
from credentials.tokens import TokenRequest, TokenResponse
from service_kit.cors import CorsPolicy, install_cors
from service_kit.errors import ConfigError
from service_kit.problem import ProblemError, install_problem_handlers
from service_kit.settings import load_settings

log = logging.getLogger("credentials.issuer")

class _KeyCache:
    """Signers for the store's live keys, rebuilt when the set of keys changes."""

    def __init__(self, store: IssuerStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._ids: tuple[bytes, ...] = ()
        self._signers: dict[bytes, IssuerKey] = {}
        self.keys = IssuerKeys()

    def refresh(self) -> IssuerKeys:
        """The live keys; one cheap id query per call so a retirement takes effect at once."""
        ids = tuple(self._store.live_key_ids())
        with self._lock:
            if ids != self._ids:
                stored = [k for k in self._store.list_keys() if k.key_id in set(ids)]
                signers = {}
                for key in stored:
                    signer = self._signers.get(key.key_id)
                    if signer is None:
                        signer = IssuerKey.from_private_key(self._store.private_key(key.key_id),
                                                            key.not_before)
                    signers[key.key_id] = signer
                self._signers, self._ids = signers, ids
                self.keys = IssuerKeys(signers.values())
                log.info("issuer keys loaded count=%d", len(signers))
            return self.keys


@dataclass(frozen=True)
class IssuerSettings:
    """The issuer's settings (the ``create_app`` config mapping; unknown keys are refused)."""

    #: Issuer store: a SQLite path or a ``postgresql://`` DSN.
    db: str
    issuer_name: str
    #: Tokens per account per window.
    rate_limit: int = consts.DEFAULT_RATE_LIMIT
    rate_window: int = consts.DEFAULT_RATE_WINDOW
    max_batch: int = consts.MAX_BATCH_SIZE
    #: Where private keys are kept as 0600 files (default: in the store).
    key_dir: str | None = None
    directory_max_age: int = consts.DEFAULT_DIRECTORY_MAX_AGE
    #: The base URL clients reach, used in ``issuer-request-uri``. Empty: the URI is relative
    #: to the directory (RFC 9578 §4 allows it); never taken from the request's Host.
    public_url: str = ""
    #: Web page origins whose browsers may fetch tokens here (CORS); none by default.
    cors_origins: Sequence[str] = ()
    #: Name of the environment variable holding the key-encryption key (base64url, 32 bytes)
    #: that wraps private keys in the store (AES-256-GCM); the key itself is never a setting.
    key_encryption_key_env: str | None = None


def create_app(config: Mapping[str, Any]) -> Flask:
    """Issuer app from :class:`IssuerSettings` (``config``)."""
    settings = load_settings(IssuerSettings, config)
    if not settings.db or not settings.issuer_name:
        raise ConfigError("issuer settings 'db' and 'issuer_name' must not be empty")
    rate_limit = settings.rate_limit
    rate_window = settings.rate_window
    max_batch = min(settings.max_batch, consts.MAX_BATCH_SIZE)
    max_age = settings.directory_max_age
    public_url = settings.public_url.rstrip("/")
    if public_url and not public_url.startswith(("http://", "https://")):
        raise ConfigError("issuer setting 'public_url' must be an http(s) URL")
    store = IssuerStore(settings.db, key_dir=settings.key_dir,
                        key_encryption_key=load_kek(settings.key_encryption_key_env))
    store.ensure_key()
    cache = _KeyCache(store)
    cache.refresh()
    log.info("issuer started name=%s rate_limit=%d rate_window=%d", settings.issuer_name,
             rate_limit, rate_window)

    app = Flask("credentials.issuer")
    app.config["MAX_CONTENT_LENGTH"] = consts.MAX_REQUEST_BODY
    install_problem_handlers(app)
    install_cors(app, CorsPolicy.build(
        settings.cors_origins, request_headers=("authorization", "content-type", "accept"),
        expose_headers=("retry-after",)))

    @app.get(consts.DIRECTORY_PATH)
    def directory() -> Response:
        keys = tuple(DirectoryKey(consts.TOKEN_TYPE_BLIND_RSA, k.token_key, k.not_before)
                     for k in store.list_keys())
        doc = IssuerDirectory(public_url + consts.ISSUANCE_PATH, keys)
        body = doc.to_json()
        etag = hashlib.sha256(body).hexdigest()[:32]
        response = Response(body, mimetype=consts.MEDIA_DIRECTORY)
        response.set_etag(etag)
        response.headers["Cache-Control"] = f"public, max-age={max_age}"
        response.make_conditional(request)
        return response

    def authenticate() -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, credential = header.partition(" ")
        account = store.authenticate(credential.strip()) if scheme.lower() == "bearer" else None
        if account is None:
            log.info("issuance refused reason=unauthenticated")
            metrics.issuance_refused("unauthenticated")
            raise ProblemError(401, "Unauthorized", detail="a valid bearer credential is needed",
                               headers={"WWW-Authenticate": 'Bearer realm="token-issuer"'})
        return account

    def body_of(expected: int | None = None) -> bytes:
        data = request.get_data(cache=False)
        if expected is not None and len(data) != expected:
            metrics.issuance_refused("malformed")
            raise ProblemError(400, "Bad Request", detail="token request has the wrong size")
        return data

    def reserve(account: str, wanted: int) -> int:
        try:
            return store.reserve(account, wanted, limit=rate_limit, window=rate_window)
        except IssuanceRateLimited as exc:
            log.info("issuance refused reason=rate_limited")
            metrics.issuance_refused("rate_limited")
            raise ProblemError(429, "Too Many Requests", detail="issuance allowance used up",
                               headers={"Retry-After": str(exc.retry_after)}) from exc

    @app.post(consts.ISSUANCE_PATH)
    def issue() -> Response:
        account = authenticate()
        media = (request.mimetype or "").lower()
        if media == consts.MEDIA_TOKEN_REQUEST:
            return issue_single(account)
        if media == consts.MEDIA_BATCH_REQUEST:
            return issue_batch(account)
        metrics.issuance_refused("unsupported_media_type")
        raise ProblemError(415, "Unsupported Media Type",
                           detail="expected a private-token request media type")

    def issue_single(account: str) -> Response:
        try:
            token_request = TokenRequest.decode(body_of(consts.TOKEN_REQUEST_LENGTH))
        except DecodeError as exc:
            metrics.issuance_refused("malformed")
            raise ProblemError(400, "Bad Request", detail="malformed TokenRequest") from exc
        keys = cache.refresh()
        if not keys.has_truncated(token_request.truncated_token_key_id):
            metrics.issuance_refused("unknown_key")
            raise ProblemError(422, "Unprocessable Content", detail="unknown token key")
        reserve(account, 1)
        try:
            response = keys.evaluate(token_request, int(time.time()))
        except IssuanceError as exc:
            store.refund(account, 1, window=rate_window)
            metrics.issuance_refused("unsignable")
            raise ProblemError(422, "Unprocessable Content",
                               detail="token request cannot be signed") from exc
        log.info("issuance single issued=1")
        metrics.TOKENS_ISSUED.labels("single").inc()
        return Response(response.encode(), mimetype=consts.MEDIA_TOKEN_RESPONSE)

    def issue_batch(account: str) -> Response:
        try:
            items = decode_batch_request(body_of())
        except DecodeError as exc:
            metrics.issuance_refused("malformed")
            raise ProblemError(422, "Unprocessable Content",
                               detail="malformed batched token request") from exc
        if not items:
            metrics.issuance_refused("empty_batch")
            raise ProblemError(400, "Bad Request", detail="empty batch")
        if len(items) > max_batch:
            metrics.issuance_refused("batch_too_large")
            raise ProblemError(422, "Unprocessable Content", detail="batch too large")
        keys = cache.refresh()
        signable = [(index, item) for index, item in enumerate(items)
                    if isinstance(item, TokenRequest)
                    and keys.has_truncated(item.truncated_token_key_id)]
        if not signable:
            metrics.issuance_refused("unknown_key")
            raise ProblemError(400, "Bad Request", detail="no token request can be issued")
        granted = reserve(account, len(signable))
        # The first `granted` signable items are signed (their checks batched per key).
        chosen = signable[:granted]
        evaluated = dict(zip((index for index, _ in chosen), keys.evaluate_many(
            [item for _, item in chosen], int(time.time())), strict=True))
        responses: list[tuple[int, bytes] | None] = []
        for index in range(len(items)):
            result = evaluated.get(index)
            responses.append((consts.TOKEN_TYPE_BLIND_RSA, result.encode())
                             if isinstance(result, TokenResponse) else None)
        issued = sum(1 for r in responses if r is not None)
        store.refund(account, granted - issued, window=rate_window)
        log.info("issuance batch requested=%d issued=%d", len(items), issued)
        metrics.TOKENS_ISSUED.labels("batch").inc(issued)
        metrics.BATCH_ITEMS_NOT_ISSUED.inc(len(items) - issued if issued else 0)
        if issued == 0:
            metrics.issuance_refused("unsignable")
            raise ProblemError(400, "Bad Request", detail="no token request could be issued")
        status = 200 if issued == len(items) else 206
        return Response(encode_batch_response(responses), status=status,
                        mimetype=consts.MEDIA_BATCH_RESPONSE)

    return app
