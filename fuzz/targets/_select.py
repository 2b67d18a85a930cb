"""The shared entry of the targets that feed several decoders: the first input byte picks the
decoder, the rest is its input; only the target's typed errors may escape."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def select(decoders: Sequence[Callable[[bytes], None]], accepted: tuple[type[Exception], ...],
           data: bytes) -> None:
    if not data:
        return
    try:
        decoders[data[0] % len(decoders)](data[1:])
    except accepted:
        pass
