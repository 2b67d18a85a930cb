"""The documented usage examples run: docs/e2ee-sessions.md and the device doctest."""

from __future__ import annotations

import doctest
import re

import e2ee_core.device
from tests.support import REPO_ROOT


def test_usage_example_in_the_docs_runs() -> None:
    text = (REPO_ROOT / "docs" / "e2ee-sessions.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "the usage section has a python block"
    for block in blocks:
        namespace: dict[str, object] = {}
        exec(compile(block, "docs/e2ee-sessions.md", "exec"), namespace)
        assert "alice" in namespace


def test_device_doctest() -> None:
    result = doctest.testmod(e2ee_core.device)
    assert result.attempted >= 5 and result.failed == 0
