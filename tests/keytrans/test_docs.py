"""The usage example in docs/key-transparency.md runs."""

from __future__ import annotations

import re

from tests.support import REPO_ROOT


def test_usage_example_in_the_docs_runs() -> None:
    text = (REPO_ROOT / "docs" / "key-transparency.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "the docs have a python example"
    for block in blocks:
        namespace: dict[str, object] = {}
        exec(compile(block, "docs/key-transparency.md", "exec"), namespace)
        assert "result" in namespace
