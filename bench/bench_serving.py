"""The services' gunicorn worker: ``LeanWorker`` and ``KeepAliveWorker`` vs gunicorn's ``gthread``.

Three servers of the same app (1 worker x 4 threads, keep-alive) run side by side, one per worker
class (``LeanWorker``, the services' default; its base ``KeepAliveWorker``; gunicorn's own). A
raw-socket HTTP/1.1 client (cheap, so the servers dominate) sends sequential requests on one
kept-alive connection per server, alternating between the servers round by round. Printed:
requests/s (the harness's alternating comparison) and the server's CPU milliseconds per request
(from /proc, median and minimum over the rounds), for a bare WSGI app and for the Flask echo
app the OHTTP benchmark uses as its target. Then three whole OHTTP stacks (echo target, gateway,
relay), one per worker class, with requests through relay + gateway and direct to the target
interleaved one by one across the stacks: p50 latencies per worker class.

    .venv/bin/python -m bench serving [--quick]
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench.bench_ohttp import WORKER_ENV, _cpu_seconds, _free_port, _serve
from bench.harness import Case, compare, header
from service_kit.serving import KEEPALIVE_WORKER, LEAN_WORKER

REPO = Path(__file__).resolve().parent.parent
WORKERS = (("gthread", "gthread"), ("KeepAliveWorker", KEEPALIVE_WORKER),
           ("LeanWorker", LEAN_WORKER))
APPS = (("bare WSGI app", "tests.apps:create_worker_probe_app"),
        ("Flask echo app", "tests.apps:create_echo_app"))
REQUEST = (b"POST /echo?q=cat HTTP/1.1\r\nHost: bench\r\nContent-Type: application/octet-stream"
           b"\r\nContent-Length: 64\r\n\r\n" + b"x" * 64)


@contextmanager
def _server(factory: str, worker_class: str | None) -> Iterator[tuple[int, int]]:
    port = _free_port()
    code = ("from service_kit.serving import serve; "
            f"serve({factory!r}, {{}}, host='127.0.0.1', port={port}, workers=1, threads=4, "
            f"keepalive=30, worker_class={worker_class!r})")
    env = dict(os.environ, PYTHONPATH=str(REPO), E2EE_SERVICE_CONFIG=json.dumps({}))
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{factory} did not start") from None
                time.sleep(0.05)
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _client(port: int) -> Callable[[], None]:
    """One request per call on one kept-alive connection (Content-Length framed answers)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray()

    def one() -> None:
        sock.sendall(REQUEST)
        while (end := buf.find(b"\r\n\r\n")) < 0:
            buf.extend(sock.recv(65536))
        lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
        length = next(int(value) for name, _, value in (x.partition(":") for x in lines[1:])
                      if name.strip().lower() == "content-length")
        while len(buf) < end + 4 + length:
            buf.extend(sock.recv(65536))
        if not lines[0].startswith("HTTP/1.1 200"):
            raise RuntimeError("unexpected answer")
        del buf[:end + 4 + length]

    return one


def main(argv: list[str]) -> None:
    quick = "--quick" in argv
    rounds, per_round = (7, 200) if quick else (15, 400)
    header("serving: LeanWorker, KeepAliveWorker vs gunicorn gthread (1 worker x 4 threads)")
    for app_name, factory in APPS:
        with ExitStack() as stack:
            servers = [(name, *stack.enter_context(_server(factory, cls)))
                       for name, cls in WORKERS]
            clients = {name: _client(port) for name, port, _pid in servers}
            for fn in clients.values():
                for _ in range(200):
                    fn()
            for mine_name in ("KeepAliveWorker", "LeanWorker"):
                result = compare(Case(f"{app_name}, {mine_name}", clients[mine_name]),
                                 Case(f"{app_name}, gthread", clients["gthread"]),
                                 rounds=3 if quick else 5, min_time=0.5 if quick else 1.0)
                print(result.line())
            cpu: dict[str, list[float]] = {name: [] for name, _port, _pid in servers}
            for _ in range(rounds):
                for name, _port, pid in servers:
                    before = _cpu_seconds(pid)
                    for _ in range(per_round):
                        clients[name]()
                    cpu[name].append((_cpu_seconds(pid) - before) / per_round * 1000)
            theirs = cpu["gthread"]
            for mine_name in ("KeepAliveWorker", "LeanWorker"):
                mine = cpu[mine_name]
                print(f"   server CPU ms/request, {app_name}: {mine_name} "
                      f"{statistics.median(mine):.3f} (min {min(mine):.3f}), gthread "
                      f"{statistics.median(theirs):.3f} (min {min(theirs):.3f}), ratio "
                      f"{statistics.median(mine) / statistics.median(theirs):.2f}")
    _ohttp_stacks(200 if quick else 600)


def _ohttp_stacks(samples: int) -> None:
    import tempfile

    import requests

    from ohttp_relay.client import ObliviousClient

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-serving-")))
        paths: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {}
        for name, cls in WORKERS:
            saved = os.environ.get(WORKER_ENV)
            os.environ[WORKER_ENV] = cls or ""
            try:
                echo = stack.enter_context(_serve("tests.apps:create_echo_app", {}, tmp))
                gateway = stack.enter_context(_serve(
                    "ohttp_relay.gateway_service:create_app",
                    {"db": str(tmp / f"{name}.db"), "targets": [echo]}, tmp))
                relay = stack.enter_context(_serve(
                    "ohttp_relay.relay_service:create_app",
                    {"gateway_url": gateway + "/gateway", "rate_limit": 0}, tmp))
            finally:
                if saved is None:
                    os.environ.pop(WORKER_ENV, None)
                else:
                    os.environ[WORKER_ENV] = saved
            client = ObliviousClient(relay)
            direct = requests.Session()
            direct.trust_env = False
            target = echo + "/search?q=cat"
            paths[name] = (lambda c=client, t=target: c.request("GET", t),
                           lambda d=direct, t=target: d.get(t, timeout=10))
        times: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in paths}
        for i in range(samples + 50):
            for name, pair in paths.items():
                for which in (0, 1):
                    start = time.perf_counter()
                    pair[which]()
                    if i >= 50:  # warm-up
                        times[name][which].append((time.perf_counter() - start) * 1000)
        for name, (via, direct_ms) in times.items():
            v, d = statistics.median(via), statistics.median(direct_ms)
            print(f"   OHTTP stack on {name}: via relay + gateway p50 {v:.3f} ms, direct p50 "
                  f"{d:.3f} ms, added {v - d:.3f} ms, p50 ratio {v / d:.2f}x")
