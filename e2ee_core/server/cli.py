"""``e2ee-server``: run the delivery server, or purge expired rows.

    e2ee-server serve --host 127.0.0.1 --port 8080 --db ./e2ee-server.db [--workers 2]
    e2ee-server serve --db postgresql://user@host/db --workers 4 --config limits.json
    e2ee-server purge --db ./e2ee-server.db

``--db`` defaults to ``$E2EE_SERVER_DB`` or ``./e2ee-server.db``. ``--config`` names a JSON
object with any :class:`~e2ee_core.server.service.Settings` field (command-line flags win).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from e2ee_core.server.errors import ConfigurationError
from service_kit.errors import DatabaseError
from service_kit.metrics import add_arguments as add_metrics_arguments
from service_kit.serving import serve

FACTORY = "e2ee_core.server.app:create_app"
DEFAULT_DB = "e2ee-server.db"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="e2ee-server", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    default_db = os.environ.get("E2EE_SERVER_DB", DEFAULT_DB)
    run = sub.add_parser("serve", help="serve the HTTP API (uvicorn, see service_kit.serving)")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8080)
    run.add_argument("--db", default=default_db, help="SQLite path or postgresql:// DSN")
    run.add_argument("--workers", type=int, default=1, help="worker processes")
    run.add_argument("--threads", type=int, default=8,
                     help="application threads per worker (each waiting long-poll holds one)")
    run.add_argument("--config", type=Path, help="JSON file with limits and timings")
    run.add_argument("--kt-epoch-seconds", type=float, metavar="S",
                     help="key transparency: publish an epoch at least every S seconds, even "
                     "when no device changed (setting kt_epoch_seconds, default 60); device "
                     "changes are published at once")
    add_metrics_arguments(run)
    purge = sub.add_parser("purge", help="delete expired envelopes and attachments now")
    purge.add_argument("--db", default=default_db)
    purge.add_argument("--config", type=Path)
    return parser


def _config(args: argparse.Namespace) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if args.config is not None:
        try:
            loaded = json.loads(args.config.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigurationError("cannot read the --config file") from exc
        if not isinstance(loaded, dict):
            raise ConfigurationError("the --config file must hold a JSON object")
        config.update(loaded)
    config["db"] = args.db
    if getattr(args, "kt_epoch_seconds", None) is not None:
        config["kt_epoch_seconds"] = args.kt_epoch_seconds
    return config


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``e2ee-server`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        config = _config(args)
        if args.command == "purge":
            from e2ee_core.server.app import create_app, service_of

            counts = service_of(create_app(config)).purge()
            print(f"purged envelopes={counts.envelopes} attachments={counts.attachments}")
            return 0
        from e2ee_core.server.app import MEMORY_DB, create_app

        if args.db == MEMORY_DB and args.workers != 1:
            raise ConfigurationError("the in-memory store needs exactly one worker")
        create_app(config)  # fail fast on a bad config or database, before forking workers
        serve(FACTORY, config, host=args.host, port=args.port, workers=args.workers,
              threads=args.threads, metrics_listen=args.metrics_listen,
              metrics_dir=args.metrics_dir)
        return 0
    except (ConfigurationError, DatabaseError) as exc:
        print(f"e2ee-server: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
