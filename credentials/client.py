"""The Privacy Pass client: fetch tokens from an issuer, answer an origin's challenge.

``IssuerClient.authorization_for(www_authenticate)`` is all a feature client needs: it picks
the ``PrivateToken`` challenge it can satisfy, spends one cached token for it and refills the
cache with one batched issuance request when it runs dry.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from urllib.parse import urljoin, urlsplit

import requests

from credentials import consts
from credentials.batched import decode_batch_response, encode_batch_request
from credentials.errors import (
    BlindRSAError,
    CredentialsError,
    DecodeError,
    IssuanceError,
    IssuanceRateLimited,
    IssuerUnavailable,
    StaleChallenge,
)
from credentials.headers import PrivateTokenChallenge, b64url_encode, parse_www_authenticate
from credentials.issuance import PendingToken, begin_issuance
from credentials.origin import DirectoryCache
from credentials.tokens import Token, TokenResponse

log = logging.getLogger("credentials.client")

_DEFAULT_RETRY_AFTER = 1


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


class IssuerClient:
    """Tokens from one issuer, cached per (challenge, token key)."""

    def __init__(self, issuer_url: str, credential: str, *, batch_size: int = 32,
                 session: requests.Session | None = None) -> None:
        if not 1 <= batch_size <= consts.MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be 1..{consts.MAX_BATCH_SIZE}")
        self.issuer_url = issuer_url.rstrip("/")
        self.batch_size = batch_size
        self.session = session or requests.Session()
        self._credential = credential
        self.directory = DirectoryCache(self.issuer_url, self.session)
        self._cache: dict[tuple[bytes, bytes], deque[Token]] = {}
        self._lock = threading.Lock()

    # -- public API --------------------------------------------------------------------------
    def authorization_for(self, www_authenticate: str) -> str:
        """The ``Authorization`` value answering ``www_authenticate`` (spends one token)."""
        challenge = self._choose(www_authenticate)
        key = (challenge.challenge, challenge.token_key)
        with self._lock:
            queue = self._cache.setdefault(key, deque())
            if not queue:
                queue.extend(self._fetch(challenge, self.batch_size))
            if not queue:
                raise IssuanceError("issuer issued no token")
            token = queue.popleft()
        return f"{consts.AUTH_SCHEME} token={b64url_encode(token.encode())}"

    def prefetch(self, www_authenticate: str, n: int) -> int:
        """Fill the cache for this challenge to at least ``n`` tokens; return the count."""
        challenge = self._choose(www_authenticate)
        key = (challenge.challenge, challenge.token_key)
        with self._lock:
            queue = self._cache.setdefault(key, deque())
            while len(queue) < n:
                asked = min(self.batch_size, n - len(queue))
                got = self._fetch(challenge, asked)
                queue.extend(got)
                if len(got) < asked:  # partial issuance (allowance exhausted): stop here
                    break
            return len(queue)

    def cached(self, www_authenticate: str) -> int:
        """How many tokens are cached for the challenge this header would be answered with."""
        challenge = self._choose(www_authenticate)
        with self._lock:
            return len(self._cache.get((challenge.challenge, challenge.token_key), ()))

    # -- internals ---------------------------------------------------------------------------
    def _choose(self, www_authenticate: str) -> PrivateTokenChallenge:
        try:
            offered = [c for c in parse_www_authenticate(www_authenticate)
                       if c.token_type == consts.TOKEN_TYPE_BLIND_RSA]
        except DecodeError as exc:
            raise DecodeError("malformed WWW-Authenticate value") from exc
        if not offered:
            raise CredentialsError("no PrivateToken challenge of type 2")
        for force in (False, True):
            known = {k.token_key for k in self.directory.get(force=force).blind_rsa_keys()}
            for challenge in offered:
                if challenge.token_key in known:
                    return challenge
        raise StaleChallenge("the challenge names a key this issuer does not publish (retired, "
                             "or the origin trusts another issuer)")

    def _post(self, url: str, body: bytes, media: str, accept: str) -> requests.Response:
        headers = {"Content-Type": media, "Accept": accept,
                   "Authorization": f"Bearer {self._credential}"}
        try:
            response = self.session.post(url, data=body, headers=headers, timeout=30)
        except requests.RequestException as exc:
            raise IssuerUnavailable("issuer unreachable") from exc
        if response.status_code == 429:
            retry = response.headers.get("Retry-After", "")
            raise IssuanceRateLimited(int(retry) if retry.isascii() and retry.isdigit()
                                      else _DEFAULT_RETRY_AFTER)
        if response.status_code >= 500:
            raise IssuerUnavailable("issuer answered with a server error")
        if response.status_code not in (200, 206):
            raise IssuanceError(f"issuer refused the request (HTTP {response.status_code})")
        if response.headers.get("Content-Type", "").split(";")[0].strip().lower() != accept:
            raise IssuanceError("issuer answered with an unexpected media type")
        return response

    def _fetch(self, challenge: PrivateTokenChallenge, n: int) -> list[Token]:
        directory = self.directory.get()
        url = urljoin(self.directory.url, directory.issuer_request_uri)
        if _origin(url) != _origin(self.issuer_url):
            # The bearer credential goes to the issuer configured here, never where a
            # directory (possibly cached by a proxy) points.
            raise IssuanceError("issuer directory points issuance at another origin; refused")
        try:
            pendings: list[PendingToken] = [
                begin_issuance(challenge.challenge, challenge.token_key) for _ in range(n)]
        except BlindRSAError as exc:
            raise CredentialsError("cannot build token requests for this challenge") from exc
        if n == 1:
            response = self._post(url, pendings[0].request.encode(), consts.MEDIA_TOKEN_REQUEST,
                                  consts.MEDIA_TOKEN_RESPONSE)
            answers: list[tuple[int, bytes] | None] = [
                (consts.TOKEN_TYPE_BLIND_RSA, response.content)]
        else:
            body = encode_batch_request([p.request for p in pendings])
            response = self._post(url, body, consts.MEDIA_BATCH_REQUEST,
                                  consts.MEDIA_BATCH_RESPONSE)
            try:
                answers = decode_batch_response(response.content)
            except DecodeError as exc:
                raise IssuanceError("malformed batched token response") from exc
            if len(answers) != n:
                raise IssuanceError("batched response does not match the request")
        tokens = []
        for pending, answer in zip(pendings, answers, strict=True):
            if answer is None:
                continue
            try:
                tokens.append(pending.finalize(TokenResponse.decode(answer[1])))
            except (DecodeError, BlindRSAError) as exc:
                # A signature that does not verify is an issuer fault (or a tagging attempt).
                raise IssuanceError("issuer returned an invalid signature") from exc
        log.info("tokens fetched requested=%d issued=%d", n, len(tokens))
        return tokens
