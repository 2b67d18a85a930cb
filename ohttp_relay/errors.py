"""The ohttp_relay exception hierarchy.

Messages name the failure class only: they never hold keys, plaintexts, header values, URLs or
any other user data.
"""

from __future__ import annotations


class OHTTPError(Exception):
    """Base class of every error ohttp_relay raises on purpose."""


class DecodeError(OHTTPError):
    """A Binary HTTP or Oblivious HTTP message (or a field of one) is malformed or truncated."""


class Truncated(DecodeError):
    """A message or field ends before its encoded length says it should."""


class LimitExceeded(DecodeError):
    """A message exceeds a configured size or count limit (see :mod:`ohttp_relay.consts`)."""


class KeyConfigError(OHTTPError):
    """A key configuration is malformed, or names a key id or algorithm we cannot use."""


class UnknownKeyId(KeyConfigError):
    """An encapsulated request names a key id the gateway does not hold (RFC 9458 §5.2)."""


class UnsupportedSuite(KeyConfigError):
    """The KEM, KDF or AEAD identifier is not one this implementation supports."""


class DecryptError(OHTTPError):
    """HPKE or AEAD authentication failed: the message was tampered with or mis-keyed."""


class ReplayError(OHTTPError):
    """A request was seen before, or its Date lies outside the accepted window (RFC 9458 §6.5)."""


class RelayUnavailable(OHTTPError):
    """The relay or the gateway could not be reached, or the relay answered with a 5xx."""


class KeyMismatch(OHTTPError):
    """The gateway still reports an ``ohttp-key`` problem after one key refetch and retry."""


class TargetError(OHTTPError):
    """The gateway could not obtain a response from the target (timeout or connection)."""


class TargetTimeout(TargetError):
    """The target did not answer in time (the gateway answers 504)."""


class StoreError(OHTTPError):
    """The gateway key/replay store failed or holds inconsistent data."""


class RequestRejected(OHTTPError):
    """The relay or gateway refused an encapsulated request with a 4xx (not a key problem)."""

    def __init__(self, status: int, title: str) -> None:
        super().__init__(f"request rejected with status {status}")
        self.status = status
        self.title = title


class UpstreamError(OHTTPError):
    """A hop (relay -> gateway, gateway -> target) could not be completed, or the upstream
    answered something unusable (conflicting framing, a broken connection)."""


class UpstreamUnreachable(UpstreamError):
    """The connection to the upstream could not be opened."""


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer in time."""


class UpstreamTooLarge(UpstreamError):
    """The upstream's response content is larger than the hop allows."""


class OriginError(OHTTPError):
    """An origin string or request target cannot be understood."""
