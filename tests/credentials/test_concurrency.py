"""Many processes redeem an overlapping set of tokens: each is accepted exactly once."""

from __future__ import annotations

import multiprocessing as mp
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from credentials.client import IssuerClient
from credentials.errors import TokenRejected
from credentials.issuer_service import create_app
from credentials.issuer_store import IssuerStore
from credentials.origin import TokenVerifier

PROCESSES = 4
TOKENS = 24
ATTEMPTS_PER_TOKEN = 3


def _redeem_worker(issuer_url: str, spent_db: str, values: list[str], start: Any,
                   out: Any) -> None:
    verifier = TokenVerifier(issuer_url=issuer_url, origin_info=["race.test"],
                             spent_db=spent_db)
    verifier.challenge_header()  # warm the directory cache before the race
    start.wait()
    accepted = []
    for value in values:
        try:
            verifier.redeem(value)
            accepted.append(value)
        except TokenRejected:
            pass
    out.put(accepted)


def _race(issuer_db: str, spent_db: str, live_server: Any) -> None:
    store = IssuerStore(issuer_db)
    store.ensure_key()
    credential = store.add_account("racer")
    issuer = live_server(create_app, db=issuer_db, issuer_name="issuer.test")
    verifier = TokenVerifier(issuer_url=issuer.url, origin_info=["race.test"], spent_db=spent_db)
    client = IssuerClient(issuer.url, credential, batch_size=TOKENS)
    header = verifier.challenge_header()
    values = [client.authorization_for(header) for _ in range(TOKENS)]
    # Every token goes to ATTEMPTS_PER_TOKEN different processes, in a shuffled order.
    plans: list[list[str]] = [[] for _ in range(PROCESSES)]
    rng = random.Random(7)
    for value in values:
        for p in rng.sample(range(PROCESSES), ATTEMPTS_PER_TOKEN):
            plans[p].append(value)
    for plan in plans:
        rng.shuffle(plan)
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_redeem_worker, args=(issuer.url, spent_db, plan, start, out))
             for plan in plans]
    for proc in procs:
        proc.start()
    start.set()
    results = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    accepted = Counter(v for r in results for v in r)
    assert set(accepted) == set(values), "a token was lost"
    assert all(n == 1 for n in accepted.values()), "a token was accepted twice"
    for value in values:  # and afterwards every one of them is spent
        with pytest.raises(TokenRejected):
            verifier.redeem(value)


@pytest.mark.slow
def test_concurrent_redemption_sqlite(tmp_path: Path, live_server: Any) -> None:
    _race(str(tmp_path / "issuer.db"), str(tmp_path / "spent.db"), live_server)


@pytest.mark.slow
@pytest.mark.postgres
def test_concurrent_redemption_postgres(pg_dsn: str, live_server: Any) -> None:
    # Issuer and spent store share one fresh PostgreSQL database (different tables).
    _race(pg_dsn, pg_dsn, live_server)


@pytest.mark.postgres
def test_postgres_issuer_rate_limit_is_shared(pg_dsn: str, live_server: Any,
                                             tmp_path: Path) -> None:
    store = IssuerStore(pg_dsn)
    store.ensure_key()
    credential = store.add_account("pg-user")
    a = live_server(create_app, db=pg_dsn, issuer_name="issuer.test", rate_limit=6)
    b = live_server(create_app, db=pg_dsn, issuer_name="issuer.test", rate_limit=6)
    verifier = TokenVerifier(issuer_url=a.url, origin_info=["pg.test"],
                             spent_db=str(tmp_path / "spent.db"))
    header = verifier.challenge_header()
    got_a = IssuerClient(a.url, credential, batch_size=4).prefetch(header, 4)
    got_b = IssuerClient(b.url, credential, batch_size=4).prefetch(header, 4)
    assert (got_a, got_b) == (4, 2)  # two instances, one allowance


@pytest.mark.postgres
def test_postgres_spent_store_relaxed_commit_still_accepts_once(pg_dsn: str) -> None:
    from credentials.spent_store import DatabaseSpentStore

    store = DatabaseSpentStore(pg_dsn, durable=False)
    assert store.mark_spent(b"k" * 32, b"n" * 32)
    assert not store.mark_spent(b"k" * 32, b"n" * 32)
    setting = store.db.fetchone("SHOW synchronous_commit")[0]
    assert setting == "off"
    assert DatabaseSpentStore(pg_dsn).db.fetchone("SHOW synchronous_commit")[0] == "on"


def _first_start_makes_one_key(db: str, live_server: Any) -> None:
    server = live_server(create_app, _workers=3, db=db, issuer_name="issuer.test")
    import requests

    from credentials import consts
    from credentials.issuance import IssuerDirectory

    for _ in range(6):  # whichever worker answers, the directory shows one key
        r = requests.get(server.url + consts.DIRECTORY_PATH, timeout=30)
        assert len(IssuerDirectory.from_json(r.content).token_keys) == 1
    assert len(IssuerStore(db).list_keys()) == 1


def test_workers_starting_together_create_one_key_sqlite(tmp_path: Path,
                                                          live_server: Any) -> None:
    _first_start_makes_one_key(str(tmp_path / "fresh.db"), live_server)


@pytest.mark.postgres
def test_workers_starting_together_create_one_key_postgres(pg_dsn: str,
                                                            live_server: Any) -> None:
    import psycopg

    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # a store nobody created yet
        for table in ("issuer_keys", "issuer_meta", "issuer_accounts", "issuer_counters",
                      "spent_tokens"):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
    _first_start_makes_one_key(pg_dsn, live_server)
