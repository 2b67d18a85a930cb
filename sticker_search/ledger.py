"""The privacy ledger: everything each party of a running stack recorded, and what it reveals.

Collects every log line and every database row of the issuer, relay, gateway and sticker
service (:class:`sticker_search.stack.Stack`), and answers "does any record of this party hold
this account / credential / client address / query?". ``make demo`` prints it; the end-to-end
tests assert on it.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service_kit.logging_filter import secret_forms
from sticker_search.stack import Stack
from sticker_search.text import tokenize

PARTIES = ("issuer", "relay", "gateway", "sticker")
PARTY_TITLES = {
    "issuer": "Token issuer",
    "relay": "OHTTP relay",
    "gateway": "OHTTP gateway",
    "sticker": "Sticker service",
}
# What each party sees by protocol role (what it *records* is computed from its records).
PARTY_SEES = {
    "issuer": "the account (bearer credential) and how many tokens it takes; blinded messages",
    "relay": "the client's address and the size of encrypted messages; no plaintext",
    "gateway": "decrypted requests (target, query) from the relay; never the client's address",
    "sticker": "queries and unlinkable tokens; neither the client's address nor the account",
}


def _cell(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def sqlite_rows(path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """Every row of every table of the SQLite database at ``path`` as text cells."""
    if not path.exists():
        return []
    rows: list[tuple[str, tuple[str, ...]]] = []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                rows.append((table, tuple(_cell(v) for v in row)))
    return rows


@dataclass
class PartyRecords:
    """All a party wrote down: its log lines and its database rows."""

    party: str
    log_lines: list[str] = field(default_factory=list)
    rows: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)

    def records(self) -> list[str]:
        """Each record (log line or row) as one line of text."""
        return [*self.log_lines, *(f"{table}: {' | '.join(row)}" for table, row in self.rows)]

    def holding(self, value: str | bytes) -> list[str]:
        """The records that contain ``value``: text as whole words, raw or search-normalised
        ("cat" is not in "application"); bytes in any spelling (raw, hex, base64)."""
        encoded: set[str] = set()
        words: set[str] = set()
        if isinstance(value, str):
            words = {value, " ".join(tokenize(value))} - {""}
        else:
            encoded = secret_forms(value)
        patterns = [re.compile(r"(?<!\w)" + re.escape(w) + r"(?!\w)", re.IGNORECASE)
                    for w in words]
        return [r for r in self.records()
                if any(form in r for form in encoded) or any(p.search(r) for p in patterns)]

    def table_counts(self) -> Counter[str]:
        return Counter(table for table, _ in self.rows)

    def event_counts(self) -> Counter[str]:
        """Counts of ``event=NAME`` / message kinds in the service's own log lines."""
        events: Counter[str] = Counter()
        for line in self.log_lines:
            if "event=" in line:
                events[line.split("event=", 1)[1].split()[0]] += 1
            elif " INFO " in line and not line.startswith("["):
                events[" ".join(line.split(" INFO ", 1)[1].split()[1:3])] += 1
        return events


def collect(stack: Stack) -> dict[str, PartyRecords]:
    """The records of every party of ``stack`` (call after its processes stopped or idle)."""
    found: dict[str, PartyRecords] = {}
    for name in PARTIES:
        service = stack.services.get(name)
        if service is None:
            continue
        found[name] = PartyRecords(
            name, service.logs().splitlines(),
            [row for db in service.databases for row in sqlite_rows(db)])
    return found


def exposure(records: Mapping[str, PartyRecords], markers: Mapping[str, Iterable[str | bytes]]
             ) -> dict[str, dict[str, list[str]]]:
    """``{party: {marker kind: [records holding one]}}`` for each kind of marker (e.g.
    ``{"account": [...], "address": [...], "query": [...]}``)."""
    result: dict[str, dict[str, list[str]]] = {}
    for party, party_records in records.items():
        result[party] = {}
        for kind, values in markers.items():
            hits: list[str] = []
            for value in values:
                hits.extend(party_records.holding(value))
            result[party][kind] = hits
    return result


def render(records: Mapping[str, PartyRecords],
           markers: Mapping[str, Iterable[str | bytes]]) -> str:
    """The ledger as text: per party, what it sees, what it recorded, and which markers its
    records hold."""
    marker_lists = {kind: list(values) for kind, values in markers.items()}
    table = exposure(records, marker_lists)
    out: list[str] = []
    for party, party_records in records.items():
        out.append(f"{PARTY_TITLES.get(party, party)}")
        out.append(f"  sees by design : {PARTY_SEES.get(party, '?')}")
        tables = party_records.table_counts()
        if tables:
            out.append("  database rows  : " + ", ".join(
                f"{name} x{count}" for name, count in sorted(tables.items())))
        events = party_records.event_counts()
        out.append(f"  log lines      : {len(party_records.log_lines)}"
                   + (" (" + ", ".join(f"{e} x{n}" for e, n in events.most_common(5)) + ")"
                      if events else ""))
        for table_name, row in party_records.rows:
            if table_name == "issuer_counters":
                out.append(f"  issued         : account {row[0]!r} took {row[2]} tokens")
            elif table_name == "issuer_accounts":
                out.append(f"  account        : {row[0]!r}")
            elif table_name == "sticker_query_stats":
                lang = f" [{row[1]}]" if row[1] else ""
                out.append(f"  query counted  : {row[0]!r}{lang} x{row[2]}")
        held = [kind for kind, hits in table[party].items() if hits]
        clean = [kind for kind, hits in table[party].items() if not hits]
        out.append("  records hold   : " + (", ".join(held) or "none of the markers")
                   + ("; never: " + ", ".join(clean) if clean else ""))
        out.append("")
    linking = [party for party, kinds in table.items()
               if kinds.get("query") and (kinds.get("account") or kinds.get("address"))]
    out.append("Linkage check: " + (
        "no party holds a record of both who searched and what was searched"
        if not linking else "PARTIES LINKING IDENTITY AND QUERY: " + ", ".join(linking)))
    return "\n".join(out)
