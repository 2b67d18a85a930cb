"""``e2ee-kt-audit``: audit a delivery server's key-transparency log and serve the signatures.

    e2ee-kt-audit keygen --key auditor.key
    e2ee-kt-audit once  --server http://127.0.0.1:8080 --namespace chat.example --key auditor.key
    e2ee-kt-audit run   --server http://127.0.0.1:8080 --namespace chat.example --key auditor.key
    e2ee-kt-audit serve --db e2ee-kt-audit.db --port 8090
    e2ee-kt-audit clear-halt --namespace chat.example

``once`` audits from the last audited epoch to the server's latest and signs every new epoch;
``run`` does that every ``--interval`` seconds. Exit status: 0 audited, 1 the server could not be
audited (unreachable, malformed answer; nothing signed, try again), 3 ALARM (an append-only
proof failed, an audited epoch's root changed, the epoch went backwards or the VRF key changed):
signing is halted for that log until ``clear-halt``. The state is ``--db`` (SQLite, created 0600,
or a postgresql:// DSN); the key file is 32 bytes, 0600.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from e2ee_core.keytrans import consts, plexi
from e2ee_core.keytrans.auditor import Auditor, AuditStore, HttpLogSource
from e2ee_core.keytrans.errors import AuditFailed, KeyTransparencyError
from service_kit import logging_filter
from service_kit.clihelp import HelpFormatter
from service_kit.errors import DatabaseError
from service_kit.keyfiles import read_secret_file, write_secret_file
from service_kit.metrics import Exposition
from service_kit.metrics import add_arguments as add_metrics_arguments

FACTORY = "e2ee_core.keytrans.audit_app:create_app"
DEFAULT_DB = "e2ee-kt-audit.db"
EXIT_UNAVAILABLE = 1
EXIT_ALARM = 3

log = logging.getLogger("e2ee_core.keytrans.audit_cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="e2ee-kt-audit", description=__doc__.split("\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    default_db = os.environ.get("E2EE_KT_AUDIT_DB", DEFAULT_DB)

    keygen = sub.add_parser("keygen", help="create the auditor's Ed25519 key file (0600)",
                            formatter_class=HelpFormatter)
    keygen.add_argument("--key", required=True, help="key file to create")
    keygen.add_argument("--force", action="store_true", help="replace an existing key file")

    for name, text in (("once", "audit the server's new epochs once and sign them"),
                       ("run", "audit every --interval seconds until stopped or an alarm")):
        cmd = sub.add_parser(name, help=text, formatter_class=HelpFormatter)
        cmd.add_argument("--server", required=True, metavar="URL",
                         help="the delivery server (its /v1/kt endpoints)")
        cmd.add_argument("--namespace", required=True,
                         help="the log's name in the signatures (clients check the same name)")
        cmd.add_argument("--key", required=True, help="the auditor's key file (keygen)")
        cmd.add_argument("--db", default=default_db,
                         help="audit state: SQLite path or postgresql:// DSN "
                              "(default: $E2EE_KT_AUDIT_DB or ./e2ee-kt-audit.db)")
        cmd.add_argument("--ciphersuite", type=int, default=consts.PLEXI_PROTOBUF_ED25519,
                         choices=plexi.CIPHERSUITES,
                         help="plexi ciphersuite: 1 protobuf, 2 bincode (legacy)")
        cmd.add_argument("--timeout", type=float, default=consts.AUDIT_HTTP_TIMEOUT,
                         help="seconds to wait for the server")
        cmd.add_argument("--start-epoch", type=int, default=0, metavar="N",
                         help="first audit of this log only: trust epoch N's root as the "
                              "starting point instead of auditing from the empty tree "
                              "(a long-running log); N itself is not signed")
        if name == "run":
            cmd.add_argument("--interval", type=float, default=30.0,
                             help="seconds between audits")
            add_metrics_arguments(cmd)

    serve = sub.add_parser("serve", help="serve the signatures over HTTP "
                                         "(uvicorn, see service_kit.serving)",
                           formatter_class=HelpFormatter)
    serve.add_argument("--db", default=default_db,
                       help="audit state (default: $E2EE_KT_AUDIT_DB or ./e2ee-kt-audit.db)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8090, help="port to listen on")
    serve.add_argument("--workers", type=int, default=1, help="server processes")
    serve.add_argument("--threads", type=int, default=4, help="application threads per worker")
    add_metrics_arguments(serve)

    clear = sub.add_parser("clear-halt", help="audit and sign a halted log again "
                                              "(after an operator looked at the alarm)",
                           formatter_class=HelpFormatter)
    clear.add_argument("--namespace", required=True, help="the log")
    clear.add_argument("--db", default=default_db,
                       help="audit state (default: $E2EE_KT_AUDIT_DB or ./e2ee-kt-audit.db)")
    return parser


def _keygen(args: argparse.Namespace) -> int:
    if os.path.exists(args.key) and not args.force:
        print("e2ee-kt-audit: the key file exists (use --force to replace it)", file=sys.stderr)
        return 2
    key = os.urandom(consts.ED25519_KEY_LEN)
    write_secret_file(args.key, key)
    public = plexi.public_key(key)
    print(f"verifying key {public.hex()} key_id {plexi.key_id(public)}")
    return 0


def _auditor(args: argparse.Namespace) -> Auditor:
    try:
        key = read_secret_file(args.key)
    except FileNotFoundError:
        raise SystemExit("e2ee-kt-audit: no such key file (create one with keygen)") from None
    except PermissionError as exc:
        raise SystemExit(f"e2ee-kt-audit: {exc}") from None
    if len(key) != consts.ED25519_KEY_LEN:
        raise SystemExit("e2ee-kt-audit: the key file is not a 32-byte key")
    if not args.server.startswith(("http://", "https://")):
        raise SystemExit("e2ee-kt-audit: --server must be an http(s) URL")
    if args.start_epoch < 0:
        raise SystemExit("e2ee-kt-audit: --start-epoch must not be negative")
    return Auditor(AuditStore(args.db), HttpLogSource(args.server, timeout=args.timeout),
                   args.namespace, key, ciphersuite=args.ciphersuite,
                   start_epoch=args.start_epoch)


def _audit(auditor: Auditor) -> int:
    try:
        report = auditor.audit_once()
    except AuditFailed as exc:
        print(f"e2ee-kt-audit: ALARM: {exc}", file=sys.stderr)
        return EXIT_ALARM
    except (KeyTransparencyError, DatabaseError) as exc:
        log.warning("kt audit not possible now class=%s", type(exc).__name__)
        print(f"e2ee-kt-audit: not audited: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if report.signed:
        print(f"audited and signed epochs {report.start + 1}..{report.end}")
    else:
        print(f"no new epoch (latest audited: {report.end})")
    return 0


def _run(args: argparse.Namespace) -> int:
    auditor = _auditor(args)
    exposition = (Exposition(args.metrics_listen, workers=1)
                  if args.metrics_listen else None)
    if exposition is not None:
        exposition.start()
    try:
        while True:
            status = _audit(auditor)
            if status == EXIT_ALARM:
                return status
            time.sleep(max(args.interval, 0.1))
    except KeyboardInterrupt:
        return 0
    finally:
        if exposition is not None:
            exposition.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``e2ee-kt-audit`` console script."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "keygen":
        return _keygen(args)
    if args.command == "serve":
        from service_kit.serving import serve

        serve(FACTORY, {"database": args.db}, host=args.host, port=args.port,
              workers=args.workers, threads=args.threads,
              metrics_listen=args.metrics_listen, metrics_dir=args.metrics_dir)
        return 0
    if args.command == "clear-halt":
        AuditStore(args.db).clear_halt(args.namespace)
        print(f"signing resumed for {args.namespace}")
        return 0
    logging_filter.install()
    if args.command == "once":
        return _audit(_auditor(args))
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
