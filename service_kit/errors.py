"""The exception hierarchy of the shared service plumbing."""

from __future__ import annotations


class ServiceKitError(Exception):
    """Base of every error raised by :mod:`service_kit`."""


class ConfigError(ServiceKitError, ValueError):
    """A service was given settings it does not know or cannot use."""


class RefusedRequest(ServiceKitError):
    """The server refuses a request before any application sees it (a 4xx or 5xx status with a
    fixed title; never request data)."""

    def __init__(self, status: int, title: str) -> None:
        super().__init__(title)
        self.status = status
        self.title = title


class DatabaseError(ServiceKitError):
    """The store could not be opened or its URL is not understood."""
