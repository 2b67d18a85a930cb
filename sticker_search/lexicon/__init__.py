"""The picker lexicon: what people type for greetings, thanks, intents, wishes and slang.

``concepts.json`` (project-authored, see its ``about``) maps each concept to its stickers, most
fitting first, and per language to the words and phrases that mean it ("merci", "ありがとう",
"thx" -> 🙏). The index adds them as keywords of those stickers; loading reads package data
only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from sticker_search.errors import CatalogError

DATA_FILE = "concepts.json"


@dataclass(frozen=True, slots=True)
class Concept:
    """One meaning people type, its stickers (glyphs, best first) and its phrases per
    language."""

    name: str
    glyphs: tuple[str, ...]
    phrases: Mapping[str, tuple[str, ...]]


def parse_lexicon(document: Any) -> tuple[Concept, ...]:
    """The concepts of a decoded ``concepts.json``; raises :class:`CatalogError`."""
    if not isinstance(document, dict) or not isinstance(document.get("concepts"), dict):
        raise CatalogError("lexicon has no concepts")
    concepts = []
    for name, entry in document["concepts"].items():
        if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
            raise CatalogError("lexicon concept is not an object of strings")
        glyphs = tuple(entry.get("stickers", "").split())
        phrases = {lang: tuple(p.strip() for p in text.split("|") if p.strip())
                   for lang, text in entry.items() if lang != "stickers"}
        if not glyphs:
            raise CatalogError("lexicon concept lists no sticker")
        concepts.append(Concept(str(name), glyphs, phrases))
    return tuple(concepts)


def load_lexicon() -> tuple[Concept, ...]:
    """The shipped lexicon."""
    try:
        raw = resources.files(__package__).joinpath(DATA_FILE).read_bytes()
        document = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise CatalogError(f"cannot read the lexicon ({type(exc).__name__})") from None
    return parse_lexicon(document)
