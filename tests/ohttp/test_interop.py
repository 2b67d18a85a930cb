"""Cross-implementation: a Node OHTTP peer (@hpke/core, @hpke/dhkem-x25519, bhttp-js) against
our relay, gateway and client."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ohttp_relay import bhttp, ohttp
from ohttp_relay.gateway_service import create_app as create_gateway
from ohttp_relay.relay_service import create_app as create_relay
from ohttp_relay.replay import format_http_date
from tests.apps import create_echo_app
from tests.support import LiveServer, NodePeer

pytestmark = pytest.mark.interop


def test_node_peer_reproduces_appendix_a(node_peer: Callable[..., NodePeer],
                                         vectors: Callable[[str], dict[str, Any]]) -> None:
    peer = node_peer("ohttp_peer.mjs")
    for v in vectors("rfc9458")["vectors"]:
        answer = peer.call(
            op="vector", key_config=v["key_config"], request_bhttp=v["request_bhttp"],
            ephemeral_sk=v["client_ephemeral_secret_key"],
            ephemeral_pk=v["client_ephemeral_public_key"],
            encapsulated_response=v["encapsulated_response"])
        assert answer["encapsulated_request"] == v["encapsulated_request"]
        assert answer["response_bhttp"] == v["response_bhttp"]


def test_node_client_through_our_relay_and_gateway(
        node_peer: Callable[..., NodePeer], live_server: Callable[..., LiveServer],
        tmp_path: Path) -> None:
    echo = live_server(create_echo_app)
    gateway = live_server(create_gateway, db=str(tmp_path / "gw.db"), targets=[echo.url])
    relay = live_server(create_relay, gateway_url=gateway.url + "/gateway")
    peer = node_peer("ohttp_peer.mjs")
    answer = peer.call(op="request", relay_url=relay.url, method="POST",
                       url=echo.url + "/stickers?q=caf%C3%A9",
                       # the gateway refuses undated requests (RFC 9458 §6.5 replay defence)
                       headers={"X-Test": "node", "Date": format_http_date(time.time())},
                       body=b"from node".hex())
    assert answer["outer_status"] == 200 and answer["status"] == 200
    seen = json.loads(bytes.fromhex(answer["body"]))
    assert (seen["method"], seen["path"], seen["query"]) == ("POST", "/stickers", "q=caf%C3%A9")
    assert seen["headers"]["x-test"] == "node"
    assert bytes.fromhex(seen["body"]) == b"from node"
    assert answer["headers"]["content-type"] == "application/json"
    # A target outside the allowlist: the sealed 403 is decoded by bhttp-js too.
    refused = peer.call(op="request", relay_url=relay.url, method="GET",
                        url="http://127.0.0.1:1/",
                        headers={"Date": format_http_date(time.time())})
    assert refused["status"] == 403


def test_our_client_opens_responses_sealed_by_node(node_peer: Callable[..., NodePeer]) -> None:
    peer = node_peer("ohttp_peer.mjs")
    key = ohttp.GatewayKey.generate(42)
    for response in (bhttp.Response(200, (("content-type", "text/plain"),), b"hi"),
                     bhttp.Response(404, (), b"", (("x-trailer", "t"),)),
                     bhttp.Response(200, (), b"\x00" * 5000)):
        request = bhttp.Request("GET", "https", "target.example", "/a?b=c", (("x-y", "z"),))
        sealed, context = ohttp.encapsulate_request(key.config, request.to_bytes(),
                                                    suite=ohttp.SymmetricSuite(1, 1))
        answer = peer.call(op="gateway", private_key=key.private_key.hex(),
                           encapsulated_request=sealed.hex(),
                           response_bhttp=response.to_bytes().hex())
        assert bytes.fromhex(answer["request"]) == request.to_bytes()
        assert (answer["method"], answer["url"]) == ("GET", "https://target.example/a?b=c")
        opened = context.decapsulate(bytes.fromhex(answer["encapsulated_response"]))
        assert bhttp.decode_response(opened) == response
        # bhttp-js decodes what our encoder wrote
        decoded = peer.call(op="decode_response", bhttp=response.to_bytes().hex())
        assert decoded["status"] == response.status
        assert bytes.fromhex(decoded["body"]) == response.content
