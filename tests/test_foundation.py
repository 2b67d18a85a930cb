"""The shared plumbing: redaction filter, problem responses, serving, stores, key files."""

from __future__ import annotations

import logging
import os
import stat
import threading
from pathlib import Path

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from service_kit import logging_filter
from service_kit.database import Database
from service_kit.keyfiles import read_secret_file, write_secret_file
from tests.apps import create_echo_app

SECRET = bytes.fromhex("8f3a2c1d9e7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa998877")


def test_filter_redacts_credentials_addresses_queries_and_blobs() -> None:
    log = logging.getLogger("tests.redaction")
    with logging_filter.capture_logs() as cap:
        log.info("auth header Authorization: Bearer %s", "s3cr3t-bearer-credential")
        log.info("token=%s", SECRET.hex())
        log.info("client %s asked /v1/search?q=%s", "203.0.113.7", "catnip")
        log.warning("blob %s", SECRET.hex())
        log.info("PrivateToken token=%s", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8")
        log.info("from ipv6 %s", "2001:db8::1:2:3")
    text = "\n".join(cap.lines)
    for needle in ("s3cr3t-bearer-credential", SECRET.hex(), "203.0.113.7", "catnip",
                   "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", "2001:db8::1:2:3"):
        assert needle not in text
    assert cap.leaks([SECRET, "s3cr3t-bearer-credential"]) == []
    assert "[redacted]" in text


def test_filter_redacts_tracebacks() -> None:
    log = logging.getLogger("tests.redaction")
    with logging_filter.capture_logs() as cap:
        try:
            raise ValueError(f"key={SECRET.hex()}")
        except ValueError:
            log.exception("failed")
    assert cap.leaks([SECRET]) == []
    assert "ValueError" in "\n".join(cap.lines)


def test_leak_finder_sees_every_spelling() -> None:
    import base64

    lines = [f"x {SECRET.hex()}", base64.b64encode(SECRET).decode(),
             base64.urlsafe_b64encode(SECRET).decode().rstrip("=")]
    assert len(logging_filter.find_leaks(lines, [SECRET])) >= 3
    with logging_filter.capture_logs(redacting=False) as cap:
        logging.getLogger("t").info("raw %s", SECRET.hex())
    assert cap.leaks([SECRET]), "an unfiltered capture must reveal the leak (the check can fail)"


@given(st.text())
def test_redact_is_total(text: str) -> None:
    out = logging_filter.redact(text)
    assert isinstance(out, str)


def test_live_server_runs_on_uvicorn_and_answers_problems(live_server) -> None:  # type: ignore[no-untyped-def]
    server = live_server(create_echo_app, greeting="hi")
    got = requests.get(server.url + "/hello?x=1", timeout=5).json()
    assert got["greeting"] == "hi" and got["path"] == "/hello" and got["query"] == "x=1"
    refused = requests.get(server.url + "/fail", timeout=5)
    assert refused.status_code == 422
    assert refused.headers["Content-Type"] == "application/problem+json"
    crashed = requests.get(server.url + "/crash", timeout=5)
    assert crashed.status_code == 500
    assert crashed.headers["Content-Type"] == "application/problem+json"
    assert "secret-crash-detail" not in crashed.text
    assert requests.patch(server.url + "/", timeout=5).status_code == 405
    server.stop()
    logs = server.logs()
    assert "uvicorn.error Started server process" in logs
    assert "Finished server process" in logs  # SIGTERM: a graceful stop
    assert "secret-crash-detail" not in logs and "Traceback" not in logs
    assert "secret-crash-detail" not in logs
    # no access log with client addresses: the only address is the server's own listening one
    assert [line for line in logs.splitlines()
            if "127.0.0.1" in line and "Uvicorn running on" not in line] == []


def _exercise_store(db: Database) -> None:
    db.create_schema(
        "CREATE TABLE IF NOT EXISTS spent (nonce {blob} PRIMARY KEY, n {bigint} NOT NULL);"
        "CREATE TABLE IF NOT EXISTS seq (id {serial}, v TEXT)"
    )
    results: list[int] = []
    lock = threading.Lock()

    def insert() -> None:
        cur = db.execute("INSERT INTO spent (nonce, n) VALUES (?, ?) ON CONFLICT DO NOTHING",
                         (b"\x01" * 32, 1))
        with lock:
            results.append(cur.rowcount)

    threads = [threading.Thread(target=insert) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0] * 7 + [1]
    with pytest.raises(RuntimeError), db.transaction() as tx:
        tx.execute("INSERT INTO seq (v) VALUES (?)", ("rolled back",))
        raise RuntimeError("abort")
    with db.transaction() as tx:
        tx.execute("INSERT INTO seq (v) VALUES (?)", ("kept",))
    assert [r[0] for r in db.fetchall("SELECT v FROM seq")] == ["kept"]
    assert "postgres" not in repr(db) or "@" not in repr(db)


def test_sqlite_store(tmp_path) -> None:  # type: ignore[no-untyped-def]
    _exercise_store(Database(str(tmp_path / "s.sqlite3")))


@pytest.mark.postgres
def test_postgres_store(pg_dsn: str) -> None:
    db = Database(pg_dsn)
    _exercise_store(db)
    db.close()


def test_key_files_are_0600(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "keys" / "k.pem"
    write_secret_file(path, SECRET)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert read_secret_file(path) == SECRET
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError):
        read_secret_file(path)


@pytest.mark.postgres
def test_postgres_schema_creation_races_cleanly(pg_dsn: str) -> None:
    schema = ";".join(
        f"CREATE TABLE IF NOT EXISTS race_{i} (k {{blob}} PRIMARY KEY, v {{bigint}})"
        for i in range(5)
    )
    errors: list[BaseException] = []

    def create() -> None:
        db = Database(pg_dsn)
        try:
            db.create_schema(schema)
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_every_sqlite_store_is_created_0600(tmp_path: Path) -> None:
    """Issuer, gateway, delivery server, spent tokens, client state: every store goes through
    Database, which creates the file 0600 before SQLite writes (and SQLite gives its -wal and
    -shm files the same mode)."""
    import stat

    from e2ee_core.server.app import create_app as create_server

    old = os.umask(0o022)
    try:
        db = Database(str(tmp_path / "a" / "store.db"))
        with db.transaction() as tx:
            tx.execute("CREATE TABLE t (x INTEGER)")
            tx.execute("INSERT INTO t VALUES (1)")
        create_server({"db": str(tmp_path / "server.db")})
    finally:
        os.umask(old)
    made = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.name for p in made} >= {"store.db", "store.db-wal", "server.db"}
    for path in made:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
