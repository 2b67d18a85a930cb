"""kt_server: what key transparency costs the delivery server and the client (#16 items 2, 3).

    .venv/bin/python -m bench kt_server [--quick] [--no-postgres]

The real app in this process (WSGI, no sockets), on SQLite and PostgreSQL, calls interleaved
one by one with their baseline on the same app:

1. A bundle fetch of an account of 2 devices: with the lookup proof, verified by the client
   (``Transparency.check_bundles``), against the same fetch with key transparency switched off
   on the server (no proof made, none checked).
2. Publishing one device add: ``POST /v1/devices`` that returns once the new device list is in
   a published epoch, against the same request with key transparency off (argon2 at its test
   cost, so the difference is the publishing).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from bench.harness import Latency, header, latency_line, temporary_pg_database
from e2ee_core.client.store import ClientStore
from e2ee_core.client.transparency import Transparency
from e2ee_core.server.app import create_app, service_of
from e2ee_core.server.client import ServerClient
from e2ee_core.server.service import DeliveryService
from tests.server.support import FAST_ARGON2, PASSWORD, device_keys, in_process_session, unique_name

URL = "http://e2ee.test"
CONFIG = {**FAST_ARGON2, "bundle_fetches_per_requester": 10**9,
          "one_time_prekey_fetches_per_target": 10**9, "password_attempts_per_address": 10**9}


@contextmanager
def _no_transparency(service: DeliveryService) -> Iterator[None]:
    kt, service.transparency = service.transparency, None
    try:
        yield
    finally:
        service.transparency = kt


def _interleaved(subject: Callable[[], object], baseline: Callable[[], object], samples: int,
                 names: tuple[str, str]) -> tuple[Latency, Latency]:
    for _ in range(5):
        subject()
        baseline()
    s: list[float] = []
    b: list[float] = []
    for i in range(samples):
        order = ((subject, s), (baseline, b)) if i % 2 else ((baseline, b), (subject, s))
        for fn, out in order:
            t0 = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t0) * 1000)
    return Latency(names[0], s), Latency(names[1], b)


def run(db: str, label: str, samples: int) -> None:
    app = create_app({"db": db, **CONFIG})
    service = service_of(app)
    session = in_process_session(app)
    alice = ServerClient(URL, session=session)
    alice.register(unique_name(), PASSWORD, device_keys(1, 1))
    bob_name = unique_name()
    ServerClient(URL, session=session).register(bob_name, PASSWORD, device_keys(50, 50))
    ServerClient(URL, session=session).add_device(bob_name, PASSWORD, device_keys(50, 50))
    store = ClientStore(":memory:")
    kt = Transparency(store, alice, clock=lambda: int(time.time() * 1000),
                      username=alice.address.username, device_id=1, identity_key=b"\x05" * 33)

    def with_proof() -> None:
        bundles, lookup = alice.fetch_bundles_proved(bob_name)
        kt.check_bundles(bob_name, bundles, lookup)

    def without_proof() -> None:
        with _no_transparency(service):
            bundles, lookup = alice.fetch_bundles_proved(bob_name)
        assert lookup is None and len(bundles) == 2

    s, b = _interleaved(with_proof, without_proof, samples,
                        (f"bundle fetch + proof verified ({label})", "no key transparency"))
    print(latency_line(s, b))
    _, lookup = alice.fetch_bundles_proved(bob_name)
    assert lookup is not None
    print(f"   lookup proof: {len(lookup.proof)} bytes (2 devices), epoch {lookup.epoch}")

    # One device add each: accounts are replaced before they reach the device cap.
    accounts: dict[bool, list[str]] = {True: [], False: []}

    def add(published: bool) -> None:
        names = accounts[published]
        if not names or len(service.store.list_devices(names[-1])) >= 15:
            names.append(unique_name())
            ServerClient(URL, session=session).register(names[-1], PASSWORD,
                                                        device_keys(0, 0))
        client = ServerClient(URL, session=session)
        if published:
            client.add_device(names[-1], PASSWORD, device_keys(0, 0))
        else:
            with _no_transparency(service):
                client.add_device(names[-1], PASSWORD, device_keys(0, 0))

    s, b = _interleaved(lambda: add(True), lambda: add(False), max(samples // 2, 20),
                        (f"device add, published ({label})", "no key transparency"))
    print(latency_line(s, b))
    print(f"   publishing one device add: +{s.p50 - b.p50:.2f} ms at the median; directory "
          f"now at epoch {service_of(app).transparency.head().epoch}")  # type: ignore[union-attr]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench kt_server")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    header("key transparency in the delivery server: bundle fetch and device add latency")
    print(f"   load average: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    samples = 60 if args.quick else 300
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        run(os.path.join(tmp, "bench.db"), "SQLite", samples)
    if args.no_postgres:
        return
    dsn = os.environ.get("PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    with temporary_pg_database(dsn) as pg:
        if pg is None:
            print("   PostgreSQL unreachable: skipped")
            return
        run(pg, "PostgreSQL", samples)
