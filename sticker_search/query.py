"""Query understanding (sans-I/O): a typed query becomes the words the index looks up.

- Words are normalised and split as the catalog's keywords are (:mod:`sticker_search.text`).
- Stopwords of the catalog's languages ("the", "с", "de"...) are dropped while other words
  remain: a Russian query is not drowned by its preposition. The last word stays when it is the
  only one (it may be the start of a longer word).
- Text in scripts written without spaces (Japanese, Chinese) that is not itself a keyword is
  segmented by longest match against the index's vocabulary ("猫かわいい" -> "猫", "かわいい"),
  dropping particles; the index then matches the pieces like words typed apart.
- Slang and abbreviations ("lol", "thx", "ㅋㅋ", "mdr") need no rule here: the lexicon
  (:mod:`sticker_search.lexicon`) makes them keywords of the stickers they mean.
"""

from __future__ import annotations

from collections.abc import Callable

from sticker_search.consts import (
    MAX_QUERY_CHARS,
    MAX_QUERY_TERMS,
    MAX_SEGMENT_CHARS,
    SEGMENT_PARTICLES,
    STOPWORDS,
)
from sticker_search.errors import QueryError
from sticker_search.text import is_unsegmented, tokenize


def segment(text: str, known: Callable[[str], bool]) -> list[str]:
    """Split unsegmented ``text`` into the longest pieces ``known`` accepts, left to right;
    a character no known piece starts with stands alone. Particles are dropped unless they
    are all there is."""
    pieces: list[str] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + MAX_SEGMENT_CHARS)
        while end > start + 1 and not known(text[start:end]):
            end -= 1
        piece = text[start:end]
        if len(piece) > 1 and piece[0] in SEGMENT_PARTICLES and known(piece[1:]):
            # A particle glued to the next word (的猫 in 可爱的猫) is split off, then dropped.
            pieces.append(piece[0])
            piece = piece[1:]
        pieces.append(piece)
        start = end
    kept = [p for p in pieces if p not in SEGMENT_PARTICLES]
    return kept or pieces


def query_words(query: str, known: Callable[[str], bool],
                is_term: Callable[[str], bool]) -> list[str]:
    """The normalised words of ``query`` the index should look up, in order, without repeats.

    ``is_term(w)``: ``w`` is an indexed term; ``known(w)``: ``w`` is a term or part of one
    (used to segment unspaced text). Raises :class:`QueryError` for a query too long or of too
    many words as typed (pieces of segmented text past the limit are left out).
    """
    if len(query) > MAX_QUERY_CHARS:
        raise QueryError("query too long")
    tokens = tokenize(query)
    words: list[str] = []
    for word in tokens:
        if len(word) > 1 and not is_term(word) and is_unsegmented(word):
            words.extend(segment(word, known))
        else:
            words.append(word)
    kept = [w for w in words[:-1] if w not in STOPWORDS]
    # The last word may be the start of a longer one ("cat i" -> "cat ice") unless the query
    # ends after it; only a short one can be, and a lone word is always looked up.
    last = words[-1:] if words else []
    typing = bool(query) and (query[-1].isalnum() or is_unsegmented(query[-1]))
    if last and (last[0] not in STOPWORDS or not kept or (typing and len(last[0]) < 3)):
        kept += last
    unique = list(dict.fromkeys(kept))
    if len(unique) > MAX_QUERY_TERMS:
        if len(set(tokens)) > MAX_QUERY_TERMS:
            raise QueryError("too many query words")
        unique = unique[:MAX_QUERY_TERMS]  # pieces of segmented text past the limit
    return unique
