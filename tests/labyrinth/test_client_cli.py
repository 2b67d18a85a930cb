"""``e2ee-chat history --enable|--older`` and ``recovery-code create|restore`` as subprocesses
against the delivery server on its service stack."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from e2ee_core.server.app import create_app
from tests.server.support import FAST_ARGON2
from tests.support import REPO_ROOT, LiveServer

PASSWORD = "correct horse battery staple"


def test_history_and_recovery_codes(live_server: Callable[..., LiveServer],
                                    tmp_path: Path) -> None:
    server = live_server(create_app, db=str(tmp_path / "server.db"), **FAST_ARGON2)

    def chat(device: str, *args: str, ok: bool = True) -> str:
        env = dict(os.environ, E2EE_CHAT_SERVER=server.url, E2EE_CHAT_PASSWORD=PASSWORD)
        proc = subprocess.run(
            [sys.executable, "-m", "e2ee_core.chat_cli", "--state", str(tmp_path / device),
             *args], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120)
        assert (proc.returncode == 0) == ok, proc.stderr
        return proc.stdout if ok else proc.stderr

    chat("a1", "register", "alice")
    chat("b1", "register", "bob")
    out = chat("a1", "recovery-code", "create")
    code = re.search(r"([0-9A-Z]{4}-){9}[0-9A-Z]{4}", out)
    assert code is not None
    chat("a1", "send", "bob", "first, saved in the mailbox")
    chat("b1", "send", "alice", "a reply")
    chat("a1", "receive")
    chat("a2", "link", "alice")
    typo = code.group(0).replace("-", "")
    typo = typo[:5] + ("A" if typo[5] != "A" else "C") + typo[6:]
    assert "not a recovery code of this account" in chat(
        "a2", "recovery-code", "restore", "20" + "2" * 38, ok=False)
    assert "2 messages" in chat("a2", "recovery-code", "restore", typo)
    shown = chat("a2", "history", "bob")
    assert "first, saved in the mailbox" in shown and "a reply" in shown
    # A third device, linked and admitted, loads older messages page by page.
    chat("a3", "link", "alice")
    assert "history is not on" in chat("a3", "history", "bob", "--older", ok=False)
    assert "waiting for another device" in chat("a3", "history", "--enable")
    chat("a1", "receive")  # admits it
    assert "1 older messages loaded" in chat("a3", "history", "bob", "--older", "--limit", "1")
    assert "a reply" in chat("a3", "history", "bob")
    assert "1 older messages loaded" in chat("a3", "history", "bob", "--older", "--limit", "5")
    assert "first, saved in the mailbox" in chat("a3", "history", "bob")
