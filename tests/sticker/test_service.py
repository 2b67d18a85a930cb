"""The sticker service on its server stack, called directly (plain HTTP) with real Privacy Pass
tokens from a real issuer: challenge, one token per search, refusals, pictures, logs."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from credentials.client import IssuerClient
from credentials.issuer_store import IssuerStore
from service_kit.logging_filter import find_leaks
from sticker_search.service import create_app
from tests.support import LiveServer
from tests.support import start_live_server as start_service

QUERIES = ("elephant", "giraffe", "croissant")  # distinctive words to look for in the logs


class Services:
    def __init__(self, issuer: LiveServer, sticker: LiveServer, credential: str,
                 stats_db: Path, spent_db: Path) -> None:
        self.issuer = issuer
        self.sticker = sticker
        self.tokens = IssuerClient(issuer.url, credential, batch_size=32)
        self.stats_db = stats_db
        self.spent_db = spent_db
        self._challenge: str | None = None

    def challenge(self) -> str:
        if self._challenge is None:
            response = requests.get(self.sticker.url + "/v1/search", timeout=10)
            self._challenge = response.headers["WWW-Authenticate"]
        return self._challenge

    def authorization(self) -> str:
        return self.tokens.authorization_for(self.challenge())

    def search(self, **params: str) -> requests.Response:
        return requests.get(self.sticker.url + "/v1/search", params=params,
                            headers={"Authorization": self.authorization()}, timeout=10)


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    folder = tmp_path_factory.mktemp("sticker-service")
    issuer_db = folder / "issuer.sqlite3"
    credential = IssuerStore(str(issuer_db)).add_account("alice")
    issuer = start_service("credentials.issuer_service:create_app",
                               {"db": str(issuer_db), "issuer_name": "issuer.test"}, folder)
    stats_db, spent_db = folder / "stats.sqlite3", folder / "spent.sqlite3"
    try:
        sticker = start_service(create_app, {
            "issuer_url": issuer.url, "spent_db": str(spent_db),
            "query_stats_db": str(stats_db)}, folder)
    except BaseException:
        issuer.stop()
        raise
    yield Services(issuer, sticker, credential, stats_db, spent_db)
    sticker.stop()
    issuer.stop()


def test_a_search_without_a_token_gets_a_private_token_challenge(services: Services) -> None:
    response = requests.get(services.sticker.url + "/v1/search", params={"q": "cat"}, timeout=10)
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/problem+json"
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("PrivateToken ")
    assert "challenge=" in challenge and "token-key=" in challenge


def test_one_token_buys_exactly_one_search(services: Services) -> None:
    authorization = services.authorization()
    url = services.sticker.url + "/v1/search"
    first = requests.get(url, params={"q": "cat", "limit": "3"},
                         headers={"Authorization": authorization}, timeout=10)
    assert first.status_code == 200
    body = first.json()
    assert body["results"][0]["glyph"] == "🐈"
    assert len(body["results"]) == 3 and body["total"] > 3
    assert body["results"][0]["picture"] == "/v1/stickers/1f408"
    replay = requests.get(url, params={"q": "dog"}, headers={"Authorization": authorization},
                          timeout=10)
    assert replay.status_code == 401
    assert replay.headers["WWW-Authenticate"].startswith("PrivateToken ")


@pytest.mark.parametrize("authorization", [
    "PrivateToken token=AAAA", "PrivateToken token=", "Bearer abc", "PrivateToken",
    "PrivateToken token=" + "A" * 600,
])
def test_malformed_tokens_are_refused_with_a_challenge(services: Services,
                                                       authorization: str) -> None:
    response = requests.get(services.sticker.url + "/v1/search", params={"q": "cat"},
                            headers={"Authorization": authorization}, timeout=10)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("PrivateToken ")


@pytest.mark.parametrize("params", [
    {"q": ""}, {"q": "   "}, {"q": "x" * 201}, {"q": "cat", "limit": "0"},
    {"q": "cat", "limit": "101"}, {"q": "cat", "limit": "ten"}, {"q": "cat", "offset": "-1"},
    {"q": "cat", "lang": "klingon"}, {"q": "cat", "limit": "²"}, {"q": "cat", "offset": "１"}, {},
])
def test_bad_search_parameters_are_400_problems(services: Services,
                                                params: dict[str, str]) -> None:
    response = services.search(**params)
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 400


def test_language_hint_and_pages(services: Services) -> None:
    spanish = services.search(q="gato", lang="es", limit="2").json()
    assert spanish["results"][0]["title"] == "Gato"
    page2 = services.search(q="heart", limit="5", offset="5").json()
    page1 = services.search(q="heart", limit="10").json()
    assert [r["id"] for r in page1["results"]][5:] == [r["id"] for r in page2["results"]]


def test_pictures_are_svg_with_the_right_media_type(services: Services) -> None:
    url = services.sticker.url + "/v1/stickers/1f408"
    svg = requests.get(url, timeout=10)
    assert svg.status_code == 200
    assert svg.headers["Content-Type"] == "image/svg+xml"
    assert "🐈" in svg.content.decode() and svg.content.startswith(b"<svg ")
    again = requests.get(url, headers={"If-None-Match": svg.headers["ETag"]}, timeout=10)
    assert again.status_code == 304
    text = requests.get(url, headers={"Accept": "text/plain"}, timeout=10)
    assert text.headers["Content-Type"].startswith("text/plain")
    assert text.content.decode() == "🐈"
    for missing in ("ffff", "..%2F..%2Fetc", "1f408-"):
        response = requests.get(services.sticker.url + "/v1/stickers/" + missing, timeout=10)
        assert response.status_code == 404
        assert response.headers["Content-Type"] == "application/problem+json"


def test_logs_hold_counts_never_queries_while_stats_count_them(services: Services) -> None:
    for query in QUERIES:
        assert services.search(q=query).status_code == 200
    leaks = find_leaks(services.sticker.logs().splitlines(), QUERIES)
    assert leaks == []
    assert "search served results=" in services.sticker.logs()
    with sqlite3.connect(services.stats_db) as conn:
        counted = {row[0] for row in conn.execute("SELECT query FROM sticker_query_stats")}
    assert set(QUERIES) <= counted  # the positive control: the service did see them


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(q=st.text(max_size=250), lang=st.text(max_size=6), limit=st.text(max_size=4))
def test_any_search_input_gets_a_json_answer_never_a_500(services: Services, q: str, lang: str,
                                                        limit: str) -> None:
    response = services.search(q=q, lang=lang, limit=limit)
    assert response.status_code in (200, 400)
    json.loads(response.content)
