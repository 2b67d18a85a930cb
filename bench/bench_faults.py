"""Fault injection under a steady private-search load (issue #14, item 4).

    .venv/bin/python -m bench faults [--pg DSN] [--workers N] [--rate R] [--settle S]
                                     [--no-pg-restart]

The stack: the token issuer (store on PostgreSQL), two sticker-service instances sharing one
PostgreSQL spent-token store, the OHTTP gateway (allowlisting both) and the relay, each a server
process started through its console script on loopback. ``--workers`` client threads (each a
``StickerClient`` with its own issuer account, half of them searching through instance A, half
through B) send ``--rate`` searches per second each. Then, one after the other, each service is
killed with SIGKILL (its whole process group) and started again on the same port; at the end
PostgreSQL itself is restarted (``pg_ctlcluster 15 main restart``: it disturbs every user of the
server for a moment, so it runs once, last, and only here).

Reported per fault: requests lost (searches that did not return results, from the kill until
recovery) and recovery time (from the kill until every client thread has had a search succeed
that started after the kill). Asserted over the whole run:

- 0 tokens accepted twice: every token a search was accepted with is replayed, directly to both
  instances, after each fault and at the end: each must be refused; the shared store holds at
  least one row per accepted search;
- 0 issuances counted twice: the issuer's counters for the bench accounts exceed the tokens the
  clients received by at most the tokens of issuance requests that failed (a crash can charge a
  batch whose answer was lost, never charge one twice);
- 0 responses with status 500 (outer, inner or from the issuer);
- the clients recover without a restart: the same client objects serve the last searches.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.harness import header
from credentials.issuer_store import IssuerStore
from ohttp_relay.errors import OHTTPError, RelayUnavailable, RequestRejected
from sticker_search.client import StickerClient
from sticker_search.errors import StickerSearchError
from sticker_search.stack import command, free_port, prepare_folder, service_env

DEFAULT_PG = os.environ.get("PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
QUERIES = ("cat", "dog", "heart", "smile", "pizza", "star", "tree", "fire")
START_TIMEOUT = 60.0
RECOVERY_TIMEOUT = 60.0


@dataclass
class Outcome:
    """One search: when it started and ended, and ``ok`` or the failure class."""

    worker: int
    start: float
    end: float
    result: str


@dataclass
class Process:
    name: str
    argv: list[str]
    port: int
    probe: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        """Start and wait until it answers; return the seconds that took."""
        started = time.monotonic()
        with self.log.open("ab") as handle:
            self.proc = subprocess.Popen(self.argv, stdout=handle, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=service_env(),
                                         start_new_session=True)
        while time.monotonic() - started < START_TIMEOUT:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited during start-up (see {self.log})")
            try:
                requests.get(self.url + self.probe, timeout=2)
                return time.monotonic() - started
            except requests.RequestException:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start within {START_TIMEOUT:.0f} s")

    def kill(self) -> None:
        """SIGKILL to the whole process group (the server and its workers)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


@dataclass
class Load:
    """Client threads searching at a steady rate; outcomes, accepted tokens, statuses."""

    clients: list[StickerClient]
    targets: list[str]
    rate: float
    outcomes: list[Outcome] = field(default_factory=list)
    accepted: list[tuple[str, str]] = field(default_factory=list)  # (authorization, target)
    issuer_statuses: list[int] = field(default_factory=list)
    tokens_received: int = 0
    issuance_failures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def instrument(self) -> None:
        for client in self.clients:
            session = client.tokens.session
            session.hooks["response"].append(self._issuer_status)
            fetch = client.tokens._fetch

            def counting(challenge: Any, n: int, fetch: Callable[..., Any] = fetch) -> Any:
                try:
                    got = fetch(challenge, n)
                except Exception:
                    with self.lock:
                        self.issuance_failures += 1
                    raise
                with self.lock:
                    self.tokens_received += len(got)
                return got

            setattr(client.tokens, "_fetch", counting)  # noqa: B010 - a bench probe

    def _issuer_status(self, response: requests.Response, *_: Any, **__: Any) -> None:
        with self.lock:
            self.issuer_statuses.append(response.status_code)

    def one(self, worker: int, n: int) -> str:
        client = self.clients[worker]
        target = self.targets[worker]
        url = f"{target}/v1/search?q={QUERIES[n % len(QUERIES)]}&limit=5"
        try:
            authorization = client._with_tokens(client.tokens.authorization_for)
            response = client.oblivious.request("GET", url, {"Authorization": authorization})
        except RequestRejected as exc:
            return f"outer:{exc.status}"
        except RelayUnavailable as exc:
            text = str(exc)
            return "outer:" + text.rsplit(" ", 1)[-1] if "answered" in text else "relay_down"
        except OHTTPError as exc:
            return f"ohttp:{type(exc).__name__}"
        except StickerSearchError as exc:
            return f"client:{type(exc).__name__}"
        if response.status == 200:
            with self.lock:
                self.accepted.append((authorization, target))
            return "ok"
        if response.status == 401:
            client.challenge(refresh=True)  # as StickerClient.search does after a 401
        return f"inner:{response.status}"

    def run_worker(self, worker: int) -> None:
        period = 1.0 / self.rate
        n = 0
        next_at = time.monotonic()
        while not self.stop.is_set():
            start = time.monotonic()
            result = self.one(worker, n)
            with self.lock:
                self.outcomes.append(Outcome(worker, start, time.monotonic(), result))
            n += 1
            next_at = max(next_at + period, time.monotonic() - period)
            self.stop.wait(max(0.0, next_at - time.monotonic()))

    def since(self, t: float) -> list[Outcome]:
        with self.lock:
            return [o for o in self.outcomes if o.start >= t]


def _recovery(load: Load, killed_at: float, workers: int) -> tuple[float, int]:
    """Seconds until every worker had a success that started after ``killed_at``; requests
    lost meanwhile."""
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while time.monotonic() < deadline:
        after = load.since(killed_at)
        recovered = {o.worker for o in after if o.result == "ok"}
        if len(recovered) == workers:
            first_ok = {}
            for o in after:
                if o.result == "ok" and o.worker not in first_ok:
                    first_ok[o.worker] = o.end
            until = max(first_ok.values())
            lost = sum(1 for o in after if o.result != "ok" and o.start < until)
            return until - killed_at, lost
        time.sleep(0.1)
    raise AssertionError(f"the clients did not recover within {RECOVERY_TIMEOUT:.0f} s")


def _replay_accepted(load: Load, instances: list[str]) -> int:
    """Send every accepted token again, directly to each instance; return how many passed."""
    with load.lock:
        accepted = list(load.accepted)
    passed = 0
    session = requests.Session()
    for authorization, _target in accepted:
        for instance in instances:
            r = session.get(instance + "/v1/search?q=cat", timeout=10,
                            headers={"Authorization": authorization})
            passed += r.status_code == 200
    return passed


def _pg_restart() -> float:
    started = time.monotonic()
    subprocess.run(["pg_ctlcluster", "15", "main", "restart"], check=True, timeout=120,
                   capture_output=True)
    return time.monotonic() - started


def _count(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> int:
    import psycopg

    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql, params).fetchone()
    return int(row[0] or 0) if row else 0


def run(dsn: str, *, workers: int, rate: float, settle: float, pg_restart: bool) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    prepare_folder(folder)
    store = IssuerStore(dsn)
    store.ensure_key()
    accounts = [f"faults-{i}" for i in range(workers)]
    credentials = [store.add_account(name) for name in accounts]

    issuer_port, a_port, b_port, gateway_port, relay_port = (free_port() for _ in range(5))
    issuer_url = f"http://127.0.0.1:{issuer_port}"
    one = ["--workers", "1", "--threads", "4"]
    procs = {
        "issuer": Process("issuer", [*command("token-issuer"), "serve", "--port",
                                     str(issuer_port), "--db", dsn, "--issuer-name",
                                     f"127.0.0.1:{issuer_port}", "--rate-limit", "1000000",
                                     *one], issuer_port,
                          "/.well-known/private-token-issuer-directory", folder / "issuer.log"),
        "sticker-a": Process("sticker-a", [*command("sticker-search"), "serve", "--port",
                                           str(a_port), "--issuer", issuer_url, "--spent-db",
                                           dsn, *one], a_port, "/v1/stickers/1f408",
                             folder / "sticker-a.log"),
        "sticker-b": Process("sticker-b", [*command("sticker-search"), "serve", "--port",
                                           str(b_port), "--issuer", issuer_url, "--spent-db",
                                           dsn, *one], b_port, "/v1/stickers/1f408",
                             folder / "sticker-b.log"),
        "gateway": Process("gateway", [*command("ohttp-gateway"), "serve", "--port",
                                       str(gateway_port), "--db",
                                       str(folder / "gateway.sqlite3"), "--target",
                                       f"http://127.0.0.1:{a_port}", "--target",
                                       f"http://127.0.0.1:{b_port}", *one], gateway_port,
                           "/ohttp-keys", folder / "gateway.log"),
        "relay": Process("relay", [*command("ohttp-relay"), "serve", "--port", str(relay_port),
                                   "--gateway", f"http://127.0.0.1:{gateway_port}/gateway",
                                   "--rate-limit", "0", *one], relay_port, "/ohttp-keys",
                         folder / "relay.log"),
    }
    instances = [procs["sticker-a"].url, procs["sticker-b"].url]
    load: Load | None = None
    threads: list[threading.Thread] = []
    try:
        for proc in procs.values():
            proc.start()
        clients = [StickerClient(issuer_url=issuer_url, credential=credentials[i],
                                 relay_url=procs["relay"].url, target_url=instances[i % 2],
                                 batch_size=8, timeout=10.0) for i in range(workers)]
        load = Load(clients, [instances[i % 2] for i in range(workers)], rate)
        load.instrument()
        threads = [threading.Thread(target=load.run_worker, args=(i,), daemon=True)
                   for i in range(workers)]
        for thread in threads:
            thread.start()
        time.sleep(settle)
        warm = load.since(0)
        print(f"   load: {workers} clients x {rate:g} searches/s; warm-up {len(warm)} searches, "
              f"{sum(o.result == 'ok' for o in warm)} ok")
        print(f"   {'fault':<22}{'lost':>6}{'recovery s':>12}{'restart s':>11}  failures seen")
        faults: list[tuple[str, Callable[[], float]]] = []
        for name, proc in procs.items():
            def kill_and_restart(proc: Process = proc) -> float:
                proc.kill()
                return proc.start()
            faults.append((f"kill -9 {name}", kill_and_restart))
        if pg_restart:
            faults.append(("restart PostgreSQL", _pg_restart))
        for label, fault in faults:
            killed_at = time.monotonic()
            restart = fault()
            recovery, lost = _recovery(load, killed_at, workers)
            kinds: dict[str, int] = {}
            for o in load.since(killed_at):
                if o.result != "ok" and o.start < killed_at + recovery:
                    kinds[o.result] = kinds.get(o.result, 0) + 1
            print(f"   {label:<22}{lost:>6}{recovery:>12.2f}{restart:>11.2f}  "
                  + (", ".join(f"{k} x{v}" for k, v in sorted(kinds.items())) or "-"))
            time.sleep(settle)
            replayed = _replay_accepted(load, instances)
            assert replayed == 0, f"{replayed} spent tokens accepted again after {label}"
        time.sleep(settle)
    finally:
        if load is not None:
            load.stop.set()
        for thread in threads:
            thread.join(timeout=30)
        for proc in reversed(list(procs.values())):
            proc.stop()
    assert load is not None
    outcomes = load.outcomes
    ok = sum(o.result == "ok" for o in outcomes)
    tail = [o for o in outcomes if o.start >= outcomes[-1].start - settle / 2]
    statuses_500 = sum(o.result.endswith(":500") for o in outcomes) + \
        sum(s == 500 for s in load.issuer_statuses)
    spent_rows = _count(dsn, "SELECT COUNT(*) FROM spent_tokens")
    charged = _count(dsn, "SELECT SUM(issued) FROM issuer_counters WHERE account = ANY(%s)",
                     (accounts,))
    print(f"   searches {len(outcomes)}, ok {ok}; accepted tokens replayed after every fault: "
          "0 accepted again")
    print(f"   spent records {spent_rows} >= accepted searches {len(load.accepted)}")
    print(f"   issuance: charged {charged}, tokens received {load.tokens_received}, "
          f"failed issuance requests {load.issuance_failures} (x8 tokens at most each)")
    print(f"   responses with status 500: {statuses_500}; last {len(tail)} searches "
          f"{sum(o.result == 'ok' for o in tail)} ok (same client objects, no restart)")
    print(f"   logs: {folder}")
    assert spent_rows >= len(load.accepted), "an accepted token has no spent record"
    assert load.tokens_received <= charged <= load.tokens_received + 8 * load.issuance_failures, \
        "issuance counted twice (or tokens issued uncounted)"
    assert statuses_500 == 0, "a response with status 500"
    assert tail and all(o.result == "ok" for o in tail), "clients did not recover"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench faults", description=__doc__)
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL DSN (a temporary "
                        "database is created beside it)")
    parser.add_argument("--workers", type=int, default=4, help="client threads")
    parser.add_argument("--rate", type=float, default=5.0, help="searches/s per client")
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds of undisturbed load before the first and after each fault")
    parser.add_argument("--no-pg-restart", action="store_true",
                        help="skip the PostgreSQL restart (it disturbs every user of the server)")
    args = parser.parse_args(argv)
    header("faults: kill -9 each service and restart PostgreSQL under a private-search load")
    import psycopg

    name = f"bench_faults_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(args.pg, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error:
        print("   PostgreSQL unreachable: skipped")
        return
    try:
        run(args.pg.rpartition("/")[0] + "/" + name, workers=args.workers, rate=args.rate,
            settle=args.settle, pg_restart=not args.no_pg_restart)
    finally:
        # A new connection: the restart broke every earlier one.
        with psycopg.connect(args.pg, autocommit=True, connect_timeout=30) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
