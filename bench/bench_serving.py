"""The serving stack: the services' own (uvicorn + llhttp + a2wsgi, ``service_kit.serving``)
against maintained alternatives on the same apps, and its resilience to idle connections.

1. **Stacks side by side** (1 worker, 4 application threads each, keep-alive): the services'
   stack, granian (``--interface wsgi``) and gunicorn ``gthread``, when installed
   (``pip install -e '.[bench]'``). A raw-socket HTTP/1.1 client (cheap, so the servers
   dominate) alternates between them round by round: requests/s one at a time on one kept-alive
   connection and with 4 concurrent connections, and server CPU ms per request, for a bare WSGI
   app and for the Flask echo app.
2. **Idle-connection resilience** of every service on its stack: p50/p99 of a normal request
   alone and with 1,000 connections open that send nothing, half a head, or a head and part of
   a body (alternating samples), and the server's memory per such connection.

    .venv/bin/python -m bench serving [--quick] [--idle-only] [--stacks-only]
"""

from __future__ import annotations

import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench.bench_ohttp import _cpu_seconds, _free_port
from bench.harness import Case, compare, header

REPO = Path(__file__).resolve().parent.parent
APPS = (("bare WSGI app", "tests.apps:create_worker_probe_app"),
        ("Flask echo app", "tests.apps:create_echo_app"))
REQUEST = (b"POST /echo?q=cat HTTP/1.1\r\nHost: bench\r\nContent-Type: application/octet-stream"
           b"\r\nContent-Length: 64\r\n\r\n" + b"x" * 64)


def _command(stack: str, factory: str, port: int) -> list[str] | None:
    py = sys.executable
    if stack == "service stack":
        return [py, "-m", "service_kit.serving", factory, "127.0.0.1", str(port), "1", "4",
                "30"]
    if stack == "granian":
        if importlib.util.find_spec("granian") is None:
            return None
        return [py, "-m", "granian", "--interface", "wsgi", "--host", "127.0.0.1", "--port",
                str(port), "--workers", "1", "--blocking-threads", "4", "--no-log",
                "--factory", "bench._wsgi_entry:app"]
    if stack == "gunicorn gthread":
        if importlib.util.find_spec("gunicorn") is None:
            return None
        return [py, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
                "--threads", "4", "--worker-class", "gthread", "--keep-alive", "30",
                "bench._wsgi_entry:app()"]
    raise ValueError(stack)


@contextmanager
def _server(stack: str, factory: str) -> Iterator[tuple[int, int] | None]:
    port = _free_port()
    cmd = _command(stack, factory, port)
    if cmd is None:
        yield None
        return
    env = dict(os.environ, PYTHONPATH=str(REPO), E2EE_SERVICE_CONFIG="{}",
               BENCH_WSGI_FACTORY=factory)
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{stack} did not start") from None
                time.sleep(0.05)
        yield port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _client(port: int, request: bytes = REQUEST) -> Callable[[], float]:
    """One request per call on one kept-alive connection; returns its latency (ms)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray()

    def one() -> float:
        start = time.perf_counter()
        sock.sendall(request)
        while (end := buf.find(b"\r\n\r\n")) < 0:
            buf.extend(sock.recv(65536))
        lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
        length = next(int(value) for name, _, value in (x.partition(":") for x in lines[1:])
                      if name.strip().lower() == "content-length")
        while len(buf) < end + 4 + length:
            buf.extend(sock.recv(65536))
        if not lines[0].startswith("HTTP/1.1 200"):
            raise RuntimeError("unexpected answer: " + lines[0])
        del buf[:end + 4 + length]
        return (time.perf_counter() - start) * 1000

    return one


def _concurrent(port: int, n: int = 4, per: int = 25) -> Callable[[], None]:
    clients = [_client(port) for _ in range(n)]

    def batch() -> None:
        threads = [threading.Thread(target=lambda c=c: [c() for _ in range(per)])
                   for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    return batch


def bench_stacks(quick: bool) -> None:
    header("serving: the services' stack vs granian and gunicorn gthread (1 worker, 4 threads)")
    stacks = ("service stack", "granian", "gunicorn gthread")
    for app_name, factory in APPS:
        with ExitStack() as stack:
            servers = {name: stack.enter_context(_server(name, factory)) for name in stacks}
            present = {name: s for name, s in servers.items() if s is not None}
            missing = sorted(set(stacks) - set(present))
            if missing:
                print(f"   (not installed, skipped: {', '.join(missing)}; "
                      "pip install -e '.[bench]')")
            ours = present["service stack"]
            for other, server in present.items():
                if other == "service stack":
                    continue
                mine, theirs = _client(ours[0]), _client(server[0])
                for fn in (mine, theirs):
                    for _ in range(200):
                        fn()
                result = compare(Case(f"{app_name}, service stack, 1 at a time", mine),
                                 Case(f"{app_name}, {other}", theirs),
                                 rounds=3 if quick else 5, min_time=0.5 if quick else 1.0)
                print(result.line())
                result = compare(Case(f"{app_name}, service stack, 4 connections",
                                      _concurrent(ours[0]), ops=100),
                                 Case(f"{app_name}, {other}", _concurrent(server[0]), ops=100),
                                 rounds=3 if quick else 5, min_time=0.5 if quick else 1.0)
                print(result.line())
            cpu: dict[str, list[float]] = {name: [] for name in present}
            clients = {name: _client(port) for name, (port, _pid) in present.items()}
            for _ in range(5 if quick else 11):
                for name, (_port, pid) in present.items():
                    before = _cpu_seconds(pid)
                    for _ in range(300):
                        clients[name]()
                    cpu[name].append((_cpu_seconds(pid) - before) / 300 * 1000)
            print(f"   server CPU ms/request, {app_name}: " + ", ".join(
                f"{name} {statistics.median(v):.3f}" for name, v in cpu.items()))


# -- idle-connection resilience -----------------------------------------------------------

PARTIAL_HEAD = b"POST /x HTTP/1.1\r\nHost: idle\r\nContent-Type: text/pl"
SLOW_BODY = b"POST /x HTTP/1.1\r\nHost: idle\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_idle(quick: bool) -> None:
    from tests.support import start_live_server

    header("serving: a normal request with 1,000 idle/partial/slow connections open")
    count = 1000
    samples = 200 if quick else 600
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-idle-")))
        # Long timeouts: the held connections must stay open for the whole measurement.
        limits = {"header_timeout": 300.0, "body_timeout": 300.0}

        def start(factory: str, config: dict[str, object]) -> tuple[int, int, str]:
            server = start_live_server(factory, config, tmp, threads=4, keepalive=30,
                                       limits=limits)
            stack.callback(server.stop)
            return server.port, server.proc.pid, server.url

        issuer_port, _, issuer_url = start("credentials.issuer_service:create_app",
                                           {"db": str(tmp / "i.db"), "issuer_name": "i.test"})
        _, _, gateway_url = start("ohttp_relay.gateway_service:create_app",
                                  {"db": str(tmp / "g0.db"), "targets": []})
        services = {
            "issuer": (issuer_port, "/.well-known/private-token-issuer-directory"),
            "sticker": (start("sticker_search.service:create_app",
                              {"issuer_url": issuer_url, "spent_db": str(tmp / "s.db")})[0],
                        "/v1/stickers/1f600"),
            "gateway": (start("ohttp_relay.gateway_service:create_app",
                              {"db": str(tmp / "g.db"), "targets": []})[0], "/ohttp-keys"),
            "relay": (start("ohttp_relay.relay_service:create_app",
                            {"gateway_url": gateway_url + "/gateway", "rate_limit": 0})[0],
                      "/ohttp-keys"),
            "delivery": (start("e2ee_core.server.app:create_app",
                               {"db": str(tmp / "d.db")})[0], "/v1/health"),
        }
        pids = {name: _pid_on(port) for name, (port, _) in services.items()}
        for name, (port, path) in services.items():
            request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
            client = _client(port, request)
            for _ in range(100):
                client()
            alone = [client() for _ in range(samples)]
            rss_before = _rss_kib(pids[name])
            held: list[socket.socket] = []
            try:
                for i in range(count):
                    sock = socket.create_connection(("127.0.0.1", port))
                    data = (b"", PARTIAL_HEAD, SLOW_BODY)[i % 3]
                    if data:
                        sock.sendall(data)
                    held.append(sock)
                time.sleep(0.5)
                rss_after = _rss_kib(pids[name])
                loaded = [client() for _ in range(samples)]
            finally:
                for sock in held:
                    sock.close()
            time.sleep(0.5)
            alone2 = [client() for _ in range(samples)]
            base = alone + alone2
            print(f"   {name:<9} p50 {statistics.median(base):6.3f} ms, p99 "
                  f"{_percentile(base, 0.99):6.3f} ms alone;  with {count} held: p50 "
                  f"{statistics.median(loaded):6.3f} ms, p99 {_percentile(loaded, 0.99):6.3f} ms"
                  f" (p99 +{_percentile(loaded, 0.99) - _percentile(base, 0.99):.3f} ms; "
                  f"goal <= +10 ms);  memory per held connection "
                  f"{(rss_after - rss_before) / count:.1f} KiB")


def _pid_on(port: int) -> int:
    """The pid of the process listening on ``port`` (from /proc/net/tcp and fd links)."""
    hex_port = f"{port:04X}"
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[1].endswith(":" + hex_port) and parts[3] == "0A":
            inodes.add(parts[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return int(proc.name)
        except OSError:
            continue
    raise RuntimeError(f"nothing listens on {port}")


def main(argv: list[str]) -> None:
    quick = "--quick" in argv
    if "--idle-only" not in argv:
        bench_stacks(quick)
    if "--stacks-only" not in argv:
        bench_idle(quick)

