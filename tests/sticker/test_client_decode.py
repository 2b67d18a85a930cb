"""The client's decoder of search answers: any bytes give a page or a ProtocolError."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sticker_search.client import SearchPage, parse_search_response
from sticker_search.errors import ProtocolError

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=15,
)
_result = st.fixed_dictionaries({"id": _json, "glyph": _json, "title": _json, "score": _json})


def test_a_service_answer_decodes() -> None:
    body = json.dumps({"total": 58, "offset": 0, "limit": 1, "results": [
        {"id": "1f408", "glyph": "🐈", "title": "Cat", "score": 1.0, "picture": "/x"}]})
    page = parse_search_response(body.encode())
    assert page.total == 58 and page.results[0].glyph == "🐈" and page.results[0].score == 1.0


@pytest.mark.parametrize("body", [b'{"total": Infinity, "results": []}',
                                  b'{"total": NaN, "results": []}'])
def test_non_finite_counts_are_protocol_errors(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_search_response(body)


@settings(max_examples=400, deadline=None)
@given(body=st.one_of(
    st.binary(max_size=64),
    _json.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"total": _json, "results": st.lists(_result, max_size=3)},
                          optional={"offset": _json}).map(lambda v: json.dumps(v).encode()),
))
def test_any_bytes_give_a_page_or_a_protocol_error(body: bytes) -> None:
    try:
        page = parse_search_response(body)
    except ProtocolError:
        return
    assert isinstance(page, SearchPage)
