"""JSON in and out of the delivery server's Flask routes (``app.py`` and the route modules it
installs, such as ``labyrinth_api.py``): one place for the media-type and size checks."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, request

from e2ee_core.server import consts
from e2ee_core.server.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType


def json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status=status,
                    mimetype="application/json")


def read_json() -> Any:
    """The request body as JSON, after media-type and size checks."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType()
    if (request.content_length or 0) > consts.MAX_JSON_BODY_BYTES:
        raise PayloadTooLarge()
    raw = request.get_data(cache=False)
    if len(raw) > consts.MAX_JSON_BODY_BYTES:
        raise PayloadTooLarge()
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError, bad UTF-8, huge integers
        raise InvalidRequest("body is not valid JSON") from None
