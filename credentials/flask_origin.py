"""Flask glue for origins: ``@require_private_token(verifier)`` on a view."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import request

from credentials import metrics
from credentials.errors import IssuerUnavailable, TokenRejected
from credentials.origin import TokenVerifier
from service_kit.problem import problem

log = logging.getLogger("credentials.origin")

F = TypeVar("F", bound=Callable[..., Any])


def require_private_token(verifier: TokenVerifier) -> Callable[[F], F]:
    """Run the view only after one valid, unspent token was redeemed.

    Missing or bad token: 401 problem with a fresh ``WWW-Authenticate: PrivateToken`` challenge.
    Issuer directory unreachable (and never fetched): 503 problem.
    """

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            try:
                verifier.redeem(request.headers.get("Authorization"))
            except TokenRejected as exc:
                metrics.redeemed(exc.reason)
                try:
                    challenge = verifier.challenge_header()
                except IssuerUnavailable:
                    return problem(503, "Service Unavailable", detail="token issuer unavailable")
                log.info("redemption refused reason=%s", exc.reason.replace(" ", "_"))
                return problem(401, "Unauthorized", detail=exc.reason,
                               headers={"WWW-Authenticate": challenge})
            except IssuerUnavailable:
                metrics.redeemed("issuer_unavailable")
                return problem(503, "Service Unavailable", detail="token issuer unavailable")
            metrics.redeemed("accepted")
            return view(*args, **kwargs)

        return cast(F, wrapped)

    return decorator
