"""The sticker_search exception hierarchy.

Messages name the failure class only: they never hold a query, a credential, a token or any
other user data (they may be logged or printed by callers).
"""

from __future__ import annotations


class StickerSearchError(Exception):
    """Base class of every error sticker_search raises on purpose."""


class CatalogError(StickerSearchError):
    """The shipped sticker catalog is missing or malformed."""


class QueryError(StickerSearchError):
    """A search request is malformed (empty, too long, bad limit/offset, unknown language)."""


class UnknownSticker(StickerSearchError):
    """No sticker has the requested id."""


class ServiceUnavailable(StickerSearchError):
    """The relay, gateway, sticker service or issuer could not be reached."""


class RateLimited(StickerSearchError):
    """The issuer refused more tokens for this account for now; retry after ``retry_after`` s."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"token issuance limit reached; retry after {int(retry_after)} s")
        self.retry_after = int(retry_after)


class TargetRefused(StickerSearchError):
    """The gateway does not forward to the given target (not on its allowlist)."""


class AccessDenied(StickerSearchError):
    """The sticker service refused the search (token rejected twice, or credential refused)."""


class ProtocolError(StickerSearchError):
    """A peer answered with something this client does not understand."""


class ManifestError(StickerSearchError):
    """The web page's manifest is malformed, unsigned or signed by another key."""
