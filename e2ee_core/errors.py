"""The e2ee_core exception hierarchy. Messages never contain keys, plaintexts or user data."""


class E2EEError(Exception):
    """Base class of every error e2ee_core raises on purpose."""
