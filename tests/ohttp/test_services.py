"""Black-box tests: relay, gateway and an echo target each on the service stack on loopback."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from ohttp_relay import bhttp, consts, ohttp
from ohttp_relay.chunked import encapsulate_chunked_request
from ohttp_relay.client import ObliviousClient, build_request
from ohttp_relay.errors import KeyMismatch, RelayUnavailable, RequestRejected
from ohttp_relay.gateway_cli import main as gateway_cli
from ohttp_relay.gateway_service import create_app as create_gateway
from ohttp_relay.relay_service import create_app as create_relay
from service_kit.logging_filter import find_leaks
from tests.apps import create_echo_app
from tests.support import LiveServer, free_port

Start = Callable[..., LiveServer]
CLIENT_ONLY_HEADERS = {"forwarded", "x-forwarded-for", "x-real-ip", "via", "cookie",
                       "user-agent", "x-client-secret"}


def _stack(live_server: Start, tmp_path: Path, **gateway_config: Any
           ) -> tuple[LiveServer, LiveServer, LiveServer]:
    echo = live_server(create_echo_app)
    gateway_config.setdefault("db", str(tmp_path / "gateway.db"))
    gateway_config.setdefault("targets", [echo.url])
    gateway = live_server(create_gateway, **gateway_config)
    relay_config: dict[str, Any] = {"gateway_url": gateway.url + "/gateway"}
    if "relay_secret" in gateway_config:
        relay_config["relay_secret"] = gateway_config["relay_secret"]
    relay = live_server(create_relay, **relay_config)
    return echo, gateway, relay


def _keys(gateway: LiveServer) -> ohttp.KeyConfig:
    return ohttp.decode_key_configs(requests.get(gateway.url + "/ohttp-keys", timeout=5).content)[0]


def test_request_through_relay_and_gateway_reveals_nothing_about_the_client(
        live_server: Start, tmp_path: Path) -> None:
    echo, gateway, relay = _stack(live_server, tmp_path)
    keys = requests.get(relay.url + "/ohttp-keys", timeout=5)
    assert keys.headers["Content-Type"] == consts.MEDIA_TYPE_KEYS
    assert "max-age=" in keys.headers["Cache-Control"]

    secret_query = "q=purple-elephant-sticker"
    token = "Bearer tok-3f9a1c77e0b24d5e"
    body = b"plaintext-body-7d1e55"
    client = ObliviousClient(relay.url)
    resp = client.request("POST", f"{echo.url}/search?{secret_query}",
                          headers={"Authorization": token, "Content-Type": "text/plain",
                                   "Connection": "close"}, data=body)
    assert resp.status == 200
    seen = resp.json()
    assert (seen["method"], seen["path"], seen["query"]) == ("POST", "/search", secret_query)
    assert bytes.fromhex(seen["body"]) == body
    assert seen["headers"]["authorization"] == token  # inner headers reach the target
    assert "connection" not in seen["headers"]  # hop-by-hop headers do not
    assert not CLIENT_ONLY_HEADERS & set(seen["headers"])
    assert set(seen["headers"]) <= {"authorization", "content-type", "content-length", "host",
                                    "date"}
    assert resp.headers["content-type"] == "application/json"

    # The relay forwards only Content-Type and Content-Length, whatever the client sent.
    probe = live_server(create_relay, gateway_url=echo.url + "/gateway")
    outer = requests.post(probe.url + "/relay", data=b"ciphertext", headers={
        "Content-Type": consts.MEDIA_TYPE_REQUEST, "X-Forwarded-For": "203.0.113.9",
        "Forwarded": "for=203.0.113.9", "Cookie": "session=abc", "User-Agent": "client/1.0",
        "Via": "1.1 client", "X-Client-Secret": "s"}, timeout=5)
    forwarded = outer.json()["headers"]
    assert set(forwarded) == {"content-type", "content-length", "host"}
    assert forwarded["content-type"] == consts.MEDIA_TYPE_REQUEST

    for server in (relay, gateway, echo, probe):
        server.stop()
    secrets = [secret_query, "purple-elephant", token, body, "tok-3f9a1c77e0b24d5e"]
    assert find_leaks(relay.logs().splitlines(), secrets) == []  # the relay saw ciphertext only
    assert find_leaks(gateway.logs().splitlines(), secrets) == []  # events and counts only
    assert "event=answered" in gateway.logs()
    # The gateway's records hold keys and seen `enc` values, never an address or a request.
    stored = (tmp_path / "gateway.db").read_bytes()
    for needle in (b"127.0.0.1", b"purple-elephant", token.encode(), body):
        assert needle not in stored


def test_outer_errors(live_server: Start, tmp_path: Path) -> None:
    echo, gateway, relay = _stack(live_server, tmp_path, max_request_size=4096)
    config = _keys(gateway)
    url = gateway.url + "/gateway"
    media = {"Content-Type": consts.MEDIA_TYPE_REQUEST}
    inner = build_request("GET", echo.url + "/", None, None).to_bytes()

    wrong_type = requests.post(url, data=b"x", headers={"Content-Type": "text/plain"}, timeout=5)
    assert wrong_type.status_code == 415
    assert wrong_type.headers["Content-Type"] == "application/problem+json"
    assert requests.post(relay.url + "/relay", data=b"x", timeout=5).status_code == 415
    assert requests.post(url, data=b"\x00" * 5000, headers=media, timeout=5).status_code == 413

    unknown = ohttp.KeyConfig((config.key_id + 1) % 256, config.kem_id, config.public_key,
                              config.symmetric)
    sealed, _ = ohttp.encapsulate_request(unknown, inner)
    answer = requests.post(url, data=sealed, headers=media, timeout=5)
    assert answer.status_code == 400
    assert answer.json()["type"] == consts.PROBLEM_OHTTP_KEY

    sealed, _ = ohttp.encapsulate_request(config, inner)
    for broken in (sealed[:5], sealed[:-1], sealed[:-1] + bytes([sealed[-1] ^ 1])):
        answer = requests.post(url, data=broken, headers=media, timeout=5)
        assert answer.status_code == 400
        assert answer.headers["Content-Type"] == "application/problem+json"

    first = requests.post(url, data=sealed, headers=media, timeout=5)
    assert first.status_code == 200 and first.headers["Content-Type"] == consts.MEDIA_TYPE_RESPONSE
    replay = requests.post(url, data=sealed, headers=media, timeout=5)
    assert replay.status_code == 400 and replay.json()["title"] == "Replayed request"
    # Through the relay too: the byte-identical request is refused.
    assert requests.post(relay.url + "/relay", data=sealed, headers=media,
                         timeout=5).status_code == 400
    assert requests.get(url, timeout=5).status_code == 405

    # Chunked requests share the replay cache.
    chunked_body, opener = encapsulate_chunked_request(config, [inner])
    chunked_media = {"Content-Type": consts.MEDIA_TYPE_CHUNKED_REQUEST}
    first = requests.post(url, data=chunked_body, headers=chunked_media, timeout=5)
    assert first.status_code == 200
    assert bhttp.decode_response(opener.open_all(first.content)).status == 200
    again = requests.post(url, data=chunked_body, headers=chunked_media, timeout=5)
    assert again.status_code == 400 and again.json()["title"] == "Replayed request"


def _sealed_exchange(gateway: LiveServer, inner: bhttp.Request) -> bhttp.Response:
    sealed, context = ohttp.encapsulate_request(_keys(gateway), inner.to_bytes())
    answer = requests.post(gateway.url + "/gateway", data=sealed,
                           headers={"Content-Type": consts.MEDIA_TYPE_REQUEST}, timeout=10)
    assert answer.status_code == 200
    return bhttp.decode_response(context.decapsulate(answer.content))


def test_inner_errors_are_sealed(live_server: Start, tmp_path: Path) -> None:
    echo, gateway, _relay = _stack(live_server, tmp_path, date_window=30, target_timeout=5)
    forbidden = _sealed_exchange(gateway, build_request("GET", "http://127.0.0.1:1/x", None, None))
    assert forbidden.status == 403
    stale = _sealed_exchange(gateway, build_request("GET", echo.url + "/", None, None,
                                                    now=time.time() - 3600))
    assert stale.status == 400
    assert json.loads(stale.content)["type"] == consts.PROBLEM_DATE
    assert stale.header("date") is not None
    assert _sealed_exchange(gateway, build_request("GET", echo.url + "/", None, None)).status \
        == 200
    sealed, context = ohttp.encapsulate_request(_keys(gateway), b"\x00\x03GE")
    answer = requests.post(gateway.url + "/gateway", data=sealed,
                           headers={"Content-Type": consts.MEDIA_TYPE_REQUEST}, timeout=5)
    assert bhttp.decode_response(context.decapsulate(answer.content)).status == 400

    dead_port = free_port()
    down = live_server(create_gateway, db=str(tmp_path / "down.db"),
                       targets=[f"http://127.0.0.1:{dead_port}"])
    unreachable = _sealed_exchange(down, build_request("GET", f"http://127.0.0.1:{dead_port}/",
                                                       None, None))
    assert unreachable.status == 502
    crash = _sealed_exchange(gateway, build_request("GET", echo.url + "/fail", None, None))
    assert crash.status == 422  # the target's own error passes through, sealed


def test_relay_secret_rate_limit_and_unavailability(live_server: Start, tmp_path: Path) -> None:
    echo, gateway, relay = _stack(live_server, tmp_path, relay_secret="relay-shared-secret-1")
    direct = requests.post(gateway.url + "/gateway", data=b"x",
                           headers={"Content-Type": consts.MEDIA_TYPE_REQUEST}, timeout=5)
    assert direct.status_code == 403
    assert ObliviousClient(relay.url).request("GET", echo.url + "/").status == 200

    limited = live_server(create_relay, gateway_url=gateway.url + "/gateway", rate_limit=2,
                          rate_window=60)
    statuses = [requests.post(limited.url + "/relay", data=b"x", timeout=5,
                              headers={"Content-Type": consts.MEDIA_TYPE_REQUEST})
                for _ in range(3)]
    assert [s.status_code for s in statuses[:2]] == [403, 403]  # no secret: gateway refuses
    assert statuses[2].status_code == 429
    assert int(statuses[2].headers["Retry-After"]) >= 1

    with pytest.raises(RelayUnavailable):
        ObliviousClient(f"http://127.0.0.1:{free_port()}").request("GET", echo.url + "/")
    orphan = live_server(create_relay, gateway_url=f"http://127.0.0.1:{free_port()}/gateway")
    with pytest.raises(RelayUnavailable):
        ObliviousClient(orphan.url, _keys(gateway).to_bytes()).request("GET", echo.url + "/")
    with pytest.raises(RequestRejected):
        ObliviousClient(limited.url, _keys(gateway).to_bytes()).request("GET", echo.url + "/")
    for server in (relay, gateway, limited):
        server.stop()
    assert find_leaks(limited.logs().splitlines() + gateway.logs().splitlines(),
                      ["relay-shared-secret-1"]) == []


def test_key_rotation_refetch_and_key_mismatch(live_server: Start, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "gateway.db")
    echo, _gateway, relay = _stack(live_server, tmp_path, db=db, key_refresh=0.2)
    client = ObliviousClient(relay.url)
    assert client.request("GET", echo.url + "/").status == 200
    old_id = client.key_config().key_id
    assert gateway_cli(["keys", "rotate", "--db", db, "--grace", "3600"]) == 0
    time.sleep(0.3)
    assert client.request("GET", echo.url + "/").status == 200  # old key: still in grace
    assert client.key_config().key_id == old_id
    assert gateway_cli(["keys", "retire", "--db", db, "--key-id", str(old_id)]) == 0
    time.sleep(0.3)
    assert client.request("GET", echo.url + "/").status == 200  # refetched and retried
    assert client.key_config().key_id != old_id
    capsys.readouterr()

    by_url = ObliviousClient(relay.url, _gateway.url + "/ohttp-keys")  # keys from a URL
    assert by_url.request("GET", echo.url + "/").status == 200
    assert by_url.key_config().key_id == client.key_config().key_id

    stale = ohttp.GatewayKey.generate(old_id).config.to_bytes()  # a config the gateway lacks
    with pytest.raises(KeyMismatch):
        ObliviousClient(relay.url, stale).request("GET", echo.url + "/")


def test_chunked_mode_streams_a_long_response(live_server: Start, tmp_path: Path) -> None:
    echo, _gateway, relay = _stack(live_server, tmp_path)
    payload = os.urandom(300_000)
    client = ObliviousClient(relay.url, chunked=True)
    resp = client.request("PUT", echo.url + "/big?x=1", data=payload)
    assert resp.status == 200
    assert bytes.fromhex(resp.json()["body"]) == payload
    assert resp.json()["query"] == "x=1"
    assert client.request("GET", "http://127.0.0.1:1/").status == 403  # sealed, chunked
    old = build_request("GET", echo.url + "/", None, None, now=time.time() - 3600)
    stale = client.request("GET", echo.url + "/", headers={"Date": old.header("date") or ""})
    assert stale.status == 400 and stale.headers["date"]


@pytest.mark.postgres
def test_two_gateways_share_keys_and_replay_cache(live_server: Start, pg_dsn: str) -> None:
    echo = live_server(create_echo_app)
    first = live_server(create_gateway, db=pg_dsn, targets=[echo.url])
    second = live_server(create_gateway, db=pg_dsn, targets=[echo.url])
    assert _keys(first) == _keys(second)
    inner = build_request("GET", echo.url + "/", None, None).to_bytes()
    sealed, context = ohttp.encapsulate_request(_keys(first), inner)
    media = {"Content-Type": consts.MEDIA_TYPE_REQUEST}
    answer = requests.post(second.url + "/gateway", data=sealed, headers=media, timeout=5)
    assert bhttp.decode_response(context.decapsulate(answer.content)).status == 200
    replay = requests.post(first.url + "/gateway", data=sealed, headers=media, timeout=5)
    assert replay.status_code == 400 and replay.json()["title"] == "Replayed request"


def test_relay_serves_several_gateways(live_server: Start, tmp_path: Path) -> None:
    echo = live_server(create_echo_app)
    first = live_server(create_gateway, db=str(tmp_path / "a.db"), targets=[echo.url])
    second = live_server(create_gateway, db=str(tmp_path / "b.db"), targets=[echo.url])
    relay = live_server(create_relay, gateway_url=first.url + "/gateway",
                        routes={"/relay/second": second.url + "/gateway"})
    assert requests.get(relay.url + "/relay/second/ohttp-keys", timeout=5).content == \
        requests.get(second.url + "/ohttp-keys", timeout=5).content
    second_keys = requests.get(second.url + "/ohttp-keys", timeout=5).content
    sealed, context = ohttp.encapsulate_request(
        ohttp.decode_key_configs(second_keys)[0],
        build_request("GET", echo.url + "/b", None, None).to_bytes())
    media = {"Content-Type": consts.MEDIA_TYPE_REQUEST}
    answer = requests.post(relay.url + "/relay/second", data=sealed, headers=media, timeout=5)
    assert bhttp.decode_response(context.decapsulate(answer.content)).status == 200
    assert ObliviousClient(relay.url).request("GET", echo.url + "/a").status == 200


def test_streamed_response_arrives_piece_by_piece(live_server: Start, tmp_path: Path) -> None:
    echo, _gateway, relay = _stack(live_server, tmp_path)
    payload = os.urandom(200_000)
    client = ObliviousClient(relay.url)
    with client.stream("POST", echo.url + "/s?q=1", data=payload) as resp:
        assert resp.status == 200
        assert resp.headers["content-type"] == "application/json"
        pieces = list(resp.iter_content())
    assert len(pieces) > 1  # the gateway sealed the target's response as it streamed in
    seen = json.loads(b"".join(pieces))
    assert bytes.fromhex(seen["body"]) == payload and seen["query"] == "q=1"
    with client.stream("GET", "http://127.0.0.1:1/") as refused:
        assert refused.status == 403
        assert json.loads(b"".join(refused.iter_content()))["status"] == 403


def test_client_resends_once_when_a_kept_alive_connection_drops(live_server: Start,
                                                                 tmp_path: Path) -> None:
    """The relay closing an idle kept-alive connection as a request goes out surfaces as
    'Connection aborted'. The client sends the same Encapsulated Request again on a new
    connection (safe: the gateway's replay cache refuses a second copy), but does not retry
    an unreachable relay, nor a second abort."""
    import urllib3

    echo, _gateway, relay = _stack(live_server, tmp_path)
    client = ObliviousClient(relay.url)
    real_send = client.session.send
    bodies: list[bytes] = []

    def flaky_send(prepared: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if prepared.method == "POST":
            assert isinstance(prepared.body, bytes)
            bodies.append(prepared.body)
            if len(bodies) in fails:
                raise requests.ConnectionError(urllib3.exceptions.ProtocolError(
                    "Connection aborted.", ConnectionResetError(104, "reset")))
        return real_send(prepared, **kwargs)

    client.session.send = flaky_send  # type: ignore[method-assign]
    fails = {1}
    assert client.request("GET", echo.url + "/once").status == 200
    assert len(bodies) == 2 and bodies[0] == bodies[1]  # the very same sealed request

    bodies.clear()
    fails = {1, 2}
    with pytest.raises(RelayUnavailable):
        client.request("GET", echo.url + "/twice")
    assert len(bodies) == 2

    # What a second copy gets if the first one did arrive: refused, not forwarded again.
    sealed = bodies[0]
    first = requests.post(relay.url + "/relay", data=sealed, timeout=5,
                          headers={"Content-Type": consts.MEDIA_TYPE_REQUEST})
    again = requests.post(relay.url + "/relay", data=sealed, timeout=5,
                          headers={"Content-Type": consts.MEDIA_TYPE_REQUEST})
    assert first.status_code == 200 and again.status_code == 400

    bodies.clear()
    fails = set()
    down = ObliviousClient(f"http://127.0.0.1:{free_port()}", _keys(_gateway).to_bytes())
    down_posts: list[int] = []
    down_real = down.session.send

    def counting(prepared: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        down_posts.append(1)
        return down_real(prepared, **kwargs)

    down.session.send = counting  # type: ignore[method-assign]
    with pytest.raises(RelayUnavailable):
        down.request("GET", echo.url + "/")
    assert down_posts == [1]  # refused connection: no resend
