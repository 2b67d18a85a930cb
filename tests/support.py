"""Helpers behind the shared fixtures: live servers (the services' real stack) and Node.js interop
peers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from service_kit.serving import CONFIG_ENV, LIMITS_ENV, METRICS_ENV, factory_path

REPO_ROOT = Path(__file__).resolve().parent.parent
INTEROP_DIR = REPO_ROOT / "tests" / "interop"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    """A service running on its real server stack (service_kit.serving) on a loopback port."""

    url: str
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes]
    _log_handle: Any = field(repr=False, default=None)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None


def start_live_server(
    app_factory: Callable[..., Any] | str,
    config: Mapping[str, Any],
    log_dir: Path,
    *,
    workers: int = 1,
    threads: int = 4,
    keepalive: int = 2,
    timeout: float = 90.0,
    limits: Mapping[str, Any] | None = None,
    metrics_listen: str | None = None,
) -> LiveServer:
    path = app_factory if isinstance(app_factory, str) else factory_path(app_factory)
    port = free_port()
    log_path = log_dir / f"{path.replace(':', '_')}_{port}.log"
    handle = log_path.open("wb")
    env = dict(os.environ, **{CONFIG_ENV: json.dumps(dict(config))})
    if limits:
        env[LIMITS_ENV] = json.dumps(dict(limits))
    if metrics_listen:
        env[METRICS_ENV] = metrics_listen
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "service_kit.serving", path, "127.0.0.1", str(port),
         str(workers), str(threads), str(keepalive)],
        stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT,
    )
    server = LiveServer(f"http://127.0.0.1:{port}", port, log_path, proc, handle)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            server.stop()
            raise RuntimeError(f"{path} exited during start-up:\n{server.logs()[-4000:]}")
        try:
            requests.get(server.url + "/.well-known/live-server-probe", timeout=2)
            return server
        except requests.RequestException:  # refused while binding, or slow under load
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"{path} did not answer within {timeout}s:\n{server.logs()[-4000:]}")


class NodePeer:
    """A Node.js process speaking one JSON object per line on stdin/stdout (bytes as hex)."""

    def __init__(self, script: str, *args: str, timeout: float = 60.0) -> None:
        script_path = INTEROP_DIR / script
        if not script_path.exists():
            raise FileNotFoundError(f"no interop script {script}")
        if not (INTEROP_DIR / "node_modules").is_dir():
            raise RuntimeError("npm peers are not installed: run `make test` (npm ci)")
        self.timeout = timeout
        self.proc = subprocess.Popen(
            ["node", str(script_path), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=INTEROP_DIR, text=True, bufsize=1,
        )

    def call(self, request: Mapping[str, Any] | None = None, **fields: Any) -> Any:
        """Send one request, return the decoded answer; raise if the peer reports an error."""
        message = dict(request or {}, **fields)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"node peer exited: {err[-2000:]}")
        answer = json.loads(line)
        if isinstance(answer, dict) and answer.get("error"):
            raise NodePeerError(str(answer["error"]))
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (subprocess.TimeoutExpired, BrokenPipeError, OSError):
                self.proc.kill()
                self.proc.wait(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


class NodePeerError(RuntimeError):
    """The Node.js peer answered ``{"error": ...}``."""
