"""Errors of the delivery server's Labyrinth mailbox (issue #15), beside the server's own.

Each is a :class:`~e2ee_core.server.errors.ServerError` with its status and problem ``type``;
:mod:`e2ee_core.server.labyrinth_client` maps the problem back to the same class. Messages are
fixed strings: never an account name, id, key, ORF value or record content.
"""

from __future__ import annotations

from e2ee_core.server.errors import ServerError, error_for_problem_type


class EpochConflict(ServerError):
    """The epoch a client opens does not follow the account's current epoch (another device
    opened one first, or the sequence id is not current + 1): reload the epochs and retry."""

    status = 409
    slug = "labyrinth-epoch-conflict"
    title = "Epoch conflict"


class AlreadyExists(ServerError):
    """The virtual device, ORF share or first epoch being created already exists."""

    status = 409
    slug = "labyrinth-exists"
    title = "Already exists"


class QuotaExceeded(ServerError):
    """The account's mailbox holds its maximum of messages, bytes, epochs, virtual devices or
    attachment references (limits in :mod:`e2ee_core.server.consts`)."""

    status = 409
    slug = "labyrinth-quota"
    title = "Mailbox quota exceeded"


LABYRINTH_ERRORS: tuple[type[ServerError], ...] = (EpochConflict, AlreadyExists, QuotaExceeded)


def labyrinth_error_for_problem_type(problem_type: str) -> type[ServerError] | None:
    """The class a problem ``type`` names: a Labyrinth error or any of the server's."""
    for cls in LABYRINTH_ERRORS:
        if cls.problem_type() == problem_type:
            return cls
    return error_for_problem_type(problem_type)
