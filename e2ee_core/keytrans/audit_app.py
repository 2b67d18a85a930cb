"""The auditor's signatures over HTTP (``e2ee-kt-audit serve``): a Flask app on the project's
serving stack, reading the audit store only (it never holds the signing key).

- ``GET /v1/auditor`` -> ``{"verifying_key": hex, "key_id": int, "namespaces": [...]}``
- ``GET /v1/signatures/<namespace>/<epoch>`` -> plexi's SignatureResponse JSON for that epoch
- ``GET /v1/signatures/<namespace>/latest`` -> the same for the latest audited epoch
- ``GET /namespaces/<namespace>/audits/<epoch>`` -> the same as the first (plexi's path)

Unknown logs and epochs not audited (yet) are 404 problems; a log halted by an alarm still
serves the epochs signed before the alarm, and ``/v1/auditor`` lists it under ``halted``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, jsonify

from e2ee_core.keytrans import consts, plexi
from e2ee_core.keytrans.auditor import AuditStore
from service_kit.problem import ProblemError, install_problem_handlers
from service_kit.settings import load_settings


@dataclass(frozen=True)
class AuditAppSettings:
    """``create_app``'s config: the audit store (an SQLite path or a PostgreSQL DSN)."""

    database: str


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    settings = load_settings(AuditAppSettings, config)
    store = AuditStore(settings.database)
    app = Flask("e2ee_kt_audit")
    install_problem_handlers(app)

    def _key() -> bytes:
        key = store.public_key()
        if key is None:
            raise ProblemError(503, "Service Unavailable",
                               detail="the auditor has not audited anything yet")
        return key

    def _namespace(namespace: str) -> str:
        if len(namespace.encode("utf-8", "replace")) > consts.MAX_NAMESPACE_BYTES \
                or store.vrf_key(namespace) is None:
            raise ProblemError(404, "Not Found", detail="no such log")
        return namespace

    def _answer(response: plexi.SignatureResponse | None) -> Response:
        if response is None:
            raise ProblemError(404, "Not Found", detail="epoch not audited")
        resp = jsonify(response.to_json())
        resp.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return resp

    @app.get("/v1/auditor")
    def auditor() -> Response:
        key = _key()
        namespaces = store.namespaces()
        resp = jsonify({"verifying_key": key.hex(), "key_id": plexi.key_id(key),
                        "namespaces": namespaces,
                        "halted": [ns for ns in namespaces if store.halted(ns) is not None]})
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.get("/v1/signatures/<namespace>/<int:epoch>")
    @app.get("/namespaces/<namespace>/audits/<int:epoch>")
    def signature(namespace: str, epoch: int) -> Response:
        _key()
        if epoch > consts.MAX_U64:
            raise ProblemError(404, "Not Found", detail="epoch not audited")
        return _answer(store.signature(_namespace(namespace), epoch))

    @app.get("/v1/signatures/<namespace>/latest")
    def latest(namespace: str) -> Response:
        _key()
        resp = _answer(store.signature(_namespace(namespace)))
        resp.headers["Cache-Control"] = "no-store"
        return resp

    return app
