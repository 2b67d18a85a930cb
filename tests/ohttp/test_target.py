"""The in-process target: the WSGI environ the gateway builds matches what werkzeug (the
reference WSGI toolkit) builds for the same request, with ``PATH_INFO`` as the services' own
stack gives it to an app served over HTTP (uvicorn's percent-decoding, then a2wsgi's environ),
and a Flask app sees the request."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask, jsonify, request
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder

from ohttp_relay.errors import TargetError
from ohttp_relay.target import WSGITarget, wsgi_environ

_PATH_CHARS = st.sampled_from([*"abcXYZ019-._~/!$&'()*+,;=:@", "%20", "%2F", "%C3%A9", "%00",
                               "%ff"])
_NAMES = st.sampled_from(["accept", "x-custom", "accept-language", "content-type", "date"])
_VALUES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)


def _served_path_info(raw_path: str) -> str:
    """``PATH_INFO`` for ``raw_path`` on the services' stack: uvicorn's httptools protocol
    percent-decodes the path (``urllib.parse.unquote``) into the ASGI scope, and a2wsgi's own
    ``build_environ`` makes the WSGI environ from that scope."""
    from urllib.parse import unquote

    from a2wsgi.wsgi import Body, build_environ

    scope: Any = {"type": "http", "method": "GET", "path": unquote(raw_path),
                  "raw_path": raw_path.encode(), "root_path": "", "query_string": b"",
                  "headers": [], "http_version": "1.1", "scheme": "http",
                  "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1)}
    return str(build_environ(scope, Body(None, None))["PATH_INFO"])  # type: ignore[arg-type]


def _reference(method: str, url: str, headers: list[tuple[str, str]], body: bytes
               ) -> dict[str, Any]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return EnvironBuilder(method=method, base_url=f"{parts.scheme}://{parts.netloc}",
                          path=parts.path, query_string=parts.query, data=body,
                          headers=headers).get_environ()


@settings(max_examples=200, deadline=None)
@given(path=st.lists(_PATH_CHARS, max_size=12).map(lambda p: "/" + "".join(p)),
       query=st.text(st.sampled_from(list("abc=&%20+")), max_size=12),
       headers=st.lists(st.tuples(_NAMES, _VALUES), max_size=5),
       body=st.binary(max_size=64), method=st.sampled_from(["GET", "POST", "PUT"]))
def test_environ_matches_werkzeug(path: str, query: str, headers: list[tuple[str, str]],
                                  body: bytes, method: str) -> None:
    url = "http://echo.internal:8080" + path + (f"?{query}" if query else "")
    ours = wsgi_environ(method, url, headers, body)
    ref = _reference(method, url, headers, body)
    assert ours["PATH_INFO"] == _served_path_info(path)  # what the direct path's stack gives
    for key in ("REQUEST_METHOD", "SCRIPT_NAME", "QUERY_STRING", "SERVER_NAME",
                "SERVER_PORT", "HTTP_HOST", "wsgi.url_scheme", "SERVER_PROTOCOL"):
        assert ours[key] == ref[key], key
    assert ours["CONTENT_LENGTH"] == str(len(body))
    assert ours["wsgi.input"].read() == body
    for name in {n for n, _ in headers}:  # repeats joined with "," (RFC 9110 §5.3)
        values = [v for n, v in headers if n == name]
        if name == "content-type":
            assert ours["CONTENT_TYPE"] == values[0] == ref["CONTENT_TYPE"]
        else:
            assert ours["HTTP_" + name.upper().replace("-", "_")] == ",".join(values)
    assert ours["REMOTE_ADDR"] == ""
    assert ours["RAW_URI"] == path + (f"?{query}" if query else "")


def test_flask_app_in_process_sees_the_request() -> None:
    app = Flask("t")

    @app.route("/<path:rest>", methods=["POST"])
    def echo(rest: str) -> Any:
        return jsonify(rest=rest, q=request.args.get("q"), ct=request.content_type,
                       body=request.get_data().decode(), accept=request.headers.getlist("Accept"),
                       remote=request.remote_addr)

    resp = WSGITarget(app).send(
        "POST", "http://echo.internal/a%20b/%C3%A9?q=caf%C3%A9",
        [("content-type", "text/plain"), ("accept", "a/b"), ("accept", "c/d")], b"hello",
        stream=False)
    assert resp.status == 200
    got = json.loads(resp.read_all(1 << 16))
    assert got == {"rest": "a b/é", "q": "café", "ct": "text/plain", "body": "hello",
                   "accept": ["a/b,c/d"], "remote": ""}


def test_failing_app_is_a_target_error() -> None:
    def broken(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise RuntimeError("boom")

    with pytest.raises(TargetError):
        WSGITarget(broken).send("GET", "http://x/", [], b"")

    def silent(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        return [b"no status"]

    with pytest.raises(TargetError):
        WSGITarget(silent).send("GET", "http://x/", [], b"")
