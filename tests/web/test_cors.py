"""Relay and issuer answer browsers: CORS preflights for the OHTTP and issuance media types,
only for the configured page origins, and the relay forwards nothing a browser adds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from credentials import consts as pp
from credentials.issuer_service import create_app as create_issuer
from credentials.issuer_store import IssuerStore
from ohttp_relay import consts
from ohttp_relay.relay_service import create_app as create_relay
from service_kit.cors import CorsPolicy, check_origin
from service_kit.errors import ConfigError
from tests.apps import create_echo_app
from tests.support import LiveServer

Start = Callable[..., LiveServer]
PAGE = "http://127.0.0.1:8090"
OTHER = "http://127.0.0.1:8091"
# What Chromium adds to a cross-origin fetch from the page.
BROWSER_FIELDS = {
    "Origin": PAGE, "Referer": PAGE + "/", "Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors",
    "Sec-Fetch-Dest": "empty", "Sec-Fetch-Storage-Access": "none", "Cookie": "tracker=1",
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0.0.0",
    "Sec-CH-UA-Platform": '"Linux"', "Accept-Language": "en-GB,en;q=0.9",
}


def preflight(url: str, origin: str, method: str, fields: str = "") -> requests.Response:
    headers = {"Origin": origin, "Access-Control-Request-Method": method}
    if fields:
        headers["Access-Control-Request-Headers"] = fields
    return requests.options(url, headers=headers, timeout=5)


def test_relay_preflight_and_responses_for_the_page_origin_only(live_server: Start) -> None:
    echo = live_server(create_echo_app)
    relay = live_server(create_relay, gateway_url=echo.url + "/gateway", cors_origins=[PAGE])

    ok = preflight(relay.url + "/relay", PAGE, "POST", "content-type")
    assert ok.status_code == 204
    assert ok.headers["Access-Control-Allow-Origin"] == PAGE
    assert "POST" in ok.headers["Access-Control-Allow-Methods"]
    assert ok.headers["Access-Control-Allow-Headers"] == "content-type"
    assert "Access-Control-Allow-Credentials" not in ok.headers

    for refused in (preflight(relay.url + "/relay", OTHER, "POST", "content-type"),
                    preflight(relay.url + "/relay", PAGE, "POST", "content-type, cookie2"),
                    preflight(relay.url + "/relay", PAGE, "DELETE")):
        assert refused.status_code == 403
        assert "Access-Control-Allow-Origin" not in refused.headers

    answer = requests.post(relay.url + "/relay", data=b"sealed", headers={
        **BROWSER_FIELDS, "Content-Type": consts.MEDIA_TYPE_REQUEST}, timeout=5)
    assert answer.headers["Access-Control-Allow-Origin"] == PAGE
    assert "Origin" in answer.headers["Vary"]
    keys = requests.get(relay.url + "/ohttp-keys", headers={"Origin": OTHER}, timeout=5)
    assert "Access-Control-Allow-Origin" not in keys.headers


def test_relay_forwards_no_origin_referer_sec_fetch_or_cookie(live_server: Start) -> None:
    echo = live_server(create_echo_app)
    relay = live_server(create_relay, gateway_url=echo.url + "/gateway", cors_origins=[PAGE])
    answer = requests.post(relay.url + "/relay", data=b"sealed", headers={
        **BROWSER_FIELDS, "Content-Type": consts.MEDIA_TYPE_REQUEST}, timeout=5)
    forwarded = answer.json()["headers"]
    assert set(forwarded) == {"content-type", "content-length", "host"}
    assert not any(name.startswith("sec-") for name in forwarded)


def test_issuer_preflight_allows_the_bearer_and_batch_media_type(live_server: Start,
                                                                 tmp_path: Path) -> None:
    db = str(tmp_path / "issuer.db")
    IssuerStore(db).ensure_key()
    issuer = live_server(create_issuer, db=db, issuer_name="issuer.test", cors_origins=[PAGE],
                         rate_limit=1)
    credential = IssuerStore(db).add_account("web")
    url = issuer.url + pp.ISSUANCE_PATH

    ok = preflight(url, PAGE, "POST", "authorization, content-type, accept")
    assert ok.status_code == 204
    assert ok.headers["Access-Control-Allow-Origin"] == PAGE
    assert {"authorization", "content-type"} <= set(
        ok.headers["Access-Control-Allow-Headers"].split(", "))
    assert preflight(url, OTHER, "POST", "authorization").status_code == 403

    directory = requests.get(issuer.url + pp.DIRECTORY_PATH, headers={"Origin": PAGE}, timeout=5)
    assert directory.headers["Access-Control-Allow-Origin"] == PAGE
    # A refusal is readable too, with the Retry-After the page needs.
    refused = requests.post(url, data=b"\x00", headers={
        "Origin": PAGE, "Authorization": f"Bearer {credential}",
        "Content-Type": pp.MEDIA_BATCH_REQUEST}, timeout=5)
    assert refused.status_code >= 400
    assert refused.headers["Access-Control-Allow-Origin"] == PAGE
    assert refused.headers["Access-Control-Expose-Headers"] == "retry-after"


def test_no_origins_configured_means_no_cross_origin_access(live_server: Start) -> None:
    echo = live_server(create_echo_app)
    relay = live_server(create_relay, gateway_url=echo.url + "/gateway")
    answer = preflight(relay.url + "/relay", PAGE, "POST", "content-type")
    assert "Access-Control-Allow-Origin" not in answer.headers


@pytest.mark.parametrize("origin", ["*", "null", "http://a.test/", "http://a.test/path",
                                    "ftp://a.test", "http://user@a.test", "a.test"])
def test_origins_must_be_serialized_origins(origin: str) -> None:
    with pytest.raises(ConfigError):
        check_origin(origin)
    with pytest.raises(ConfigError):
        CorsPolicy.build([origin])


def test_settings_refuse_a_bad_origin(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        create_relay({"gateway_url": "http://127.0.0.1:1/gateway", "cors_origins": ["*"]})
