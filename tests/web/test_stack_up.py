"""``sticker-search stack up`` serves the web page and says how to open it; ``make demo`` ends
with how to open it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from sticker_search.stack import command
from tests.web.test_page import _require_browser


def test_stack_up_prints_the_page_url_signed_in(tmp_path: Path) -> None:
    _require_browser()  # the page must be built
    proc = subprocess.Popen([*command("sticker-search"), "stack", "up", "--dir",
                             str(tmp_path / "stack")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if "press Ctrl-C" in line:
                break
        opener = [line for line in lines if line.strip().startswith("or open ")]
        assert opener, "\n".join(lines)
        url = opener[0].split()[2]
        assert "/#credential=ppc_" in url
        page = requests.get(url.split("#")[0], timeout=10)
        assert page.status_code == 200
        assert "Content-Security-Policy" in page.headers
        assert any(line.strip().startswith("web page") and "verify-web" in line
                   for line in lines)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    assert proc.returncode == 0


def test_demo_ends_with_how_to_open_the_page() -> None:
    done = subprocess.run([sys.executable, "-m", "sticker_search.demo"], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    tail = done.stdout.rstrip().splitlines()[-3:]
    assert "sticker-search stack up" in "\n".join(tail)
    assert "web page URL" in "\n".join(tail)
