"""Run the whole private sticker search stack on loopback: issuer, sticker service, gateway,
relay, each as its own server process started through its console script.

Used by ``make demo`` (:mod:`sticker_search.demo`), ``sticker-search stack up`` and the
end-to-end tests. Every process writes its log to ``<base_dir>/<name>.log``; every store is an
SQLite file in ``base_dir``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import requests

import sticker_search
from sticker_search.errors import ServiceUnavailable

# Console script -> module with the same ``main`` (used when the script is not installed).
_SCRIPTS = {
    "token-issuer": "credentials.cli",
    "ohttp-gateway": "ohttp_relay.gateway_cli",
    "ohttp-relay": "ohttp_relay.relay_cli",
    "sticker-search": "sticker_search.cli",
}
START_TIMEOUT = 90.0  # a shared, loaded 2-core machine may take a while to fork workers
STOP_TIMEOUT = 15.0


def command(script: str) -> list[str]:
    """argv prefix for a console script: the executable next to ``sys.executable``, or
    ``python -m module`` when it is not installed there."""
    candidate = Path(sys.executable).parent / script
    if candidate.exists():
        return [str(candidate)]
    return [sys.executable, "-m", _SCRIPTS[script]]


def prepare_folder(folder: Path) -> None:
    """Create the stack's folder 0700 (its stores hold the issuer's and the gateway's private
    keys and account hashes, its logs the services' events); an existing one is left as is."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        return
    os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def service_env() -> dict[str, str]:
    """The environment a service process is started with (this checkout on PYTHONPATH)."""
    env = dict(os.environ)
    package_root = str(Path(sticker_search.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Service:
    """One running service process."""

    name: str
    url: str
    log_path: Path
    proc: subprocess.Popen[bytes]
    databases: list[Path] = field(default_factory=list)
    _log: IO[bytes] | None = field(default=None, repr=False)

    def logs(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM (a graceful stop), SIGKILL after a timeout."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None


class Stack:
    """The four services on free loopback ports, stores and logs under ``base_dir``."""

    def __init__(self, base_dir: Path, *, host: str = "127.0.0.1", workers: int = 1,
                 query_stats: bool = True, issuer_rate_limit: int | None = None,
                 relay_rate_limit: int | None = None, web: bool = False) -> None:
        self.base_dir = Path(base_dir)
        #: Also serve the web page (``sticker-search web``; needs ``make web``'s build).
        self.web = web
        self.web_key = self.base_dir / "web-signing.key"
        self.host = host
        self.workers = workers
        self.query_stats = query_stats
        self.issuer_rate_limit = issuer_rate_limit
        self.relay_rate_limit = relay_rate_limit
        self.services: dict[str, Service] = {}
        self.issuer_db = self.base_dir / "issuer.sqlite3"
        self.gateway_db = self.base_dir / "gateway.sqlite3"
        self.spent_db = self.base_dir / "sticker-spent.sqlite3"
        self.stats_db = self.base_dir / "sticker-stats.sqlite3"

    # -- URLs ------------------------------------------------------------------------------------
    def url(self, name: str) -> str:
        return self.services[name].url

    @property
    def issuer_url(self) -> str:
        return self.url("issuer")

    @property
    def sticker_url(self) -> str:
        return self.url("sticker")

    @property
    def gateway_url(self) -> str:
        return self.url("gateway") + "/gateway"

    @property
    def relay_url(self) -> str:
        return self.url("relay")

    @property
    def web_url(self) -> str:
        return self.url("web")

    def page_url(self, credential: str) -> str:
        """The web page signed in as ``credential`` (in the fragment, which browsers never
        send to a server)."""
        return f"{self.web_url}/#credential={credential}"

    # -- life cycle ------------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str], probe: str, databases: list[Path],
               port: int) -> Service:
        log_path = self.base_dir / f"{name}.log"
        handle = log_path.open("ab")
        proc = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT,
                                env=service_env(),
                                stdin=subprocess.DEVNULL, start_new_session=True)
        service = Service(name, f"http://{self.host}:{port}", log_path, proc, databases, handle)
        self.services[name] = service
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServiceUnavailable(f"{name} exited during start-up (see {log_path})")
            try:
                requests.get(service.url + probe, timeout=2)
                return service
            except requests.RequestException:
                time.sleep(0.1)
        raise ServiceUnavailable(f"{name} did not start within {START_TIMEOUT:.0f} s")

    def start(self) -> Stack:
        """Start issuer, sticker service, gateway and relay (in that order) and wait for each."""
        prepare_folder(self.base_dir)
        workers = ["--workers", str(self.workers)]
        web_port = free_port(self.host) if self.web else 0
        # The page's origin may call the issuer and the relay from browsers (CORS).
        cors = ["--cors-origin", f"http://{self.host}:{web_port}"] if self.web else []
        try:
            port = free_port(self.host)
            issuer = [*command("token-issuer"), "serve", "--host", self.host, "--port",
                      str(port), "--db", str(self.issuer_db), "--issuer-name",
                      f"{self.host}:{port}", *workers, *cors]
            if self.issuer_rate_limit is not None:
                issuer += ["--rate-limit", str(self.issuer_rate_limit)]
            self._spawn("issuer", issuer, "/.well-known/private-token-issuer-directory",
                        [self.issuer_db], port)

            port = free_port(self.host)
            sticker = [*command("sticker-search"), "serve", "--host", self.host, "--port",
                       str(port), "--issuer", self.issuer_url, "--spent-db", str(self.spent_db),
                       *workers]
            databases = [self.spent_db]
            if self.query_stats:
                sticker += ["--query-stats", str(self.stats_db)]
                databases.append(self.stats_db)
            self._spawn("sticker", sticker, "/v1/stickers/1f408", databases, port)

            port = free_port(self.host)
            gateway = [*command("ohttp-gateway"), "serve", "--host", self.host, "--port",
                       str(port), "--db", str(self.gateway_db), "--target", self.sticker_url,
                       *workers, "--threads", "2"]
            self._spawn("gateway", gateway, "/ohttp-keys", [self.gateway_db], port)

            port = free_port(self.host)
            relay = [*command("ohttp-relay"), "serve", "--host", self.host, "--port", str(port),
                     "--gateway", self.gateway_url, *workers, "--threads", "2", *cors]
            if self.relay_rate_limit is not None:
                relay += ["--rate-limit", str(self.relay_rate_limit)]
            self._spawn("relay", relay, "/ohttp-keys", [], port)

            if self.web:
                web = [*command("sticker-search"), "web", "--host", self.host, "--port",
                       str(web_port), "--relay", self.relay_url, "--issuer", self.issuer_url,
                       "--target", self.sticker_url, "--signing-key", str(self.web_key)]
                self._spawn("web", web, "/config.json", [], web_port)
        except BaseException:
            self.stop()
            raise
        return self

    def add_account(self, name: str) -> str:
        """Create an issuer account; return its bearer credential."""
        result = subprocess.run(
            [*command("token-issuer"), "accounts", "add", name, "--db", str(self.issuer_db)],
            capture_output=True, text=True, env=service_env(), timeout=60, check=False)
        lines = result.stdout.strip().splitlines()
        if result.returncode != 0 or not lines:
            raise ServiceUnavailable("token-issuer could not create the account")
        return lines[-1].strip()

    def stop(self) -> None:
        """Stop every service (reverse start order)."""
        for service in reversed(list(self.services.values())):
            service.stop()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
