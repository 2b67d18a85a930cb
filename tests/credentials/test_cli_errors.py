"""``token-issuer`` as an operator meets it: one-line errors, distinct exit codes, no
traceback, and mistakes refused before any state is created (issue #14)."""

from __future__ import annotations

import argparse
import base64
import logging
import os
import secrets
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from credentials import cli
from credentials.errors import KeyStoreError
from credentials.issuer_store import IssuerStore

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "credentials.cli", *args], capture_output=True,
                          text=True, cwd=REPO, env={**os.environ, **(env or {})}, timeout=120,
                          check=False)


def _one_line_error(result: subprocess.CompletedProcess[str], status: int) -> None:
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("token-issuer: ")


def test_adding_an_account_twice_is_a_clear_error(tmp_path: Path) -> None:
    db = str(tmp_path / "i.db")
    assert _run("accounts", "add", "alice", "--db", db).returncode == 0
    result = _run("accounts", "add", "alice", "--db", db)
    _one_line_error(result, cli.EXIT_EXISTS)
    assert "exists" in result.stderr


def test_reading_commands_never_create_a_store(tmp_path: Path) -> None:
    typo = tmp_path / "typo.db"
    for args in (("accounts", "list"), ("keys", "list"), ("keys", "retire")):
        _one_line_error(_run(*args, "--db", str(typo)), cli.EXIT_NO_STORE)
    assert not typo.exists()


def test_serve_refuses_a_missing_folder_before_creating_anything(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent" / "dir"
    result = _run("serve", "--db", str(missing / "x.db"), "--issuer-name", "i.test")
    _one_line_error(result, cli.EXIT_NO_STORE)
    assert not missing.parent.exists()


def test_retiring_the_last_key_in_use_is_refused(tmp_path: Path) -> None:
    db = str(tmp_path / "i.db")
    only = _run("keys", "generate", "--db", db).stdout.strip()
    result = _run("keys", "retire", only[:10], "--db", db)
    _one_line_error(result, cli.EXIT_REFUSED)
    assert [k.key_id.hex() for k in IssuerStore(db).list_keys()] == [only]
    assert _run("keys", "retire", only[:10], "--allow-none", "--db", db).returncode == 0


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    result = _run("accounts", "list", "--db", "postgresql://nobody@127.0.0.1:1/none")
    _one_line_error(result, cli.EXIT_DATABASE)
    assert "nobody" not in result.stderr  # never the DSN


def test_bad_arguments_create_nothing(tmp_path: Path) -> None:
    db = tmp_path / "i.db"
    _one_line_error(_run("serve", "--db", str(db), "--issuer-name", "i", "--public-url",
                         "issuer.example"), cli.EXIT_USAGE)
    _one_line_error(_run("serve", "--db", str(db), "--issuer-name", "i", "--kek-env",
                         "NO_SUCH_VARIABLE_SET"), cli.EXIT_KEYS)
    assert not db.exists()


def test_every_option_has_help() -> None:
    def walk(parser: argparse.ArgumentParser) -> list[str]:
        missing = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    missing += [f"{name} {m}" for m in walk(child)]
            elif not isinstance(action, argparse._HelpAction) and not action.help:
                missing.append(action.dest)
        return missing

    assert walk(cli._parser()) == []


def test_the_store_and_key_folder_are_private_from_creation(tmp_path: Path) -> None:
    db = tmp_path / "i.db"
    key_dir = tmp_path / "keys"
    assert _run("keys", "generate", "--db", str(db), "--key-dir", str(key_dir)).returncode == 0
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700
    for pem in key_dir.iterdir():
        assert stat.S_IMODE(pem.stat().st_mode) == 0o600


def test_private_keys_can_be_wrapped_under_an_environment_key(tmp_path: Path) -> None:
    db = str(tmp_path / "i.db")
    kek = secrets.token_bytes(32)
    env = {"ISSUER_KEK": base64.urlsafe_b64encode(kek).decode().rstrip("=")}
    key_id = _run("keys", "generate", "--db", db, "--kek-env", "ISSUER_KEK",
                  env=env).stdout.strip()
    with sqlite3.connect(db) as conn:
        (stored,) = conn.execute("SELECT private_pem FROM issuer_keys").fetchone()
    assert b"PRIVATE KEY" not in bytes(stored)
    assert IssuerStore(db, key_encryption_key=kek).private_key(bytes.fromhex(key_id))
    with pytest.raises(KeyStoreError, match="wrapped"):
        IssuerStore(db).private_key(bytes.fromhex(key_id))
    with pytest.raises(KeyStoreError, match="does not unwrap"):
        IssuerStore(db, key_encryption_key=bytes(32)).private_key(bytes.fromhex(key_id))


def test_keys_stored_in_clear_can_be_wrapped_later(tmp_path: Path) -> None:
    db = str(tmp_path / "i.db")
    key_id = bytes.fromhex(_run("keys", "generate", "--db", db).stdout.strip())
    kek = secrets.token_bytes(32)
    env = {"ISSUER_KEK": base64.urlsafe_b64encode(kek).decode()}
    result = _run("keys", "wrap", "--db", db, "--kek-env", "ISSUER_KEK", env=env)
    assert result.stdout.strip() == "wrapped 1 key(s)"
    with pytest.raises(KeyStoreError):
        IssuerStore(db).private_key(key_id)
    assert IssuerStore(db, key_encryption_key=kek).private_key(key_id)


def test_the_log_shows_where_the_server_listens(tmp_path: Path, live_server: Any) -> None:
    from credentials.issuer_service import create_app

    db = str(tmp_path / "i.db")
    IssuerStore(db).ensure_key()
    server = live_server(create_app, db=db, issuer_name="issuer.test")
    assert f"running on http://127.0.0.1:{server.port}" in server.logs()
    from service_kit.logging_filter import RedactionFilter

    forged = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1,
                               "Uvicorn running on http://10.1.2.3:80 token=abc", None, None)
    RedactionFilter().filter(forged)
    assert "10.1.2.3" not in forged.getMessage()  # only the exact start-up line is kept
