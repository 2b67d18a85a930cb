"""Helpers for the delivery-server tests: a movable clock, an in-process transport, key sets."""

from __future__ import annotations

import io
import json
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from werkzeug.test import Client

from e2ee_core.server.wire import DeviceKeys, PreKey, SignedPreKey
from tests.support import REPO_ROOT, free_port

PASSWORD = "correct horse battery staple"
# Real argon2id, at a cost that keeps the suite fast on a shared 2-core machine.
FAST_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1}


class FakeClock:
    """A clock the test moves by hand (seconds since the epoch, like ``time.time``)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class WSGIAdapter(BaseAdapter):
    """A requests transport that calls a WSGI app in this process (the real app, no network)."""

    def __init__(self, app: Any) -> None:
        super().__init__()
        self.app = app

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: Any = None, verify: Any = True, cert: Any = None,
             proxies: Mapping[str, str] | None = None) -> requests.Response:
        body = request.body
        if isinstance(body, str):
            body = body.encode()
        client = Client(self.app)
        answer = client.open(request.path_url, method=request.method,
                             headers=dict(request.headers), data=body or b"")
        response = requests.Response()
        response.status_code = answer.status_code
        response.headers = CaseInsensitiveDict(dict(answer.headers))
        response.raw = io.BytesIO(answer.get_data())
        response._content = answer.get_data()  # requests has no public setter
        response.url = request.url or ""
        response.request = request
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        pass


def in_process_session(app: Any) -> requests.Session:
    session = requests.Session()
    session.mount("http://e2ee.test", WSGIAdapter(app))
    return session


def device_keys(one_time: int = 5, kem: int = 5, first_id: int = 1) -> DeviceKeys:
    """Random opaque key material of realistic sizes (the server never parses it)."""
    return DeviceKeys(
        registration_id=secrets.randbelow(16380) + 1,
        identity_key=b"\x05" + secrets.token_bytes(32),
        signed_prekey=SignedPreKey(1, b"\x05" + secrets.token_bytes(32), secrets.token_bytes(64)),
        last_resort_kem_prekey=SignedPreKey(1, b"\x08" + secrets.token_bytes(1568),
                                            secrets.token_bytes(64)),
        one_time_prekeys=tuple(PreKey(first_id + i, b"\x05" + secrets.token_bytes(32))
                               for i in range(one_time)),
        kem_prekeys=tuple(SignedPreKey(first_id + 1000 + i, b"\x08" + secrets.token_bytes(1568),
                                       secrets.token_bytes(64)) for i in range(kem)),
    )


def unique_name(prefix: str = "u") -> str:
    """A fresh account name, so tests sharing one PostgreSQL database never collide."""
    return f"{prefix}{secrets.token_hex(5)}"


@dataclass
class ServerProcess:
    """One ``e2ee-server serve`` process tree."""

    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log_file: BinaryIO

    def logs(self) -> str:
        if not self.log_file.closed:
            self.log_file.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if not self.log_file.closed:
            self.log_file.close()


def start_server_process(db: str, work_dir: Path, *, workers: int = 1, threads: int = 4,
                         timeout: float = 60.0, **settings: Any) -> ServerProcess:
    """Run ``python -m e2ee_core.server.cli serve`` and wait until it answers."""
    port = free_port()
    config = work_dir / f"config-{port}.json"
    config.write_text(json.dumps(settings))
    log_path = work_dir / f"server-{port}.log"
    log_file = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "e2ee_core.server.cli", "serve", "--port", str(port), "--db", db,
         "--workers", str(workers), "--threads", str(threads), "--config", str(config)],
        cwd=REPO_ROOT, stdout=log_file, stderr=subprocess.STDOUT)
    server = ServerProcess(f"http://127.0.0.1:{port}", proc, log_path, log_file)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if requests.get(server.url + "/v1/health", timeout=5).status_code == 200:
                return server
        except requests.RequestException:  # not listening yet, or slow under load
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"e2ee-server did not start:\n{server.logs()[-3000:]}")
