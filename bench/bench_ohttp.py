"""Oblivious HTTP: cost of the relay + gateway path and of the gateway's cryptography.

1. A trivial target (the echo app) reached through relay + gateway with the client library vs
   reached directly with ``requests`` (``Session.get``, a session configured like the client's
   own); every service on its server stack (service_kit.serving: 1 worker, 4 application
   threads, HTTP keep-alive; the console scripts default to 2 x 4) on loopback, both alternately in
   the same run: throughput with 4 and 8 concurrent client threads (the goal's figure is the
   one with 4), the rate one request at a time (latency-bound), p50/p99 latency, and CPU
   milliseconds per request of the client and of each service's processes.
2. Gateway HPKE open + response seal per second vs the raw X25519 exchange rate of
   ``cryptography`` (the floor: one DH per request is unavoidable).

    .venv/bin/python -m bench ohttp [--quick] [--crypto-only | --http-only] [--cpu-only]

``--cpu-only`` stops after the sequential comparison and the CPU-per-request lines.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives.asymmetric import x25519

from bench.harness import Case, compare, header, latencies, latency_line
from ohttp_relay import bhttp, ohttp
from ohttp_relay.client import ObliviousClient

REPO = Path(__file__).resolve().parent.parent
THREADS = 4
CONCURRENCY = 4


def create_forwarder(config: dict[str, Any]) -> Any:
    """Bench-only factory: a bare WSGI app (no Flask, no OHTTP, no checks) that forwards each
    request's method, path, query and body to ``config["next"]`` (``host:port``) over the same
    keep-alive hop client as the relay and gateway, and returns the answer. Two of them in a
    row measure what two extra HTTP hops cost in this server stack before any OHTTP work."""
    from ohttp_relay.upstream import UpstreamClient

    base = "http://" + config["next"]
    hops = UpstreamClient()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = environ["wsgi.input"].read()
        target = environ.get("PATH_INFO", "/")
        if environ.get("QUERY_STRING"):
            target += "?" + environ["QUERY_STRING"]
        fields = [("Content-Type", environ["CONTENT_TYPE"])] if environ.get("CONTENT_TYPE") else []
        resp = hops.request(environ["REQUEST_METHOD"], base + target, headers=fields,
                            body=body, limit=1 << 20)
        content = resp.read_all()
        start_response(f"{resp.status} -", [(k, v) for k, v in resp.headers
                                            if k.lower() not in ("connection", "keep-alive")])
        return [content]

    return app


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its children still running (gunicorn workers)."""
    total = 0.0
    for one in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _serve(factory: str, config: dict[str, Any], log_dir: Path,
           pids: dict[str, int] | None = None) -> Iterator[str]:
    # OHTTP_BENCH_SERVICES=WORKERSxTHREADS for the relay and gateway (an experiment switch).
    workers, threads = 1, THREADS
    if factory.startswith("ohttp_relay.") and os.environ.get("OHTTP_BENCH_SERVICES"):
        workers, threads = map(int, os.environ["OHTTP_BENCH_SERVICES"].split("x"))
    port = _free_port()
    name = factory.replace(":", "_")
    env = dict(os.environ, E2EE_SERVICE_CONFIG=json.dumps(config), PYTHONPATH=str(REPO))
    log = (log_dir / f"{name}-{port}.log").open("wb")
    # One worker with 4 threads (HTTP keep-alive), for the target and both services. Keep-alive
    # 30 s: the phases' idle gaps must not race the servers' idle timeout (a request sent as
    # the server closes the connection fails; plain ``requests``, the baseline, never resends).
    code = ("import json, os, sys; from service_kit.serving import serve; "
            f"serve({factory!r}, json.loads(os.environ['E2EE_SERVICE_CONFIG']), "
            f"host='127.0.0.1', port={port}, workers={workers}, threads={threads}, "
            "keepalive=30)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT,
                            env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    if pids is not None:
        pids[name if name not in pids else f"{name}-{port}"] = proc.pid
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url + "/", timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{factory} did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        log.close()


def bench_crypto(quick: bool) -> None:
    key = ohttp.GatewayKey.generate(1)
    lookup = {1: key}.get
    request = bhttp.Request("GET", "http", "127.0.0.1:9000", "/search?q=cat").to_bytes()
    response = bhttp.Response(200, (("content-type", "application/json"),), b"{}").to_bytes()
    pool = [ohttp.encapsulate_request(key.config, request)[0] for _ in range(500)]
    state = {"i": 0}

    def open_and_seal() -> None:
        state["i"] = (state["i"] + 1) % len(pool)
        _plain, context = ohttp.decapsulate_request(pool[state["i"]], lookup)
        context.encapsulate(response)

    peer = x25519.X25519PrivateKey.generate().public_key()
    mine = x25519.X25519PrivateKey.generate()
    rounds = 3 if quick else 7
    result = compare(Case("gateway HPKE open + response seal", open_and_seal),
                     Case("raw X25519 exchange (cryptography)", lambda: mine.exchange(peer)),
                     rounds=rounds)
    print(result.line())

    def client_round_trip() -> None:
        sealed, client = ohttp.encapsulate_request(key.config, request)
        _plain, server = ohttp.decapsulate_request(sealed, lookup)
        client.decapsulate(server.encapsulate(response))

    result = compare(Case("client seal + gateway open/seal + client open", client_round_trip),
                     Case("raw X25519 exchange (cryptography)", lambda: mine.exchange(peer)),
                     rounds=rounds)
    print(result.line())


def cpu_per_request(label: str, fn: Callable[[], object], pids: dict[str, int],
                    n: int) -> None:
    """CPU milliseconds per request of this (client) process and of each service's processes
    over ``n`` sequential requests (from /proc; includes each gunicorn master's idle ticks)."""
    for _ in range(20):
        fn()
    before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
    client = time.process_time()
    for _ in range(n):
        fn()
    client = time.process_time() - client
    parts = [f"client {client / n * 1000:.2f}"]
    for name, pid in pids.items():
        parts.append(f"{name.split('_create_')[-1 if 'forwarder' in name else 0].split('.')[-1]} "
                     f"{(_cpu_seconds(pid) - before[name]) / n * 1000:.2f}")
    print(f"   CPU ms/request, {label}: " + ", ".join(parts))


def bench_http(quick: bool, *, cpu_only: bool = False) -> None:
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-ohttp-")))
        pids: dict[str, int] = {}
        echo = stack.enter_context(_serve("tests.apps:create_echo_app", {}, tmp, pids))
        gateway = stack.enter_context(_serve(
            "ohttp_relay.gateway_service:create_app",
            {"db": str(tmp / "gw.db"), "targets": [echo]}, tmp, pids))
        relay = stack.enter_context(_serve(
            "ohttp_relay.relay_service:create_app",
            {"gateway_url": gateway + "/gateway", "rate_limit": 0}, tmp, pids))
        client = ObliviousClient(relay)
        direct = requests.Session()
        direct.trust_env = False  # configured like ObliviousClient's own session: same client cost
        target = echo + "/search?q=cat"
        assert client.request("GET", target).status == 200

        via = Case("GET via relay + gateway (ObliviousClient)",
                   lambda: client.request("GET", target))
        plain = Case("GET direct (requests)", lambda: direct.get(target, timeout=10))
        result = compare(via, plain, rounds=3 if quick else 5, min_time=0.5 if quick else 1.0)
        print(result.line())
        s, b = latencies(via, plain, samples=100 if quick else 400)
        print(latency_line(s, b))
        print(f"   added p50 latency: {s.p50 - b.p50:.3f} ms (goal <= 1.0 ms)   one request at a "
              f"time: {result.ratio:.2f}x the direct rate (latency-bound)")
        n = 300 if quick else 1000
        cpu_per_request("via", via.fn, pids, n)
        cpu_per_request("direct", plain.fn, pids, n)
        if cpu_only:
            return

        # Throughput: the same two paths with concurrent client threads (32 requests per
        # batch), 4 (the goal's figure) and 8 (more requests in flight than services' threads).
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=CONCURRENCY))
        wide = stack.enter_context(ThreadPoolExecutor(max_workers=2 * CONCURRENCY))

        def batch(fn: Callable[[], object], on: ThreadPoolExecutor = pool) -> Callable[[], None]:
            return lambda: list(on.map(lambda _i: fn(), range(32)))

        result = compare(Case(f"{via.name} x{CONCURRENCY} threads", batch(via.fn), ops=32),
                         Case(f"{plain.name} x{CONCURRENCY} threads", batch(plain.fn), ops=32),
                         rounds=3 if quick else 5, min_time=0.5 if quick else 1.0)
        print(result.line())
        print(f"   throughput ratio with {CONCURRENCY} concurrent clients: {result.ratio:.2f}x "
              "(goal >= 0.60x)")
        result = compare(Case(f"{via.name} x{2 * CONCURRENCY} threads", batch(via.fn, wide),
                              ops=32),
                         Case(f"{plain.name} x{2 * CONCURRENCY} threads", batch(plain.fn, wide),
                              ops=32),
                         rounds=3 if quick else 5, min_time=0.5 if quick else 1.0)
        print(result.line())

        # The ceiling of the stack: the same request through two bare forwarding hops (no
        # OHTTP, no Flask), sent with the same ``requests`` call as the direct baseline.
        hop_pids = {"apps": pids["tests.apps_create_echo_app"]}
        hop2 = stack.enter_context(_serve("bench.bench_ohttp:create_forwarder",
                                          {"next": echo.removeprefix("http://")}, tmp, hop_pids))
        hop1 = stack.enter_context(_serve("bench.bench_ohttp:create_forwarder",
                                          {"next": hop2.removeprefix("http://")}, tmp, hop_pids))
        chained = hop1 + "/search?q=cat"
        assert direct.get(chained, timeout=10).json()["query"] == "q=cat"
        bare = Case("GET via two bare forwarding hops (requests)",
                    lambda: direct.get(chained, timeout=10))
        result = compare(bare, plain, rounds=3 if quick else 5, min_time=0.5 if quick else 1.0)
        print(result.line())
        cpu_per_request("two bare hops", bare.fn, hop_pids, 300 if quick else 1000)
        result = compare(Case(f"{bare.name} x{CONCURRENCY} threads", batch(bare.fn), ops=32),
                         Case(f"{plain.name} x{CONCURRENCY} threads", batch(plain.fn), ops=32),
                         rounds=3 if quick else 5, min_time=0.5 if quick else 1.0)
        print(result.line())

        # The same target mounted in the gateway's process (``target_apps``): one hop fewer.
        inproc = stack.enter_context(_serve(
            "ohttp_relay.gateway_service:create_app",
            {"db": str(tmp / "gw2.db"), "targets": [],
             "target_apps": {"http://echo.internal": "tests.apps:create_echo_app"}}, tmp))
        relay2 = stack.enter_context(_serve(
            "ohttp_relay.relay_service:create_app",
            {"gateway_url": inproc + "/gateway", "rate_limit": 0}, tmp))
        client2 = ObliviousClient(relay2)
        assert client2.request("GET", "http://echo.internal/search?q=cat").status == 200
        via2 = Case("GET via relay + gateway, in-process target",
                    lambda: client2.request("GET", "http://echo.internal/search?q=cat"))
        result = compare(via2, plain, rounds=3 if quick else 5, min_time=0.5 if quick else 1.0)
        print(result.line())
        s, b = latencies(via2, plain, samples=100 if quick else 400)
        print(latency_line(s, b))
        print(f"   added p50 latency: {s.p50 - b.p50:.3f} ms   "
              f"throughput ratio: {result.ratio:.2f}x")
        result = compare(Case(f"{via2.name} x{CONCURRENCY} threads", batch(via2.fn), ops=32),
                         Case(f"{plain.name} x{CONCURRENCY} threads", batch(plain.fn), ops=32),
                         rounds=3 if quick else 5, min_time=0.5 if quick else 1.0)
        print(result.line())


def main(argv: list[str]) -> None:
    quick = "--quick" in argv
    if "--http-only" not in argv:
        header("ohttp: gateway cryptography vs raw X25519")
        bench_crypto(quick)
    if "--crypto-only" in argv:
        return
    header("ohttp: trivial target via relay + gateway vs direct (service stack 1x4, loopback)")
    bench_http(quick, cpu_only="--cpu-only" in argv)
