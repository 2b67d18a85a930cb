"""Each pinned npm peer starts under Node and performs one real operation."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.interop

PEERS = ["blindrsa-ts", "privacypass-ts", "hpke", "bhttp-js", "libsignal",
         "libsignal-protocol-typescript"]


@pytest.mark.parametrize("peer", PEERS)
def test_peer_starts_and_answers(node_peer, peer: str) -> None:  # type: ignore[no-untyped-def]
    proc = node_peer("smoke.mjs")
    assert peer in proc.call(op="ping")["peers"]
    assert proc.call(op=peer)["ok"] is True
