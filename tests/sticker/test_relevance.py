"""Picker-grade relevance (#17): a floor on the hand-labelled query set, the misses the issue
named, query understanding, the evaluation's own arithmetic and the keyword data sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sticker_search.catalog import load_catalog, parse_catalog
from sticker_search.catalog.build import load_popular, popularity
from sticker_search.errors import CatalogError, QueryError
from sticker_search.evaluation import (
    KINDS,
    EmojilibBaseline,
    LabelledQuery,
    evaluate,
    load_queries,
)
from sticker_search.index import SearchIndex
from sticker_search.lexicon import Concept, load_lexicon, parse_lexicon
from sticker_search.query import query_words, segment, unstretch

EVAL_SET = Path(__file__).parents[2] / "bench" / "data" / "sticker_eval.json"


@pytest.fixture(scope="module")
def index() -> SearchIndex:
    return SearchIndex(load_catalog())


def top(index: SearchIndex, query: str, lang: str | None = None, limit: int = 5) -> list[str]:
    return [h.sticker.glyph.replace("\ufe0f", "") for h in
            index.search(query, lang=lang, limit=limit).hits]


def test_the_labelled_set_is_large_varied_and_resolvable() -> None:
    catalog = load_catalog()
    queries = load_queries(EVAL_SET, catalog)
    assert len(queries) >= 200
    assert len({q.lang for q in queries}) >= 10
    assert {q.kind for q in queries} == set(KINDS)
    assert all(q.accepted for q in queries)


def test_relevance_floor_and_the_baseline_in_every_kind(index: SearchIndex) -> None:
    catalog = index.catalog
    queries = load_queries(EVAL_SET, catalog)

    def rank(text: str, lang: str) -> list[str]:
        return [h.sticker.id for h in index.search(text, lang=lang, limit=10).hits]

    ours = evaluate(rank, queries)
    base = evaluate(EmojilibBaseline(catalog).rank, queries)
    print("index", ours.overall.line(), "| emojilib", base.overall.line())
    assert ours.overall.hits5 >= 0.90
    assert ours.overall.mrr10 >= 0.85
    for kind, scores in ours.by_kind.items():
        assert scores.hits5 >= base.by_kind[kind].hits5, kind
        assert scores.mrr10 >= base.by_kind[kind].mrr10, kind


# The misses #17 measured on main, each with the stickers a person expects in the first row.
GREETINGS_AND_THANKS = [
    ("hello", None, "👋"), ("hi", None, "👋"), ("bye", None, "👋"), ("merci", "fr", "🙏"),
    ("danke", "de", "🙏"), ("obrigado", "pt", "🙏"), ("ありがとう", "ja", "🙏"),
    ("спасибо", "ru", "🙏"), ("谢谢", "zh", "🙏"), ("merci", None, "🙏"),
]
SLANG = [
    ("lol", "😂🤣"), ("omg", "😱😲😮🤯"), ("xmas", "🎄🎅"), ("bday", "🎂🥳"), ("thx", "🙏"),
    ("haha", "😂🤣"), ("jaja", "😂🤣"), ("mdr", "😂🤣"), ("ㅋㅋ", "😂🤣"),
]
INTENTS = [
    ("happy", "😊😀😁😄🙂☺😃"), ("yes", "👍✅👌✔"), ("wow", "😮😲🤯😯"),
    ("congrats", "🎉🥳🎊👏"), ("cheers", "🥂🍻"), ("strong", "💪🦾"),
]


@pytest.mark.parametrize(("query", "lang", "expected"), GREETINGS_AND_THANKS)
def test_greetings_and_thanks_in_many_languages(index: SearchIndex, query: str,
                                                lang: str | None, expected: str) -> None:
    assert top(index, query, lang)[0] == expected


@pytest.mark.parametrize(("query", "expected"), SLANG)
def test_slang_and_abbreviations(index: SearchIndex, query: str, expected: str) -> None:
    assert top(index, query)[0] in expected


@pytest.mark.parametrize(("query", "expected"), INTENTS)
def test_intents_rank_a_fitting_sticker_first(index: SearchIndex, query: str,
                                              expected: str) -> None:
    assert top(index, query)[0] in expected


def test_the_canonical_sticker_ranks_first(index: SearchIndex) -> None:
    assert top(index, "heart")[0] == "❤"  # was rank 11
    assert top(index, "smile")[0] == "🙂"  # was rank 9
    assert "❤" in top(index, "love", limit=3)  # was not found
    assert top(index, "cat")[0] == "🐈"


def test_prefixes_and_short_words(index: SearchIndex) -> None:
    pizz = top(index, "pizz")
    assert pizz[0] == "🍕"
    assert top(index, "usa")[0] == "🇺🇸"
    assert top(index, "no")[0] in "👎❌🙅🚫⛔"


def test_cjk_phrases_without_spaces(index: SearchIndex) -> None:
    assert top(index, "お誕生日おめでとう", "ja")[0] == "🎂"
    assert top(index, "生日快乐", "zh")[0] == "🎂"
    # Not a phrase of any list: segmented into 誕生日 + ケーキ (birthday + cake).
    assert top(index, "誕生日ケーキ", "ja")[0] == "🎂"
    assert index.query_words("誕生日ケーキ") == ["誕生日", "ケーキ"]


def test_a_russian_query_is_not_drowned_by_its_preposition(index: SearchIndex) -> None:
    assert index.query_words("пицца с сыром") == ["пицца", "сыром"]
    assert top(index, "пицца с сыром", "ru")[0] == "🍕"
    assert top(index, "кот в сапогах", "ru")[0] in "🐈🐱😺😸😹😻😼😽🙀😿😾"


def test_phrases_outrank_their_single_words(index: SearchIndex) -> None:
    assert top(index, "good night")[0] in "🌙😴💤🌃🛌🌛"
    assert top(index, "thumbs up")[0] == "👍"
    assert top(index, "happy birthday")[0] == "🎂"


def test_segmentation_takes_longest_known_pieces_and_drops_particles() -> None:
    vocabulary = {"猫", "かわいい", "誕生日", "ケーキ"}

    def known(text: str) -> bool:
        return any(word.startswith(text) for word in vocabulary)

    assert segment("猫がかわいい", known) == ["猫", "かわいい"]
    assert segment("誕生日のケーキ", known) == ["誕生日", "ケーキ"]
    assert segment("の", known) == ["の"]  # a lone particle is all there is: kept


def test_stopwords_drop_unless_alone_or_still_being_typed() -> None:
    def nothing(text: str) -> bool:
        return False

    assert query_words("thank you so much", nothing, nothing) == ["thank"]
    assert query_words("the", nothing, nothing) == ["the"]
    assert query_words("cat in", nothing, nothing) == ["cat", "in"]  # "in..." may go on
    assert query_words("cat in ", nothing, nothing) == ["cat"]
    with pytest.raises(QueryError):
        query_words("x" * 201, nothing, nothing)
    with pytest.raises(QueryError):
        query_words(" ".join(f"w{i}" for i in range(9)), nothing, nothing)


def test_unspaced_text_of_many_pieces_is_cut_not_refused() -> None:
    def nothing(text: str) -> bool:
        return False

    # One word as typed: its pieces past the limit are left out, not a "too many words" error.
    assert query_words("一二三四五六七八九十", nothing, nothing) == list("一二三四五六七八")


def test_typos_weigh_less_for_a_word_that_begins_real_words(index: SearchIndex) -> None:
    # "pizz" begins "pizza"; the one-edit "pilz" (German: mushroom) is the weaker reading.
    expansions = index.expand("pizz")
    assert expansions["pizza"] > expansions["pilz"]
    assert index.expand("elepant")["elephant"] == pytest.approx(0.5)


def test_evaluation_arithmetic_on_a_known_ranking() -> None:
    queries = [LabelledQuery("word", "en", "a", frozenset({"x"})),
               LabelledQuery("word", "en", "b", frozenset({"y"})),
               LabelledQuery("slang", "fr", "c", frozenset({"z"}))]
    rankings = {"a": ["x"], "b": ["q", "q2", "y"], "c": ["n"] * 12}
    report = evaluate(lambda text, lang: rankings[text], queries)
    assert report.overall.hits1 == pytest.approx(1 / 3)
    assert report.overall.hits5 == pytest.approx(2 / 3)
    assert report.overall.mrr10 == pytest.approx((1 + 1 / 3) / 3)
    assert report.by_kind["slang"].hits5 == 0.0
    assert [q.text for q in report.misses] == ["c"]


def test_labels_with_unknown_glyphs_or_kinds_are_refused(tmp_path: Path) -> None:
    catalog = load_catalog()
    path = tmp_path / "set.json"
    path.write_text(json.dumps({"groups": {}, "queries": [["word", "en", "cat", "\u2063"]]}))
    with pytest.raises(ValueError, match="glyph"):
        load_queries(path, catalog)
    path.write_text(json.dumps({"groups": {}, "queries": [["poem", "en", "cat", "🐈"]]}))
    with pytest.raises(ValueError, match="kind"):
        load_queries(path, catalog)


def test_the_baseline_is_a_plain_emojilib_keyword_match() -> None:
    catalog = load_catalog()
    baseline = EmojilibBaseline(catalog)
    glyph = {s.id: s.glyph for s in catalog}
    assert glyph[baseline.rank("pizza")[0]] == "🍕"
    assert glyph[baseline.rank("piz")[0]] == "🍕"  # the last word may be a prefix
    assert baseline.rank("merci") == []  # English lists only


def test_catalog_carries_emojilib_keywords_and_a_popularity_prior() -> None:
    catalog = load_catalog()
    assert "MIT" in catalog.source["emojilib"]
    pizza = next(s for s in catalog if s.glyph == "🍕")
    assert "pizza" in pizza.emojilib
    by_glyph = {s.glyph: s.popularity for s in catalog}
    assert by_glyph["😂"] == 1.0
    assert by_glyph["❤️"] > by_glyph["💛"] > by_glyph["🇺🇸"]
    assert all(0.0 <= s.popularity <= 1.0 for s in catalog)


def test_popularity_prior_rules() -> None:
    ranks = {glyph: n for n, glyph in enumerate(load_popular())}
    assert popularity("😂", 0.6, ranks) == 1.0
    assert popularity("👍🏽", 1.0, ranks) < popularity("👍", 0.6, ranks)
    assert popularity("🇫🇷", 1.0, ranks) == 0.0  # Unicode: flags are used least
    assert popularity("🦩", 12.0, ranks) < popularity("🐈", 0.7, ranks)


def test_lexicon_parses_and_refuses_malformed_documents() -> None:
    concepts = load_lexicon()
    assert len(concepts) >= 30
    thanks = next(c for c in concepts if c.name == "thanks")
    assert thanks.glyphs[0] == "🙏" and "merci" in thanks.phrases["fr"]
    bad_documents: list[object] = [{}, {"concepts": []}, {"concepts": {"x": {"stickers": ""}}},
                                   {"concepts": {"x": {"stickers": "🙏", "en": 3}}}]
    for bad in bad_documents:
        with pytest.raises(CatalogError):
            parse_lexicon(bad)


def test_a_custom_lexicon_replaces_the_shipped_one() -> None:
    catalog = load_catalog()
    custom = SearchIndex(catalog, lexicon=[Concept("t", ("🦒",), {"en": ("zorblat",)})])
    assert [h.sticker.glyph for h in custom.search("zorblat").hits] == ["🦒"]
    assert custom.search("merci").total == 0 or top(custom, "merci")[0] != "🙏"


def test_catalog_refuses_a_popularity_outside_zero_to_one() -> None:
    entry = {"id": "1f408", "glyph": "🐈", "title": {"en": "Cat"}, "keywords": {"en": ["cat"]}}
    assert parse_catalog({"format": 1, "stickers": [entry]}).stickers[0].popularity == 0.0
    for value in (1.5, -0.1, "nan"):
        with pytest.raises(CatalogError):
            parse_catalog({"format": 1, "stickers": [{**entry, "popularity": value}]})


def test_other_forms_of_a_word_find_its_stickers(index: SearchIndex) -> None:
    # An inflected form the catalog lacks: its stem (котом, котик -> кот: cat).
    cats = "🐈🐱😺😸😹😻😼😽🙀😿😾"
    assert top(index, "с котом", "ru")[0] in cats
    assert top(index, "котик", "ru")[0] in cats
    # A one-edit neighbour that differs only in its ending is another form of the word and
    # weighs more than a typo elsewhere in the word.
    assert "elephantz" not in index.expand("elephant")
    assert index.expand("elephantz")["elephant"] == pytest.approx(0.8)
    assert index.expand("elephnat")["elephant"] == pytest.approx(0.5)
    # ... but not for short stems, which are often a word still being typed.
    assert index.expand("elep")["elephant"] > index.expand("elep").get("ele", 0.0)


def test_a_particle_glued_to_the_next_word_is_split_off() -> None:
    vocabulary = {"可爱", "猫", "的猫"}

    def known(text: str) -> bool:
        return any(word.startswith(text) for word in vocabulary)

    assert segment("可爱的猫", known) == ["可爱", "猫"]


def test_kept_match_counts_equal_fresh_ones(index: SearchIndex) -> None:
    for word in ("ma", "ca", "he", "pi", "sm"):
        first = index.search(word).total
        assert index._totals.get(word) in (None, first)
        assert index.search(word).total == first == index._top_all_words([word], 0, 1)[0]


def test_emoticons_and_stretched_letters(index: SearchIndex) -> None:
    assert top(index, "<3")[0] == "❤"
    assert top(index, ":'(")[0] in "😭😢"
    assert top(index, ":D")[0] in "😂🤣😆😄"
    assert index.query_words("nooo") == ["no"]
    assert index.query_words("goood") == ["good"]  # two letters before one
    assert index.query_words("kkkkkkkk") == ["kkk"]  # laughter in Portuguese: three first
    assert unstretch("zzzzzzq", lambda word: False) == "zzzzzzq"  # nothing known: as typed


def test_a_lexicon_word_is_never_a_stopword(index: SearchIndex) -> None:
    # "no" is Portuguese for "in the", but "no way" means no.
    assert index.query_words("no way") == ["no", "way"]
    assert top(index, "no way")[0] in "👎❌🙅🚫⛔"


def test_korean_polite_forms_find_their_stem(index: SearchIndex) -> None:
    assert top(index, "감사해요", "ko")[0] == "🙏"  # 감사 (thanks) + 해요
    assert top(index, "행복해요", "ko")[0] in "😊😀😁😄🙂☺😃"  # 행복 (happiness) + 해요


def test_words_added_by_emoticons_never_make_a_query_too_long() -> None:
    def nothing(text: str) -> bool:
        return False

    query = "a1 b1 c1 d1 e1 f1 g1 </3"  # eight typed words; "</3" reads as two
    assert len(query_words(query, nothing, nothing)) == 8
