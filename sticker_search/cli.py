"""``sticker-search``: serve the sticker service, search privately, run the whole stack.

    sticker-search serve --host H --port P --issuer URL [--spent-db DB] [--query-stats DB]
    sticker-search query TEXT --issuer URL --credential CRED --relay URL --target URL
                     [--lang L] [--limit N] [--offset N] [--keys URL] [--json]
    sticker-search stack up [--dir DIR] [--account NAME]
    sticker-search web --relay URL --issuer URL --target URL [--signing-key FILE]
    sticker-search verify-web URL [--public-key KEY] [--dist DIR]

Exit codes: 0 results printed (possibly none), 2 bad query or arguments, 3 issuer limit
reached (retry later), 4 relay, gateway, service or issuer unreachable (or a key rotation in
progress: retry later), 5 token or credential refused, 6 unexpected answer, 7 the gateway does
not forward to the target, 8 a store cannot be created or opened (``serve``). Every error is
one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import tempfile
import unicodedata
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from service_kit.clihelp import HelpFormatter
from service_kit.metrics import add_arguments as add_metrics_arguments
from sticker_search.errors import (
    AccessDenied,
    ProtocolError,
    QueryError,
    RateLimited,
    ServiceUnavailable,
    StickerSearchError,
    TargetRefused,
)

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_RATE_LIMITED = 3
EXIT_UNAVAILABLE = 4
EXIT_DENIED = 5
EXIT_PROTOCOL = 6
EXIT_TARGET_REFUSED = 7
EXIT_STORE = 8
_EPILOG = ("exit status: 0 ok, 2 bad query or arguments, 3 issuer limit reached, 4 unreachable "
           "or rotating (retry later), 5 token or credential refused, 6 unexpected answer, "
           "7 target not forwarded by the gateway, 8 store cannot be created or opened")


def _parser() -> argparse.ArgumentParser:
    fmt = HelpFormatter
    parser = argparse.ArgumentParser(prog="sticker-search", formatter_class=fmt, epilog=_EPILOG,
                                     description="Private sticker search (Privacy Pass + OHTTP).")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the sticker service", formatter_class=fmt)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=9000, help="port to listen on")
    serve.add_argument("--issuer", required=True, metavar="URL",
                       help="the token issuer's base URL (its directory is fetched)")
    serve.add_argument("--spent-db", required=True, metavar="DB",
                       help="spent-token store: SQLite path (its folder must exist) or "
                            "postgresql:// DSN shared by every instance")
    serve.add_argument("--query-stats", metavar="DB",
                       help="keep aggregate per-query counts here (no time, no requester)")
    serve.add_argument("--origin-name", action="append", default=[], metavar="NAME",
                       help="origin name bound into token challenges (repeatable)")
    serve.add_argument("--workers", type=int, default=1, help="server processes")
    serve.add_argument("--threads", type=int, default=2, help="application threads per worker")
    add_metrics_arguments(serve)

    query = sub.add_parser("query", help="search privately through the relay",
                           formatter_class=fmt, epilog=_EPILOG)
    query.add_argument("text", help="what to search for (at most 8 words)")
    query.add_argument("--issuer", required=True, metavar="URL",
                       help="the token issuer's base URL (tokens are fetched from it directly)")
    query.add_argument("--credential", required=True, metavar="CRED",
                       help="the account's bearer credential (token-issuer accounts add)")
    query.add_argument("--relay", required=True, metavar="URL", help="the relay's base URL")
    query.add_argument("--target", required=True, metavar="URL",
                       help="the sticker service's URL as the gateway reaches it")
    query.add_argument("--keys", metavar="URL",
                       help="where to fetch the gateway key config (default: the relay's)")
    query.add_argument("--lang", help="language hint (en, es, fr, de, ja, ...)")
    query.add_argument("--limit", type=int, default=10, help="results per page (1..100)")
    query.add_argument("--offset", type=int, default=0, help="results to skip (0..1000)")
    query.add_argument("--batch", type=int, default=1,
                       help="tokens fetched per issuer request (a one-shot command uses 1)")
    query.add_argument("--json", action="store_true", help="print JSON instead of a table")

    stack = sub.add_parser("stack", help="run issuer, sticker service, gateway and relay",
                           formatter_class=fmt)
    stack.add_argument("action", choices=["up"], help="start the four services and wait")
    stack.add_argument("--dir", type=Path,
                       help="folder for stores and logs, created 0700 (default: a new "
                            "temporary folder)")
    stack.add_argument("--host", default="127.0.0.1", help="address every service listens on")
    stack.add_argument("--account", default="demo", help="issuer account to create")

    from sticker_search import webcli

    webcli.add_parsers(sub)
    return parser


# Joiners, variation selectors and skin-tone modifiers merge into the previous glyph.
_ZERO_WIDTH = frozenset("\u200d\ufe0f\ufe0e" + "".join(chr(c) for c in range(0x1F3FB, 0x1F400)))


def _display_width(text: str) -> int:
    """Terminal columns ``text`` takes (East Asian wide characters and emoji take two)."""
    width = 0
    joined = False
    for char in text:
        if joined or unicodedata.combining(char) or char in _ZERO_WIDTH:
            joined = char == "\u200d"  # the glyph after a joiner is drawn into the previous one
            continue
        joined = False
        wide = unicodedata.east_asian_width(char) in ("W", "F")
        width += 2 if wide else 1
    return width


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _display_width(text))


def format_table(rows: list[tuple[str, str, str, str]],
                 header: tuple[str, str, str, str] = ("#", "sticker", "title", "id")) -> str:
    """A plain-text table whose columns line up with emoji and CJK text."""
    table = [header, *rows]
    widths = [max(_display_width(row[i]) for row in table) for i in range(4)]
    lines = []
    for n, row in enumerate(table):
        lines.append("  ".join(_pad(cell, widths[i]) for i, cell in enumerate(row)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


class _StoreError(Exception):
    """A store cannot be created or opened (exit status 8)."""


def _http_url(value: str | None, option: str) -> None:
    if value is None:
        return
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise QueryError(f"{option} must be an http(s) URL such as http://127.0.0.1:8001")


def _check_store_path(url: str, option: str) -> None:
    """An SQLite store's folder must exist: never create folders (or a new store) by typo."""
    if url.startswith(("postgresql://", "postgres://")):
        return
    path = Path(url.removeprefix("sqlite:///").removeprefix("sqlite://")).expanduser()
    if not path.parent.is_dir():
        raise _StoreError(f"{option}: folder {path.parent} does not exist (create it first)")
    if path.is_dir():
        raise _StoreError(f"{option}: {path} is a folder, not a store file")


def _serve(args: argparse.Namespace) -> int:
    from service_kit import serving
    from service_kit.errors import DatabaseError

    _http_url(args.issuer, "--issuer")
    _check_store_path(args.spent_db, "--spent-db")
    if args.query_stats:
        _check_store_path(args.query_stats, "--query-stats")
    config: dict[str, Any] = {
        "issuer_url": args.issuer, "spent_db": args.spent_db,
        "origin_info": args.origin_name or None,
    }
    if args.query_stats:
        config["query_stats_db"] = args.query_stats
    # Build the spent store before the fork so workers do not race to create its schema.
    from credentials.spent_store import DatabaseSpentStore

    try:
        DatabaseSpentStore(args.spent_db)
        if args.query_stats:
            from sticker_search.service import QueryStats

            QueryStats(args.query_stats)
    except DatabaseError as exc:
        raise _StoreError(str(exc)) from None
    serving.serve("sticker_search.service:create_app", config, host=args.host, port=args.port,
                  workers=args.workers, threads=args.threads,
                  metrics_listen=args.metrics_listen, metrics_dir=args.metrics_dir)
    return EXIT_OK


def _query(args: argparse.Namespace) -> int:
    from sticker_search.client import StickerClient, check_query

    for value, option in ((args.issuer, "--issuer"), (args.relay, "--relay"),
                          (args.target, "--target"), (args.keys, "--keys")):
        _http_url(value, option)
    if args.batch < 1 or args.batch > 64:
        raise QueryError("--batch must be 1..64")
    check_query(args.text, args.lang, args.limit, args.offset)
    client = StickerClient(issuer_url=args.issuer, credential=args.credential,
                           relay_url=args.relay, target_url=args.target, key_config=args.keys,
                           batch_size=max(1, args.batch))
    page = client.search(args.text, lang=args.lang, limit=args.limit, offset=args.offset)
    if args.json:
        print(json.dumps({"total": page.total, "offset": page.offset, "results": [
            {"id": r.id, "glyph": r.glyph, "title": r.title, "score": r.score}
            for r in page.results]}, ensure_ascii=False))
        return EXIT_OK
    if not page.results:
        print("no stickers found")
        return EXIT_OK
    rows = [(str(page.offset + n), r.glyph, r.title, r.id) for n, r in enumerate(page.results, 1)]
    print(format_table(rows))
    print(f"{len(page.results)} of {page.total} stickers (searched privately: relay + gateway, "
          "1 token spent)")
    return EXIT_OK


def _stack_up(args: argparse.Namespace) -> int:
    from sticker_search.stack import Stack

    base = args.dir or Path(tempfile.mkdtemp(prefix="sticker-stack-"))
    from sticker_search.web import DEFAULT_DIST

    # The web page too, when it is built (`make web`).
    stack = Stack(base, host=args.host, web=(DEFAULT_DIST / "index.html").is_file())

    def _terminate(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # Also SIGINT: a shell may start a background job with SIGINT ignored.
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    try:
        stack.start()
        credential = stack.add_account(args.account)
        print("private sticker search stack is up:")
        print(f"  issuer          {stack.issuer_url}")
        print(f"  sticker service {stack.sticker_url}")
        print(f"  gateway         {stack.gateway_url}")
        print(f"  relay           {stack.relay_url}")
        if stack.web:
            print(f"  web page        {stack.web_url} (manifest: sticker-search verify-web "
                  f"{stack.web_url})")
        print(f"  stores and logs {base}")
        print(f"  account {args.account!r} credential: {credential}")
        print("try:")
        print("  sticker-search query cat " + " ".join(shlex.quote(a) for a in (
            "--issuer", stack.issuer_url, "--credential", credential, "--relay",
            stack.relay_url, "--target", stack.sticker_url)))
        if stack.web:
            print(f"  or open {stack.page_url(credential)} in a browser")
        print("press Ctrl-C to stop", flush=True)
        signal.pause()
    except KeyboardInterrupt:
        print("\nstopping...")
    finally:
        stack.stop()
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sticker-search`` console script."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "query":
            return _query(args)
        if args.command in ("web", "verify-web"):
            from sticker_search import webcli

            return webcli.run(args)
        return _stack_up(args)
    except QueryError as exc:
        print(f"sticker-search: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RateLimited as exc:
        print(f"sticker-search: the token issuer's limit for this account is reached; "
              f"try again in {exc.retry_after} s", file=sys.stderr)
        return EXIT_RATE_LIMITED
    except ServiceUnavailable as exc:
        print(f"sticker-search: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except AccessDenied as exc:
        print(f"sticker-search: {exc}", file=sys.stderr)
        return EXIT_DENIED
    except TargetRefused as exc:
        print(f"sticker-search: {exc}", file=sys.stderr)
        return EXIT_TARGET_REFUSED
    except _StoreError as exc:
        print(f"sticker-search: {exc}", file=sys.stderr)
        return EXIT_STORE
    except (ProtocolError, StickerSearchError) as exc:
        print(f"sticker-search: {exc}", file=sys.stderr)
        return EXIT_PROTOCOL


if __name__ == "__main__":
    sys.exit(main())
