"""The ``web`` and ``verify-web`` subcommands of ``sticker-search``: their arguments here (only
argparse, so other commands start without loading Flask), their work in
:mod:`sticker_search.web` and :mod:`sticker_search.webverify`, imported when run."""

from __future__ import annotations

import argparse
from pathlib import Path

from service_kit.metrics import add_arguments as add_metrics_arguments


def _add_web(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``web``: serve the page's origin."""
    parser = sub.add_parser("web", help="serve the private sticker search web page")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--relay", required=True, metavar="URL",
                        help="the relay's base URL as browsers reach it")
    parser.add_argument("--issuer", required=True, metavar="URL",
                        help="the token issuer's base URL as browsers reach it")
    parser.add_argument("--target", required=True, metavar="URL",
                        help="the sticker service's URL as the gateway reaches it")
    parser.add_argument("--keys", metavar="URL",
                        help="where to fetch the gateway key configuration (default: relay's)")
    parser.add_argument("--signing-key", default="web-signing.key", metavar="FILE",
                        help="Ed25519 manifest signing key (0600; created when missing)")
    parser.add_argument("--dist", metavar="DIR", help="the built page (default: web/dist)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    add_metrics_arguments(parser)


def _add_verify(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``verify-web``: check a served page against its manifest."""
    parser = sub.add_parser("verify-web", help="check a served web page against its manifest")
    parser.add_argument("url", help="the page's base URL")
    parser.add_argument("--public-key", metavar="KEY",
                        help="the publisher's Ed25519 public key (base64url) the manifest "
                             "must be signed with")
    parser.add_argument("--dist", type=Path, metavar="DIR",
                        help="also compare with this local build (web/dist)")
    parser.add_argument("--no-relay-check", action="store_true",
                        help="do not compare the relay's gateway keys with the manifest's")



def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``web`` and ``verify-web`` to ``sticker-search``'s subcommands."""
    _add_web(sub)
    _add_verify(sub)


def run(args: argparse.Namespace) -> int:
    """Run ``web`` or ``verify-web``; the exit status."""
    if args.command == "web":
        from sticker_search import web

        return web.run(args)
    from sticker_search import webverify

    return webverify.run(args)
