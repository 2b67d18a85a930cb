"""Generate ``stickers.json.gz`` (the shipped sticker catalog) from the ``emoji`` package and
pinned keyword data.

Run from the repository root (the ``emoji`` package is a dev dependency; the runtime never
imports it, nor any of the data below)::

    (cd sticker_search/catalog/sources && npm ci --ignore-scripts)
    .venv/bin/python -m sticker_search.catalog.build

Sources (licences in docs/sticker-search.md):

- every fully-qualified emoji in ``emoji.EMOJI_DATA`` (emoji package, New BSD licence): one
  sticker each; its CLDR short names in 14 languages (Unicode License v3) are the titles and
  name keywords, its GitHub-style aliases English keywords;
- Unicode character names of its code points (Python ``unicodedata``);
- the npm packages pinned in ``sources/package-lock.json``, read from ``sources/node_modules``:
  ``cldr-annotations-modern`` and ``cldr-annotations-derived-modern`` (CLDR annotation keywords
  per language, "tags": cat -> pet; the derived ones cover flags, keycaps, skin tones and ZWJ
  sequences; Unicode License v3) and ``emojilib`` (crowd-sourced English keywords, MIT);
- ``popular.txt`` beside this file: the popularity prior (its header says where it comes from).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import unicodedata
from pathlib import Path
from typing import Any

from sticker_search.consts import LANGUAGES
from sticker_search.text import split_words

DEFAULT_OUTPUT = Path(__file__).with_name("stickers.json.gz")
DEFAULT_SOURCES = Path(__file__).with_name("sources") / "node_modules"
POPULAR_FILE = Path(__file__).with_name("popular.txt")
FORMAT_VERSION = 1
_FULLY_QUALIFIED = 2
_SKIN_TONES = range(0x1F3FB, 0x1F400)
# Code points whose Unicode names describe the encoding, not the picture.
_NAMELESS = {0x200D, 0xFE0F, 0x20E3, *_SKIN_TONES, *range(0x1F1E6, 0x1F200),
             *range(0xE0020, 0xE0080)}

# Words of Unicode character names that describe typography, not the picture ("HEAVY BLACK
# HEART" is the red heart): never keywords.
_TYPOGRAPHIC = frozenset({"black", "white", "heavy", "sign", "symbol", "emoji", "modifier"})


def sticker_id(glyph: str) -> str:
    """Twemoji-style id: lowercase hex code points joined by ``-``, without VS-16."""
    return "-".join(f"{ord(c):x}" for c in glyph if c != "\ufe0f")


def _title(name: str) -> str:
    text = name.strip(":").replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _words(text: str) -> list[str]:
    seen: dict[str, None] = {}
    for word in split_words(text):
        if len(word) >= 2 or not word.isascii():
            seen.setdefault(word, None)
    return list(seen)


def _unicode_words(glyph: str) -> list[str]:
    names = [unicodedata.name(c, "") for c in glyph if ord(c) not in _NAMELESS]
    return [w for w in _words(" ".join(names)) if w not in _TYPOGRAPHIC]


def load_cldr_annotations(folder: Path, *,
                          derived: Path | None = None) -> dict[str, dict[str, list[str]]]:
    """``{lang: {glyph without VS-16: [keyword, ...]}}`` from an extracted cldr-annotations
    package (``annotations/<lang>/annotations.json``), plus the derived annotations
    (``annotationsDerived/<lang>/annotations.json``) of the package at ``derived`` for the
    sequences the first lacks."""
    tags: dict[str, dict[str, list[str]]] = {}
    for lang in LANGUAGES:
        merged: dict[str, list[str]] = {}
        sources = [(folder / "annotations" / lang / "annotations.json", "annotations")]
        if derived is not None:
            sources.append((derived / "annotationsDerived" / lang / "annotations.json",
                            "annotationsDerived"))
        for path, key in sources:
            document = json.loads(path.read_text(encoding="utf-8"))
            for glyph, entry in document[key]["annotations"].items():
                merged.setdefault(glyph.replace("\ufe0f", ""), list(entry.get("default", [])))
        tags[lang] = merged
    return tags


def load_emojilib(folder: Path) -> dict[str, list[str]]:
    """``{glyph without VS-16: [keyword, ...]}`` from an extracted emojilib package; the
    snake_case name that opens each list becomes words."""
    document = json.loads((folder / "dist" / "emoji-en-US.json").read_text(encoding="utf-8"))
    keywords: dict[str, list[str]] = {}
    for glyph, entries in document.items():
        words = [" ".join(_words(entry.replace("_", " "))) for entry in entries]
        keywords[glyph.replace("\ufe0f", "")] = list(dict.fromkeys(w for w in words if w))
    return keywords


def load_popular(path: Path = POPULAR_FILE) -> list[str]:
    """The glyphs of ``popular.txt`` (without VS-16), most used first."""
    lines = path.read_text(encoding="utf-8").splitlines()
    glyphs = [line.strip().replace("\ufe0f", "") for line in lines
              if line.strip() and not line.startswith("#")]
    return list(dict.fromkeys(glyphs))


def popularity(glyph: str, emoji_version: float, popular: dict[str, int]) -> float:
    """A prior in [0, 1] for how often people pick ``glyph``: from its place in
    ``popular.txt`` (0.5..1), else from its kind and age (0..0.3): Unicode reports that flags,
    keycaps and other specific symbols are used least and that the oldest emoji dominate use."""
    key = glyph.replace("\ufe0f", "")
    if key in popular:
        return round(1.0 - 0.5 * popular[key] / max(1, len(popular)), 4)
    base = "".join(c for c in key if ord(c) not in _SKIN_TONES)
    if base != key and base in popular:  # a skin-tone variant of a popular sticker
        return round(0.45 - 0.2 * popular[base] / max(1, len(popular)), 4)
    codes = [ord(c) for c in key]
    if any(0x1F1E6 <= c <= 0x1F1FF or 0xE0020 <= c <= 0xE007F for c in codes) or 0x20E3 in codes:
        return 0.0  # flags and keycaps
    prior = 0.3 if emoji_version <= 1.0 else 0.2 if emoji_version <= 5.0 else 0.1
    if base != key or 0x200D in codes:
        prior -= 0.05  # skin tones and ZWJ sequences are variants of a more used sticker
    return round(prior, 4)


def _tags(glyph: str, lang_tags: dict[str, list[str]]) -> list[str]:
    key = glyph.replace("\ufe0f", "")
    base = "".join(c for c in key if ord(c) not in _SKIN_TONES)
    phrases = lang_tags.get(key) or lang_tags.get(base) or []
    return [" ".join(_words(phrase)) for phrase in phrases if _words(phrase)]


def build(emoji_data: dict[str, dict[str, Any]], emoji_version: str,
          cldr: dict[str, dict[str, list[str]]] | None = None,
          cldr_version: str | None = None, *,
          emojilib: dict[str, list[str]] | None = None,
          emojilib_version: str | None = None,
          popular: list[str] | None = None) -> dict[str, Any]:
    """Return the catalog document for ``emoji_data`` (languages already loaded), with the
    CLDR annotation keywords ``cldr``, the ``emojilib`` keywords and the ``popular`` prior
    list when given."""
    ranks = {glyph: rank for rank, glyph in enumerate(popular or [])}
    stickers: list[dict[str, Any]] = []
    ids: set[str] = set()
    for glyph, data in emoji_data.items():
        if data.get("status") != _FULLY_QUALIFIED:
            continue
        sid = sticker_id(glyph)
        if sid in ids:
            raise SystemExit(f"duplicate sticker id {sid}")
        ids.add(sid)
        titles = {lang: _title(data[lang]) for lang in LANGUAGES if lang in data}
        keywords = {lang: _words(data[lang]) for lang in LANGUAGES if lang in data}
        aliases: list[str] = []
        for alias in data.get("alias", []):
            for word in _words(alias):
                if word not in keywords["en"] and word not in aliases:
                    aliases.append(word)
        unicode_words = [w for w in _unicode_words(glyph)
                         if w not in keywords["en"] and w not in aliases]
        tags: dict[str, list[str]] = {}
        for lang, lang_tags in (cldr or {}).items():
            phrases = [p for p in dict.fromkeys(_tags(glyph, lang_tags))
                       if p not in keywords.get(lang, [])]
            if phrases:
                tags[lang] = phrases
        key = glyph.replace("\ufe0f", "")
        base = "".join(c for c in key if ord(c) not in _SKIN_TONES)
        library = (emojilib or {}).get(key) or (emojilib or {}).get(base) or []
        stickers.append({
            "emojilib": library,
            "popularity": popularity(glyph, float(data.get("E", 0)), ranks),
            "id": sid,
            "glyph": glyph,
            "emoji_version": float(data.get("E", 0)),
            "skin_tone": any(ord(c) in _SKIN_TONES for c in glyph),
            "title": titles,
            "keywords": keywords,
            "aliases": aliases,
            "unicode_words": unicode_words,
            "tags": tags,
        })
    stickers.sort(key=lambda s: s["id"])
    return {
        "format": FORMAT_VERSION,
        "source": {
            "package": f"emoji {emoji_version} (https://github.com/carpedm20/emoji)",
            "package_licence": "BSD-3-Clause (New BSD)",
            "names": "Unicode CLDR short names as distributed by the emoji package",
            "names_licence": "Unicode License v3 (https://www.unicode.org/license.txt)",
            "unicode_names": f"Python unicodedata (Unicode {unicodedata.unidata_version})",
            "tags": (f"Unicode CLDR annotations and derived annotations, npm "
                     f"cldr-annotations-modern and cldr-annotations-derived-modern {cldr_version}"
                     " (Unicode License v3)" if cldr else "none"),
            "emojilib": (f"emojilib {emojilib_version} (https://github.com/muan/emojilib), MIT"
                         if emojilib else "none"),
            "popularity": ("Unicode's published top 10 of 2021, then a project-authored list"
                           " (catalog/popular.txt), then age and kind" if popular else "none"),
        },
        "languages": list(LANGUAGES),
        "stickers": stickers,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--sources", type=Path, default=DEFAULT_SOURCES,
                        help="node_modules folder holding the pinned keyword packages")
    args = parser.parse_args(argv)
    import emoji  # build-time only (dev extra)

    emoji.config.load_language(list(LANGUAGES))
    folder: Path = args.sources
    if not (folder / "emojilib").is_dir():
        raise SystemExit(f"{folder} lacks the keyword packages: run npm ci in "
                         "sticker_search/catalog/sources first")

    def version(name: str) -> str:
        package = json.loads((folder / name / "package.json").read_text(encoding="utf-8"))
        return str(package.get("version", "unknown"))

    cldr = load_cldr_annotations(folder / "cldr-annotations-modern",
                                 derived=folder / "cldr-annotations-derived-modern")
    document = build(emoji.EMOJI_DATA, emoji.__version__, cldr,
                     version("cldr-annotations-modern"),
                     emojilib=load_emojilib(folder / "emojilib"),
                     emojilib_version=version("emojilib"), popular=load_popular())
    raw = json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    # mtime=0: the same input always gives byte-identical output (reviewable diffs).
    args.output.write_bytes(gzip.compress(raw.encode(), compresslevel=9, mtime=0))
    print(f"wrote {len(document['stickers'])} stickers in {len(LANGUAGES)} languages "
          f"to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
