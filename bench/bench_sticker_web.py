"""The private sticker search web page in a real browser, on loopback.

    .venv/bin/python -m bench sticker_web [--words N]

Starts the whole stack (issuer, sticker service, gateway, relay, the page's origin) as server
processes and drives Debian's headless Chromium (tests/web/browser.mjs, playwright-core):

1. Keystroke to results: the page is signed in and holds tokens; words are typed one key at a
   time, and each key's time is measured in the page from its ``keydown`` event to the moment
   the result list shows the answer for the text typed so far (seal, relay, gateway, search,
   open, render; one token spent per key). Baseline in the same run: the Python client
   (``StickerClient.search``, tokens cached) sending the same prefixes through the same relay.
   Goal: p50 <= 50 ms.
2. Page weight: the bytes the browser transferred for the page's own files (gzip as served),
   and gzip -9 of the built files. Goal: <= 200 KB compressed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import tempfile
import time
from pathlib import Path

from bench.harness import Latency, header
from sticker_search.client import StickerClient
from sticker_search.stack import Stack
from sticker_search.web import DEFAULT_DIST

ROOT = Path(__file__).resolve().parent.parent
DRIVER = ROOT / "tests" / "web" / "browser.mjs"
WORDS = ("cat", "pizza", "heart", "smile", "elephant", "coffee", "rocket", "thumbs up",
         "rainbow", "guitar", "corazón", "sunflower")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench sticker_web")
    parser.add_argument("--words", type=int, default=len(WORDS))
    args = parser.parse_args(argv)
    words = list(WORDS[:args.words])
    header("Sticker search web page: keystroke to results in Chromium, page weight")
    with tempfile.TemporaryDirectory(prefix="bench-web-") as folder:
        stack = Stack(Path(folder), web=True, relay_rate_limit=0)
        stack.start()
        try:
            credential = stack.add_account("bench")
            job = {"url": stack.page_url(credential), "cookieDomain": "127.0.0.1",
                   "keystrokes": words}
            done = subprocess.run(["node", str(DRIVER), json.dumps(job)], capture_output=True,
                                  text=True, timeout=600, cwd=ROOT, check=True)
            seen = json.loads(done.stdout)
            if seen["errors"] or not seen.get("latencies"):
                raise SystemExit(f"browser run failed: {seen['errors']} {seen.get('status')}")
            browser = Latency("browser keystroke -> results", seen["latencies"])

            client = StickerClient(issuer_url=stack.issuer_url, credential=credential,
                                   relay_url=stack.relay_url, target_url=stack.sticker_url,
                                   batch_size=16)
            client.prefetch_tokens(16)
            python: list[float] = []
            for word in words:
                for end in range(1, len(word) + 1):
                    if not word[:end].strip():
                        continue
                    t0 = time.perf_counter()
                    client.search(word[:end], limit=24)
                    python.append((time.perf_counter() - t0) * 1000)
            baseline = Latency("Python client search (same relay)", python)
        finally:
            stack.stop()
    print(f"   {len(browser.samples_ms)} keystrokes over {len(words)} words")
    print(f"{browser.name:<36} p50 {browser.p50:6.1f} ms  p90 {browser.percentile(90):6.1f} ms"
          f"   baseline {baseline.name}: p50 {baseline.p50:6.1f} ms  p90 "
          f"{baseline.percentile(90):6.1f} ms   p50 ratio {browser.p50 / baseline.p50:4.2f}x"
          f"   goal p50 <= 50 ms: {'met' if browser.p50 <= 50 else 'NOT met'}")
    transferred = sum(int(e["encoded"]) for e in seen["weight"])
    decoded = sum(int(e["decoded"]) for e in seen["weight"])
    built = {p.name: p.read_bytes() for p in sorted(DEFAULT_DIST.iterdir()) if p.is_file()}
    squeezed = sum(len(gzip.compress(b, 9)) for b in built.values())
    raw = sum(len(b) for b in built.values())
    names = ", ".join(e["name"] for e in seen["weight"])
    verdict = "met" if max(transferred, squeezed) <= 200_000 else "NOT met"
    print(f"page weight: transferred {transferred / 1000:.1f} KB as served "
          f"({decoded / 1000:.1f} KB decoded; {names}); built files gzip -9 "
          f"{squeezed / 1000:.1f} KB of {raw / 1000:.1f} KB   goal <= 200 KB: {verdict}")
