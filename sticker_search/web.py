"""The private sticker search page's own origin (``sticker-search web``): a Flask app factory.

It serves the page built by ``make web`` (``web/dist``: ``index.html``, the bundled ``app.js``
and ``style.css``, each script and style sheet with Subresource Integrity), the page's
``config.json`` (relay, issuer and sticker-service URLs), the gateway key configuration the page
seals searches to (``/ohttp-keys``, fetched once from the relay at start) and the signed manifest
of all of it (:mod:`sticker_search.webmanifest`). Every response carries a strict
Content-Security-Policy (scripts from this origin only, connections to the relay and issuer
only, Trusted Types), ``Integrity-Policy`` (scripts without integrity metadata are blocked),
``Referrer-Policy: no-referrer`` and no cookie.

The origin learns that someone loaded the page; it sees no credential (the page reads it from
the URL fragment, which browsers never send), no token and no query.

Files are read from disk on every request, as a static server does; the manifest is computed
and signed at start, so a file changed afterwards is caught by the browser (SRI) and by
``sticker-search verify-web``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask, Response, request

from service_kit.errors import ConfigError
from service_kit.keyfiles import read_secret_file, write_secret_file
from service_kit.problem import ProblemError, install_problem_handlers
from service_kit.settings import load_settings
from sticker_search.consts import WEB_KEYS_FETCH_TIMEOUT, WEB_MIN_GZIP_BYTES
from sticker_search.webmanifest import KEYS_PATH, MANIFEST_PATH, Manifest, sign, sri

log = logging.getLogger("sticker_search.web")

#: Where ``make web`` writes the built page.
DEFAULT_DIST = Path(__file__).resolve().parent.parent / "web" / "dist"
CONFIG_PATH = "/config.json"
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".json": "application/json",
          ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class WebSettings:
    """The page origin's settings (the ``create_app`` config mapping; unknown keys refused)."""

    #: The relay's base URL as browsers reach it.
    relay_url: str
    #: The token issuer's base URL as browsers reach it.
    issuer_url: str
    #: The sticker service's base URL as the gateway reaches it (the inner requests' target).
    target_url: str
    #: The Ed25519 key that signs the manifest (raw 32 bytes, 0600; created when missing).
    signing_key: str
    #: Where the gateway key configuration is fetched at start (default: the relay's).
    keys_url: str | None = None
    #: The built page (default: the repository's ``web/dist``).
    dist_dir: str | None = None
    #: Tokens the page asks the issuer for in one batched request.
    token_batch: int = 16


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{url!r} is not an http(s) URL")
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(relay_url: str, issuer_url: str) -> str:
    """The page's policy: nothing but its own files, and connections to relay and issuer."""
    connect = " ".join(dict.fromkeys(["'self'", origin_of(relay_url), origin_of(issuer_url)]))
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
            f"connect-src {connect}; base-uri 'none'; object-src 'none'; form-action 'none'; "
            "frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'")


#: Chromium 138+: every script must carry integrity metadata (else it is blocked).
INTEGRITY_POLICY = "blocked-destinations=(script)"


def load_signing_key(path: str) -> Ed25519PrivateKey:
    """The manifest signing key at ``path``, created (0600) on first use."""
    target = Path(path)
    if not target.exists():
        write_secret_file(target, Ed25519PrivateKey.generate().private_bytes_raw())
        log.info("web signing key created")
    raw = read_secret_file(target)
    if len(raw) != 32:
        raise ConfigError("the web signing key file must hold a raw 32-byte Ed25519 key")
    return Ed25519PrivateKey.from_private_bytes(raw)


def fetch_keys(url: str, timeout: float = WEB_KEYS_FETCH_TIMEOUT) -> bytes:
    """The gateway key configuration list from ``url``, retried while the stack starts."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = requests.get(url, timeout=5)
            if response.status_code == 200 and response.content:
                return response.content
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise ConfigError("the gateway key configuration could not be fetched")
        time.sleep(0.2)


def page_files(dist: Path) -> dict[str, Path]:
    """Served path -> file of the built page (``index.html`` at ``/``)."""
    if not (dist / "index.html").is_file():
        raise ConfigError(f"no built page in {dist}: run `make web`")
    files = {f"/{p.name}": p for p in sorted(dist.iterdir()) if p.is_file()}
    files["/"] = files.pop("/index.html")
    return files


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the page origin from :class:`WebSettings` (``config``)."""
    settings = load_settings(WebSettings, config)
    for url in (settings.relay_url, settings.issuer_url, settings.target_url):
        origin_of(url)
    if not 1 <= settings.token_batch <= 64:
        raise ConfigError("token_batch must be 1..64")
    dist = Path(settings.dist_dir) if settings.dist_dir else DEFAULT_DIST
    files = page_files(dist)
    key = load_signing_key(settings.signing_key)
    keys = fetch_keys(settings.keys_url or settings.relay_url.rstrip("/") + KEYS_PATH)
    endpoints = {"relay": settings.relay_url.rstrip("/"),
                 "issuer": settings.issuer_url.rstrip("/"),
                 "target": settings.target_url.rstrip("/")}
    page_config = json.dumps({**endpoints, "token_batch": settings.token_batch},
                             sort_keys=True).encode()
    headers = {"content-security-policy": content_security_policy(settings.relay_url,
                                                                  settings.issuer_url),
               "integrity-policy": INTEGRITY_POLICY}
    digests = {path: sri(file.read_bytes()) for path, file in files.items()}
    digests[CONFIG_PATH] = sri(page_config)
    manifest = Manifest(digests, headers, endpoints, keys)
    envelope = sign(manifest, key)
    log.info("web page ready files=%d", len(digests))

    app = Flask("sticker_search.web")
    install_problem_handlers(app)

    def respond(body: bytes, content_type: str) -> Response:
        response = Response(body, content_type=content_type)
        response.set_etag(hashlib.sha256(body).hexdigest()[:32])
        response.headers["Cache-Control"] = "no-cache"
        response.make_conditional(request)
        if (response.status_code == 200 and len(body) >= WEB_MIN_GZIP_BYTES
                and request.accept_encodings["gzip"] > 0):
            response.set_data(gzip.compress(body, compresslevel=9, mtime=0))
            response.headers["Content-Encoding"] = "gzip"
        response.vary.add("Accept-Encoding")
        return response

    @app.after_request
    def secure(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = headers["content-security-policy"]
        response.headers["Integrity-Policy"] = headers["integrity-policy"]
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
        response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
        response.headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
        return response

    @app.get("/")
    @app.get("/<name>")
    def page(name: str = "") -> Response:
        path = "/" + name
        file = files.get(path)
        if file is None or path == "/index.html":
            raise ProblemError(404, "Not Found")
        try:
            body = file.read_bytes()
        except OSError:
            raise ProblemError(404, "Not Found") from None
        return respond(body, _TYPES.get(file.suffix, "application/octet-stream"))

    @app.get("/favicon.ico")
    def no_icon() -> Response:
        return Response(status=204)  # browsers ask for one; the page has none

    @app.get(CONFIG_PATH)
    def page_configuration() -> Response:
        return respond(page_config, "application/json")

    @app.get(KEYS_PATH)
    def ohttp_keys() -> Response:
        return respond(keys, "application/ohttp-keys")

    @app.get(MANIFEST_PATH)
    def signed_manifest() -> Response:
        return respond(envelope, "application/json")

    return app


def run(args: argparse.Namespace) -> int:
    """Serve the page (``sticker-search web``) until SIGTERM/SIGINT."""
    from service_kit import serving

    config: dict[str, Any] = {"relay_url": args.relay, "issuer_url": args.issuer,
                              "target_url": args.target, "signing_key": args.signing_key}
    if args.keys:
        config["keys_url"] = args.keys
    if args.dist:
        config["dist_dir"] = args.dist
    load_signing_key(args.signing_key)  # before any fork: workers never race to create it
    serving.serve("sticker_search.web:create_app", config, host=args.host, port=args.port,
                  workers=args.workers, threads=args.threads,
                  metrics_listen=args.metrics_listen, metrics_dir=args.metrics_dir)
    return 0
