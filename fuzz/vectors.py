"""The official test vectors (``../shared/vectors`` beside the repository), for seeding."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

VECTORS_DIR = Path(os.environ.get(
    "FUZZ_VECTORS_DIR", Path(__file__).resolve().parent.parent.parent / "shared" / "vectors"))


def vectors(name: str) -> list[dict[str, Any]]:
    """The ``vectors`` list of ``<name>.json``; empty when the folder is absent."""
    path = VECTORS_DIR / f"{name}.json"
    if not path.exists():
        return []
    items: list[dict[str, Any]] = json.loads(path.read_text())["vectors"]
    return items
