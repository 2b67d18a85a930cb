"""``ohttp-relay``: serve the Oblivious Relay.

    ohttp-relay serve --host H --port P --gateway URL
"""

from __future__ import annotations

import argparse
import os
import sys

from service_kit.clihelp import HelpFormatter
from service_kit.metrics import add_arguments as add_metrics_arguments


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ohttp-relay", description=__doc__.split("\n")[0],
                                     formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the relay (uvicorn, see service_kit.serving)",
                           formatter_class=HelpFormatter)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8081, help="port to listen on")
    serve.add_argument("--gateway", required=True, metavar="URL",
                       help="the gateway's POST /gateway URL")
    serve.add_argument("--route", action="append", default=[], metavar="PATH=URL",
                       help="relay another gateway: POST PATH -> URL, keys at PATH/ohttp-keys")
    serve.add_argument("--rate-limit", type=int, default=120,
                       help="requests per window per client address (0 = off)")
    serve.add_argument("--rate-window", type=float, default=60.0, help="seconds")
    serve.add_argument("--workers", type=int, default=2, help="server processes")
    add_metrics_arguments(serve)
    serve.add_argument("--threads", type=int, default=4, help="application threads per worker")
    serve.add_argument("--relay-secret-env", metavar="VAR",
                       help="environment variable holding the secret sent to the gateway")
    serve.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                       help="a web page origin whose browsers may call the relay (repeatable)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ohttp-relay`` console script."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if not args.gateway.startswith(("http://", "https://")):
        print("ohttp-relay: --gateway must be an http(s) URL", file=sys.stderr)
        return 2
    routes = dict(route.split("=", 1) for route in args.route if "=" in route)
    if len(routes) != len(args.route):
        print("ohttp-relay: --route takes PATH=URL", file=sys.stderr)
        return 2
    config: dict[str, object] = {"gateway_url": args.gateway, "rate_limit": args.rate_limit,
                                 "rate_window": args.rate_window, "routes": routes,
                                 "cors_origins": args.cors_origin}
    if args.relay_secret_env:
        secret = os.environ.get(args.relay_secret_env)
        if not secret:
            print("ohttp-relay: relay secret variable is empty", file=sys.stderr)
            return 2
        config["relay_secret"] = secret
    from service_kit.serving import serve
    serve("ohttp_relay.relay_service:create_app", config, host=args.host, port=args.port,
          workers=args.workers, threads=args.threads, metrics_listen=args.metrics_listen,
          metrics_dir=args.metrics_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
