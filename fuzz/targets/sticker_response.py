"""The sticker service's search answer as the client reads it (after the gateway and OHTTP):
``sticker_search.client.parse_search_response``."""

from __future__ import annotations

import json
from collections.abc import Iterator

from sticker_search.client import parse_search_response
from sticker_search.errors import StickerSearchError

ACCEPTED: tuple[type[Exception], ...] = (StickerSearchError,)
MAX_LEN = 4096


def test_one_input(data: bytes) -> None:
    try:
        parse_search_response(data)
    except ACCEPTED:
        pass


def seeds() -> Iterator[bytes]:
    yield json.dumps({"total": 2, "offset": 0, "results": [
        {"id": "cat-01", "glyph": "🐱", "title": "cat", "score": 1.5},
        {"id": "cat-02", "glyph": "😺", "title": "grinning cat", "score": 0.25}]}).encode()
    yield b'{"total":0,"results":[]}'
