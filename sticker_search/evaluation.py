"""Relevance evaluation: a hand-labelled query set, hits@k and MRR@10, and a keyword baseline.

The query set (``bench/data/sticker_eval.json``) holds what people type into a sticker picker,
by kind (word, prefix, typo, phrase, slang, flag) and language, each with the stickers a person
would accept. :func:`evaluate` scores any ranking function on it; :class:`EmojilibBaseline`
is the baseline the issue compares against: a plain keyword match over emojilib's lists.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sticker_search.catalog import Catalog, Sticker
from sticker_search.catalog.build import sticker_id
from sticker_search.text import tokenize

KINDS = ("word", "prefix", "typo", "phrase", "slang", "flag")
# Ranks looked at: a picker shows about 5 stickers in its first row; MRR is cut at 10.
TOP_ROW = 5
MRR_DEPTH = 10

# A ranking function: (query, language) -> sticker ids, best first.
Ranker = Callable[[str, str], Sequence[str]]


@dataclass(frozen=True, slots=True)
class LabelledQuery:
    """One query of the set with the ids of the stickers a person would accept."""

    kind: str
    lang: str
    text: str
    accepted: frozenset[str]


@dataclass(frozen=True, slots=True)
class Scores:
    """Mean hits@1, hits@5 and MRR@10 over ``count`` queries."""

    count: int
    hits1: float
    hits5: float
    mrr10: float

    def line(self) -> str:
        return (f"n={self.count:3d}  hits@1 {self.hits1:.3f}  hits@5 {self.hits5:.3f}  "
                f"MRR@10 {self.mrr10:.3f}")


@dataclass(frozen=True, slots=True)
class Report:
    """Scores overall, per kind and per language, and the queries with no accepted sticker in
    the top row."""

    overall: Scores
    by_kind: dict[str, Scores]
    by_lang: dict[str, Scores]
    misses: tuple[LabelledQuery, ...]


def _split_glyphs(text: str, known: Sequence[str]) -> list[str]:
    """Split a run of glyphs by longest match against the catalog's glyphs (ZWJ sequences and
    flags are several code points)."""
    found = []
    rest = text
    while rest:
        glyph = next((g for g in known if rest.startswith(g)), None)
        if glyph is None:
            raise ValueError(f"label holds a glyph the catalog lacks: {rest[:4]!r}")
        found.append(glyph)
        rest = rest[len(glyph):]
    return found


def load_queries(path: Path, catalog: Catalog) -> list[LabelledQuery]:
    """Read the labelled set; ``@NAME`` in a label stands for the group of that name."""
    document = json.loads(path.read_text(encoding="utf-8"))
    groups: dict[str, str] = document["groups"]
    known = sorted({s.glyph.replace("\ufe0f", "") for s in catalog}, key=len, reverse=True)
    queries = []
    for kind, lang, text, label in document["queries"]:
        if kind not in KINDS:
            raise ValueError(f"unknown query kind {kind!r}")
        accepted: set[str] = set()
        for token in label.split():
            glyphs = groups[token[1:]].split() if token.startswith("@") else [token]
            for glyph in glyphs:
                for part in _split_glyphs(glyph.replace("\ufe0f", ""), known):
                    accepted.add(sticker_id(part))
        queries.append(LabelledQuery(kind, lang, text, frozenset(accepted)))
    return queries


def _scores(ranks: list[int | None]) -> Scores:
    n = len(ranks)
    if not n:
        return Scores(0, 0.0, 0.0, 0.0)
    return Scores(
        n,
        sum(r == 1 for r in ranks) / n,
        sum(r is not None and r <= TOP_ROW for r in ranks) / n,
        sum(1.0 / r for r in ranks if r is not None and r <= MRR_DEPTH) / n,
    )


def evaluate(rank: Ranker, queries: Iterable[LabelledQuery]) -> Report:
    """Score ``rank`` on ``queries``: the rank of the first accepted sticker in each list."""
    per_kind: dict[str, list[int | None]] = defaultdict(list)
    per_lang: dict[str, list[int | None]] = defaultdict(list)
    everything: list[int | None] = []
    misses = []
    for query in queries:
        ids = rank(query.text, query.lang)[:MRR_DEPTH]
        first = next((i for i, sid in enumerate(ids, 1) if sid in query.accepted), None)
        if first is None or first > TOP_ROW:
            misses.append(query)
        everything.append(first)
        per_kind[query.kind].append(first)
        per_lang[query.lang].append(first)
    return Report(_scores(everything),
                  {k: _scores(per_kind[k]) for k in KINDS if k in per_kind},
                  {lang: _scores(r) for lang, r in sorted(per_lang.items())},
                  tuple(misses))


class EmojilibBaseline:
    """A plain keyword search over emojilib's keyword lists (English, as emojilib ships).

    A sticker matches a query word when one of its keywords has that word, or (for the last
    word, still being typed) a word starting with it; stickers rank by the number of query
    words matched (whole words count 1, completions 0.5), then by how early in the sticker's
    list the matching keyword stands (emojilib lists the most telling keywords first).
    """

    def __init__(self, catalog: Catalog) -> None:
        self._entries: list[tuple[Sticker, dict[str, int]]] = []
        for sticker in catalog:
            if sticker.skin_tone or not sticker.emojilib:
                continue  # emojilib lists each emoji once, without skin tones
            positions: dict[str, int] = {}
            for place, keyword in enumerate(sticker.emojilib):
                for word in tokenize(keyword):
                    positions.setdefault(word, place)
            self._entries.append((sticker, positions))

    def rank(self, query: str, lang: str = "en", limit: int = MRR_DEPTH) -> list[str]:
        """The ids of the best ``limit`` stickers for ``query`` (``lang`` is ignored)."""
        words = tokenize(query)
        if not words:
            return []
        last = len(words) - 1
        scored = []
        for order, (sticker, positions) in enumerate(self._entries):
            score = 0.0
            place = 1_000
            for i, word in enumerate(words):
                if word in positions:
                    score += 1.0
                    place = min(place, positions[word])
                elif i == last:
                    prefixed = [p for w, p in positions.items() if w.startswith(word)]
                    if prefixed:
                        score += 0.5
                        place = min(place, *prefixed)
            if score:
                scored.append((-score, place, order, sticker.id))
        scored.sort()
        return [sid for *_rest, sid in scored[:limit]]
