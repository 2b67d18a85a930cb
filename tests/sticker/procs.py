"""Start a service factory under gunicorn for these tests.

Same as ``tests.support.start_live_server`` except that the readiness probe tolerates read
timeouts: the sticker service's worker builds its search index (about a second, longer on a
loaded machine) before it answers, and the shared helper only retries connection errors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import requests

from e2ee_core.infra.serving import CONFIG_ENV, factory_path
from tests.support import REPO_ROOT, LiveServer, free_port


def start_service(app_factory: Callable[..., Any] | str, config: Mapping[str, Any],
                  log_dir: Path, *, workers: int = 1, timeout: float = 90.0) -> LiveServer:
    path = app_factory if isinstance(app_factory, str) else factory_path(app_factory)
    port = free_port()
    log_path = log_dir / f"{path.replace(':', '_')}_{port}.log"
    handle = log_path.open("wb")
    env = dict(os.environ, **{CONFIG_ENV: json.dumps(dict(config))})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "e2ee_core.infra.serving", path, "127.0.0.1", str(port),
         str(workers)],
        stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT,
    )
    server = LiveServer(f"http://127.0.0.1:{port}", port, log_path, proc, handle)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            server.stop()
            raise RuntimeError(f"{path} exited during start-up:\n{server.logs()[-4000:]}")
        try:
            requests.get(server.url + "/.well-known/live-server-probe", timeout=5)
            return server
        except requests.RequestException:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{path} did not answer within {timeout}s:\n{server.logs()[-4000:]}")
