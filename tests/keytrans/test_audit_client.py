"""A Messenger that requires the auditor (issue #16): with the real delivery server and the real
auditor (its append-only checks against the server's /v1/kt API, its signatures served by
audit_app), an epoch is accepted only once audited, and a forked view shown to one client is
refused by that client although every proof in the fork verifies. SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from e2ee_core.chat_cli import main as chat_main
from e2ee_core.client import EpochNotAudited, ForkedView, Messenger
from e2ee_core.keytrans import plexi
from e2ee_core.keytrans.audit_app import create_app as create_audit_app
from e2ee_core.keytrans.audit_cli import main as audit_main
from e2ee_core.keytrans.auditor import Auditor, AuditStore, HttpLogSource
from e2ee_core.server.app import create_app as create_server_app
from service_kit.database import Database
from tests.server.support import FAST_ARGON2, PASSWORD, WSGIAdapter, unique_name
from tests.support import LiveServer
from tests.transparency.conftest import URL, Server, make_server

AUDITOR_URL = "http://auditor.test"
AUDITOR_KEY = bytes(range(64, 96))
NS = "e2ee.test"
QUIET = {"kt_epoch_seconds": 3600.0}  # no timer epochs during a test


def register(server: Server, name: str | None = None) -> Messenger:
    return Messenger.register(URL, name or unique_name(), PASSWORD, session=server.session,
                              prekeys=4, kem_prekeys=1)


def kinds(device: Messenger) -> list[str]:
    return [n.kind for n in device.notices() if n.kind.startswith("kt_")]


def fork_of(server: Server, tmp_path: Path) -> Server:
    """Another server with the same VRF key on another database (the attacker's second view),
    at the same epoch."""
    key = server.kt.directory._vrf_secret_key
    db = str(tmp_path / f"fork-{secrets.token_hex(4)}.db")
    Database(db).create_schema(
        "CREATE TABLE IF NOT EXISTS kt_keys (name TEXT PRIMARY KEY, value {blob} NOT NULL)")
    Database(db).execute("INSERT INTO kt_keys (name, value) VALUES ('vrf_secret_key', ?)", (key,))
    fork = make_server(db, **QUIET)
    while fork.kt.head().epoch < server.kt.head().epoch:
        fork.kt.publish_pending(force=True)
    return fork


def same_epoch(a: Server, b: Server) -> int:
    while a.kt.head().epoch != b.kt.head().epoch:
        behind = a if a.kt.head().epoch < b.kt.head().epoch else b
        behind.kt.publish_pending(force=True)
    return a.kt.head().epoch


def auditor_for(server: Server, tmp_path: Path) -> tuple[Auditor, AuditStore]:
    """The auditor reads the honest server through its own transport; every client session
    reaches the auditor's signatures at AUDITOR_URL."""
    store = AuditStore(str(tmp_path / "audit.db"))
    own = requests.Session()
    own.mount(URL, WSGIAdapter(server.app))
    return Auditor(store, HttpLogSource(URL, session=own), NS, AUDITOR_KEY), store


def mount_auditor(store: AuditStore, *servers: Server) -> None:
    app = create_audit_app({"database": store.db.url})
    for server in servers:
        server.session.mount(AUDITOR_URL, WSGIAdapter(app))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Server:
    if request.param == "sqlite":
        return make_server(str(tmp_path / "server.db"), **QUIET)
    dsn: str = request.getfixturevalue("pg_dsn")
    return make_server(dsn, **QUIET)


def test_epochs_are_accepted_once_audited(server: Server, tmp_path: Path) -> None:
    auditor, store = auditor_for(server, tmp_path)
    mount_auditor(store, server)
    alice, bob = register(server), register(server)
    auditor.audit_once()
    alice.require_auditor(AUDITOR_URL, NS, [plexi.public_key(AUDITOR_KEY)])
    alice.send_text(bob.username, "audited")
    assert [m.body.text for m in bob.receive()] == ["audited"]  # type: ignore[union-attr]
    carol = register(server)  # a new epoch the auditor has not seen yet
    with pytest.raises(EpochNotAudited):
        alice.send_text(carol.username, "too early")
    assert "kt_not_audited" in kinds(alice)
    assert auditor.audit_once().signed >= 1
    alice.send_text(carol.username, "now")
    assert [m.body.text for m in carol.receive()] == ["now"]  # type: ignore[union-attr]


def test_a_forked_view_is_refused_by_a_client_requiring_the_auditor(
        server: Server, tmp_path: Path) -> None:
    """The server shows the victim a second directory (same VRF key, every proof valid in it)
    where bob's device is the attacker's. The victim has never seen the honest view, so only
    the auditor, which follows the honest one, can tell."""
    auditor, store = auditor_for(server, tmp_path)
    alice = register(server)
    bob = register(server)
    fork = fork_of(server, tmp_path)
    register(fork, bob.username)  # the attacker's "bob" in the fork
    victim, trusting = register(fork), register(fork)
    mount_auditor(store, server, fork)
    epoch = same_epoch(server, fork)
    assert server.kt.head().root_hash != fork.kt.head().root_hash
    auditor.audit_once()
    signed = store.signature(NS, epoch)
    assert signed is not None and signed.digest == server.kt.head().root_hash

    keys = [plexi.public_key(AUDITOR_KEY)]
    trusting.send_text(bob.username, "to the attacker")  # no auditor: the fork is accepted
    victim.require_auditor(AUDITOR_URL, NS, keys)
    with pytest.raises(ForkedView):
        victim.send_text(bob.username, "refused")
    assert "kt_forked_view" in kinds(victim)
    alice.require_auditor(AUDITOR_URL, NS, keys)  # the honest view passes
    alice.send_text(bob.username, "to the real bob")
    assert [m.body.text for m in bob.receive()] == ["to the real bob"]  # type: ignore[union-attr]


def test_an_auditor_with_another_key_is_not_trusted(server: Server, tmp_path: Path) -> None:
    auditor, store = auditor_for(server, tmp_path)
    mount_auditor(store, server)
    alice, bob = register(server), register(server)
    auditor.audit_once()
    alice.require_auditor(AUDITOR_URL, NS, [plexi.public_key(bytes(32))])
    with pytest.raises(EpochNotAudited):
        alice.send_text(bob.username, "refused")
    with pytest.raises(ValueError):
        alice.require_auditor(AUDITOR_URL, NS, [b"short"])


def test_e2ee_chat_require_auditor_end_to_end(
        live_server: Callable[..., LiveServer], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The whole path on the serving stack: e2ee-server, e2ee-kt-audit once / serve, and
    e2ee-chat require-auditor: a send waits for the auditor's signature on the new epoch."""
    server = live_server(create_server_app, db=str(tmp_path / "server.db"),
                         kt_epoch_seconds=3600.0, **FAST_ARGON2)
    key = tmp_path / "auditor.key"
    assert audit_main(["keygen", "--key", str(key)]) == 0
    audit_db = str(tmp_path / "audit.db")
    audit = ["once", "--server", server.url, "--namespace", NS, "--key", str(key),
             "--db", audit_db]
    auditor_server = live_server(create_audit_app, database=audit_db)

    def enrol(name: str) -> Path:
        state = tmp_path / name
        state.mkdir(mode=0o700)
        Messenger.register(server.url, name, PASSWORD, state=state / "messenger.db",
                           prekeys=4, kem_prekeys=1).close()
        return state

    alice, bob_name, carol_name = unique_name(), unique_name(), unique_name()
    alice_state = enrol(alice)
    enrol(bob_name)
    assert audit_main(audit) == 0
    vk = plexi.public_key(key.read_bytes()).hex()
    capsys.readouterr()
    chat = ["--state", str(alice_state)]
    assert chat_main([*chat, "require-auditor", auditor_server.url, NS, vk]) == 0
    assert chat_main([*chat, "require-auditor", auditor_server.url, NS, "abcd"]) == 2
    assert chat_main([*chat, "send", bob_name, "audited"]) == 0
    enrol(carol_name)  # a new epoch, not audited yet
    capsys.readouterr()
    assert chat_main([*chat, "send", carol_name, "too early"]) == 1
    assert "auditor" in capsys.readouterr().err
    assert chat_main([*chat, "notices"]) == 0
    assert "the auditor has not signed" in capsys.readouterr().out
    assert audit_main(audit) == 0
    assert chat_main([*chat, "send", carol_name, "now"]) == 0
