"""End-to-end delivery throughput: 1:1 messages between accounts of two devices each (three
envelopes per message: the recipient's two devices and the sender's other device), sent over
HTTP, delivered and acknowledged, on one server process (SQLite, then PostgreSQL).

Subjects: (1) the sending devices send over their push sockets (``send`` frames, up to 8 in
flight each) and the receiving devices hold push sockets (``/v1/websocket``), acknowledging
each pushed batch over the socket; (2) the same with HTTP sends. Baseline, in the same run,
rounds alternating: the same devices long-poll ``GET /v1/messages?wait=`` and acknowledge with
``POST /v1/messages/ack`` (the way before the push channel). The load generator is this
process (its own process, loopback): sender sockets or threads with keep-alive sessions,
receivers on an asyncio loop (push) or threads (HTTP).
A round ends when every envelope sent in it has been acknowledged.

    .venv/bin/python -m bench e2ee_throughput [--pairs N] [--messages M] [--rounds R]
        [--no-pg] [--no-sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect

from bench.bench_e2ee_push import CONFIG
from bench.bench_e2ee_server import DEFAULT_PG, _keys
from bench.harness import header, temporary_pg_database
from e2ee_core.server.client import ServerClient
from e2ee_core.server.wire import OutgoingEnvelope, SendRequest
from tests.support import LiveServer, start_live_server

SENDER_THREADS = 8
WINDOW = 8  # send frames in flight per sender socket
PAYLOAD = b"e" * 160


class Pair:
    """Account A (devices a1, a2) sends to account B (devices b1, b2)."""

    def __init__(self, url: str, n: int) -> None:
        tag = f"t{os.getpid()}x{n}x{time.monotonic_ns() % 10**8}"
        self.a1, self.a2, self.b1, self.b2 = (ServerClient(url) for _ in range(4))
        self.a1.register(tag + "a", "benchmark-pw", _keys())
        self.a2.add_device(tag + "a", "benchmark-pw", _keys())
        self.b1.register(tag + "b", "benchmark-pw", _keys())
        self.b2.add_device(tag + "b", "benchmark-pw", _keys())
        self.a, self.b = tag + "a", tag + "b"

    def receivers(self) -> list[ServerClient]:
        return [self.b1, self.b2, self.a2]

    def send(self) -> None:
        self.a1.send(self.b, [OutgoingEnvelope(self.b, 1, PAYLOAD),
                              OutgoingEnvelope(self.b, 2, PAYLOAD),
                              OutgoingEnvelope(self.a, 2, PAYLOAD)])


def _send_all(pairs: list[Pair], messages: int) -> None:
    with ThreadPoolExecutor(SENDER_THREADS) as pool:
        list(pool.map(lambda i: pairs[i % len(pairs)].send(), range(messages)))


async def _socket(url: str, client: ServerClient) -> ClientConnection:
    assert client.credential is not None
    ws = await connect(url.replace("http://", "ws://") + "/v1/websocket",
                       additional_headers={"Authorization":
                                           f"Bearer {client.credential.credential}"},
                       open_timeout=60, ping_interval=None)
    while True:  # what is left from enrolment (device notices) is acknowledged first
        frame = json.loads(await ws.recv())
        if frame["type"] == "queue_empty":
            return ws
        await ws.send(json.dumps({"type": "ack", "ids": [e["id"] for e in frame["envelopes"]]}))


async def _send_over_sockets(url: str, pairs: list[Pair], messages: int) -> None:
    """Each sender device sends its share over its own push socket, up to WINDOW frames in
    flight (results come back in order)."""
    senders = await asyncio.gather(*(_socket(url, p.a1) for p in pairs))
    share = [messages // len(pairs) + (i < messages % len(pairs)) for i in range(len(pairs))]

    async def one(ws: ClientConnection, pair: Pair, count: int) -> None:
        frame = json.dumps({"type": "send", "id": 0, "message": SendRequest(pair.b, (
            OutgoingEnvelope(pair.b, 1, PAYLOAD), OutgoingEnvelope(pair.b, 2, PAYLOAD),
            OutgoingEnvelope(pair.a, 2, PAYLOAD))).to_json()})
        sent = done = 0
        while done < count:
            while sent < count and sent - done < WINDOW:
                await ws.send(frame)
                sent += 1
            result = json.loads(await ws.recv())
            if result["type"] == "send_result":
                assert result.get("accepted") == 3, result
                done += 1

    await asyncio.gather(*(one(ws, p, n) for ws, p, n in zip(senders, pairs, share,
                                                               strict=True)))
    await asyncio.gather(*(ws.close() for ws in senders), return_exceptions=True)


async def _push_round(url: str, pairs: list[Pair], messages: int, *,
                      over_socket: bool = False) -> float:
    sockets = await asyncio.gather(*(_socket(url, c) for p in pairs for c in p.receivers()))
    expected = 3 * messages
    acked = 0
    done = asyncio.Event()

    async def drain(ws: ClientConnection) -> None:
        nonlocal acked
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] != "envelopes":
                continue
            ids = [e["id"] for e in frame["envelopes"]]
            await ws.send(json.dumps({"type": "ack", "ids": ids}))
            acked += len(ids)
            if acked >= expected:
                done.set()

    tasks = [asyncio.create_task(drain(ws)) for ws in sockets]
    start = time.perf_counter()
    sending = asyncio.create_task(_send_over_sockets(url, pairs, messages) if over_socket
                                  else asyncio.to_thread(_send_all, pairs, messages))
    await done.wait()
    elapsed = time.perf_counter() - start
    await sending
    for task in tasks:
        task.cancel()
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return expected / elapsed


def _http_round(pairs: list[Pair], messages: int) -> float:
    expected = 3 * messages
    acked = [0]
    lock = threading.Lock()
    done = threading.Event()

    def poll(client: ServerClient) -> None:
        while not done.is_set():
            batch = client.receive(1.0)
            if batch.envelopes:
                client.acknowledge([e.id for e in batch.envelopes])
                with lock:
                    acked[0] += len(batch.envelopes)
                    if acked[0] >= expected:
                        done.set()

    receivers = [c for p in pairs for c in p.receivers()]
    threads = [threading.Thread(target=poll, args=(c,), daemon=True) for c in receivers]
    for thread in threads:
        thread.start()
    start = time.perf_counter()
    _send_all(pairs, messages)
    done.wait(600)
    elapsed = time.perf_counter() - start
    for thread in threads:
        thread.join(5)
    return expected / elapsed


def _case(label: str, url: str, pairs_n: int, messages: int, rounds: int) -> None:
    with ThreadPoolExecutor(8) as pool:
        pairs = list(pool.map(lambda n: Pair(url, n), range(pairs_n)))
    asyncio.run(_push_round(url, pairs, messages // 4, over_socket=True))  # warm-up
    sock: list[float] = []
    push: list[float] = []
    http: list[float] = []
    for _ in range(rounds):
        sock.append(asyncio.run(_push_round(url, pairs, messages, over_socket=True)))
        push.append(asyncio.run(_push_round(url, pairs, messages)))
        http.append(_http_round(pairs, messages))
    o, p, h = statistics.median(sock), statistics.median(push), statistics.median(http)

    def rounds_of(values: list[float]) -> str:
        return ", ".join(f"{x:,.0f}" for x in values)

    print(f"   {label} ({pairs_n} pairs of 2-device accounts, {messages} messages = "
          f"{3 * messages} envelopes per round; goal >= 5,000 SQLite, >= 3,000 PostgreSQL):")
    print(f"     sends, pushes and acks over the socket  {o:>8,.0f} envelopes/s   ratio "
          f"{o / h:5.2f}x   (rounds {rounds_of(sock)})")
    print(f"     HTTP sends, pushes and acks on socket   {p:>8,.0f} envelopes/s   ratio "
          f"{p / h:5.2f}x   (rounds {rounds_of(push)})")
    print(f"     baseline: HTTP sends, long-poll + ack   {h:>8,.0f} envelopes/s   "
          f"(rounds {rounds_of(http)})")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench e2ee_throughput")
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--messages", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--pg", default=os.environ.get("PG_DSN", DEFAULT_PG))
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args(argv)
    header("e2ee_throughput: 1:1 messages between 2-device accounts, sent, delivered, acked")
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-tput-")))

        def serve(db: str) -> LiveServer:
            server = start_live_server("e2ee_core.server.app:create_app", {"db": db, **CONFIG},
                                       tmp, workers=args.workers, threads=8, keepalive=30)
            stack.callback(server.stop)
            return server

        if not args.no_sqlite:
            sqlite = serve(str(tmp / "tput.db"))
            _case(f"SQLite, {args.workers} worker(s)", sqlite.url, args.pairs, args.messages,
                  args.rounds)
        if args.no_pg:
            return
        pg = stack.enter_context(temporary_pg_database(args.pg))
        if pg is None:
            print("   PostgreSQL unreachable: skipped")
            return
        _case(f"PostgreSQL, {args.workers} worker(s)", serve(pg).url, args.pairs,
              args.messages, args.rounds)
