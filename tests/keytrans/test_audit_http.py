"""The auditor over HTTP, on the services' real server stack: ``e2ee-kt-audit once`` audits a log
served at /v1/kt (head, epochs, append-only), ``e2ee-kt-audit serve`` serves the signatures,
and a client requiring the auditor (AuditorClient) accepts the audited root and refuses a
forked one. Exit status 3 and a halted log on an alarm; 404 problems for what is not audited."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask, Response, abort, jsonify, request

from e2ee_core.keytrans import plexi
from e2ee_core.keytrans.audit_app import create_app as create_audit_app
from e2ee_core.keytrans.audit_cli import main as audit_main
from e2ee_core.keytrans.auditor import AuditorClient, AuditStore, HttpLogSource
from e2ee_core.keytrans.directory import Directory
from e2ee_core.keytrans.errors import AuditorSignatureError, LogUnavailable
from e2ee_core.keytrans.sql_storage import SqlDirectoryStorage
from service_kit.database import Database
from tests.support import LiveServer

VRF_KEY = bytes(range(32))
NS = "chat.example"


def _directory(database: str) -> Directory:
    return Directory(SqlDirectoryStorage(Database(database)), vrf_secret_key=VRF_KEY)


def create_log_app(config: Mapping[str, Any] | None = None) -> Flask:
    """A log server with the delivery server's /v1/kt shapes over a real SQL directory."""
    assert config is not None
    directory = _directory(config["database"])
    app = Flask("test_kt_log")

    @app.get("/v1/kt/head")
    def head() -> Response:
        current = directory.current()
        return jsonify({"epoch": current.epoch, "root_hash": current.root_hash.hex(),
                        "vrf_public_key": directory.vrf_public_key.hex()})

    @app.get("/v1/kt/epochs/<int:epoch>")
    def epoch_root(epoch: int) -> Response:
        if epoch > directory.current().epoch:
            abort(404)
        return jsonify({"epoch": epoch, "root_hash": directory.epoch_hash(epoch).hex()})

    @app.get("/v1/kt/append-only")
    def append_only() -> Response:
        start, end = int(request.args["start"]), int(request.args["end"])
        return Response(directory.append_only_proof(start, end).to_bytes(),
                        mimetype="application/x-protobuf")

    return app


@pytest.fixture
def key_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "auditor.key"
    assert audit_main(["keygen", "--key", str(path)]) == 0
    assert "verifying key" in capsys.readouterr().out
    return path


def test_keygen_writes_a_0600_key_and_refuses_to_overwrite(key_file: Path) -> None:
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert len(key_file.read_bytes()) == 32
    assert audit_main(["keygen", "--key", str(key_file)]) == 2


def test_audit_serve_and_require(live_server: Callable[..., LiveServer], tmp_path: Path,
                                 key_file: Path) -> None:
    log_db, fork_db = str(tmp_path / "log.db"), str(tmp_path / "fork.db")
    audit_db = str(tmp_path / "audit.db")
    honest = _directory(log_db)
    honest.publish({b"alice/1": b"k1"})
    honest.publish({b"bob/1": b"k2"})
    log_server = live_server(create_log_app, database=log_db)
    head = HttpLogSource(log_server.url).head()
    assert (head.epoch, head.root_hash) == (2, honest.epoch_hash(2))

    args = ["--server", log_server.url, "--namespace", NS, "--key", str(key_file),
            "--db", audit_db]
    assert audit_main(["once", *args]) == 0
    honest.publish({b"carol/1": b"k3"})
    assert audit_main(["once", *args]) == 0
    assert AuditStore(audit_db).last(NS) is not None

    auditor_server = live_server(create_audit_app, database=audit_db)
    info = requests.get(auditor_server.url + "/v1/auditor", timeout=10).json()
    vk = bytes.fromhex(info["verifying_key"])
    assert vk == plexi.public_key(key_file.read_bytes())
    assert info["namespaces"] == [NS] and info["halted"] == []

    client = AuditorClient(auditor_server.url, [vk])
    for epoch in (1, 2, 3):
        client.check_epoch(NS, epoch, honest.epoch_hash(epoch))
    plexi_path = requests.get(f"{auditor_server.url}/namespaces/{NS}/audits/3", timeout=10)
    latest = requests.get(f"{auditor_server.url}/v1/signatures/{NS}/latest", timeout=10)
    assert plexi_path.json() == latest.json()
    assert latest.json()["epoch"] == 3

    # a forked view: another client is shown root B for epoch 3 -> refused
    fork = _directory(fork_db)
    fork.publish({b"alice/1": b"k1"})
    fork.publish({b"bob/1": b"k2"})
    fork.publish({b"carol/1": b"evil"})
    with pytest.raises(AuditorSignatureError):
        client.check_epoch(NS, 3, fork.epoch_hash(3))
    # an epoch the auditor has not audited, an unknown log: 404 problems, LogUnavailable
    for path in (f"/v1/signatures/{NS}/4", "/v1/signatures/other.example/1",
                 "/v1/signatures/other.example/latest", f"/v1/signatures/{NS}/x"):
        resp = requests.get(auditor_server.url + path, timeout=10)
        assert resp.status_code == 404
        assert resp.headers["Content-Type"] == "application/problem+json"
    with pytest.raises(LogUnavailable):
        client.check_epoch(NS, 4, honest.epoch_hash(3))

    # the server switches to the forked history: ALARM (exit 3), signing halted and shown
    fork.publish({b"dave/1": b"k4"})
    fork_server = live_server(create_log_app, database=fork_db)
    fork_args = ["--server", fork_server.url, "--namespace", NS, "--key", str(key_file),
                 "--db", audit_db]
    assert audit_main(["once", *fork_args]) == 3
    assert audit_main(["once", *fork_args]) == 3  # halted
    assert audit_main(["run", *fork_args, "--interval", "0.1"]) == 3  # run stops at an alarm
    info = requests.get(auditor_server.url + "/v1/auditor", timeout=10).json()
    assert info["halted"] == [NS]
    client.check_epoch(NS, 3, honest.epoch_hash(3))  # what was signed stays served
    assert audit_main(["clear-halt", "--namespace", NS, "--db", audit_db]) == 0
    honest.publish({})
    assert audit_main(["once", *args]) == 0
    client.check_epoch(NS, 4, honest.epoch_hash(4))


def test_an_unreachable_log_exits_1_and_signs_nothing(tmp_path: Path, key_file: Path) -> None:
    audit_db = str(tmp_path / "audit.db")
    args = ["--server", "http://127.0.0.1:9", "--namespace", NS, "--key", str(key_file),
            "--db", audit_db, "--timeout", "2"]
    assert audit_main(["once", *args]) == 1
    assert AuditStore(audit_db).last(NS) is None


def test_a_world_readable_key_file_is_refused(tmp_path: Path, key_file: Path) -> None:
    key_file.chmod(0o644)
    with pytest.raises(SystemExit, match="0600"):
        audit_main(["once", "--server", "http://127.0.0.1:9", "--namespace", NS, "--key",
                    str(key_file), "--db", str(tmp_path / "a.db")])


def test_the_real_delivery_server_is_audited_over_http(
        live_server: Callable[..., LiveServer], tmp_path: Path, key_file: Path) -> None:
    """``e2ee-kt-audit once`` against ``e2ee-server``'s own /v1/kt endpoints on the serving
    stack: every epoch (device registrations and timer epochs) is audited and signed with the
    root the server publishes for it."""
    from e2ee_core.server.app import create_app as create_server_app
    from e2ee_core.server.client import ServerClient
    from tests.server.support import FAST_ARGON2, PASSWORD, device_keys, unique_name

    server = live_server(create_server_app, db=str(tmp_path / "server.db"),
                         kt_epoch_seconds=3600.0, **FAST_ARGON2)
    for _ in range(2):
        ServerClient(server.url).register(unique_name(), PASSWORD, device_keys())
    audit_db = str(tmp_path / "audit.db")
    args = ["--server", server.url, "--namespace", NS, "--key", str(key_file), "--db", audit_db]
    assert audit_main(["once", *args]) == 0
    ServerClient(server.url).register(unique_name(), PASSWORD, device_keys())
    assert audit_main(["once", *args]) == 0
    source = HttpLogSource(server.url)
    head = source.head()
    assert head.epoch >= 3
    store = AuditStore(audit_db)
    vk = plexi.public_key(key_file.read_bytes())
    for epoch in range(1, head.epoch + 1):
        response = store.signature(NS, epoch)
        assert response is not None
        plexi.require_auditor_signature(response, [vk], NS, epoch, source.epoch_root(epoch))
