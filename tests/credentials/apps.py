"""A small real origin app for the tests: one feature protected by Privacy Pass tokens."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue

from credentials.flask_origin import require_private_token
from credentials.origin import TokenVerifier
from service_kit.problem import install_problem_handlers


def create_origin_app(config: Mapping[str, Any]) -> Flask:
    """Config: ``issuer_url``, ``spent_db``, ``origin`` (origin_info entry)."""
    verifier = TokenVerifier(issuer_url=config["issuer_url"], origin_info=[config["origin"]],
                             spent_db=config["spent_db"])
    app = Flask("test-origin")
    install_problem_handlers(app)

    @app.get("/feature")
    @require_private_token(verifier)
    def feature() -> ResponseReturnValue:
        return jsonify(ok=True)

    return app
