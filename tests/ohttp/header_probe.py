"""A test app that writes the header names and values it received to a file, then answers
like an unreachable upstream (502): what a relay-bound request really carries on the wire."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response, request


def create_header_probe(config: Mapping[str, Any]) -> Flask:
    """Config: ``record`` (a file path; one JSON object per request is appended)."""
    record = Path(config["record"])
    app = Flask("header-probe")

    @app.route("/<path:path>", methods=["GET", "POST"])
    def probe(path: str) -> Response:
        request.get_data()
        if path.startswith(".well-known/"):  # the test harness's readiness probe
            return Response(b"", status=404)
        with record.open("a") as handle:
            handle.write(json.dumps({k.lower(): v for k, v in request.headers.items()}) + "\n")
        return Response(b"", status=502)

    return app
