"""``e2ee-chat`` driven as subprocesses against the server on the service stack: two accounts, a
linked device, fanout and sync, device list with safety numbers, verification, the blocking
error after a device change, acceptance, device removal, and a group."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from service_kit.logging_filter import find_leaks
from tests.messenger.support import unique_name
from tests.support import REPO_ROOT, LiveServer

PASSWORD = "correct horse battery staple"


class Chat:
    def __init__(self, server: str, root: Path) -> None:
        self.server, self.root = server, root

    def __call__(self, device: str, *args: str, ok: bool = True) -> str:
        env = dict(os.environ, E2EE_CHAT_SERVER=self.server, E2EE_CHAT_PASSWORD=PASSWORD)
        proc = subprocess.run(
            [sys.executable, "-m", "e2ee_core.chat_cli", "--state", str(self.root / device),
             *args], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120)
        assert (proc.returncode == 0) == ok, proc.stderr
        return proc.stdout if ok else proc.stderr


def test_chat_session(stack_server: Callable[..., LiveServer], tmp_path: Path) -> None:
    server = stack_server()
    chat = Chat(server.url, tmp_path)
    alice, bob = unique_name("alice"), unique_name("bob")
    assert chat("a1", "register", alice) == f"registered {alice}, device 1\n"
    assert chat("a2", "link", alice) == f"linked {alice}, device 2\n"
    chat("b1", "register", bob)
    assert (tmp_path / "a1" / "messenger.db").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "a1").stat().st_mode & 0o777 == 0o700
    assert "already holds a device" in chat("a1", "register", alice, ok=False)

    chat("a1", "send", bob, "hello from the phone")
    assert chat("b1", "receive") == f"[{alice}] <- {alice}/1: hello from the phone\n"
    # the copy on the sender's other device, with bob's receipts in the same batch (bob's
    # receive showed it, so it is read)
    assert chat("a2", "receive") == \
        f"[{bob}] -> {alice}/1: hello from the phone (read)\n"
    chat("b1", "send", alice, "hi both")
    assert f"[{bob}] <- {bob}/1: hi both" in chat("a1", "receive", "--wait", "1")
    assert f"[{bob}] <- {bob}/1: hi both" in chat("a2", "receive")

    shown = chat("a1", "devices", bob).splitlines()
    assert shown[0].startswith("device 1: ") and "not verified" in shown[1]
    number = shown[2]
    assert chat("b1", "devices", alice).splitlines()[-1] == number
    # verify needs a number (or the explicit --compared); before, a bare verify marked the
    # contact verified with no comparison at all
    assert "--number" in chat("a1", "verify", bob, ok=False)
    assert "not the safety number" in chat("a1", "verify", bob, "--number", "1" * 60, ok=False)
    assert "not verified" in chat("a1", "devices", bob)
    chat("a1", "verify", bob, "--number", number)
    chat("b2", "link", bob)
    err = chat("a1", "send", bob, "blocked", ok=False)
    assert "verified contact changed" in err and "blocked" not in err.split("changed")[1]
    assert "CHANGED" in chat("a1", "devices", bob)
    chat("a1", "accept", bob)
    chat("a1", "send", bob, "after accepting")
    assert chat("b2", "receive") == f"[{alice}] <- {alice}/1: after accepting\n"

    chat("b1", "remove-device", "2")
    assert "this device was removed from its account" in chat("b2", "receive", ok=False)
    assert f"! device removed: {bob}/2" in chat("a2", "receive")

    group = chat("a1", "group", "create", bob).strip()
    assert group.startswith("group:")
    chat("b1", "receive")
    chat("a2", "receive")
    chat("a1", "receive")
    chat("b1", "group", "send", group, "group hello")
    assert f"[{group}] <- {bob}/1: group hello" in chat("a1", "receive")
    assert f"[{group}] <- {bob}/1: group hello" in chat("a2", "receive")
    assert f"{group}: {' '.join(sorted([alice, bob]))}" in chat("a2", "group", "list")
    history = chat("b1", "history", alice)
    assert "hello from the phone" in history and "after accepting" in history
    server.stop()
    texts = ["hello from the phone", "hi both", "blocked", "after accepting", "group hello",
             PASSWORD]
    assert find_leaks(server.logs().splitlines(), texts) == []


def test_received_disappearing_messages_expire_after_being_shown(
        stack_server: Callable[..., LiveServer], tmp_path: Path) -> None:
    """Before: incoming disappearing messages never expired in e2ee-chat (expiry starts on read,
    and nothing marked them read). Now `receive` marks what it shows as read."""
    import time

    server = stack_server()
    chat = Chat(server.url, tmp_path)
    alice, bob = unique_name(), unique_name()
    chat("a", "register", alice)
    chat("b", "register", bob)
    chat("a", "send", bob, "hello")
    chat("b", "receive")
    chat("a", "receive")
    chat("a", "timer", bob, "1")
    chat("b", "receive")
    chat("a", "send", bob, "this one disappears")
    assert "this one disappears" in chat("b", "receive")
    assert "this one disappears" in chat("b", "history", alice)
    time.sleep(1.5)
    chat("b", "sweep")
    assert "this one disappears" not in chat("b", "history", alice)
    # --unread shows without starting the timer
    chat("a", "send", bob, "kept until read")
    assert "kept until read" in chat("b", "receive", "--unread")
    time.sleep(1.5)
    chat("b", "sweep")
    assert "kept until read" in chat("b", "history", alice)
    # the chat list shows it unread until `read`
    assert chat("b", "chats").splitlines()[0].startswith(f"{alice}  1 unread  last: ")
    assert chat("b", "read", alice) == "marked 1 read\n"
    assert chat("b", "chats").splitlines()[0].startswith(f"{alice}  read  last: ")


def test_open_is_a_live_conversation(stack_server: Callable[..., LiveServer],
                                     tmp_path: Path) -> None:
    """`e2ee-chat open NAME`: incoming messages appear as they are sent (the push channel), are
    marked read, and each typed line is sent; /quit leaves."""
    import queue
    import threading
    import time

    server = stack_server(db=None)
    chat = Chat(server.url, tmp_path)
    alice, bob = unique_name(), unique_name()
    chat("a", "register", alice)
    chat("b", "register", bob)
    chat("a", "send", bob, "waiting for you")
    env = dict(os.environ, E2EE_CHAT_SERVER=server.url, E2EE_CHAT_PASSWORD=PASSWORD)
    proc = subprocess.Popen(
        [sys.executable, "-m", "e2ee_core.chat_cli", "--state", str(tmp_path / "b"), "open",
         alice], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env, cwd=REPO_ROOT)
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None and proc.stdin is not None
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()

    def expect(fragment: str) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if fragment in lines.get(timeout=0.5):
                    return
            except queue.Empty:
                continue
        raise AssertionError(f"{fragment!r} never shown")

    try:
        expect(f"open {alice}")
        expect("waiting for you")  # the queue drained first
        chat("a", "send", bob, "are you there?")
        expect("are you there?")  # pushed live
        proc.stdin.write("yes, live\n")
        proc.stdin.flush()
        expect("-> sent")
        # alice's receive sends a delivery receipt and, having shown it, a read receipt:
        # the open conversation shows the status change (before: no status at all)
        assert f"[{bob}] <- {bob}/1: yes, live" in chat("a", "receive")
        expect("'yes, live' read")
        proc.stdin.write("/quit\n")
        proc.stdin.flush()
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "read" in chat("b", "chats").splitlines()[0]  # shown live, so marked read


def test_status_block_list_and_notice_order(stack_server: Callable[..., LiveServer],
                                            tmp_path: Path) -> None:
    """Before: no delivery or read status, no block list, and a new device's notice printed
    after the message that revealed it."""
    server = stack_server()
    chat = Chat(server.url, tmp_path)
    alice, bob, mallory = unique_name(), unique_name(), unique_name()
    chat("a", "register", alice)
    chat("b1", "register", bob)
    chat("m", "register", mallory)
    chat("a", "send", bob, "first")
    assert "first (sent)" in chat("a", "history", bob)
    chat("b1", "receive", "--unread")
    chat("a", "receive")
    assert "first (delivered)" in chat("a", "history", bob)
    chat("b1", "read", alice)
    chat("a", "receive")
    assert "first (read)" in chat("a", "history", bob)

    chat("b2", "link", bob)
    chat("b2", "send", alice, "from my new phone")
    shown = chat("a", "receive").splitlines()
    notice = shown.index(f"! device added: {bob}/2")
    message = next(i for i, line in enumerate(shown) if "from my new phone" in line)
    assert notice < message, shown

    assert chat("a", "block", mallory) == f"blocked {mallory}\n"
    assert chat("a", "blocked") == f"{mallory}\n"
    chat("m", "send", alice, "spam")
    assert "spam" not in chat("a", "receive")
    assert "unblock" in chat("a", "send", mallory, "hi", ok=False)
    chat("a", "unblock", mallory)
    chat("m", "send", alice, "hello again")
    assert "hello again" in chat("a", "receive")
    assert "spam" not in chat("a", "history")
