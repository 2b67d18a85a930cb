"""The README's Python examples run as written (the two-device and the multi-device ones)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from e2ee_core.server.app import create_app as create_server_app
from tests.support import REPO_ROOT, LiveServer

README = REPO_ROOT / "README.md"


def _block(marker: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    matching = [b for b in blocks if marker in b]
    assert len(matching) == 1, f"one README example uses {marker}"
    return matching[0]


def test_two_device_example_runs() -> None:
    namespace: dict[str, object] = {}
    exec(compile(_block("Device.create()"), str(README), "exec"), namespace)
    assert "number" in namespace


def test_messenger_example_runs(live_server: Callable[..., LiveServer], tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    server = live_server(create_server_app, _threads=8, db=str(tmp_path / "server.db"),
                         argon2_time_cost=1, argon2_memory_kib=8192, argon2_parallelism=1)
    monkeypatch.setenv("E2EE_SERVER_URL", server.url)
    monkeypatch.chdir(tmp_path)
    exec(compile(_block("Messenger.register"), str(README), "exec"), {"__name__": "readme"})
    assert (tmp_path / "alice-phone.db").stat().st_mode & 0o777 == 0o600
