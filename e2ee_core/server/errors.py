"""The delivery server's errors: one hierarchy, shared by the server, its store and its client.

Each class carries the HTTP status and problem ``type`` it maps to, so the Flask adapter turns
an exception into ``application/problem+json`` and :class:`~e2ee_core.server.client.ServerClient`
turns that problem back into the same exception class. Messages are fixed strings: they never
contain account names, keys, credentials or envelope contents.
"""

from __future__ import annotations

from typing import Any, ClassVar

from e2ee_core.errors import E2EEError

PROBLEM_TYPE_PREFIX = "urn:e2ee:server:"


class ServerError(E2EEError):
    """Base of every error of the delivery server and its client."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "server-error"
    title: ClassVar[str] = "Server error"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail

    @classmethod
    def problem_type(cls) -> str:
        return PROBLEM_TYPE_PREFIX + cls.slug


class InvalidRequest(ServerError):
    """A request body, path parameter or header could not be decoded or failed validation."""

    status = 400
    slug = "invalid-request"
    title = "Invalid request"


class AuthenticationFailed(ServerError):
    """Missing or wrong device credential, or wrong account password."""

    status = 401
    slug = "authentication-failed"
    title = "Authentication failed"


class DeviceWasRemoved(AuthenticationFailed):
    """The credential is right, and its device was removed from the account: the only answer
    on which a client may conclude that it was removed (any other 401 leaves it as it is)."""

    slug = "device-removed"
    title = "Device removed"


class Forbidden(ServerError):
    """The authenticated device may not do this (e.g. act on another account's device)."""

    status = 403
    slug = "forbidden"
    title = "Forbidden"


class NotFound(ServerError):
    """No such account, device or attachment (or it expired)."""

    status = 404
    slug = "not-found"
    title = "Not found"


class AccountExists(ServerError):
    """The account name is already registered."""

    status = 409
    slug = "account-exists"
    title = "Account name taken"


class TooManyDevices(ServerError):
    """The account already has the maximum number of devices."""

    status = 409
    slug = "device-limit"
    title = "Device limit reached"


class MismatchedDevices(ServerError):
    """A send did not cover exactly the recipient's devices and the sender's other devices.

    ``missing`` lists the ``(account, device_id)`` pairs that need an envelope but got none;
    ``extra`` lists those that got one but are not current devices. Signal's server answers the
    same way (409 with ``missingDevices``/``extraDevices``); the client fetches bundles for the
    missing devices, drops sessions for the extra ones and retries.
    """

    status = 409
    slug = "mismatched-devices"
    title = "Mismatched devices"

    def __init__(
        self,
        missing: list[tuple[str, int]],
        extra: list[tuple[str, int]],
    ) -> None:
        super().__init__()
        self.missing = sorted(missing)
        self.extra = sorted(extra)


class TooManyPreKeys(ServerError):
    """An upload would store more one-time prekeys than a device may hold."""

    status = 422
    slug = "prekey-limit"
    title = "Too many prekeys"


class PayloadTooLarge(ServerError):
    """A body, envelope or attachment exceeds its size limit."""

    status = 413
    slug = "payload-too-large"
    title = "Payload too large"


class RateLimited(ServerError):
    """Too many requests of this kind: wait ``retry_after`` seconds (429, ``Retry-After``)."""

    status = 429
    slug = "rate-limited"
    title = "Too many requests"

    def __init__(self, detail: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = max(1, retry_after)


class QueueFull(RateLimited):
    """A recipient device's queue holds its maximum of bytes: the send is refused whole until
    the device drains it (429 with Retry-After)."""

    slug = "queue-full"
    title = "Recipient queue full"


class TooManyAttempts(RateLimited):
    """Too many wrong passwords for this account, or attempts from this address (answered
    before any password is hashed)."""

    slug = "too-many-attempts"
    title = "Too many attempts"


class UnsupportedMediaType(ServerError):
    """The body has the wrong Content-Type for this endpoint."""

    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


class UnexpectedResponse(ServerError):
    """Client side: the server answered something this client does not understand."""

    status = 502
    slug = "unexpected-response"
    title = "Unexpected response from the server"


ALL_ERRORS: tuple[type[ServerError], ...] = (
    InvalidRequest,
    AuthenticationFailed,
    DeviceWasRemoved,
    Forbidden,
    NotFound,
    AccountExists,
    TooManyDevices,
    MismatchedDevices,
    TooManyPreKeys,
    PayloadTooLarge,
    RateLimited,
    QueueFull,
    TooManyAttempts,
    UnsupportedMediaType,
)


def error_for_problem_type(problem_type: str) -> type[ServerError] | None:
    """The error class a problem ``type`` URI names, or None for an unknown type."""
    for cls in ALL_ERRORS:
        if cls.problem_type() == problem_type:
            return cls
    return None


class ConfigurationError(ServerError):
    """The server configuration mapping is invalid (raised at start-up, never over HTTP)."""

    slug = "configuration"
    title = "Invalid server configuration"


class ServerUnreachable(ServerError):
    """Client side: the server could not be reached or the connection broke."""

    status = 503
    slug = "unreachable"
    title = "Server unreachable"


def problem_extras(err: ServerError) -> dict[str, Any]:
    """The members a problem document carries beyond type/title/status/detail (HTTP answers and
    the push channel's send results build theirs from here)."""
    if isinstance(err, MismatchedDevices):
        return {"missing": [{"username": u, "device_id": d} for u, d in err.missing],
                "extra": [{"username": u, "device_id": d} for u, d in err.extra]}
    return {}


def problem_document(err: ServerError) -> dict[str, Any]:
    """The whole problem document of ``err`` (as the HTTP body would be, with ``retry_after``
    in it where HTTP has the ``Retry-After`` header)."""
    doc: dict[str, Any] = {"type": err.problem_type(), "title": err.title,
                           "status": err.status, **problem_extras(err)}
    if err.detail:
        doc["detail"] = err.detail
    if isinstance(err, RateLimited):
        doc["retry_after"] = err.retry_after
    return doc

