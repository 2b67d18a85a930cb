"""The library example of docs/e2ee-messenger.md runs as written, against the real server."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import REPO_ROOT, LiveServer

DOC = REPO_ROOT / "docs" / "e2ee-messenger.md"


def example() -> str:
    text = DOC.read_text()
    section = text[text.index("## Library usage"):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


def test_library_example_runs(stack_server: Callable[..., LiveServer], tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    server = stack_server()
    monkeypatch.setenv("E2EE_SERVER_URL", server.url)
    monkeypatch.chdir(tmp_path)
    exec(compile(example(), str(DOC), "exec"), {"__name__": "doc_example"})
    assert (tmp_path / "alice-phone.db").stat().st_mode & 0o777 == 0o600
    assert os.path.exists(tmp_path / "alice-laptop.db")
