"""``e2ee-chat`` shows key-transparency notices: a device the server added to the account
behind the user's back, published by a server of two workers on its epoch timer, is reported
by ``check-keys``; the device the user linked is not."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from e2ee_core.chat_cli import _describe_notice
from e2ee_core.client import Notice
from e2ee_core.server.app import create_app
from e2ee_core.server.service import hash_credential_secret
from e2ee_core.server.store import SqlStore
from service_kit.database import Database
from tests.server.support import FAST_ARGON2, PASSWORD, unique_name
from tests.support import REPO_ROOT, LiveServer
from tests.transparency.test_client_kt import real_device_keys


class Chat:
    """``e2ee-chat`` as a subprocess, one state directory per device."""

    def __init__(self, server: str, root: Path) -> None:
        self.server, self.root = server, root

    def __call__(self, device: str, *args: str) -> str:
        env = dict(os.environ, E2EE_CHAT_SERVER=self.server, E2EE_CHAT_PASSWORD=PASSWORD)
        proc = subprocess.run(
            [sys.executable, "-m", "e2ee_core.chat_cli", "--state", str(self.root / device),
             *args], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout


def test_notice_texts() -> None:
    unknown = _describe_notice(Notice(1, 0, "kt_unknown_device", "alice", 3))
    assert "alice/3" in unknown and "never announced" in unknown
    assert "older epoch" in _describe_notice(Notice(2, 0, "kt_rollback", "alice", 0))
    assert _describe_notice(Notice(3, 0, "device_added", "bob", 2)) == "! device added: bob/2"


def test_check_keys_reports_a_device_added_behind_the_users_back(
        live_server: Callable[..., LiveServer], tmp_path: Path) -> None:
    db = str(tmp_path / "server.db")
    server = live_server(create_app, _workers=2, db=db, kt_epoch_seconds=0.2, **FAST_ARGON2)
    chat = Chat(server.url, tmp_path)
    alice = unique_name("alice")
    chat("a1", "register", alice)
    chat("a2", "link", alice)
    assert "linked" not in chat("a1", "receive")  # the notice of device 2 (a normal one)
    # The server's operator adds a device of its own and drops the notices: only the outbox
    # row is left, which the server's epoch timer publishes.
    store = SqlStore(Database(db))
    rogue = store.add_device(alice, real_device_keys(),
                             hash_credential_secret(secrets.token_urlsafe(32)), now_ms=0,
                             expires_at_ms=2**62)
    store.db.execute("DELETE FROM envelopes WHERE kind = 'device_added' AND source_device = ?",
                     (rogue,))
    published = threading.Event()
    for _ in range(600):  # the timer of one of the two workers publishes it (guard: a minute)
        if store.db.fetchone("SELECT COUNT(*) FROM kt_pending")[0] == 0:
            published.set()
            break
        published.wait(0.1)
    assert published.is_set(), "the epoch timer did not publish the pending change"
    shown = chat("a1", "check-keys")
    assert f"{alice}/{rogue} is published for your account but was never announced" in shown
    assert f"{alice}/2 " not in shown
    assert "1 new notices" in shown
    assert "all devices of this account are known" in chat("a1", "check-keys")
