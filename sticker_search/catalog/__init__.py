"""The shipped sticker catalog: ``stickers.json.gz`` (built by :mod:`.build`) as typed objects.

Loading reads the package data file only; nothing is fetched at run time.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from sticker_search.consts import DEFAULT_LANGUAGE
from sticker_search.errors import CatalogError, UnknownSticker

DATA_FILE = "stickers.json.gz"
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Sticker:
    """One sticker: its picture is ``glyph`` (served as SVG), named and described per language."""

    id: str
    glyph: str
    titles: Mapping[str, str]
    keywords: Mapping[str, tuple[str, ...]]
    aliases: tuple[str, ...]
    unicode_words: tuple[str, ...]
    tags: Mapping[str, tuple[str, ...]]
    emoji_version: float
    skin_tone: bool
    # emojilib's crowd-sourced English keywords (MIT), kept apart so that they can be weighed
    # on their own and serve as the evaluation's baseline.
    emojilib: tuple[str, ...] = ()
    # Prior in [0, 1]: how often people pick this sticker (see catalog/popular.txt).
    popularity: float = 0.0

    def title(self, lang: str | None = None) -> str:
        """The title in ``lang`` when the catalog has one, else in English."""
        if lang and lang in self.titles:
            return self.titles[lang]
        return self.titles.get(DEFAULT_LANGUAGE) or next(iter(self.titles.values()), self.id)


class Catalog:
    """An immutable, ordered collection of stickers with lookup by id."""

    def __init__(self, stickers: list[Sticker], *, languages: tuple[str, ...],
                 source: Mapping[str, str]) -> None:
        self.stickers: tuple[Sticker, ...] = tuple(stickers)
        self.languages = languages
        self.source = dict(source)
        self._by_id = {s.id: s for s in self.stickers}
        if len(self._by_id) != len(self.stickers):
            raise CatalogError("duplicate sticker ids in catalog")

    def __len__(self) -> int:
        return len(self.stickers)

    def __iter__(self) -> Iterator[Sticker]:
        return iter(self.stickers)

    def get(self, sticker_id: str) -> Sticker:
        """The sticker with ``sticker_id``; raises :class:`UnknownSticker`."""
        try:
            return self._by_id[sticker_id]
        except KeyError:
            raise UnknownSticker("no such sticker") from None


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CatalogError("catalog field is not a list of strings")
    return tuple(value)


def _word_lists(value: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise CatalogError("catalog keywords are not an object")
    return {str(k): _strings(v) for k, v in value.items()}


def _sticker(raw: Any) -> Sticker:
    if not isinstance(raw, dict):
        raise CatalogError("catalog entry is not an object")
    try:
        titles = raw["title"]
        if not isinstance(titles, dict):
            raise CatalogError("catalog titles are not an object")
        sticker = Sticker(
            id=str(raw["id"]),
            glyph=str(raw["glyph"]),
            titles={str(k): str(v) for k, v in titles.items()},
            keywords=_word_lists(raw["keywords"]),
            aliases=_strings(raw.get("aliases", [])),
            unicode_words=_strings(raw.get("unicode_words", [])),
            tags=_word_lists(raw.get("tags", {})),
            emoji_version=float(raw.get("emoji_version", 0.0)),
            skin_tone=bool(raw.get("skin_tone", False)),
            emojilib=_strings(raw.get("emojilib", [])),
            popularity=float(raw.get("popularity", 0.0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CatalogError(f"catalog entry malformed ({type(exc).__name__})") from None
    if not sticker.id or not sticker.glyph or not sticker.titles:
        raise CatalogError("catalog entry lacks id, glyph or title")
    if not 0.0 <= sticker.popularity <= 1.0:
        raise CatalogError("catalog popularity out of range")
    return sticker


def parse_catalog(document: Any) -> Catalog:
    """Build a :class:`Catalog` from the decoded JSON document; raises :class:`CatalogError`."""
    if not isinstance(document, dict) or document.get("format") != FORMAT_VERSION:
        raise CatalogError("unsupported catalog format")
    stickers = document.get("stickers")
    if not isinstance(stickers, list):
        raise CatalogError("catalog has no sticker list")
    languages = _strings(document.get("languages", []))
    source = document.get("source", {})
    if not isinstance(source, dict):
        raise CatalogError("catalog source is not an object")
    return Catalog([_sticker(s) for s in stickers], languages=languages,
                   source={str(k): str(v) for k, v in source.items()})


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load the shipped catalog (or the gzipped JSON file at ``path``)."""
    try:
        if path is None:
            raw = resources.files(__package__).joinpath(DATA_FILE).read_bytes()
        else:
            raw = Path(path).read_bytes()
        document = json.loads(gzip.decompress(raw))
    except (OSError, EOFError, ValueError) as exc:
        raise CatalogError(f"cannot read sticker catalog ({type(exc).__name__})") from None
    return parse_catalog(document)
