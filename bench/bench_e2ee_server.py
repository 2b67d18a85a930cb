"""Delivery server throughput: envelopes accepted and delivered per second, SQLite and PostgreSQL.

Three comparisons per store, subject and baseline alternating in the same run (bench.harness):

1. store, 1:1 -- ``submit`` one envelope, ``fetch`` it, ``acknowledge`` it (accepted and
   delivered), against the floor any durable queue pays on the same database: one raw
   single-row ``INSERT`` of a blob of the same size plus its ``DELETE``, each committed.
2. store, fanout -- one send to a recipient with 8 devices plus the sender's 3 other devices
   (11 envelopes, device-set check included), each device fetching and acknowledging its copy,
   against 11 raw ``INSERT``+``DELETE`` pairs.
3. HTTP on the service stack -- send + receive + ack of one envelope through ``ServerClient`` (three
   authenticated requests), against three ``GET /v1/health`` round trips on the same server.

    .venv/bin/python -m bench e2ee_server [--pg DSN | --no-pg] [--rounds N] [--size BYTES]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.harness import Case, compare, header, temporary_pg_database
from e2ee_core.server.client import ServerClient
from e2ee_core.server.store import SqlStore
from e2ee_core.server.wire import DeviceKeys, OutgoingEnvelope, PreKey, SignedPreKey
from service_kit.database import Database

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
FAST_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1}
NOW = 1_800_000_000_000
LATER = NOW + 3_600_000


def _keys() -> DeviceKeys:
    return DeviceKeys(1, secrets.token_bytes(33),
                      SignedPreKey(1, secrets.token_bytes(33), secrets.token_bytes(64)),
                      SignedPreKey(1, secrets.token_bytes(1569), secrets.token_bytes(64)),
                      (PreKey(1, secrets.token_bytes(33)),), ())




def _raw_pairs(db: Database, payload: bytes, n: int) -> Callable[[], None]:
    db.create_schema("CREATE TABLE IF NOT EXISTS raw_queue (id {serial}, body {blob} NOT NULL)")

    def run() -> None:
        for _ in range(n):
            with db.transaction() as tx:
                tx.execute("INSERT INTO raw_queue (body) VALUES (?)", (payload,))
            db.execute("DELETE FROM raw_queue WHERE id = (SELECT MIN(id) FROM raw_queue)")

    return run


def store_cases(url: str, label: str, size: int, rounds: int) -> None:
    store = SqlStore(Database(url))
    payload = secrets.token_bytes(size)
    alice, bob = f"a{secrets.token_hex(4)}", f"b{secrets.token_hex(4)}"
    for name, devices in ((alice, 4), (bob, 8)):
        store.create_account(name, "h", _keys(), b"c" * 32, now_ms=NOW)
        for _ in range(devices - 1):
            store.add_device(name, _keys(), b"c" * 32, now_ms=NOW, expires_at_ms=LATER)
        for dev in range(1, devices + 1):
            store.acknowledge(name, dev, [e.id for e in store.fetch(name, dev, NOW, 100)])
    # 1:1 between two single-device accounts: exactly one envelope per send.
    lone, solo = f"l{secrets.token_hex(4)}", f"s{secrets.token_hex(4)}"
    store.create_account(lone, "h", _keys(), b"c" * 32, now_ms=NOW)
    store.create_account(solo, "h", _keys(), b"c" * 32, now_ms=NOW)
    one = [OutgoingEnvelope(solo, 1, payload)]

    def one_to_one() -> None:
        store.submit(lone, 1, solo, one, now_ms=NOW, expires_at_ms=LATER)
        got = store.fetch(solo, 1, NOW, 10)
        store.acknowledge(solo, 1, [e.id for e in got])

    fan = [OutgoingEnvelope(bob, d, payload) for d in range(1, 9)]
    fan += [OutgoingEnvelope(alice, d, payload) for d in range(2, 5)]

    def fanout() -> None:
        store.submit(alice, 1, bob, fan, now_ms=NOW, expires_at_ms=LATER)
        for env in fan:
            got = store.fetch(env.username, env.device_id, NOW, 10)
            store.acknowledge(env.username, env.device_id, [e.id for e in got])

    raw_db = Database(url)
    print(compare(Case(f"{label} store: 1 envelope sent+delivered+acked", one_to_one),
                  Case("raw INSERT+DELETE, same size", _raw_pairs(raw_db, payload, 1)),
                  rounds=rounds).line())
    print(compare(Case(f"{label} store: fanout 11 envelopes (per env.)", fanout, ops=11),
                  Case("raw INSERT+DELETE x11 (per row)", _raw_pairs(raw_db, payload, 11),
                       ops=11), rounds=rounds).line())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_case(url: str, label: str, size: int, rounds: int) -> None:
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.json"
        # The abuse quotas would throttle a benchmark that is one client sending flat out.
        config.write_text(json.dumps({**FAST_ARGON2, "sends_per_device_per_minute": 10**9,
                                      "max_queued_bytes_per_device": 2**40}))
        proc = subprocess.Popen(
            [sys.executable, "-m", "e2ee_core.server.cli", "serve", "--port", str(port),
             "--db", url, "--workers", "1", "--threads", "4", "--config", str(config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            anonymous = ServerClient(base)
            for _ in range(200):
                try:
                    anonymous.health()
                    break
                except Exception:
                    time.sleep(0.1)
            alice, bob = ServerClient(base), ServerClient(base)
            alice.register(f"a{secrets.token_hex(4)}", "benchmark-password", _keys())
            bob_name = f"b{secrets.token_hex(4)}"
            bob.register(bob_name, "benchmark-password", _keys())
            envs = [OutgoingEnvelope(bob_name, 1, secrets.token_bytes(size))]

            def round_trip() -> None:
                alice.send(bob_name, envs)
                got = bob.receive().envelopes
                bob.acknowledge(e.id for e in got)

            def health() -> None:
                for _ in range(3):
                    anonymous.health()

            print(compare(Case(f"{label} HTTP: send+receive+ack 1 envelope", round_trip),
                          Case("3 x GET /v1/health, same server", health),
                          rounds=rounds).line())
            group_case(base, label, size, rounds)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)


def group_case(base: str, label: str, size: int, rounds: int, members: int = 100) -> None:
    """A group message to ``members`` one-device accounts: one multi-recipient request vs one
    request per member (the client's way before), same envelopes, alternating rounds."""
    sender = ServerClient(base)
    sender.register(f"g{secrets.token_hex(4)}", "benchmark-password", _keys())
    names = []
    for _ in range(members):
        member = ServerClient(base)
        name = f"m{secrets.token_hex(5)}"
        member.register(name, "benchmark-password", _keys())
        names.append(name)
    payload = secrets.token_bytes(size)
    envelopes = [OutgoingEnvelope(n, 1, payload) for n in names]

    def multi() -> None:
        sender.send_multi(names, envelopes)

    def per_member() -> None:
        for envelope in envelopes:
            sender.send(envelope.username, [envelope])

    result = compare(Case(f"{label} HTTP: group message to {members}, 1 multi request",
                          multi, ops=members),
                     Case(f"{members} requests, one per member", per_member, ops=members),
                     rounds=rounds)
    print(result.line() + "   (ops/s = envelopes/s)")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench e2ee_server")
    parser.add_argument("--pg", default=os.environ.get("PG_DSN", DEFAULT_PG))
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=int, default=512,
                        help="envelope size in bytes (a padded text message)")
    args = parser.parse_args(argv)
    header(f"e2ee_server: envelopes accepted and delivered per second ({args.size}-byte "
           "envelopes; ops/s = envelopes/s)")
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_path = str(Path(tmp) / "bench.db")
        store_cases(sqlite_path, "SQLite", args.size, args.rounds)
        http_case(str(Path(tmp) / "bench-http.db"), "SQLite", args.size, args.rounds)
    if args.no_pg:
        return
    with temporary_pg_database(args.pg) as pg_url:
        if pg_url is None:
            print("PostgreSQL unreachable: skipped (pass --pg DSN)")
            return
        store_cases(pg_url, "PostgreSQL", args.size, args.rounds)
        http_case(pg_url, "PostgreSQL", args.size, args.rounds)
