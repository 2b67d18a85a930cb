"""What the client library puts on the wire to the relay: the Encapsulated Request and nothing
that identifies the client beyond its address (the transport is captured at requests' adapter
layer; everything above it is the real client)."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import urllib3

from ohttp_relay import consts, ohttp
from ohttp_relay.client import ObliviousClient
from ohttp_relay.errors import RelayUnavailable

# urllib3's marker: the default User-Agent and Accept-Encoding are left out on the wire
# (tests/ohttp/test_client_headers.py checks what a server receives).
_SUPPRESSED = {"User-Agent": urllib3.util.SKIP_HEADER,
               "Accept-Encoding": urllib3.util.SKIP_HEADER}


class _Capture(requests.adapters.BaseAdapter):
    """Records each prepared request requests would send, then fails it as unreachable."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[requests.PreparedRequest, dict[str, Any]]] = []

    def send(self, request: requests.PreparedRequest, *args: Any,  # type: ignore[override]
             **kwargs: Any) -> requests.Response:
        self.sent.append((request, kwargs))
        raise requests.ConnectionError("captured")

    def close(self) -> None:
        pass


@pytest.mark.parametrize("trust_env", [True, False])
def test_the_outer_request_carries_the_message_and_nothing_identifying(trust_env: bool) -> None:
    session = requests.Session()
    session.trust_env = trust_env
    session.cookies.set("track", "me")  # as if the relay had set one to follow the client
    session.headers["X-Relay-Token"] = "granted"  # set by the caller for the relay: sent
    capture = _Capture()
    session.mount("http://", capture)
    key = ohttp.GatewayKey.generate(1)
    client = ObliviousClient("http://relay.example", ohttp.encode_key_configs([key.config]),
                             session=session)
    with pytest.raises(RelayUnavailable):
        client.request("GET", "http://target.example/q?x=1", headers={"Cookie": "inner"})
    (prepared, kwargs), = capture.sent
    assert prepared.method == "POST" and prepared.url == "http://relay.example/relay"
    assert isinstance(prepared.body, bytes)
    assert dict(prepared.headers) == {**_SUPPRESSED, "Content-Type": consts.MEDIA_TYPE_REQUEST,
                                      "X-Relay-Token": "granted",
                                      "Content-Length": str(len(prepared.body))}
    assert kwargs["timeout"] == client.timeout
    inner, _context = ohttp.decapsulate_request(prepared.body, {1: key}.get)
    assert b"inner" in inner  # the inner request's fields travel sealed, only there


def test_the_key_fetch_through_the_relay_carries_nothing_identifying() -> None:
    session = requests.Session()
    session.cookies.set("track", "me")
    capture = _Capture()
    session.mount("http://", capture)
    client = ObliviousClient("http://relay.example", session=session)
    with pytest.raises(RelayUnavailable):
        client.key_config()
    (prepared, _kwargs), = capture.sent
    assert prepared.method == "GET" and prepared.url == "http://relay.example/ohttp-keys"
    assert dict(prepared.headers) == _SUPPRESSED  # requests adds Host itself on the wire
