"""The shared entry of the targets that feed several decoders: the first input byte picks the
decoder, the rest is its input; only the target's typed errors may escape."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol


def select(decoders: Sequence[Callable[[bytes], None]], accepted: tuple[type[Exception], ...],
           data: bytes) -> None:
    if not data:
        return
    try:
        decoders[data[0] % len(decoders)](data[1:])
    except accepted:
        pass


def json_body(raw: bytes) -> Any:
    """The JSON an app would hand its decoder (``None`` for what it refuses as 400)."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # the apps refuse these as 400
        return None


class JsonWire(Protocol):
    """A wire type: decoded from JSON, encoded back."""

    @classmethod
    def from_json(cls, obj: Any) -> Any: ...
    def to_json(self) -> Any: ...


def json_round_trip(kind: type[JsonWire], body: bytes) -> None:
    """Decode ``body`` as ``kind``; what decodes must encode and decode to the same value."""
    value = kind.from_json(json_body(body))
    again = kind.from_json(json.loads(json.dumps(value.to_json())))
    assert again == value, "wire value does not round-trip"
