"""``e2ee-chat`` shows key-transparency notices: a device the server added to the account
behind the user's back, published by a server of two workers on its epoch timer, is reported
by ``check-keys``; the device the user linked is not. A Messenger listening on the push
channel reports such a device after a batch once its check is due (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from e2ee_core.chat_cli import _describe_notice
from e2ee_core.client import Messenger, Notice
from e2ee_core.server.app import create_app
from e2ee_core.server.service import hash_credential_secret
from e2ee_core.server.store import SqlStore
from service_kit.database import Database
from tests.server.support import FAST_ARGON2, PASSWORD, unique_name
from tests.support import REPO_ROOT, LiveServer
from tests.transparency.test_client_kt import Clock, real_device_keys


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


def _add_silently(db: str, username: str) -> int:
    """The server's operator adds a device of its own and drops the notices: only the outbox
    row is left, which the server's epoch timer publishes (waited for here)."""
    store = SqlStore(Database(db))
    rogue: int = store.add_device(username, real_device_keys(),
                                  hash_credential_secret(secrets.token_urlsafe(32)), now_ms=0,
                                  expires_at_ms=2**62)
    store.db.execute("DELETE FROM envelopes WHERE kind = 'device_added' AND source = ?",
                     (username,))
    published = threading.Event()
    for _ in range(600):  # the timer of one of the two workers publishes it (guard: a minute)
        if store.db.fetchone("SELECT COUNT(*) FROM kt_pending WHERE username = ?",
                             (username,))[0] == 0:
            published.set()
            break
        published.wait(0.1)
    assert published.is_set(), "the epoch timer did not publish the pending change"
    return rogue


def test_check_keys_reports_a_device_added_behind_the_users_back(
        live_server: Callable[..., LiveServer], tmp_path: Path, db_url: str) -> None:
    """On the service stack with two workers (SQLite, or PostgreSQL's several workers): the
    e2ee-chat command (on SQLite: its subprocesses are the slow part), then a listening
    Messenger's periodic check."""
    server = live_server(create_app, _workers=2, db=db_url, kt_epoch_seconds=0.2,
                         **FAST_ARGON2)
    if db_url.startswith("postgresql://"):
        _listening_messenger_reports_it(server.url, db_url)
        return
    chat = Chat(server.url, tmp_path)
    alice = unique_name("alice")
    chat("a1", "register", alice)
    chat("a2", "link", alice)
    assert "linked" not in chat("a1", "receive")  # the notice of device 2 (a normal one)
    rogue = _add_silently(db_url, alice)
    shown = chat("a1", "check-keys")
    assert f"{alice}/{rogue} is published for your account but was never announced" in shown
    assert f"{alice}/2 " not in shown
    assert "1 new notices" in shown
    assert "all devices of this account are known" in chat("a1", "check-keys")
    _listening_messenger_reports_it(server.url, db_url)


def _listening_messenger_reports_it(url: str, db_url: str) -> None:
    """A Messenger on the push channel checks after a batch once the check is due."""
    clock = Clock()
    carol = Messenger.register(url, unique_name("carol"), PASSWORD, clock=clock,
                               prekeys=4, kem_prekeys=1)
    dave = Messenger.register(url, unique_name("dave"), PASSWORD, prekeys=4,
                              kem_prekeys=1)
    rogue = _add_silently(db_url, carol.username)
    clock.now += 16 * 60 * 1000
    dave.send_text(carol.username, "hi")  # to carol's devices, the rogue one included
    stop = threading.Event()
    carol.listen(lambda _messages: stop.set(), stop=stop)
    # reported by the check after the batch (her delivery receipt then meets the rogue device
    # through the server's 409 too: a device_added notice after it)
    first = carol.notices()[0]
    assert (first.kind, first.device_id) == ("kt_unknown_device", rogue)
