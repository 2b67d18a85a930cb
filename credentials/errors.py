"""The credentials exception hierarchy.

Every decoder and protocol step raises only these. Messages name what failed, never the
token, blinded message, signature, key or account involved.
"""

from __future__ import annotations


class CredentialsError(Exception):
    """Base class of every error the credentials package raises on purpose."""


class DecodeError(CredentialsError):
    """Bytes or a header value do not parse as the expected wire structure."""


class BlindRSAError(CredentialsError):
    """An RFC 9474 step failed (message too long, representative out of range, bad key)."""


class InvalidSignatureError(BlindRSAError):
    """A (blind) signature does not verify: never released, never returned."""


class TokenRejected(CredentialsError):
    """An origin refused a presented token (missing, malformed, wrong key, bad signature, spent)."""

    def __init__(self, reason: str = "token rejected") -> None:
        super().__init__(reason)
        self.reason = reason


class IssuanceError(CredentialsError):
    """The issuer refused a token request (unknown key, malformed request, not authorised)."""


class IssuanceRateLimited(IssuanceError):
    """The account used up its issuance allowance; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"issuance rate limited; retry after {int(retry_after)} s")
        self.retry_after = int(retry_after)


class StaleChallenge(CredentialsError):
    """An origin's challenge names a key its issuer no longer publishes (a key was retired and
    the origin's directory copy is older): transient, the origin refreshes within its cache
    lifetime (``ORIGIN_MAX_DIRECTORY_AGE``)."""


class IssuerUnavailable(CredentialsError):
    """The issuer (or its directory) could not be reached or answered with a server error."""


class KeyStoreError(CredentialsError):
    """Issuer key management failed (no usable key, unknown key id, bad key file)."""


class AccountExists(KeyStoreError):
    """An issuer account of that name exists already."""
