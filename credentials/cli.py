"""``token-issuer``: run the issuer, manage its accounts and keys.

    token-issuer serve --host H --port P --db DB --issuer-name NAME [--workers N]
    token-issuer accounts add NAME --db DB        (prints the bearer credential)
    token-issuer accounts list --db DB
    token-issuer keys generate|list|rotate|retire --db DB
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from credentials import consts
from credentials.errors import CredentialsError
from credentials.issuer_store import IssuerStore
from service_kit.errors import DatabaseError
from service_kit.metrics import add_arguments as add_metrics_arguments


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="token-issuer",
        description="Run a Privacy Pass issuer (RFC 9578, token type 2); manage its accounts "
                    "and keys.")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_db(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--db", required=True, help="SQLite path or postgresql:// DSN")
        p.add_argument("--key-dir", help="keep private keys as 0600 files here, not in the DB")
        return p

    serve = with_db(sub.add_parser("serve", help="run the issuer server"))
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--issuer-name", required=True)
    serve.add_argument("--workers", type=int, default=1)
    add_metrics_arguments(serve)
    serve.add_argument("--threads", type=int, default=1,
                       help="application threads per worker")
    serve.add_argument("--public-url", help="base URL clients use (for issuer-request-uri)")
    serve.add_argument("--rate-limit", type=int, default=consts.DEFAULT_RATE_LIMIT,
                       help="tokens per account per window")
    serve.add_argument("--rate-window", type=int, default=consts.DEFAULT_RATE_WINDOW,
                       help="window length in seconds")
    serve.add_argument("--max-batch", type=int, default=consts.MAX_BATCH_SIZE)
    serve.add_argument("--directory-max-age", type=int,
                       default=consts.DEFAULT_DIRECTORY_MAX_AGE)
    serve.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                       help="a web page origin whose browsers may fetch tokens (repeatable)")

    accounts = sub.add_parser("accounts", help="issuer accounts").add_subparsers(
        dest="action", required=True)
    add = with_db(accounts.add_parser("add", help="create an account, print its credential"))
    add.add_argument("name")
    with_db(accounts.add_parser("list", help="list account names"))

    keys = sub.add_parser("keys", help="issuer keys").add_subparsers(dest="action",
                                                                        required=True)
    gen = with_db(keys.add_parser("generate", help="generate a key"))
    gen.add_argument("--ahead", type=int, default=0,
                     help="seconds between publication and first use (not-before)")
    with_db(keys.add_parser("list", help="list keys and their state"))
    rot = with_db(keys.add_parser("rotate", help="publish a new key that takes over signing"))
    rot.add_argument("--ahead", type=int, default=consts.DEFAULT_DIRECTORY_MAX_AGE,
                     help="publish this many seconds before use so caches see it first")
    ret = with_db(keys.add_parser("retire", help="withdraw keys and destroy their private half"))
    ret.add_argument("key_id", nargs="?",
                     help="hex key id (or a unique prefix); without it, every key except the "
                          "newest one in use (the end of a rotation)")
    ret.add_argument("--all-but-current", action="store_true",
                     help="retire every key except the newest one in use (the default)")
    return parser


def _keys_table(store: IssuerStore) -> list[str]:
    now = int(time.time())
    lines = []
    for key in store.list_keys(include_retired=True):
        lines.append(f"{key.key_id.hex()}  {key.state(now):9}  not-before={key.not_before}  "
                     f"truncated={key.key_id[-1]:#04x}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``token-issuer``; returns the process exit status."""
    args = _parser().parse_args(argv)
    try:
        store = IssuerStore(args.db, key_dir=args.key_dir)
        if args.command == "serve":
            return _serve(args, store)
        if args.command == "accounts":
            if args.action == "add":
                print(store.add_account(args.name))
            else:
                print("\n".join(store.accounts()))
            return 0
        return _keys(args, store)
    except (CredentialsError, DatabaseError) as exc:
        print(f"token-issuer: {exc}", file=sys.stderr)
        return 1


def _keys(args: argparse.Namespace, store: IssuerStore) -> int:
    now = int(time.time())
    if args.action in ("generate", "rotate"):
        key = store.generate_key(not_before=now + max(0, args.ahead))
        print(key.key_id.hex())
    elif args.action == "list":
        print("\n".join(_keys_table(store)))
    else:
        if args.key_id and not args.all_but_current:
            targets = [store.find_key(args.key_id)]
        else:
            live = [k for k in store.list_keys() if k.not_before <= now]
            keep = max(live, key=lambda k: (k.not_before, k.created_at)) if live else None
            # Keys published for the future are kept: they are the next rotation.
            targets = [k for k in live if keep is not None and k.key_id != keep.key_id]
        for key in targets:
            store.retire_key(key.key_id)
            print(key.key_id.hex())
    return 0


def _serve(args: argparse.Namespace, store: IssuerStore) -> int:
    from service_kit import serving

    store.ensure_key()  # before the fork, so workers never race to create the first key
    config: dict[str, Any] = {
        "db": args.db, "issuer_name": args.issuer_name, "rate_limit": args.rate_limit,
        "rate_window": args.rate_window, "max_batch": args.max_batch,
        "directory_max_age": args.directory_max_age,
    }
    if args.key_dir:
        config["key_dir"] = args.key_dir
    if args.cors_origin:
        config["cors_origins"] = args.cors_origin
    if args.public_url:
        config["public_url"] = args.public_url
    serving.serve("credentials.issuer_service:create_app", config, host=args.host,
                  port=args.port, workers=args.workers, threads=args.threads,
                  metrics_listen=args.metrics_listen, metrics_dir=args.metrics_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
