"""Generate ``stickers.json.gz`` (the shipped sticker catalog) from the ``emoji`` package.

Run from the repository root (the ``emoji`` package is a dev dependency; the runtime never
imports it)::

    .venv/bin/python -m sticker_search.catalog.build

With CLDR annotations (recommended; how the shipped file was built), fetched once at build
time from the npm registry::

    cd /tmp && npm pack cldr-annotations-modern@45.0.0 && tar xzf cldr-annotations-modern-45.0.0.tgz
    .venv/bin/python -m sticker_search.catalog.build --cldr /tmp/package

Sources: every fully-qualified emoji in ``emoji.EMOJI_DATA`` (emoji package, New BSD licence;
its names in 14 languages are CLDR short names, Unicode License v3). Each emoji becomes one
sticker: the glyph is its picture (rendered as SVG by the service), the CLDR name is its title
per language, and its keywords per language are the words of that language's CLDR name, plus
(English) the package's GitHub-style aliases and the Unicode character names of its code points.
With ``--cldr``, the CLDR annotation keywords ("tags", each a word or short phrase: cat -> pet;
crying face -> sad, tear) of each language are added (for skin-tone variants, those of the base
emoji).
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


def load_cldr_annotations(folder: Path) -> dict[str, dict[str, list[str]]]:
    """``{lang: {glyph without VS-16: [keyword, ...]}}`` from an extracted cldr-annotations
    package (``annotations/<lang>/annotations.json``)."""
    tags: dict[str, dict[str, list[str]]] = {}
    for lang in LANGUAGES:
        path = folder / "annotations" / lang / "annotations.json"
        document = json.loads(path.read_text(encoding="utf-8"))
        entries = document["annotations"]["annotations"]
        tags[lang] = {glyph.replace("\ufe0f", ""): list(entry.get("default", []))
                      for glyph, entry in entries.items()}
    return tags


def _tags(glyph: str, lang_tags: dict[str, list[str]]) -> list[str]:
    key = glyph.replace("\ufe0f", "")
    base = "".join(c for c in key if ord(c) not in _SKIN_TONES)
    phrases = lang_tags.get(key) or lang_tags.get(base) or []
    return [" ".join(_words(phrase)) for phrase in phrases if _words(phrase)]


def build(emoji_data: dict[str, dict[str, Any]], emoji_version: str,
          cldr: dict[str, dict[str, list[str]]] | None = None,
          cldr_version: str | None = None) -> dict[str, Any]:
    """Return the catalog document for ``emoji_data`` (languages already loaded), with the
    CLDR annotation keywords ``cldr`` when given."""
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
        stickers.append({
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
            "tags": (f"Unicode CLDR annotations, npm cldr-annotations-modern {cldr_version}"
                     " (Unicode License v3)" if cldr else "none"),
        },
        "languages": list(LANGUAGES),
        "stickers": stickers,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--cldr", type=Path, default=None,
                        help="extracted cldr-annotations-modern (or -full) npm package folder")
    args = parser.parse_args(argv)
    import emoji  # build-time only (dev extra)

    emoji.config.load_language(list(LANGUAGES))
    cldr = cldr_version = None
    if args.cldr is not None:
        cldr = load_cldr_annotations(args.cldr)
        package = json.loads((args.cldr / "package.json").read_text(encoding="utf-8"))
        cldr_version = str(package.get("version", "unknown"))
    document = build(emoji.EMOJI_DATA, emoji.__version__, cldr, cldr_version)
    raw = json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    # mtime=0: the same input always gives byte-identical output (reviewable diffs).
    args.output.write_bytes(gzip.compress(raw.encode(), compresslevel=9, mtime=0))
    print(f"wrote {len(document['stickers'])} stickers in {len(LANGUAGES)} languages "
          f"to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
