"""The console scripts: ``ohttp-gateway keys ...`` and both ``serve`` commands as documented."""

from __future__ import annotations

import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from ohttp_relay import ohttp
from ohttp_relay.client import ObliviousClient
from ohttp_relay.gateway_cli import main as gateway_main
from ohttp_relay.relay_cli import main as relay_main
from tests.apps import create_echo_app
from tests.support import REPO_ROOT, LiveServer, free_port

BIN = Path(sys.executable).parent


def test_keys_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "gw.db")
    assert gateway_main(["keys", "generate", "--db", db]) == 0
    assert gateway_main(["keys", "generate", "--db", db, "--kem", "p256"]) == 0
    assert gateway_main(["keys", "rotate", "--db", db, "--grace", "0"]) == 0
    assert gateway_main(["keys", "retire", "--db", db]) == 0
    export = tmp_path / "keys.bin"
    assert gateway_main(["keys", "list", "--db", db, "--export", str(export)]) == 0
    out = capsys.readouterr().out
    assert "generated key_id=0" in out and "generated key_id=1" in out
    assert "retired key_ids: 0, 1" in out
    assert "key_id=2 kem=0x0020 state=active" in out
    configs = ohttp.decode_key_configs(export.read_bytes())
    assert [c.key_id for c in configs] == [2]
    assert stat.S_IMODE((tmp_path / "gw.db").stat().st_mode) == 0o600
    assert "PRIVATE" not in out.upper()


def test_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert relay_main(["serve", "--gateway", "ftp://x"]) == 2
    assert gateway_main(["serve", "--db", str(tmp_path / "g.db"), "--target", "not-an-origin"]) \
        == 2
    with pytest.raises(SystemExit):
        gateway_main(["keys", "explode", "--db", "x"])
    capsys.readouterr()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*argv: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"{Path(argv[0]).name}-{len(procs)}.log").open("wb")
        proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise AssertionError("service did not start")


@pytest.mark.slow
def test_serve_commands_as_documented(spawn: Callable[..., subprocess.Popen[bytes]],
                                      live_server: Callable[..., LiveServer],
                                      tmp_path: Path) -> None:
    echo = live_server(create_echo_app)
    gw_port, relay_port = free_port(), free_port()
    db = str(tmp_path / "gateway.db")
    spawn(str(BIN / "ohttp-gateway"), "serve", "--host", "127.0.0.1", "--port", str(gw_port),
          "--db", db, "--target", echo.url, "--workers", "1")
    spawn(str(BIN / "ohttp-relay"), "serve", "--host", "127.0.0.1", "--port", str(relay_port),
          "--gateway", f"http://127.0.0.1:{gw_port}/gateway", "--workers", "1")
    _wait(f"http://127.0.0.1:{gw_port}/ohttp-keys")
    _wait(f"http://127.0.0.1:{relay_port}/ohttp-keys")
    resp = ObliviousClient(f"http://127.0.0.1:{relay_port}").request("GET", echo.url + "/hi?x=1")
    assert resp.status == 200 and resp.json()["query"] == "x=1"
    assert stat.S_IMODE(Path(db).stat().st_mode) == 0o600
