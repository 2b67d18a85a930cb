"""The privacy ledger's record search: it must find what it looks for, and only that."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sticker_search.ledger import PartyRecords, exposure, render, sqlite_rows


def test_text_markers_match_whole_words_raw_or_normalised() -> None:
    records = PartyRecords("x", ["query counted corazon", "location=3", "peer 127.0.0.23 ok"])
    assert records.holding("corazón") == ["query counted corazon"]
    assert records.holding("cat") == []  # not inside "location"
    assert records.holding("127.0.0.23") == ["peer 127.0.0.23 ok"]
    assert records.holding("127.0.0.2") == []


def test_byte_markers_match_in_hex_and_base64(tmp_path: Path) -> None:
    db = tmp_path / "t.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE spent (token BLOB, n INTEGER)")
        conn.execute("INSERT INTO spent VALUES (?, 1)", (bytes(range(32)),))
    rows = sqlite_rows(db)
    assert rows == [("spent", (bytes(range(32)).hex(), "1"))]
    records = PartyRecords("x", ["token AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"], rows)
    assert len(records.holding(bytes(range(32)))) == 2
    assert records.holding(bytes(range(1, 33))) == []
    assert sqlite_rows(tmp_path / "missing.sqlite3") == []


def test_render_flags_a_party_that_links_identity_and_query() -> None:
    parties = {
        "issuer": PartyRecords("issuer", ["account alice took 8 tokens"]),
        "sticker": PartyRecords("sticker", ["search giraffe from alice"]),
    }
    markers: dict[str, list[str | bytes]] = {"account": ["alice"], "query": ["giraffe"]}
    table = exposure(parties, markers)
    assert table["issuer"]["query"] == [] and table["issuer"]["account"]
    assert "PARTIES LINKING IDENTITY AND QUERY: sticker" in render(parties, markers)
    parties["sticker"] = PartyRecords("sticker", ["search giraffe"])
    assert "no party holds a record of both" in render(parties, markers)
