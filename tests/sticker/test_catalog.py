"""The shipped catalog: size, languages, pictures, and a robust parser."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sticker_search.catalog import Catalog, load_catalog, parse_catalog
from sticker_search.catalog.build import sticker_id
from sticker_search.errors import CatalogError, UnknownSticker
from sticker_search.picture import render_svg


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def test_catalog_has_3000_stickers_with_pictures_titles_and_ids(catalog: Catalog) -> None:
    assert len(catalog) >= 3000
    for sticker in catalog:
        assert sticker.glyph and sticker.titles["en"]
        assert sticker.id == sticker_id(sticker.glyph)


def test_every_sticker_has_keywords_in_at_least_five_languages(catalog: Catalog) -> None:
    assert len(catalog.languages) >= 5
    for sticker in catalog:
        languages = [lang for lang, words in sticker.keywords.items() if words]
        assert len(languages) >= 5, sticker.id


def test_catalog_records_its_sources(catalog: Catalog) -> None:
    assert "emoji" in catalog.source["package"]
    assert "BSD" in catalog.source["package_licence"]
    assert "Unicode" in catalog.source["names_licence"]


def test_lookup_by_id(catalog: Catalog) -> None:
    cat = catalog.get("1f408")
    assert cat.glyph == "\U0001f408"
    assert cat.title("fr") == "Chat"
    assert cat.title("xx") == "Cat"
    with pytest.raises(UnknownSticker):
        catalog.get("not-a-sticker")


def test_svg_picture_escapes_and_embeds_the_glyph(catalog: Catalog) -> None:
    svg = render_svg(catalog.get("1f408"), "de").decode()
    assert svg.startswith("<svg xmlns=\"http://www.w3.org/2000/svg\"")
    assert "\U0001f408" in svg and "<title>Katze</title>" in svg
    # A title with markup characters is escaped, not injected.
    sticker = next(s for s in catalog if "&" in s.title("en") or "<" in s.title("en"))
    assert "&amp;" in render_svg(sticker).decode() or "&lt;" in render_svg(sticker).decode()


def test_loading_a_damaged_file_is_a_catalog_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json.gz"
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(CatalogError):
        load_catalog(broken)
    wrong = tmp_path / "wrong.json.gz"
    wrong.write_bytes(gzip.compress(json.dumps({"format": 99}).encode()))
    with pytest.raises(CatalogError):
        load_catalog(wrong)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20,
)
_entry = st.fixed_dictionaries(
    {"id": _json, "glyph": _json, "title": _json, "keywords": _json},
    optional={"aliases": _json, "tags": _json, "emoji_version": _json, "skin_tone": _json},
)


@settings(max_examples=300, deadline=None)
@given(document=st.one_of(
    _json,
    st.fixed_dictionaries({"format": st.just(1), "stickers": st.lists(_entry, max_size=3)},
                          optional={"languages": _json, "source": _json}),
))
def test_parser_gives_a_catalog_or_a_catalog_error(document: Any) -> None:
    try:
        result = parse_catalog(document)
    except CatalogError:
        return
    assert isinstance(result, Catalog)
