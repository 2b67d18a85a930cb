"""Every service, on its real server stack, refuses malformed or ambiguous HTTP/1.1 framing with
a 4xx (as problem+json when it answers) or a closed connection: never served, never a 500, and
it answers normally afterwards. The server's own refusals are documented in docs/serving.md."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.service_kit.probes import PROBES, SERVICES, send_raw, start_service
from tests.support import LiveServer


@pytest.mark.parametrize("name", SERVICES)
def test_every_probe_is_refused_and_the_service_still_answers(
        name: str, live_server: Callable[..., LiveServer], tmp_path: Path) -> None:
    service = start_service(name, live_server, tmp_path)
    port = service.server.port
    url = service.server.url + service.healthy_path
    assert requests.get(url, timeout=10).status_code == 200
    for probe, data in PROBES.items():
        answer = send_raw(port, data, half_close=probe == "pipelined_partial_body")
        statuses = answer.statuses
        assert answer.closed, f"{name}/{probe}: the connection was left open"
        assert len(statuses) <= 1, f"{name}/{probe}: more than one response {statuses}"
        for status in statuses:
            assert 400 <= status < 500 or status in (501, 505), f"{name}/{probe}: {status}"
            head, _, body = answer.data.partition(b"\r\n\r\n")
            assert b"content-type: application/problem+json" in head.lower(), (name, probe)
            assert json.loads(body)["status"] == status
    assert requests.get(url, timeout=10).status_code == 200
    logs = service.server.logs()
    assert "Traceback" not in logs and " 500" not in logs and "status=500" not in logs


def test_probes_get_the_documented_statuses(live_server: Callable[..., LiveServer],
                                            tmp_path: Path) -> None:
    """The status of each refusal, on one service (the same stack serves them all)."""
    service = start_service("gateway", live_server, tmp_path)
    expected = {
        "long_request_line": 414, "long_field": 431, "many_fields": 431, "huge_head": 431,
        "te_other_coding": 501, "http09": 505, "body_over_limit": 413, "absolute_form": 400,
        "duplicate_host": 400, "no_host": 400, "cl_leading_zeros": 400, "cl_te": 400,
        "bare_lf": 400, "obs_fold": 400, "invalid_chunk_size": 400,
    }
    for probe, status in expected.items():
        assert send_raw(service.server.port, PROBES[probe]).statuses == [status], probe
    # Pipelining: the first (complete) request is answered; the second, whose body is short,
    # waits for the rest of its body (until the body-read timeout) and is never served.
    ok = (b"GET /ohttp-keys HTTP/1.1\r\nHost: probe\r\n\r\n"
          + PROBES["pipelined_partial_body"])
    assert send_raw(service.server.port, ok).statuses == [200]


def test_application_mistakes_never_become_tracebacks_or_injected_fields(
        live_server: Callable[..., LiveServer]) -> None:
    from tests.apps import create_environ_app
    from tests.service_kit.probes import send_raw as raw

    server = live_server(create_environ_app)
    port = server.port
    get = b"GET %s HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"
    crashed = raw(port, get % b"/crash")
    assert crashed.statuses == [500] and b"application/problem+json" in crashed.data
    injected = raw(port, get % b"/badheader")
    assert injected.statuses == [500] and b"Set-Cookie" not in injected.data
    assert b"never sent" not in injected.data
    short = raw(port, get % b"/short")  # declares 10 bytes, sends 3: the connection is cut
    assert short.closed and short.data.endswith(b"abc")
    streamed = raw(port, get % b"/stream")
    assert streamed.statuses == [200] and b"transfer-encoding: chunked" in streamed.data.lower()
    seen = json.loads(requests.post(server.url + "/env", data=b"xyz", timeout=5).content)
    assert seen["body"] == "xyz"
    # No process environment variable reaches a request (granian copies them all).
    assert not {k for k in seen["environ"] if k in os.environ and not k.startswith("HTTP_")}
    logs = server.logs()
    assert "secret-crash-detail" not in logs and "Traceback" not in logs
