"""What reaches the relay on the wire from the client libraries (issue #14): no
``User-Agent`` (urllib3 adds ``python-urllib3/...`` below requests) and no ``Accept-Encoding``
(http.client adds ``identity``), as README and docs/ohttp.md promise."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ohttp_relay import ohttp
from ohttp_relay.client import ObliviousClient
from ohttp_relay.errors import RelayUnavailable
from sticker_search.client import StickerClient
from sticker_search.errors import ServiceUnavailable
from tests.ohttp.header_probe import create_header_probe
from tests.support import LiveServer

ALLOWED = {"host", "content-type", "content-length"}


def _received(record: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in record.read_text().splitlines()]


def test_oblivious_client_sends_only_host_and_framing(
        live_server: Callable[..., LiveServer], tmp_path: Path) -> None:
    record = tmp_path / "headers.jsonl"
    relay = live_server(create_header_probe, record=str(record))
    key = ohttp.GatewayKey.generate(1)
    with_config = ObliviousClient(relay.url, ohttp.encode_key_configs([key.config]))
    with pytest.raises(RelayUnavailable):
        with_config.request("GET", "http://target.example/search?q=cat")
    fetching = ObliviousClient(relay.url)  # fetches the key configuration from the relay
    with pytest.raises(RelayUnavailable):
        fetching.request("GET", "http://target.example/search?q=cat")
    seen = _received(record)
    assert len(seen) >= 2
    for headers in seen:
        assert set(headers) <= ALLOWED, headers


def test_sticker_client_sends_only_host_and_framing_to_the_relay(
        live_server: Callable[..., LiveServer], tmp_path: Path) -> None:
    record = tmp_path / "headers.jsonl"
    relay = live_server(create_header_probe, record=str(record))
    key = ohttp.GatewayKey.generate(1)
    client: Any = StickerClient(issuer_url="http://127.0.0.1:9", credential="ppc_x",
                                relay_url=relay.url, target_url="http://stickers.example",
                                key_config=ohttp.encode_key_configs([key.config]))
    with pytest.raises(ServiceUnavailable):
        client.search("cat")
    seen = _received(record)
    assert seen
    for headers in seen:
        assert set(headers) <= ALLOWED, headers
