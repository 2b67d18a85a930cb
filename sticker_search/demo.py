"""``make demo``: the product's main job, on loopback.

Starts the token issuer, sticker service, OHTTP gateway and OHTTP relay as separate server
processes (their console scripts) with SQLite stores in a temporary folder, creates a demo
account, performs a few private searches (tokens fetched directly from the issuer, queries sent
through relay and gateway), prints the results, then the privacy ledger (what each party
recorded), and stops everything, also on Ctrl-C.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from sticker_search import ledger
from sticker_search.cli import format_table
from sticker_search.client import StickerClient
from sticker_search.errors import StickerSearchError
from sticker_search.stack import Stack

SEARCHES: tuple[tuple[str, str | None], ...] = (
    ("cat", None),
    ("pizz", None),         # still typing
    ("corazón", "es"),      # Spanish, with its accent
    ("elephnat", None),     # a typo
    ("猫", "ja"),           # Japanese
    ("thumbs up", None),
)
# The demo client connects from its own loopback address, so the ledger can tell the client's
# address apart from the services' (all of them listen on 127.0.0.1).
CLIENT_ADDRESS = "127.0.0.2"


class _SourceAddressAdapter(HTTPAdapter):
    """Connections leave from a chosen local address."""

    def __init__(self, source: str) -> None:
        self._source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self._source, 0)
        super().init_poolmanager(*args, **kwargs)


def client_session(source: str | None) -> requests.Session:
    """A session whose connections come from ``source`` (when it can be bound here)."""
    session = requests.Session()
    session.trust_env = False
    if source:
        adapter = _SourceAddressAdapter(source)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
    return session


def _bindable(address: str) -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((address, 0))
        return True
    except OSError:
        return False


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(base: Path) -> int:
    """Run the demo with stores and logs in ``base``; return the exit status."""
    print("== Private sticker search: Privacy Pass tokens + Oblivious HTTP, all on loopback")
    print(f"   stores and logs: {base}")
    started = time.monotonic()
    stack = Stack(base, workers=1)
    try:
        stack.start()
        print(f"   started 4 services in {time.monotonic() - started:.1f} s:")
        print(f"     token issuer     {stack.issuer_url}")
        print(f"     sticker service  {stack.sticker_url}")
        print(f"     OHTTP gateway    {stack.gateway_url}")
        print(f"     OHTTP relay      {stack.relay_url}")
        account = "demo"
        credential = stack.add_account(account)
        print(f"   created account {account!r} at the issuer\n")

        source = CLIENT_ADDRESS if _bindable(CLIENT_ADDRESS) else None
        client = StickerClient(issuer_url=stack.issuer_url, credential=credential,
                               relay_url=stack.relay_url, target_url=stack.sticker_url,
                               batch_size=8, session=client_session(source))
        for query, lang in SEARCHES:
            t0 = time.perf_counter()
            page = client.search(query, lang=lang, limit=5)
            elapsed = (time.perf_counter() - t0) * 1000
            hint = f" (lang={lang})" if lang else ""
            print(f"-- search {query!r}{hint}: {page.total} stickers, top 5, {elapsed:.0f} ms")
            rows = [(str(n), r.glyph, r.title, r.id) for n, r in enumerate(page.results, 1)]
            print(format_table(rows) if rows else "no stickers found")
            print()
        print(f"   tokens left in the client's cache: {client.cached_tokens()}\n")
    except StickerSearchError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        stack.stop()
        for service in stack.services.values():
            print(f"--- last lines of {service.name}.log:\n{service.logs()[-1500:]}",
                  file=sys.stderr)
        return 1
    finally:
        stack.stop()

    markers: dict[str, list[str | bytes]] = {
        "account": [account],
        "credential": [credential],
        "client address": [source] if source else [],
        "query": [q for q, _ in SEARCHES],
    }
    print("== Privacy ledger: every log line and database row each party wrote")
    print(f"   (client address: {source or 'not separable on this machine'}; "
          f"account: {account!r})\n")
    print(ledger.render(ledger.collect(stack), markers))
    print("\n== The same private search from a web page (all services are stopped now): run\n"
          "   .venv/bin/sticker-search stack up\n"
          "   and open the web page URL it prints (\"or open http://127.0.0.1:…/#credential=…\")")
    return 0


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)  # also when started with SIGINT ignored
    with tempfile.TemporaryDirectory(prefix="sticker-demo-") as folder:
        try:
            return run(Path(folder))
        except KeyboardInterrupt:
            print("\ninterrupted: all services stopped", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
