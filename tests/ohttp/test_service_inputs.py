"""Property-based tests of the services' request handling (apps called in process through
Flask's WSGI test client): any body, media type or method gives a 4xx problem, never a 500."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ohttp_relay import bhttp, consts, ohttp
from ohttp_relay.client import build_request
from ohttp_relay.gateway_service import create_app as create_gateway
from ohttp_relay.relay_service import RateLimiter
from ohttp_relay.relay_service import create_app as create_relay
from tests.support import free_port

_DIR = Path(tempfile.mkdtemp(prefix="ohttp-props-"))
GATEWAY: Flask = create_gateway({"db": str(_DIR / "gw.db"), "targets": ["http://127.0.0.1:1"],
                                 "max_request_size": 2048})
RELAY: Flask = create_relay({"gateway_url": f"http://127.0.0.1:{free_port()}/gateway",
                             "rate_limit": 0, "max_request_size": 2048})
KEYS = ohttp.decode_key_configs(GATEWAY.test_client().get("/ohttp-keys").data)

media_types = st.sampled_from([consts.MEDIA_TYPE_REQUEST, consts.MEDIA_TYPE_CHUNKED_REQUEST,
                               "text/plain", "message/ohttp-res", ""])


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=3000), media=media_types)
def test_gateway_answers_garbage_with_a_problem(body: bytes, media: str) -> None:
    resp = GATEWAY.test_client().post("/gateway", data=body, content_type=media)
    assert resp.status_code in (400, 413, 415)
    assert resp.content_type == "application/problem+json"


@settings(deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(tail=st.binary(max_size=200), flip=st.integers(0, 10_000))
def test_gateway_answers_damaged_requests_with_400(tail: bytes, flip: int) -> None:
    sealed, _ = ohttp.encapsulate_request(KEYS[0], b"\x00\x03GET\x05https\x01a\x01/" + tail)
    damaged = bytearray(sealed)
    damaged[flip % len(damaged)] ^= 0x01
    resp = GATEWAY.test_client().post("/gateway", data=bytes(damaged),
                                      content_type=consts.MEDIA_TYPE_REQUEST)
    assert resp.status_code == 400
    assert resp.content_type == "application/problem+json"


@settings(deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=3000), media=media_types,
       method=st.sampled_from(["GET", "PUT", "DELETE", "POST"]))
def test_relay_checks_before_forwarding(body: bytes, media: str, method: str) -> None:
    resp = RELAY.test_client().open("/relay", method=method, data=body, content_type=media)
    if method != "POST":
        assert resp.status_code == 405
    elif media not in (consts.MEDIA_TYPE_REQUEST, consts.MEDIA_TYPE_CHUNKED_REQUEST):
        assert resp.status_code == 415
    elif len(body) > 2048:
        assert resp.status_code == 413
    else:
        assert resp.status_code == 502  # well-formed outer request, gateway unreachable
    assert resp.content_type == "application/problem+json"


def test_rate_limiter_windows() -> None:
    limiter = RateLimiter(limit=2, window=10)
    assert limiter.hit("a", now=0) is None and limiter.hit("a", now=1) is None
    assert limiter.hit("a", now=2) == 8
    assert limiter.hit("b", now=2) is None  # per client address
    assert limiter.hit("a", now=10) is None  # a new window


def test_in_process_wsgi_target() -> None:
    """A target mounted in the gateway's process gets the inner request and no client data."""
    app = create_gateway({"db": str(_DIR / "inproc.db"), "targets": [],
                          "target_apps": {"http://echo.internal": "tests.apps:create_echo_app"}})
    client = app.test_client()
    config = ohttp.decode_key_configs(client.get("/ohttp-keys").data)[0]
    inner = build_request("POST", "http://echo.internal/s?q=1", {"Authorization": "Bearer t"},
                          b"body")
    sealed, context = ohttp.encapsulate_request(config, inner.to_bytes())
    outer = client.post("/gateway", data=sealed, content_type=consts.MEDIA_TYPE_REQUEST,
                        environ_base={"REMOTE_ADDR": "198.51.100.7"})
    response = bhttp.decode_response(context.decapsulate(outer.data))
    seen = json.loads(response.content)
    assert (seen["path"], seen["query"], bytes.fromhex(seen["body"])) == ("/s", "q=1", b"body")
    assert seen["headers"]["authorization"] == "Bearer t"
    assert not seen["remote_addr"]  # the gateway has no client address to pass on
    other = build_request("GET", "http://elsewhere.internal/", None, None)
    sealed, context = ohttp.encapsulate_request(config, other.to_bytes())
    outer = client.post("/gateway", data=sealed, content_type=consts.MEDIA_TYPE_REQUEST)
    assert bhttp.decode_response(context.decapsulate(outer.data)).status == 403


def test_several_key_configs_and_p256() -> None:
    """A P-256 key with ChaCha20-Poly1305 beside the X25519 one: both advertised, both open."""
    from ohttp_relay.store import DatabaseStore

    db = str(_DIR / "multi.db")
    app = create_gateway({"db": db, "targets": [], "key_refresh": 0})
    DatabaseStore(db).generate_key(0, ohttp.KEM_P256,
                                   (ohttp.SymmetricSuite(1, ohttp.AEAD_CHACHA20_POLY1305),))
    client = app.test_client()
    configs = ohttp.decode_key_configs(client.get("/ohttp-keys").data)
    assert sorted(c.kem_id for c in configs) == [ohttp.KEM_P256, ohttp.KEM_X25519]
    for config in configs:
        inner = build_request("GET", "http://127.0.0.1:1/", None, None)
        sealed, context = ohttp.encapsulate_request(config, inner.to_bytes())
        outer = client.post("/gateway", data=sealed, content_type=consts.MEDIA_TYPE_REQUEST)
        assert bhttp.decode_response(context.decapsulate(outer.data)).status == 403


def test_response_headers_are_filtered() -> None:
    from ohttp_relay.gateway import forward_headers, response_headers

    fields = [("Content-Type", "text/plain"), ("Connection", "close, x-hop"), ("X-Hop", "1"),
              ("Transfer-Encoding", "chunked"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]
    end_to_end = [("content-type", "text/plain"), ("set-cookie", "a=1"), ("set-cookie", "b=2")]
    assert forward_headers([(n.lower(), v) for n, v in fields]) == end_to_end
    odd = [("Bad Name", "v"), ("X-Nul", "a\x00b")]
    assert list(response_headers(fields + odd)) == end_to_end
