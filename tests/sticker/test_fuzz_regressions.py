"""Untrusted-input decoders of sticker_search that raised something other than their typed
error (fuzz/ targets "sticker_response" and "web_manifest"): JSON nested past the interpreter's
recursion limit makes json.loads raise RecursionError, which is not a ValueError."""

from __future__ import annotations

import pytest

from sticker_search.client import parse_search_response
from sticker_search.errors import ManifestError, ProtocolError
from sticker_search.webmanifest import Manifest, open_envelope

DEEP = b"[" * 100_000


def test_a_deeply_nested_search_answer_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        parse_search_response(DEEP)


def test_a_deeply_nested_manifest_envelope_is_a_manifest_error() -> None:
    with pytest.raises(ManifestError):
        open_envelope(DEEP)


def test_a_deeply_nested_manifest_is_a_manifest_error() -> None:
    with pytest.raises(ManifestError):
        Manifest.from_json(DEEP)
