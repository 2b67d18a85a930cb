"""Private search end to end: issuer, sticker service, gateway and relay on the service stack, the
StickerClient and the ``sticker-search query`` command, and the failure paths a person meets."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from credentials.issuer_store import IssuerStore
from ohttp_relay.store import DatabaseStore
from sticker_search.cli import EXIT_RATE_LIMITED, EXIT_UNAVAILABLE, EXIT_USAGE, main
from sticker_search.client import StickerClient
from sticker_search.errors import QueryError, RateLimited, ServiceUnavailable
from tests.support import LiveServer, free_port
from tests.support import start_live_server as start_service

ISSUER_LIMIT = 12  # tokens per account per window: small, so the limit path is reachable


class Stack:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.servers: list[LiveServer] = []
        self.issuer_db = folder / "issuer.sqlite3"
        self.gateway_db = folder / "gateway.sqlite3"
        self.store = IssuerStore(str(self.issuer_db))

    def start(self) -> None:
        self.issuer = self._start("credentials.issuer_service:create_app", {
            "db": str(self.issuer_db), "issuer_name": "issuer.test",
            "rate_limit": ISSUER_LIMIT, "rate_window": 3600})
        self.sticker = self._start("sticker_search.service:create_app", {
            "issuer_url": self.issuer.url, "spent_db": str(self.folder / "spent.sqlite3")})
        self.gateway = self._start("ohttp_relay.gateway_service:create_app", {
            "db": str(self.gateway_db), "targets": [self.sticker.url], "key_refresh": 0.2})
        self.relay = self._start("ohttp_relay.relay_service:create_app", {
            "gateway_url": self.gateway.url + "/gateway", "rate_limit": 0})

    def _start(self, factory: str, config: dict[str, object]) -> LiveServer:
        server = start_service(factory, config, self.folder)
        self.servers.append(server)
        return server

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()

    def client(self, account: str, *, credential: str | None = None, relay_url: str | None = None,
               batch_size: int = 4) -> StickerClient:
        return StickerClient(
            issuer_url=self.issuer.url,
            credential=credential or self.store.add_account(account),
            relay_url=relay_url or self.relay.url, target_url=self.sticker.url,
            batch_size=batch_size)

    def cli_args(self, credential: str, *extra: str) -> list[str]:
        return ["--issuer", self.issuer.url, "--credential", credential,
                "--relay", self.relay.url, "--target", self.sticker.url, *extra]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("private-search"))
    try:
        running.start()
        yield running
    finally:
        running.stop()


def test_a_private_search_returns_ranked_stickers(stack: Stack) -> None:
    client = stack.client("alice")
    page = client.search("cat", limit=5)
    assert page.results[0].glyph == "🐈" and page.results[0].title == "Cat"
    assert len(page.results) == 5 and page.total > 5
    # One batched issuance of 4 tokens, one spent: 3 stay cached for the next searches.
    assert client.cached_tokens() == 3
    spanish = client.search("corazón", lang="es", limit=3)
    assert spanish.results[0].title.startswith("Corazón")
    media_type, picture = client.picture("1f408")
    assert media_type == "image/svg+xml" and "🐈".encode() in picture


def test_query_command_prints_a_table_with_glyphs(stack: Stack,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    credential = stack.store.add_account("carol")
    assert main(["query", "pizza", *stack.cli_args(credential)]) == 0
    out = capsys.readouterr().out
    assert "🍕" in out and "Pizza" in out and "1f355" in out
    assert main(["query", "猫", *stack.cli_args(credential, "--lang", "ja", "--limit", "3")]) == 0
    out = capsys.readouterr().out
    assert "ネコ" in out and len([line for line in out.splitlines() if "1f" in line]) == 3


def test_issuer_limit_is_reported_with_its_retry_time(
        stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    client = stack.client("greedy")
    with pytest.raises(RateLimited) as caught:
        for _ in range(ISSUER_LIMIT + 2):
            client.search("dog")
    assert 0 < caught.value.retry_after <= 3600
    assert "dog" not in str(caught.value)
    # The CLI asks for one token per run: use up another account's allowance first.
    credential = stack.store.add_account("greedy-cli")
    stack.client("", credential=credential, batch_size=ISSUER_LIMIT).prefetch_tokens(
        ISSUER_LIMIT)
    assert main(["query", "dog", *stack.cli_args(credential)]) == EXIT_RATE_LIMITED
    err = capsys.readouterr().err
    assert "limit" in err and "try again in" in err


def test_relay_down_is_a_clear_error_and_a_nonzero_exit(
        stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    client = stack.client("dave", relay_url=dead)
    with pytest.raises(ServiceUnavailable):
        client.search("cat")
    credential = stack.store.add_account("erin")
    args = ["query", "cat", "--issuer", stack.issuer.url, "--credential", credential,
            "--relay", dead, "--target", stack.sticker.url]
    assert main(args) == EXIT_UNAVAILABLE
    assert "unreachable" in capsys.readouterr().err


def test_gateway_down_is_a_clear_error(stack: Stack, tmp_path: Path) -> None:
    orphan = start_service("ohttp_relay.relay_service:create_app", {
        "gateway_url": f"http://127.0.0.1:{free_port()}/gateway"}, tmp_path)
    try:
        client = stack.client("frank", relay_url=orphan.url)
        with pytest.raises(ServiceUnavailable):
            client.search("cat")
    finally:
        orphan.stop()


def test_rotated_gateway_keys_are_refetched_once(stack: Stack) -> None:
    client = stack.client("grace")
    assert client.search("moon").total > 0  # the client now holds the current key config
    store = DatabaseStore(str(stack.gateway_db))
    old = [r.key_id for r in store.key_records() if r.state == "active"]
    now = int(time.time())
    store.rotate(now, 0)
    for key_id in old:
        store.retire(now, key_id)
    time.sleep(0.6)  # the gateway re-reads its keys every 0.2 s
    assert client.search("sun").results[0].glyph == "☀️"
    assert "event=key_problem" in stack.gateway.logs()


def test_bad_queries_fail_before_anything_is_sent(stack: Stack,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    client = stack.client("heidi")
    with pytest.raises(QueryError):
        client.search("   ")
    with pytest.raises(QueryError):
        client.search("cat", limit=0)
    credential = stack.store.add_account("ivan")
    assert main(["query", "", *stack.cli_args(credential)]) == EXIT_USAGE
    assert capsys.readouterr().err.startswith("sticker-search:")
