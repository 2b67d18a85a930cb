"""The search core: an inverted index over the catalog, built once at start-up (sans-I/O).

Every keyword of every sticker (CLDR names and annotations, aliases, Unicode names, emojilib
keywords, and the picker lexicon's phrases: :mod:`sticker_search.lexicon`) is normalised
(:func:`sticker_search.text.normalize`) into a *term*; each term has a posting list
``(weight, sticker, language mask)``, the weight scaled by the sticker's popularity prior.
Queries are read by :mod:`sticker_search.query` (stopwords, CJK segmentation); a query word is
expanded into the terms it may mean, each with a match weight:

- the exact term (``cat``), :data:`~sticker_search.consts.WEIGHT_EXACT`;
- completions while typing (``ca`` -> ``cat``, ``car``...), shortest first, bounded;
- for scripts without word spaces (Japanese, Chinese) terms that *contain* the word, through
  an index of suffixes (``猫`` finds ``嬉し泣きする猫``);
- one-edit typo corrections (``hert`` -> ``heart``) found with a symmetric-deletion index, for
  words that are not themselves indexed terms; other forms of the word (``fleurs`` ->
  ``fleur``) weigh more; a word matching nothing is looked up by its stem (``котом`` -> ``кот``).

A sticker's score for a query is the sum, over query words, of its best
``match weight x posting weight`` (times a factor when a language hint is given and the match
is in another language); stickers matching every word rank above partial matches, and two
adjacent words that stand together in a sticker's name or phrase add a bonus. Ties keep a
fixed order: base stickers before skin-tone variants, shorter names, older emoji, id.
"""

from __future__ import annotations

import bisect
import functools
import heapq
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from operator import itemgetter
from typing import NamedTuple

from sticker_search.catalog import Catalog, Sticker
from sticker_search.catalog.build import sticker_id
from sticker_search.consts import (
    DEFAULT_LIMIT,
    FIELD_ALIAS,
    FIELD_EMOJILIB,
    FIELD_LEXICON,
    FIELD_NAME,
    FIELD_TAG,
    FIELD_UNICODE,
    INFLECTION_CHARS,
    LEXICON_RANK_DECAY,
    MAX_LIMIT,
    MAX_OFFSET,
    MAX_PREFIX_EXPANSIONS,
    MAX_STEM_CUT,
    MIN_HANGUL_STEM_CHARS,
    MIN_INFLECTION_STEM,
    MIN_STEM_CHARS,
    MIN_TYPO_TERM_CHARS,
    NAME_LENGTH_PENALTY,
    OTHER_LANGUAGE_FACTOR,
    PARTIAL_MATCH_FACTOR,
    PHRASE_BONUS,
    POPULARITY_WEIGHT,
    SKIN_TONE_FACTOR,
    STOPWORDS,
    SWAPPED_ENDING_FACTOR,
    TOTAL_CACHE_MIN_EXPANSIONS,
    TOTAL_CACHE_SIZE,
    TYPING_TYPO_FACTOR,
    WEIGHT_EXACT,
    WEIGHT_INFIX,
    WEIGHT_INFLECTED,
    WEIGHT_PREFIX,
    WEIGHT_STEM,
    WEIGHT_TYPO,
)
from sticker_search.errors import QueryError
from sticker_search.lexicon import Concept, load_lexicon
from sticker_search.query import query_words as understand
from sticker_search.text import is_unsegmented, normalize, tokenize

# A posting: (weight, sticker number, bit mask of the languages the term occurs in).
Posting = tuple[float, int, int]


class Hit(NamedTuple):
    """One ranked result (a named tuple: a page builds up to 100 of them per query, and a
    tuple is built in half the time of a frozen dataclass)."""

    sticker: Sticker
    score: float


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One page of ranked results; ``total`` counts every sticker that matched."""

    total: int
    hits: tuple[Hit, ...]


_HANGUL = re.compile("[\uac00-\ud7a3]")


@functools.lru_cache(maxsize=1 << 16)
def _tokens(text: str) -> tuple[str, ...]:
    # Catalog keywords repeat across stickers and fields: tokenising each once speeds the build.
    return tuple(tokenize(text))


def _deletes(term: str) -> set[str]:
    return {term[:i] + term[i + 1:] for i in range(len(term))}


def within_one_edit(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` differ by at most one insertion, deletion, substitution or
    transposition of adjacent characters (optimal string alignment distance <= 1)."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la > lb:
        a, b, la, lb = b, a, lb, la
    i = 0
    while i < la and a[i] == b[i]:
        i += 1
    if la == lb:
        if a[i + 1:] == b[i + 1:]:
            return True  # one substitution
        return (i + 1 < la and a[i] == b[i + 1] and a[i + 1] == b[i]
                and a[i + 2:] == b[i + 2:])  # one transposition
    return a[i:] == b[i + 1:]  # one insertion into a


class SearchIndex:
    """An inverted index over a :class:`Catalog`; :meth:`search` is pure and thread-safe."""

    def __init__(self, catalog: Catalog, lexicon: Iterable[Concept] | None = None) -> None:
        """Index ``catalog`` and the picker ``lexicon`` (the shipped one by default)."""
        self.catalog = catalog
        self.languages: tuple[str, ...] = tuple(catalog.languages) or ("en",)
        self._lang_bit = {lang: 1 << i for i, lang in enumerate(self.languages)}
        self._stickers = catalog.stickers
        order = sorted(range(len(self._stickers)),
                       key=lambda n: self._tiebreak(self._stickers[n]))
        rank = {n: r for r, n in enumerate(order)}
        postings: dict[str, dict[int, tuple[float, int]]] = {}
        # Adjacent word pairs of names and phrases ("good night"): a bonus for phrase queries.
        self._pairs: dict[str, dict[int, float]] = {}
        lexicon_priors: list[float] = []
        for number, sticker in enumerate(self._stickers):
            # The tie-break order rides in the weights as a factor too small to reorder real
            # score differences, so ranking needs no second sort key.
            base = (SKIN_TONE_FACTOR if sticker.skin_tone else 1.0) * (1.0 - rank[number] * 1e-8)
            prior = base * (1.0 + POPULARITY_WEIGHT * sticker.popularity)
            # A lexicon concept's own order ranks its stickers, so each counts as most popular.
            lexicon_priors.append(base * (1.0 + POPULARITY_WEIGHT))
            for lang, words in sticker.keywords.items():
                bit = self._lang_bit.get(lang, 0)
                self._add(postings, number, words, FIELD_NAME * prior, bit, pairs=True)
                for phrase in sticker.tags.get(lang, ()):
                    self._add(postings, number, (phrase,), FIELD_TAG * prior, bit, pairs=True)
                if lang == "en":
                    self._add(postings, number, sticker.aliases, FIELD_ALIAS * prior, bit)
                    self._add(postings, number, sticker.unicode_words, FIELD_UNICODE * prior,
                              bit)
                    for keyword in sticker.emojilib:
                        self._add(postings, number, (keyword,), FIELD_EMOJILIB * prior, bit,
                                  pairs=True)
        numbers = {s.id: n for n, s in enumerate(self._stickers)}
        concepts = tuple(load_lexicon() if lexicon is None else lexicon)
        # A one-word lexicon entry is what someone means by that word: never a stopword.
        single = (_tokens(phrase) for concept in concepts
                  for phrases in concept.phrases.values() for phrase in phrases)
        self._stopwords = STOPWORDS - {words[0] for words in single if len(words) == 1}
        for concept in concepts:
            for place, glyph in enumerate(concept.glyphs):
                number = numbers.get(sticker_id(glyph), -1)
                if number < 0:
                    continue  # a sticker this catalog lacks
                weight = (FIELD_LEXICON * lexicon_priors[number]
                          / (1.0 + LEXICON_RANK_DECAY * place))
                for lang, phrases in concept.phrases.items():
                    bit = self._lang_bit.get(lang, 0)
                    for phrase in phrases:
                        self._add(postings, number, (phrase,), weight, bit, pairs=True,
                                  lexicon=True)
        # Posting lists by falling weight: a one-word query reads only their heads.
        self._ranked: dict[str, tuple[Posting, ...]] = {
            term: tuple(sorted(((w, n, m) for n, (w, m) in docs.items()), reverse=True))
            for term, docs in postings.items()
        }
        # The same per language, for language hints: ``{term: {language bit: ((w, n), ...)}}``.
        self._ranked_lang: dict[str, dict[int, tuple[Posting, ...]]] = {}
        for term, ranked in self._ranked.items():
            by_lang: dict[int, list[Posting]] = {}
            for weight, number, mask in ranked:
                rest = mask
                while rest:
                    bit = rest & -rest  # lowest set bit: one language of this posting
                    by_lang.setdefault(bit, []).append((weight, number, mask))
                    rest ^= bit
            self._ranked_lang[term] = {bit: tuple(p) for bit, p in by_lang.items()}
        # Without a language hint only the weights matter: a dict per term merges fastest.
        self._weights: dict[str, dict[int, float]] = {
            term: {n: w for n, (w, _m) in docs.items()} for term, docs in postings.items()
        }
        self._terms: list[str] = sorted(self._ranked)
        # Short prefixes match huge ranges: precompute their bounded, shortest-first completions.
        self._short_prefixes: dict[str, tuple[str, ...]] = {}
        by_length = sorted(self._terms, key=lambda t: (len(t), t))
        for term in by_length:
            for size in (1, 2):
                if len(term) > size:
                    bucket = self._short_prefixes.setdefault(term[:size], ())
                    if len(bucket) < MAX_PREFIX_EXPANSIONS:
                        self._short_prefixes[term[:size]] = (*bucket, term)
        # Suffixes of unsegmented (CJK) terms -> the terms containing them.
        suffix_map: dict[str, set[str]] = {}
        for term in self._terms:
            if is_unsegmented(term):
                for start in range(1, len(term)):
                    suffix_map.setdefault(term[start:], set()).add(term)
        self._suffix_terms = {s: tuple(sorted(t)) for s, t in suffix_map.items()}
        self._suffixes: list[str] = sorted(self._suffix_terms)
        # Symmetric deletion index for one-edit typo tolerance.
        deletes: dict[str, list[str]] = {}
        for term in self._terms:
            if len(term) >= MIN_TYPO_TERM_CHARS - 1 and not is_unsegmented(term):
                deletes.setdefault(term, []).append(term)
                for variant in _deletes(term):
                    deletes.setdefault(variant, []).append(term)
        self._deletes = {k: tuple(v) for k, v in deletes.items()}
        # Match counts of one-word queries with many expansions, filled as they are asked.
        self._totals: dict[str, int] = {}

    @staticmethod
    def _tiebreak(sticker: Sticker) -> tuple[bool, int, float, str]:
        return (sticker.skin_tone, len(sticker.keywords.get("en", ())), sticker.emoji_version,
                sticker.id)

    def _add(self, postings: dict[str, dict[int, tuple[float, int]]], number: int,
             words: Iterable[str], field: float, bit: int, *, pairs: bool = False,
             lexicon: bool = False) -> None:
        """Index the terms of ``words`` (one name or phrase) for sticker ``number``; with
        ``pairs``, also its adjacent term pairs (for the phrase bonus)."""
        tokens = [t for w in words for t in _tokens(w)]
        terms = [t for t in tokens if t not in STOPWORDS]
        if not terms:
            if not (lexicon and len(tokens) == 1):
                return
            terms = tokens  # a lexicon word that is a stopword elsewhere ("no") stays a word
        # A name (or tag phrase) of many words is a weaker match for any one of them.
        weight = field / (1.0 + NAME_LENGTH_PENALTY * (len(set(terms)) - 1))
        for term in terms:
            docs = postings.setdefault(term, {})
            old_weight, old_mask = docs.get(number, (0.0, 0))
            docs[number] = (max(old_weight, weight), old_mask | bit)
        if pairs:
            for first, second in itertools.pairwise(terms):
                pair = self._pairs.setdefault(f"{first} {second}", {})
                if field > pair.get(number, 0.0):
                    pair[number] = field

    @property
    def term_count(self) -> int:
        """Number of distinct indexed terms."""
        return len(self._terms)

    def _prefix_range(self, keys: list[str], prefix: str) -> list[str]:
        # Every key starting with ``prefix`` sorts between it and ``prefix + U+10FFFF``.
        start = bisect.bisect_left(keys, prefix)
        end = bisect.bisect_left(keys, prefix + "\U0010ffff", lo=start)
        return keys[start:end]

    def expand(self, word: str, *, prefix: bool = True) -> dict[str, float]:
        """The indexed terms a normalised query ``word`` may mean, with their match weights.

        ``prefix``: the word may be unfinished (the last word typed), so completions count.
        """
        matches: dict[str, float] = {}
        if word in self._weights:
            matches[word] = WEIGHT_EXACT
        completions: Iterable[str] = ()
        if not prefix:
            # A finished word still matches its inflections (flag -> flags, cat -> cats).
            if len(word) >= 3:
                longest = len(word) + INFLECTION_CHARS
                completions = [t for t in self._prefix_range(self._terms, word)
                               if len(t) <= longest][:MAX_PREFIX_EXPANSIONS]
        elif len(word) <= 2:
            completions = self._short_prefixes.get(word, ())
        else:
            found = self._prefix_range(self._terms, word)
            if len(found) > MAX_PREFIX_EXPANSIONS:
                found = sorted(found, key=len)[:MAX_PREFIX_EXPANSIONS]
            completions = found
        for term in completions:
            if term != word:
                # A completion that needs fewer extra letters is the likelier intent.
                weight = WEIGHT_PREFIX * (0.5 + 0.5 * len(word) / len(term))
                if weight > matches.get(term, 0.0):
                    matches[term] = weight
        if is_unsegmented(word):
            for suffix in self._prefix_range(self._suffixes, word)[:MAX_PREFIX_EXPANSIONS]:
                for term in self._suffix_terms[suffix]:
                    if matches.get(term, 0.0) < WEIGHT_INFIX:
                        matches[term] = WEIGHT_INFIX
        elif len(word) >= MIN_TYPO_TERM_CHARS and word not in self._weights:
            candidates: set[str] = set(self._deletes.get(word, ()))
            for variant in _deletes(word):
                candidates.update(self._deletes.get(variant, ()))
            # A word that begins real words is more likely unfinished than mistyped.
            typo = WEIGHT_TYPO * (TYPING_TYPO_FACTOR if matches else 1.0)
            for term in candidates:
                if term not in matches and within_one_edit(word, term):
                    # Words that differ only in their last letter are more likely two forms of
                    # one word than a typo: one letter more or less (dogs -> dog, fleurs ->
                    # fleur), less surely another last letter (кошки -> кошка).
                    shared = min(len(word), len(term))
                    if len(word) == len(term):
                        shared -= 1
                        weight = WEIGHT_INFLECTED * SWAPPED_ENDING_FACTOR
                    else:
                        weight = WEIGHT_INFLECTED
                    inflected = shared >= MIN_INFLECTION_STEM and word[:shared] == term[:shared]
                    matches[term] = weight if inflected else typo
        if not matches and not is_unsegmented(word):
            # Nothing at all: an inflected form the catalog lacks (котом, котик -> кот). Its
            # stem, a few letters shorter, is looked up as a word with its own inflections.
            # Hangul syllables are dense: two make a stem (감사해요 -> 감사: thanks).
            shortest = MIN_HANGUL_STEM_CHARS if _HANGUL.match(word) else MIN_STEM_CHARS
            for cut in range(1, MAX_STEM_CUT + 1):
                root = word[:-cut]
                if len(root) < shortest:
                    break
                longest = len(root) + INFLECTION_CHARS
                found = [t for t in self._prefix_range(self._terms, root)
                         if len(t) <= longest][:MAX_PREFIX_EXPANSIONS]
                for term in found:
                    matches[term] = WEIGHT_STEM * len(root) / len(term)
                if found:
                    break
        return matches

    def _known(self, text: str) -> bool:
        """True when ``text`` is an indexed term or starts or lies inside one."""
        return bool(self._prefix_range(self._terms, text)
                    or self._prefix_range(self._suffixes, text))

    def query_words(self, query: str) -> list[str]:
        """The normalised words of ``query`` to look up (see :mod:`sticker_search.query`)."""
        return understand(query, self._known, self._weights.__contains__, self._stopwords)

    def search(self, query: str, *, lang: str | None = None, limit: int = DEFAULT_LIMIT,
               offset: int = 0) -> SearchResult:
        """Rank the stickers matching ``query``; return ``limit`` hits from ``offset``.

        ``lang`` is a hint: matches in that language weigh more, others still count.
        Raises :class:`QueryError` for a query that is too long, an unknown language or a bad
        page.
        """
        if not 1 <= limit <= MAX_LIMIT or not 0 <= offset <= MAX_OFFSET:
            raise QueryError("limit or offset out of range")
        hint = 0
        if lang:
            lang = normalize(lang)
            if lang not in self._lang_bit:
                raise QueryError("unknown language")
            hint = self._lang_bit[lang]
        words = self.query_words(query)
        if not words:
            return SearchResult(0, ())
        k = offset + limit
        if len(words) == 1:
            total, top = self._top_one_word(words[0], hint, k)
        else:
            total, top = self._top_all_words(words, hint, k)
        stickers = self._stickers
        make = tuple.__new__  # a named tuple without its __new__ wrapper: a page is 20-100 hits
        return SearchResult(total, tuple([make(Hit, (stickers[n], round(s, 4)))
                                          for n, s in top[offset:]]))

    def _top_all_words(self, words: list[str], hint: int,
                       k: int) -> tuple[int, list[tuple[int, float]]]:
        """``(match count, best k (sticker, score))``: every posting of every word scored."""
        # Only the last word may still be being typed: earlier ones match whole (or one edit).
        last = len(words) - 1
        totals = dict(self._word_scores(words[0], hint, prefix=last == 0))
        matched = dict.fromkeys(totals, 1)
        for position, word in enumerate(words[1:], 1):
            for number, score in self._word_scores(word, hint,
                                                   prefix=position == last).items():
                totals[number] = totals.get(number, 0.0) + score
                matched[number] = matched.get(number, 0) + 1
        n_words = len(words)
        for number, count in matched.items():
            if count < n_words:
                totals[number] *= PARTIAL_MATCH_FACTOR ** (n_words - count)
        for first, second in itertools.pairwise(words):
            for number, weight in self._pairs.get(f"{first} {second}", {}).items():
                if number in totals:
                    totals[number] += PHRASE_BONUS * weight
        return len(totals), heapq.nlargest(k, totals.items(), key=itemgetter(1))

    def _top_one_word(self, word: str, hint: int, k: int) -> tuple[int, list[tuple[int, float]]]:
        """``(match count, best k (sticker, score))`` for a one-word query.

        The score of a sticker is its best score over the word's expansions, so the overall
        top k lies within the union of each expansion's own top k: each posting list is read
        from its heaviest entry and only while it can still beat the k-th best score so far
        (lists whose head cannot are skipped). A property test checks the result equals
        scoring every posting (:meth:`_top_all_words`).
        """
        expansions = self.expand(word)
        candidates: dict[int, float] = {}
        get = candidates.get
        # Min-heap of the first score of up to k distinct stickers: its head never exceeds the
        # true k-th best score, so a posting scoring no more than it cannot reach the top k.
        floor: list[float] = []
        push, replace = heapq.heappush, heapq.heapreplace

        for term, match_weight in sorted(expansions.items(), key=itemgetter(1), reverse=True):
            ranked = self._ranked[term]
            if len(floor) >= k and ranked[0][0] * match_weight <= floor[0]:
                continue  # even this list's heaviest posting cannot reach the top k
            if hint:
                # With a hint the top k lie among the k heaviest postings in the hinted language
                # (full score) and the k heaviest in other languages (x OTHER): two sorted runs.
                other = match_weight * OTHER_LANGUAGE_FACTOR
                runs: tuple[tuple[Iterable[Posting], float], ...] = (
                    (self._ranked_lang[term].get(hint, ())[:k], match_weight),
                    (itertools.islice((p for p in ranked if not p[2] & hint), k), other),
                )
            else:
                runs = ((ranked[:k], match_weight),)
            for run, factor in runs:
                for weight, number, _mask in run:
                    score = weight * factor
                    if len(floor) >= k and score <= floor[0]:
                        break
                    old = get(number)
                    if old is None:
                        candidates[number] = score
                        if len(floor) < k:
                            push(floor, score)
                        elif score > floor[0]:
                            replace(floor, score)
                    elif score > old:
                        candidates[number] = score
        return self._total(word, expansions), heapq.nlargest(k, candidates.items(),
                                                             key=itemgetter(1))

    def _total(self, word: str, expansions: dict[str, float]) -> int:
        """The exact match count of a one-word query: a C-level union of the expansions'
        sticker sets (dict keys). Words of many expansions (short prefixes) are the costly
        ones and recur while people type, so their counts are kept, up to a bound."""
        sets = [self._weights[term] for term in expansions]
        if len(sets) <= 1:
            return len(sets[0]) if sets else 0
        if len(sets) < TOTAL_CACHE_MIN_EXPANSIONS:
            return len(set().union(*sets))
        total = self._totals.get(word)
        if total is None:
            total = len(set().union(*sets))
            if len(self._totals) < TOTAL_CACHE_SIZE:
                self._totals[word] = total  # same value whichever thread stores it
        return total

    def _word_scores(self, word: str, hint: int, *, prefix: bool = True) -> dict[int, float]:
        """Best score per sticker for one query word (never mutate: may be an index dict)."""
        expansions = sorted(self.expand(word, prefix=prefix).items(), key=itemgetter(1),
                            reverse=True)
        best: dict[int, float] = {}
        owned = False  # ``best`` may alias an index dict until the first merge copies it
        for term, match_weight in expansions:
            if not best:
                if hint:
                    other = match_weight * OTHER_LANGUAGE_FACTOR
                    best = {n: w * (match_weight if m & hint else other)
                            for w, n, m in self._ranked[term]}
                    owned = True
                elif match_weight == WEIGHT_EXACT:
                    best = self._weights[term]
                else:
                    best = {n: w * match_weight for n, w in self._weights[term].items()}
                    owned = True
                continue
            if not owned:
                best, owned = dict(best), True
            get = best.get
            if hint:
                other = match_weight * OTHER_LANGUAGE_FACTOR
                for weight, number, mask in self._ranked[term]:
                    score = weight * (match_weight if mask & hint else other)
                    if score > get(number, 0.0):
                        best[number] = score
            else:
                for number, weight in self._weights[term].items():
                    score = weight * match_weight
                    if score > get(number, 0.0):
                        best[number] = score
        return best
