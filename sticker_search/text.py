"""Text normalisation and tokenisation shared by the catalog build and the search index.

Case- and accent-insensitive: text is case-folded and Latin/Greek/Cyrillic combining accents
are removed (``café`` == ``cafe``). Only the "Combining Diacritical Marks" block is stripped, so
Japanese dakuten (``ガ`` vs ``カ``) and Hangul syllables survive normalisation unchanged.
"""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"[^\W_]+")
_COMBINING = re.compile("[\u0300-\u036f]")
# Letters that no Unicode decomposition splits but readers treat as accented forms.
_FOLD = str.maketrans({"œ": "oe", "æ": "ae", "ø": "o", "ł": "l", "đ": "d", "ı": "i", "ð": "d",
                       "þ": "th"})

# Scripts written without spaces between words: their terms are also indexed by suffix, so a
# query word found inside a longer unsegmented name still matches (see index.py).
_UNSEGMENTED_RANGES: tuple[tuple[int, int], ...] = (
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3400, 0x4DBF),  # CJK Unified Ideographs Extension A
    (0x4E00, 0x9FFF),  # CJK Unified Ideographs
    (0xF900, 0xFAFF),  # CJK Compatibility Ideographs
    (0xFF66, 0xFF9F),  # Halfwidth Katakana
)


def normalize(text: str) -> str:
    """Case-fold and strip accents; NFC so that Hangul and kana keep their composed forms."""
    # Compatibility forms first ("𝐀" -> "A"), so that case-folding sees the plain letter and a
    # second pass changes nothing; then fold, decompose what folding produced, drop accents.
    compatible = unicodedata.normalize("NFKD", text)
    decomposed = unicodedata.normalize("NFKD", compatible.casefold().translate(_FOLD))
    return unicodedata.normalize("NFC", _COMBINING.sub("", decomposed))


def tokenize(text: str) -> list[str]:
    """Split text into normalised words (letters and digits; punctuation and ``_`` separate)."""
    return _WORD.findall(normalize(text))


def split_words(text: str) -> list[str]:
    """Split text into lower-case words without removing accents (for stored keywords)."""
    return _WORD.findall(text.lower())


_UNSEGMENTED = re.compile("[" + "".join(f"{chr(low)}-{chr(high)}"
                                         for low, high in _UNSEGMENTED_RANGES) + "]")


def is_unsegmented(term: str) -> bool:
    """True when ``term`` contains a character of a script written without word spaces."""
    return _UNSEGMENTED.search(term) is not None
