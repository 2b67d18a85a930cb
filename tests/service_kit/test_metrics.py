"""Prometheus metrics on every service: the private search scenario (issuer, sticker service,
gateway, relay) and a delivery-server send, push and receive on the real serving stack, then
every metrics endpoint scraped: the expected events counted, and no query, token, account,
credential, key id, message or client address in any scrape. Several workers (uvicorn's
supervisor) share one endpoint, and a killed worker's live gauges stop counting."""

from __future__ import annotations

import base64
import json
import os
import signal
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from credentials.issuer_store import IssuerStore
from e2ee_core.server.client import ServerClient
from e2ee_core.server.wire import OutgoingEnvelope
from service_kit import metrics
from service_kit.errors import ConfigError
from sticker_search.client import StickerClient
from tests.server.support import FAST_ARGON2, PASSWORD, device_keys
from tests.support import LiveServer, free_port, start_live_server

QUERIES = ("pizza", "volcano eruption")
ACCOUNT = "metrics-account-9c1e"
MESSAGE = b"metrics-secret-message-5b7d"
RELAY_LIMIT = 40  # requests per window per address: reachable within the test


class Service:
    """A live service and its metrics endpoint."""

    def __init__(self, server: LiveServer, metrics_port: int) -> None:
        self.server = server
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"

    @property
    def url(self) -> str:
        return self.server.url

    def scrape(self) -> str:
        response = requests.get(self.metrics_url, timeout=10)
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return response.text


def start(factory: str, config: dict[str, Any], folder: Path, *, workers: int = 1
          ) -> Service:
    port = free_port()
    server = start_live_server(factory, config, folder, workers=workers,
                               metrics_listen=f"127.0.0.1:{port}")
    return Service(server, port)


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v
                                           for k, v in labels.items()):
                total += sample.value
    return total


def label_values(text: str, label: str) -> set[str]:
    return {sample.labels[label] for family in text_string_to_metric_families(text)
            for sample in family.samples if label in sample.labels}


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


class PrivateSearch:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.store = IssuerStore(str(folder / "issuer.sqlite3"))
        self.services: list[Service] = []

    def start(self) -> None:
        self.issuer = self._start("credentials.issuer_service:create_app", {
            "db": str(self.folder / "issuer.sqlite3"), "issuer_name": "issuer.test"})
        self.sticker = self._start("sticker_search.service:create_app", {
            "issuer_url": self.issuer.url, "spent_db": str(self.folder / "spent.sqlite3")})
        self.gateway = self._start("ohttp_relay.gateway_service:create_app", {
            "db": str(self.folder / "gateway.sqlite3"), "targets": [self.sticker.url]})
        self.relay = self._start("ohttp_relay.relay_service:create_app", {
            "gateway_url": self.gateway.url + "/gateway", "rate_limit": RELAY_LIMIT,
            "rate_window": 3600})

    def _start(self, factory: str, config: dict[str, Any]) -> Service:
        service = start(factory, config, self.folder)
        self.services.append(service)
        return service

    def stop(self) -> None:
        for service in reversed(self.services):
            service.server.stop()


@pytest.fixture(scope="module")
def private_search(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateSearch]:
    running = PrivateSearch(tmp_path_factory.mktemp("metrics-search"))
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def delivery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    folder = tmp_path_factory.mktemp("metrics-delivery")
    service = start("e2ee_core.server.app:create_app",
                    {"db": str(folder / "server.db"), **FAST_ARGON2}, folder)
    try:
        yield service
    finally:
        service.server.stop()


def _socket(url: str, credential: str) -> ClientConnection:
    return connect(url.replace("http://", "ws://") + "/v1/websocket",
                   additional_headers={"Authorization": f"Bearer {credential}"},
                   open_timeout=10)


def test_private_search_is_counted_and_no_scrape_holds_content(
        private_search: PrivateSearch) -> None:
    stack = private_search
    credential = stack.store.add_account(ACCOUNT)
    client = StickerClient(issuer_url=stack.issuer.url, credential=credential,
                           relay_url=stack.relay.url, target_url=stack.sticker.url,
                           batch_size=4)
    for query in QUERIES:
        client.search(query, limit=3)
    client.picture("1f355")
    # One token presented straight to the origin twice: accepted, then a double spend.
    authorization = client.tokens.authorization_for(client.challenge())
    for expected in (200, 401):
        answer = requests.get(stack.sticker.url + "/v1/search", params={"q": "kangaroo"},
                              headers={"Authorization": authorization}, timeout=10)
        assert answer.status_code == expected
    assert requests.get(stack.sticker.url + "/v1/search", params={"q": "kangaroo"}, timeout=10,
                        headers={"Authorization": "PrivateToken token=AAAA"}
                        ).status_code == 401
    # A wrong credential at the issuer; garbage through the relay (the gateway cannot open it).
    assert requests.post(stack.issuer.url + "/token-request", data=b"x", timeout=10,
                         headers={"Authorization": "Bearer not-a-credential-3f9a",
                                  "Content-Type": "application/private-token-request"}
                         ).status_code == 401
    assert requests.post(stack.relay.url + "/relay", data=b"\x00" * 40, timeout=10,
                         headers={"Content-Type": "message/ohttp-req"}).status_code == 400
    # The relay's per-address limit, then refusals.
    statuses = [requests.get(stack.relay.url + "/ohttp-keys", timeout=10).status_code
                for _ in range(RELAY_LIMIT)]
    assert 429 in statuses

    issuer, sticker = stack.issuer.scrape(), stack.sticker.scrape()
    gateway, relay = stack.gateway.scrape(), stack.relay.scrape()
    assert value(issuer, "privacypass_tokens_issued_total", request="batch") >= 4
    assert value(issuer, "privacypass_issuance_refused_total", reason="unauthenticated") == 1
    assert value(sticker, "privacypass_redemptions_total", outcome="accepted") == 3
    assert value(sticker, "privacypass_redemptions_total", outcome="double_spend") == 1
    assert value(sticker, "privacypass_redemptions_total", outcome="malformed") == 1
    assert value(sticker, "sticker_searches_total", outcome="served") == 3
    assert value(sticker, "sticker_pictures_served_total", format="svg") == 1
    assert value(gateway, "ohttp_gateway_answered_total", status="2xx") >= 3
    assert value(gateway, "ohttp_gateway_decapsulation_failures_total") == 1
    assert value(relay, "ohttp_relay_forwarded_total", status="2xx") >= 3
    assert value(relay, "ohttp_relay_forwarded_total", status="4xx") == 1
    assert value(relay, "ohttp_relay_rate_limited_total") >= 1
    # Latency by route template, never the raw path.
    assert value(sticker, "http_request_duration_seconds_count",
                 route="/v1/stickers/<sticker_id>", status="200") == 1
    assert value(issuer, "http_request_duration_seconds_count", route="/token-request",
                 method="POST", status="401") == 1
    assert value(relay, "http_request_duration_seconds_count", route="/ohttp-keys",
                 status="429") >= 1
    assert "unmatched" in label_values(sticker, "route")  # the start-up probe (a 404)

    issuer_keys = stack.store.list_keys(include_retired=True)
    token_value = authorization.partition("token=")[2].strip('"')
    secrets = [*QUERIES, "volcano", "kangaroo", ACCOUNT, credential, "not-a-credential-3f9a",
               token_value, token_value[:24], "1f355", "127.0.0.1", "/v1/stickers/1f"]
    for key in issuer_keys:
        secrets += [key.key_id.hex(), base64.urlsafe_b64encode(key.key_id).decode().rstrip("="),
                    base64.b64encode(key.key_id).decode().rstrip("=")]
    for text in (issuer, sticker, gateway, relay):
        for secret in secrets:
            assert secret not in text, secret


def test_delivery_server_counts_envelopes_and_push_connections(delivery: Service) -> None:
    alice, bob = ServerClient(delivery.url), ServerClient(delivery.url)
    alice_name, bob_name = ACCOUNT + "-alice", ACCOUNT + "-bob"
    alice.register(alice_name, PASSWORD, device_keys())
    bob_credential = bob.register(bob_name, PASSWORD, device_keys())
    alice.send(bob_name, [OutgoingEnvelope(bob_name, 1, MESSAGE)])
    batch = bob.receive()
    assert [e.content for e in batch.envelopes] == [MESSAGE]
    assert bob.acknowledge([e.id for e in batch.envelopes]) == 1
    with _socket(delivery.url, bob_credential.credential) as ws:
        assert json.loads(ws.recv(timeout=10)) == {"type": "queue_empty"}
        alice.send(bob_name, [OutgoingEnvelope(bob_name, 1, MESSAGE)])
        pushed = json.loads(ws.recv(timeout=10))
        assert pushed["type"] == "envelopes"
        during = delivery.scrape()
        assert value(during, "e2ee_push_connections_open") == 1
        assert value(during, "e2ee_push_envelopes_in_flight") == 1
        ws.send(json.dumps({"type": "ack", "ids": [e["id"] for e in pushed["envelopes"]]}))
        assert json.loads(ws.recv(timeout=10)) == {"type": "queue_empty"}
    with _socket(delivery.url, "wrong-credential-8d2c") as refused, \
            pytest.raises(ConnectionClosed):  # closed with 4401
        refused.recv(timeout=10)
    wait_for(lambda: value(delivery.scrape(), "e2ee_push_connections_open") == 0)

    text = delivery.scrape()
    assert value(text, "e2ee_envelopes_stored_total") == 2
    assert value(text, "e2ee_envelopes_delivered_total", channel="http") == 1
    assert value(text, "e2ee_envelopes_delivered_total", channel="push") == 1
    assert value(text, "e2ee_envelopes_acked_total") == 2
    assert value(text, "e2ee_push_envelopes_in_flight") == 0
    assert value(text, "e2ee_envelopes_waiting") == 0  # set by the purge on the first request
    assert value(text, "e2ee_push_connections_total", outcome="accepted") == 1
    assert value(text, "e2ee_push_connections_total", outcome="auth_failed") == 1
    assert value(text, "http_request_duration_seconds_count", route="/v1/messages",
                 method="POST", status="200") == 2
    assert value(text, "http_request_duration_seconds_count",
                 route="/v1/keys/<username>") == 0  # no raw usernames either way
    assert value(text, "http_requests_in_progress") >= 0
    credentials = [alice.credential.credential if alice.credential else "",
                   bob_credential.credential]
    for secret in (alice_name, bob_name, MESSAGE.decode(), base64.b64encode(MESSAGE).decode(),
                   PASSWORD, "wrong-credential-8d2c", "127.0.0.1", *credentials):
        assert secret and secret not in text, secret


def _workers_of(parent: int) -> list[int]:
    """The uvicorn worker processes (multiprocessing spawn children) of ``parent``."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    workers = []
    for pid in children:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"spawn_main" in cmdline:
            workers.append(int(pid))
    return workers


def test_several_workers_share_one_endpoint_and_a_killed_worker_stops_counting(
        tmp_path: Path) -> None:
    service = start("e2ee_core.server.app:create_app",
                    {"db": str(tmp_path / "server.db"), **FAST_ARGON2}, tmp_path, workers=2)
    try:
        for _ in range(12):  # a new connection each: the workers share them out
            assert requests.get(service.url + "/v1/health", timeout=10).status_code == 200
        text = service.scrape()
        assert value(text, "http_request_duration_seconds_count", route="/v1/health") == 12
        client = ServerClient(service.url)
        credential = client.register(ACCOUNT, PASSWORD, device_keys())
        with _socket(service.url, credential.credential) as ws:
            assert json.loads(ws.recv(timeout=10)) == {"type": "queue_empty"}
            assert value(service.scrape(), "e2ee_push_connections_open") == 1
            workers = _workers_of(service.server.proc.pid)
            assert len(workers) == 2
            for pid in workers:
                os.kill(pid, signal.SIGKILL)
            # The supervisor replaces them and drops the dead workers' live gauges.
            wait_for(lambda: value(service.scrape(), "e2ee_push_connections_open") == 0)
        wait_for(lambda: len(set(_workers_of(service.server.proc.pid)) - set(workers)) == 2)
        wait_for(lambda: requests.get(service.url + "/v1/health", timeout=10).ok)
        text = service.scrape()
        # Counters of the dead workers are kept: counts never go back.
        assert value(text, "http_request_duration_seconds_count", route="/v1/health") >= 13
        assert value(text, "e2ee_push_connections_total", outcome="accepted") == 1
        assert ACCOUNT not in text and credential.credential not in text
    finally:
        service.server.stop()


@pytest.fixture
def own_environment() -> Iterator[None]:
    """The environment as it was (an Exposition sets the client's directory variable)."""
    saved = os.environ.get(metrics.MULTIPROC_ENV)
    yield
    if saved is None:
        os.environ.pop(metrics.MULTIPROC_ENV, None)
    else:
        os.environ[metrics.MULTIPROC_ENV] = saved


@pytest.mark.usefixtures("own_environment")
def test_the_workers_directory_is_private_and_emptied_at_start(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir(mode=0o755)
    (directory / "counter_99999.db").write_bytes(b"stale")
    port = free_port()
    exposition = metrics.Exposition(f"127.0.0.1:{port}", workers=2, directory=str(directory))
    exposition.start()
    try:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert list(directory.iterdir()) == []
        assert os.environ[metrics.MULTIPROC_ENV] == str(directory)
        assert requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).status_code == 200
    finally:
        exposition.close()
    temporary = metrics.Exposition(f"127.0.0.1:{free_port()}", workers=2)
    temporary.start()
    try:
        assert temporary.directory is not None
        made = Path(temporary.directory)
        assert stat.S_IMODE(made.stat().st_mode) == 0o700
    finally:
        temporary.close()
    assert not made.exists()


@pytest.mark.usefixtures("own_environment")
def test_a_service_starts_when_the_operator_set_the_client_directory(tmp_path: Path) -> None:
    """The client reads PROMETHEUS_MULTIPROC_DIR at import: it is left in place, never removed
    under values that will look it up."""
    directory = tmp_path / "operator-metrics"
    directory.mkdir(mode=0o700)
    os.environ[metrics.MULTIPROC_ENV] = str(directory)
    for listen in (True, False):
        port = free_port()
        server = start_live_server("ohttp_relay.relay_service:create_app",
                                   {"gateway_url": "http://127.0.0.1:9/gateway"}, tmp_path,
                                   metrics_listen=f"127.0.0.1:{port}" if listen else None)
        try:
            assert requests.post(server.url + "/relay", data=b"x", timeout=10).status_code == 415
            if listen:
                text = Service(server, port).scrape()
                assert value(text, "http_request_duration_seconds_count", route="/relay",
                             status="415") == 1
        finally:
            server.stop()


@pytest.mark.parametrize("listen", ["9101", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000",
                                    "example.org:9101", ":9101", "127.0.0.1:9x"])
def test_a_bad_metrics_address_is_refused(listen: str) -> None:
    with pytest.raises(ConfigError):
        metrics.parse_listen(listen)


def test_listen_addresses() -> None:
    assert metrics.parse_listen("127.0.0.1:9101") == ("127.0.0.1", 9101)
    assert metrics.parse_listen("[::1]:9101") == ("::1", 9101)
    assert metrics.parse_listen("localhost:9101") == ("localhost", 9101)


@pytest.mark.parametrize("command", [
    ["credentials.cli", "serve", "--db", "x.db", "--issuer-name", "i"],
    ["ohttp_relay.relay_cli", "serve", "--gateway", "http://127.0.0.1:1/gateway"],
    ["ohttp_relay.gateway_cli", "serve", "--db", "x.db"],
    ["sticker_search.cli", "serve", "--issuer", "http://127.0.0.1:1", "--spent-db", "x.db"],
    ["e2ee_core.server.cli", "serve", "--db", "x.db"],
    ["sticker_search.cli", "web", "--relay", "http://127.0.0.1:1", "--issuer",
     "http://127.0.0.1:1", "--target", "http://127.0.0.1:1"],
])
def test_every_serve_command_refuses_a_bad_metrics_address_before_starting(
        command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    module = __import__(command[0], fromlist=["main"])
    with pytest.raises(SystemExit) as stopped:
        module.main([*command[1:], "--metrics-listen", "0.0.0.0:not-a-port"])
    assert stopped.value.code == 2
    assert "metrics" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # refused before any store was created


def test_latency_is_labelled_by_route_template_and_known_methods_only() -> None:
    app = Flask("metrics_probe_app")

    @app.get("/items/<item>")
    def item(item: str) -> str:
        return "ok"

    metrics.instrument(app)
    client = app.test_client()
    assert client.get("/items/secret-item-1").status_code == 200
    assert client.get("/secret-path-2").status_code == 404
    assert client.open("/items/x", method="BREW").status_code == 405
    text = __import__("prometheus_client").generate_latest().decode()
    assert "secret-item-1" not in text and "secret-path-2" not in text and "BREW" not in text
    assert value(text, "http_request_duration_seconds_count", app="metrics_probe_app",
                 route="/items/<item>", method="GET", status="200") == 1
    assert value(text, "http_request_duration_seconds_count", app="metrics_probe_app",
                 route="unmatched", status="404") == 1
    assert value(text, "http_request_duration_seconds_count", app="metrics_probe_app",
                 route="unmatched", method="other", status="405") == 1
    assert value(text, "http_requests_in_progress", app="metrics_probe_app") == 0
