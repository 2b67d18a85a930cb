"""Origin-side redemption (RFC 9577 §2): challenge, verify, spend exactly once.

:class:`TokenVerifier` is the adapter: it fetches the issuer directory over HTTP (cached for
its ``max-age``), owns the spent-token store and calls the sans-I/O checks in
:mod:`credentials.issuance`.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from credentials import consts
from credentials.errors import DecodeError, IssuerUnavailable, TokenRejected
from credentials.headers import PrivateTokenChallenge, parse_authorization
from credentials.issuance import DirectoryKey, IssuerDirectory, public_keys, verify_token
from credentials.spent_store import DatabaseSpentStore
from credentials.tokens import TokenChallenge

log = logging.getLogger("credentials.origin")

_MAX_AGE = re.compile(r"max-age\s*=\s*(\d{1,9})")
# Clients keep a directory at most a day, whatever the issuer says.
_CLIENT_MAX_DIRECTORY_AGE = 86400


def _max_age(response: requests.Response, default: int, cap: int) -> int:
    match = _MAX_AGE.search(response.headers.get("Cache-Control", ""))
    age = int(match.group(1)) if match else default
    return max(1, min(age, cap))


class DirectoryCache:
    """The issuer directory, fetched on demand and kept for its ``Cache-Control`` max-age
    (at most ``max_age_cap`` seconds; origins pass :data:`consts.ORIGIN_MAX_DIRECTORY_AGE`).

    When a refresh fails, the expired copy keeps serving for ``stale_limit`` more seconds, then
    :class:`IssuerUnavailable` is raised: a copy is never used indefinitely. ``generation``
    counts successful fetches.
    """

    def __init__(self, issuer_url: str, session: requests.Session | None = None,
                 *, default_max_age: int = consts.DEFAULT_CHALLENGE_MAX_AGE,
                 max_age_cap: int = _CLIENT_MAX_DIRECTORY_AGE,
                 stale_limit: int = consts.DIRECTORY_STALE_LIMIT) -> None:
        self.url = issuer_url.rstrip("/") + consts.DIRECTORY_PATH
        self.session = session or requests.Session()
        self.default_max_age = min(default_max_age, max_age_cap)
        self.max_age_cap = max_age_cap
        self.stale_limit = stale_limit
        self._lock = threading.Lock()
        self._directory: IssuerDirectory | None = None
        self._expires = 0.0
        self._fetched = -1e9
        self.max_age = self.default_max_age
        self.generation = 0

    def expire(self) -> None:
        """Treat the copy as expired: the next :meth:`get` fetches (e.g. its max-age passed)."""
        with self._lock:
            self._expires = 0.0

    def get(self, *, force: bool = False) -> IssuerDirectory:
        """The directory, re-fetched when stale (or when ``force``d, at most every 2 s)."""
        with self._lock:
            now = time.monotonic()
            fresh = self._directory is not None and now < self._expires
            if fresh and not (force and now - self._fetched >= consts.FORCED_REFRESH_INTERVAL):
                assert self._directory is not None
                return self._directory
            try:
                response = self.session.get(self.url, timeout=10)
                if response.status_code != 200:
                    raise IssuerUnavailable("issuer directory answered with an error")
                directory = IssuerDirectory.from_json(response.content)
            except (requests.RequestException, DecodeError, IssuerUnavailable) as exc:
                if self._directory is not None and now < self._expires + self.stale_limit:
                    log.warning("issuer directory refresh failed; using cached copy")
                    return self._directory
                raise IssuerUnavailable("issuer directory unavailable") from exc
            self.max_age = _max_age(response, self.default_max_age, self.max_age_cap)
            self._directory, self._fetched = directory, now
            self._expires = now + self.max_age
            self.generation += 1
            return directory


class TokenVerifier:
    """Challenges clients and redeems their tokens for one origin."""

    def __init__(
        self,
        *,
        issuer_url: str,
        origin_info: list[str],
        spent_db: str,
        redemption_context: bytes = b"",
        session: requests.Session | None = None,
        durable_spent: bool = True,
    ) -> None:
        """``durable_spent=False`` trades crash-durability of the last spent records for
        PostgreSQL throughput (see :class:`~credentials.spent_store.DatabaseSpentStore`)."""
        if len(redemption_context) not in consts.REDEMPTION_CONTEXT_LENGTHS:
            raise ValueError("redemption_context must be empty or 32 bytes")
        netloc = urlsplit(issuer_url).netloc
        if not netloc:
            raise ValueError("issuer_url must be an absolute URL")
        self.issuer_name = netloc
        self.challenge = TokenChallenge(consts.TOKEN_TYPE_BLIND_RSA, netloc, redemption_context,
                                        tuple(origin_info))
        self._challenge_bytes = self.challenge.encode()
        self._digest = self.challenge.digest()
        self.directory = DirectoryCache(issuer_url, session,
                                        max_age_cap=consts.ORIGIN_MAX_DIRECTORY_AGE)
        self.spent = DatabaseSpentStore(spent_db, durable=durable_spent)
        self._noted_generation = 0
        self._valid_for: tuple[DirectoryKey, ...] | None = None
        self._keys: dict[bytes, rsa.RSAPublicKey] = {}
        self._lock = threading.Lock()

    def _valid_keys(self, *, force: bool = False) -> tuple[list[DirectoryKey],
                                                           dict[bytes, rsa.RSAPublicKey]]:
        directory = self.directory.get(force=force)
        # A published key becomes valid when its not-before passes, with no directory change.
        valid = directory.blind_rsa_keys(int(time.time()))
        valid_t = tuple(valid)
        with self._lock:
            if self._valid_for != valid_t:
                self._keys = public_keys(valid)
                self._valid_for = valid_t
            generation = self.directory.generation
            if self._noted_generation != generation:
                # Each fresh copy: note withdrawn keys; purge only long-withdrawn ones.
                self._noted_generation = generation
                purged = self.spent.note_directory(k.key_id for k in directory.blind_rsa_keys())
                if purged:
                    log.info("spent tokens purged count=%d", purged)
            return valid, self._keys

    def challenge_header(self) -> str:
        """A ``WWW-Authenticate`` value for this origin with the issuer's current key."""
        valid, _ = self._valid_keys()
        if not valid:
            raise IssuerUnavailable("issuer publishes no valid token key")
        # The newest key in use; on a tie the one published last (directory order).
        newest = max(reversed(valid), key=lambda k: k.not_before or 0)
        return PrivateTokenChallenge(self._challenge_bytes, newest.token_key,
                                     self.directory.max_age).to_header()

    def redeem(self, authorization: str | None) -> None:
        """Check the token in an ``Authorization`` value and spend it; TokenRejected if not."""
        if not authorization:
            raise TokenRejected("missing token")
        try:
            token = parse_authorization(authorization)
        except DecodeError as exc:
            raise TokenRejected("malformed token") from exc
        _, keys = self._valid_keys()
        if token.token_key_id not in keys:
            _, keys = self._valid_keys(force=True)
        verify_token(token, self._digest, keys)
        if not self.spent.mark_spent(token.token_key_id, token.nonce):
            log.info("redemption refused reason=double_spend")
            raise TokenRejected("token already spent")
        log.info("redemption accepted")
