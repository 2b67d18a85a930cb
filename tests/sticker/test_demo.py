"""``make demo`` (python -m sticker_search.demo): runs to the ledger and exits 0; Ctrl-C stops
every service it started."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

from tests.support import REPO_ROOT


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_demo_searches_privately_prints_the_ledger_and_exits_0() -> None:
    result = subprocess.run([sys.executable, "-m", "sticker_search.demo"], capture_output=True,
                            text=True, timeout=300, env=_env(), cwd=REPO_ROOT, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "-- search 'cat'" in out and "🐈" in out
    for party in ("Token issuer", "OHTTP relay", "OHTTP gateway", "Sticker service"):
        assert party in out
    assert "issued         : account 'demo' took" in out
    assert "query counted  : 'cat'" in out
    assert "Linkage check: no party holds a record of both" in out
    ports = [int(p) for p in re.findall(r"http://127\.0\.0\.1:(\d+)", out)]
    assert len(ports) == 4
    assert not any(_listening(port) for port in ports)


def test_ctrl_c_stops_every_service() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "sticker_search.demo"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(), cwd=REPO_ROOT)
    assert proc.stdout is not None
    ports: list[int] = []
    deadline = time.monotonic() + 240
    while len(ports) < 4 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        ports += [int(p) for p in re.findall(r"http://127\.0\.0\.1:(\d+)", line)]
    assert len(ports) == 4, "the demo did not start its services"
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "interrupted: all services stopped" in err
    assert not any(_listening(port) for port in ports)
