"""``ohttp-gateway``: serve the Oblivious Gateway, manage its keys.

    ohttp-gateway serve --host H --port P --db DB --target ORIGIN [--target ORIGIN ...]
    ohttp-gateway keys generate|list|rotate|retire --db DB
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from ohttp_relay import consts
from ohttp_relay.errors import OHTTPError, OriginError
from ohttp_relay.gateway import parse_origin
from ohttp_relay.ohttp import KEM_P256, KEM_X25519, encode_key_configs
from ohttp_relay.store import DatabaseStore
from service_kit.clihelp import HelpFormatter
from service_kit.errors import DatabaseError
from service_kit.metrics import add_arguments as add_metrics_arguments

_KEMS = {"x25519": KEM_X25519, "p256": KEM_P256}


def _parser() -> argparse.ArgumentParser:
    fmt = HelpFormatter
    parser = argparse.ArgumentParser(
        prog="ohttp-gateway", description=__doc__.split("\n")[0], formatter_class=fmt,
        epilog="exit status: 0 ok, 1 key store error, 2 bad arguments, 3 no such store or "
               "folder, 7 database unavailable")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway (uvicorn, see service_kit.serving)",
                           formatter_class=fmt)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on")
    serve.add_argument("--db", required=True,
                       help="key and replay store: SQLite path (created 0600; its folder must "
                            "exist) or postgresql:// DSN")
    serve.add_argument("--target", action="append", default=[], metavar="ORIGIN",
                       help="allowed target origin, e.g. http://127.0.0.1:9000 (repeatable)")
    serve.add_argument("--workers", type=int, default=2, help="server processes")
    add_metrics_arguments(serve)
    serve.add_argument("--threads", type=int, default=4, help="application threads per worker")
    serve.add_argument("--date-window", type=int, default=consts.DEFAULT_DATE_WINDOW,
                       help="seconds a request's Date may differ from now (0 = off)")
    serve.add_argument("--allow-undated", action="store_true",
                       help="accept inner requests without a Date field (their replays are "
                            "then refused only for 2 x the date window + 1 s)")
    serve.add_argument("--keys-max-age", type=int, default=consts.DEFAULT_KEYS_MAX_AGE,
                       help="Cache-Control max-age of the key configuration list (seconds)")
    serve.add_argument("--target-timeout", type=float, default=30.0,
                       help="seconds to wait for a target's answer (then a sealed 504)")
    serve.add_argument("--relay-secret-env", metavar="VAR",
                       help="environment variable holding the relay's shared secret")

    keys = sub.add_parser("keys", help="manage key configurations", formatter_class=fmt)
    keys.add_argument("action", choices=["generate", "list", "rotate", "retire"],
                      help="what to do (generate and rotate may create a new store)")
    keys.add_argument("--db", required=True, help="the gateway's store (as for serve)")
    keys.add_argument("--kem", choices=sorted(_KEMS), default="x25519",
                      help="key encapsulation mechanism of a new key")
    keys.add_argument("--grace", type=int, default=consts.DEFAULT_KEY_GRACE,
                      help="seconds a rotated-out key keeps decrypting (rotate)")
    keys.add_argument("--key-id", type=int, help="retire this key now (retire)")
    keys.add_argument("--export", metavar="FILE",
                      help="also write the active application/ohttp-keys list to FILE")
    return parser


class _NoStore(Exception):
    """The store's folder (or, for reading commands, the store) does not exist."""


def _check_store(url: str, *, creating: bool) -> None:
    """Never create a folder, or a new store with a new key, because of a typo."""
    if url.startswith(("postgresql://", "postgres://")):
        return
    path = Path(url.removeprefix("sqlite:///").removeprefix("sqlite://")).expanduser()
    if not path.parent.is_dir():
        raise _NoStore(f"folder {path.parent} does not exist (create it first)")
    if path.is_dir():
        raise _NoStore(f"{path} is a folder, not a store file")
    if not creating and not path.exists():
        raise _NoStore(f"no gateway store at {path} (check --db)")


def _keys(args: argparse.Namespace) -> int:
    _check_store(args.db, creating=args.action in ("generate", "rotate"))
    store = DatabaseStore(args.db)
    now = int(time.time())
    if args.action == "generate":
        record = store.generate_key(now, _KEMS[args.kem])
        print(f"generated key_id={record.key_id} kem={args.kem}")
    elif args.action == "rotate":
        record = store.rotate(now, args.grace, _KEMS[args.kem])
        print(f"rotated: new key_id={record.key_id}; previous keys decrypt for {args.grace}s")
    elif args.action == "retire":
        retired = store.retire(now, args.key_id)
        print("retired key_ids: " + (", ".join(map(str, retired)) or "none"))
    records = store.key_records()
    if args.action == "list":
        for record in records:
            until = "" if record.retire_at is None else f" until={record.retire_at}"
            print(f"key_id={record.key_id} kem={record.kem_id:#06x} state={record.state}"
                  f" created={record.created_at}{until}")
    if args.export:
        body = encode_key_configs(r.key.config for r in records
                                  if r.state == "active" and r.key is not None)
        with open(args.export, "wb") as handle:
            handle.write(body)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ohttp-gateway`` console script."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "keys":
            return _keys(args)
        try:
            targets = [parse_origin(t) for t in args.target]
        except OriginError:
            print("ohttp-gateway: --target must be an origin like http://127.0.0.1:9000",
                  file=sys.stderr)
            return 2
        if not targets:
            print("ohttp-gateway: warning: no --target given; every request will get 403",
                  file=sys.stderr)
        config: dict[str, object] = {
            "db": args.db, "targets": targets, "date_window": args.date_window,
            "require_date": not args.allow_undated, "keys_max_age": args.keys_max_age,
            "target_timeout": args.target_timeout,
        }
        if args.relay_secret_env:
            secret = os.environ.get(args.relay_secret_env)
            if not secret:
                print("ohttp-gateway: relay secret variable is empty", file=sys.stderr)
                return 2
            config["relay_secret"] = secret
        _check_store(args.db, creating=True)
        DatabaseStore(args.db).ensure_key(int(time.time()))  # first key before workers fork
        from service_kit.serving import serve
        serve("ohttp_relay.gateway_service:create_app", config, host=args.host, port=args.port,
              workers=args.workers, threads=args.threads,
              metrics_listen=args.metrics_listen, metrics_dir=args.metrics_dir)
        return 0
    except OHTTPError as exc:
        print(f"ohttp-gateway: {exc}", file=sys.stderr)
        return 1
    except _NoStore as exc:
        print(f"ohttp-gateway: {exc}", file=sys.stderr)
        return 3
    except DatabaseError as exc:
        print(f"ohttp-gateway: {exc}", file=sys.stderr)
        return 7


if __name__ == "__main__":
    sys.exit(main())
