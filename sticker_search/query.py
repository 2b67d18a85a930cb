"""Query understanding (sans-I/O): a typed query becomes the words the index looks up.

- Words are normalised and split as the catalog's keywords are (:mod:`sticker_search.text`).
- Stopwords of the catalog's languages ("the", "с", "de"...) are dropped while other words
  remain: a Russian query is not drowned by its preposition. The last word stays when it is the
  only one (it may be the start of a longer word).
- Text in scripts written without spaces (Japanese, Chinese) that is not itself a keyword is
  segmented by longest match against the index's vocabulary ("猫かわいい" -> "猫", "かわいい"),
  dropping particles; the index then matches the pieces like words typed apart.
- Slang and abbreviations ("lol", "thx", "ㅋㅋ", "mdr") need no rule here: the lexicon
  (:mod:`sticker_search.lexicon`) makes them keywords of the stickers they mean. Its one-word
  entries are never stopwords ("no" stays, though it is Portuguese for "in the").
- Emoticons (``<3``, ``:)``, ``:'(``) become the words they stand for; letters stretched for
  emphasis ("nooo", "yesss", "loooove") are shortened to the first form that is a keyword.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection

from sticker_search.consts import (
    MAX_QUERY_CHARS,
    MAX_QUERY_TERMS,
    MAX_SEGMENT_CHARS,
    SEGMENT_PARTICLES,
    STOPWORDS,
)
from sticker_search.errors import QueryError
from sticker_search.text import is_unsegmented, tokenize

# Emoticons people type in a sticker search box, as the words they stand for.
EMOTICONS: dict[str, str] = {
    "<3": "heart", "<33": "heart", "</3": "broken heart", ":)": "smile", ":-)": "smile",
    "(:": "smile", "^^": "smile", "^_^": "smile", ":(": "sad", ":-(": "sad", "):": "sad",
    ":'(": "cry", ";(": "cry", "T_T": "cry", ":D": "laugh", ":-D": "laugh", ";)": "wink",
    ";-)": "wink", ":P": "tongue", ":p": "tongue", ":-P": "tongue", ":O": "wow", ":o": "wow",
    ":*": "kiss", ":-*": "kiss", ":/": "confused", ":-/": "confused", ":|": "neutral",
    "-_-": "expressionless", "o/": "wave", "\\o/": "celebrate",
}
_EMOTICON_CHAR = re.compile(r"[<>:;()^_/|*'\\-]")  # a query without these holds no emoticon
_STRETCHED = re.compile(r"([^\W\d_])\1{2,}")  # a letter three or more times in a row


def unstretch(word: str, is_term: Callable[[str], bool]) -> str:
    """``word`` with letters repeated for emphasis cut to three, two, then one ("kkkkkkkk" ->
    "kkk", "goood" -> "good", "nooo" -> "no"): the first that is an indexed term, else the
    word as typed."""
    if is_term(word) or not _STRETCHED.search(word):
        return word
    for times in (3, 2, 1):
        shorter = _STRETCHED.sub(r"\1" * times, word)
        if is_term(shorter):
            return shorter
    return word


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


def query_words(query: str, known: Callable[[str], bool], is_term: Callable[[str], bool],
                stopwords: Collection[str] = STOPWORDS) -> list[str]:
    """The normalised words of ``query`` the index should look up, in order, without repeats.

    ``is_term(w)``: ``w`` is an indexed term; ``known(w)``: ``w`` is a term or part of one
    (used to segment unspaced text); ``stopwords``: words dropped unless alone. Raises
    :class:`QueryError` for a query too long or of too many words as typed (pieces of
    segmented text past the limit are left out).
    """
    if len(query) > MAX_QUERY_CHARS:
        raise QueryError("query too long")
    typed = tokenize(query)
    if _EMOTICON_CHAR.search(query):
        query = " ".join(EMOTICONS.get(part, part) for part in query.split())
    words: list[str] = []
    for word in tokenize(query):
        if len(word) > 1 and not is_term(word) and is_unsegmented(word):
            words.extend(segment(word, known))
        else:
            words.append(unstretch(word, is_term))
    kept = [w for w in words[:-1] if w not in stopwords]
    # The last word may be the start of a longer one ("cat i" -> "cat ice") unless the query
    # ends after it; only a short one can be, and a lone word is always looked up.
    last = words[-1:] if words else []
    typing = bool(query) and (query[-1].isalnum() or is_unsegmented(query[-1]))
    if last and (last[0] not in stopwords or not kept or (typing and len(last[0]) < 3)):
        kept += last
    unique = list(dict.fromkeys(kept))
    if len(unique) > MAX_QUERY_TERMS:
        if len(set(typed)) > MAX_QUERY_TERMS:
            raise QueryError("too many query words")
        unique = unique[:MAX_QUERY_TERMS]  # pieces of segmented text or emoticons past it
    return unique
