"""``token-issuer``: run the issuer, manage its accounts and keys.

    token-issuer serve --host H --port P --db DB --issuer-name NAME [--workers N]
    token-issuer accounts add NAME --db DB        (prints the bearer credential)
    token-issuer accounts list --db DB
    token-issuer keys generate|list|rotate|retire|wrap --db DB

Every error is one line on stderr with its own exit status (see ``EXIT_*``); nothing is
created before the arguments are checked, and only ``serve``, ``accounts add`` and ``keys
generate|rotate`` may create a new store (in a folder that exists).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from credentials import consts
from credentials.errors import AccountExists, CredentialsError, KeyStoreError
from credentials.issuer_store import IssuerStore, load_kek
from service_kit.clihelp import HelpFormatter
from service_kit.database import is_postgres_url
from service_kit.errors import DatabaseError
from service_kit.metrics import add_arguments as add_metrics_arguments

EXIT_OK = 0
#: Bad arguments (argparse uses 2 as well).
EXIT_USAGE = 2
#: The store (or its folder) does not exist.
EXIT_NO_STORE = 3
#: ``accounts add``: the name is taken.
EXIT_EXISTS = 4
#: Refused: the command would leave the issuer without a key in use.
EXIT_REFUSED = 5
#: Key management failed (unknown key id, key-encryption key missing or wrong, bad key file).
EXIT_KEYS = 6
#: The database cannot be opened or reached (or PostgreSQL support is not installed).
EXIT_DATABASE = 7

# Commands that may start a new store; every other one needs an existing one.
_CREATING = {("serve", None), ("accounts", "add"), ("keys", "generate"), ("keys", "rotate")}


class _Refused(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _parser() -> argparse.ArgumentParser:
    fmt = HelpFormatter
    parser = argparse.ArgumentParser(
        prog="token-issuer", formatter_class=fmt,
        description="Run a Privacy Pass issuer (RFC 9578, token type 2); manage its accounts "
                    "and keys.",
        epilog="exit status: 0 ok, 2 bad arguments, 3 no such store, 4 account exists, "
               "5 refused (would leave no key in use), 6 key management failed, "
               "7 database unavailable")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_db(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--db", required=True,
                       help="issuer store: SQLite path (created 0600) or postgresql:// DSN")
        p.add_argument("--key-dir", help="keep private keys as 0600 files in this 0700 folder, "
                                         "not in the store")
        p.add_argument("--kek-env", metavar="VAR",
                       help="environment variable holding a key-encryption key (base64url, 32 "
                            "bytes): private keys are stored AES-GCM-wrapped under it")
        return p

    serve = with_db(sub.add_parser("serve", help="run the issuer server", formatter_class=fmt))
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on")
    serve.add_argument("--issuer-name", required=True, help="the issuer's name (host[:port])")
    serve.add_argument("--workers", type=int, default=1, help="server processes")
    add_metrics_arguments(serve)
    serve.add_argument("--threads", type=int, default=1, help="application threads per worker")
    serve.add_argument("--public-url", default="",
                       help="base URL clients reach, for issuer-request-uri (default: a URI "
                            "relative to the directory; never taken from the request)")
    serve.add_argument("--rate-limit", type=int, default=consts.DEFAULT_RATE_LIMIT,
                       help="tokens per account per window")
    serve.add_argument("--rate-window", type=int, default=consts.DEFAULT_RATE_WINDOW,
                       help="window length in seconds")
    serve.add_argument("--max-batch", type=int, default=consts.MAX_BATCH_SIZE,
                       help="largest batched token request served")
    serve.add_argument("--directory-max-age", type=int,
                       default=consts.DEFAULT_DIRECTORY_MAX_AGE,
                       help="Cache-Control max-age of the directory (seconds): how long a "
                            "retirement may take to reach clients")
    serve.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                       help="a web page origin whose browsers may fetch tokens (repeatable)")

    accounts = sub.add_parser("accounts", help="issuer accounts").add_subparsers(
        dest="action", required=True)
    add = with_db(accounts.add_parser("add", help="create an account, print its credential",
                                      formatter_class=fmt))
    add.add_argument("name", help="account name (1..200 characters)")
    with_db(accounts.add_parser("list", help="list account names", formatter_class=fmt))

    keys = sub.add_parser("keys", help="issuer keys").add_subparsers(dest="action",
                                                                        required=True)
    gen = with_db(keys.add_parser("generate", help="generate a key", formatter_class=fmt))
    gen.add_argument("--ahead", type=int, default=0,
                     help="seconds between publication and first use (not-before)")
    with_db(keys.add_parser("list", help="list keys and their state", formatter_class=fmt))
    rot = with_db(keys.add_parser("rotate", help="publish a new key that takes over signing",
                                  formatter_class=fmt))
    rot.add_argument("--ahead", type=int, default=consts.DEFAULT_DIRECTORY_MAX_AGE,
                     help="publish this many seconds before use so caches see it first")
    ret = with_db(keys.add_parser(
        "retire", formatter_class=fmt,
        help="withdraw keys and destroy their private half",
        description="Withdraw keys: the issuer stops signing with them at once and drops them "
                    "from its directory. Origins stop accepting their tokens when their "
                    f"directory copy expires (at most {consts.ORIGIN_MAX_DIRECTORY_AGE} s; "
                    "until then they may still challenge with them and clients are told to "
                    "retry later). Origins keep the keys' spent-token records "
                    f"{consts.SPENT_PURGE_DELAY} s more, so no token is ever accepted twice. "
                    "Retiring the last key in use is refused unless --allow-none is given."))
    ret.add_argument("key_id", nargs="?",
                     help="hex key id (or a unique prefix); without it, every key except the "
                          "newest one in use (the end of a rotation)")
    ret.add_argument("--all-but-current", action="store_true",
                     help="retire every key except the newest one in use (the default)")
    ret.add_argument("--allow-none", action="store_true",
                     help="allow leaving no key in use (issuance stops until a new key)")
    with_db(keys.add_parser("wrap", formatter_class=fmt,
                            help="wrap every private key stored in clear under --kek-env"))
    return parser


def _keys_table(store: IssuerStore) -> list[str]:
    now = int(time.time())
    lines = []
    for key in store.list_keys(include_retired=True):
        lines.append(f"{key.key_id.hex()}  {key.state(now):9}  not-before={key.not_before}  "
                     f"truncated={key.key_id[-1]:#04x}")
    return lines


def _check_store(args: argparse.Namespace) -> None:
    """Refuse a store path that is a mistake before anything is created."""
    if is_postgres_url(args.db):
        return
    path = Path(args.db.removeprefix("sqlite:///").removeprefix("sqlite://")).expanduser()
    creating = (args.command, getattr(args, "action", None)) in _CREATING
    if not path.parent.is_dir():
        raise _Refused(f"folder {path.parent} does not exist (create it first)", EXIT_NO_STORE)
    if not path.exists() and not creating:
        raise _Refused(f"no issuer store at {path} (check --db)", EXIT_NO_STORE)
    if path.is_dir():
        raise _Refused(f"{path} is a folder, not a store file", EXIT_NO_STORE)


def _check_arguments(args: argparse.Namespace) -> None:
    if args.command == "serve":
        for name in ("port", "workers", "threads", "rate_limit", "rate_window", "max_batch",
                     "directory_max_age"):
            if getattr(args, name) < (0 if name == "port" else 1):
                raise _Refused(f"--{name.replace('_', '-')} is out of range", EXIT_USAGE)
        if args.public_url:
            parts = urlsplit(args.public_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise _Refused("--public-url must be an http(s) URL", EXIT_USAGE)
    if args.command == "keys" and args.action in ("generate", "rotate") and args.ahead < 0:
        raise _Refused("--ahead must not be negative", EXIT_USAGE)
    if args.command == "keys" and args.action == "wrap" and not args.kek_env:
        raise _Refused("keys wrap needs --kek-env", EXIT_USAGE)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``token-issuer``; returns the process exit status."""
    args = _parser().parse_args(argv)
    try:
        _check_arguments(args)
        kek = load_kek(args.kek_env)  # before the store: a bad key creates nothing
        _check_store(args)
        store = IssuerStore(args.db, key_dir=args.key_dir, key_encryption_key=kek)
        if args.command == "serve":
            return _serve(args, store)
        if args.command == "accounts":
            if args.action == "add":
                print(store.add_account(args.name))
            else:
                print("\n".join(store.accounts()))
            return EXIT_OK
        return _keys(args, store)
    except _Refused as exc:
        print(f"token-issuer: {exc}", file=sys.stderr)
        return exc.status
    except AccountExists as exc:
        print(f"token-issuer: {exc}", file=sys.stderr)
        return EXIT_EXISTS
    except (KeyStoreError, CredentialsError) as exc:
        print(f"token-issuer: {exc}", file=sys.stderr)
        return EXIT_KEYS
    except DatabaseError as exc:
        print(f"token-issuer: {exc}", file=sys.stderr)
        return EXIT_DATABASE


def _keys(args: argparse.Namespace, store: IssuerStore) -> int:
    now = int(time.time())
    if args.action in ("generate", "rotate"):
        key = store.generate_key(not_before=now + args.ahead)
        print(key.key_id.hex())
    elif args.action == "list":
        print("\n".join(_keys_table(store)))
    elif args.action == "wrap":
        print(f"wrapped {store.wrap_keys()} key(s)")
    else:
        live = store.list_keys()
        if args.key_id and not args.all_but_current:
            targets = [store.find_key(args.key_id)]
        else:
            in_use = [k for k in live if k.not_before <= now]
            keep = max(in_use, key=lambda k: (k.not_before, k.created_at)) if in_use else None
            # Keys published for the future are kept: they are the next rotation.
            targets = [k for k in in_use if keep is not None and k.key_id != keep.key_id]
        gone = {k.key_id for k in targets}
        left_in_use = [k for k in live if k.key_id not in gone and k.not_before <= now]
        if targets and not left_in_use and not args.allow_none:
            raise _Refused("refusing to retire the last key in use (issuance would stop): run "
                           "'keys rotate --ahead 0' first, or pass --allow-none",
                           EXIT_REFUSED)
        for key in targets:
            store.retire_key(key.key_id)
            print(key.key_id.hex())
    return EXIT_OK


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
    if args.kek_env:
        config["key_encryption_key_env"] = args.kek_env  # the name; workers read the variable
    if args.public_url:
        config["public_url"] = args.public_url
    serving.serve("credentials.issuer_service:create_app", config, host=args.host,
                  port=args.port, workers=args.workers, threads=args.threads,
                  metrics_listen=args.metrics_listen, metrics_dir=args.metrics_dir)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
