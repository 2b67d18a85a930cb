"""Undated sealed requests (issue #14): the replay cache forgets a request 2 x window + 1 s
after it was seen, and only the Date check refuses an older replay, so a request without a
Date is refused by default (the client always dates its requests)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import requests

from ohttp_relay import bhttp, consts, ohttp
from ohttp_relay.client import build_request
from ohttp_relay.gateway_service import create_app as create_gateway
from ohttp_relay.replay import ReplayPolicy
from tests.apps import create_echo_app
from tests.support import LiveServer


def _exchange(gateway: LiveServer, inner: bhttp.Request) -> bhttp.Response:
    config = ohttp.decode_key_configs(
        requests.get(gateway.url + "/ohttp-keys", timeout=10).content)[0]
    sealed, context = ohttp.encapsulate_request(config, inner.to_bytes())
    answer = requests.post(gateway.url + "/gateway", data=sealed, timeout=10,
                           headers={"Content-Type": consts.MEDIA_TYPE_REQUEST})
    assert answer.status_code == 200
    return bhttp.decode_response(context.decapsulate(answer.content))


def _undated(url: str) -> bhttp.Request:
    dated = build_request("GET", url, None, None)
    return bhttp.Request(dated.method, dated.scheme, dated.authority, dated.path,
                         tuple((n, v) for n, v in dated.headers if n.lower() != "date"), b"")


def test_the_gateway_refuses_undated_requests_by_default(
        live_server: Callable[..., LiveServer], tmp_path: Path) -> None:
    echo = live_server(create_echo_app)
    gateway = live_server(create_gateway, db=str(tmp_path / "g.db"), targets=[echo.url])
    refused = _exchange(gateway, _undated(echo.url + "/x"))
    assert refused.status == 400
    assert json.loads(refused.content)["type"] == consts.PROBLEM_DATE
    assert _exchange(gateway, build_request("GET", echo.url + "/x", None, None)).status == 200


def test_undated_requests_are_accepted_only_when_allowed(
        live_server: Callable[..., LiveServer], tmp_path: Path) -> None:
    echo = live_server(create_echo_app)
    gateway = live_server(create_gateway, db=str(tmp_path / "g.db"), targets=[echo.url],
                          require_date=False)
    assert _exchange(gateway, _undated(echo.url + "/x")).status == 200


def test_the_default_policy_requires_a_date() -> None:
    assert ReplayPolicy().require_date
    assert ReplayPolicy().remember_for > 2 * ReplayPolicy().window


def test_the_client_always_dates_its_requests() -> None:
    inner = build_request("GET", "http://t.example/", {"X": "1"}, None)
    assert [n for n, _ in inner.headers if n.lower() == "date"] == ["date"]
