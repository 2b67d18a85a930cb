"""Proof of the privacy property (issue section 5).

The four services (issuer, relay, gateway, sticker service) run as separate server processes,
plus an echo target behind the same gateway that reports exactly what a target receives. Two
accounts search from two different client addresses. Afterwards every log line and every
database row of every service is collected and checked: no record holds both who searched
(account, credential, client address) and what was searched; the sticker service never received
an address or an account; a token is accepted once; a replayed encapsulated request is refused;
tokens carry nothing linking them to their issuance.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from credentials.headers import parse_authorization
from credentials.issuer_store import IssuerStore
from credentials.tokens import Token
from ohttp_relay.client import build_request
from ohttp_relay.ohttp import encapsulate_request
from service_kit.logging_filter import find_leaks
from sticker_search.client import StickerClient
from sticker_search.demo import client_session
from sticker_search.ledger import PartyRecords, sqlite_rows
from tests.support import LiveServer
from tests.support import start_live_server as start_service

ADDRESSES = {"alice": "127.0.0.23", "bob": "127.0.0.24"}
QUERIES = {
    "alice": ["giraffe", "croissant", "volcano", "saxophone"],
    "bob": ["penguin", "umbrella", "lighthouse", "trumpet"],
}


class RecordingSession(requests.Session):
    """A real session that also keeps every request body and response body it carried to
    the issuer (what the issuer saw at issuance)."""

    def __init__(self, source: str, issuer_url: str) -> None:
        super().__init__()
        self.mount("http://", client_session(source).get_adapter("http://"))
        self.trust_env = False
        self.issuer_url = issuer_url
        self.issuer_traffic: list[bytes] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any,
                **kwargs: Any) -> requests.Response:
        response = super().request(method, url, *args, **kwargs)
        if str(url).startswith(self.issuer_url):
            body = kwargs.get("data") or b""
            self.issuer_traffic.append(body if isinstance(body, bytes) else str(body).encode())
            self.issuer_traffic.append(response.content)
        return response


@dataclass
class Scenario:
    records: dict[str, PartyRecords]
    credentials: dict[str, str]
    tokens: dict[str, list[Token]]
    authorizations: list[str]
    issuer_traffic: dict[str, list[bytes]]
    echo_views: list[dict[str, Any]]
    replay_statuses: list[int] = field(default_factory=list)
    reused_token_statuses: list[int] = field(default_factory=list)


def _bindable(address: str) -> bool:
    try:
        with socket.socket() as sock:
            sock.bind((address, 0))
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    if not all(_bindable(a) for a in ADDRESSES.values()):
        pytest.skip("cannot bind distinct loopback client addresses on this machine")
    folder = tmp_path_factory.mktemp("privacy")
    dbs = {"issuer": folder / "issuer.sqlite3", "gateway": folder / "gateway.sqlite3",
           "spent": folder / "spent.sqlite3", "stats": folder / "stats.sqlite3"}
    store = IssuerStore(str(dbs["issuer"]))
    credentials = {name: store.add_account(name) for name in ADDRESSES}
    servers: dict[str, LiveServer] = {}
    try:
        servers["issuer"] = start_service("credentials.issuer_service:create_app", {
            "db": str(dbs["issuer"]), "issuer_name": "issuer.test"}, folder)
        servers["sticker"] = start_service("sticker_search.service:create_app", {
            "issuer_url": servers["issuer"].url, "spent_db": str(dbs["spent"]),
            "query_stats_db": str(dbs["stats"])}, folder)
        servers["echo"] = start_service("tests.apps:create_echo_app", {}, folder)
        servers["gateway"] = start_service("ohttp_relay.gateway_service:create_app", {
            "db": str(dbs["gateway"]),
            "targets": [servers["sticker"].url, servers["echo"].url]}, folder)
        servers["relay"] = start_service("ohttp_relay.relay_service:create_app", {
            "gateway_url": servers["gateway"].url + "/gateway"}, folder)
        result = _run(servers, credentials)
    finally:
        for server in reversed(servers.values()):
            server.stop()  # flushes and closes every log before it is read
    result.records = {
        "issuer": PartyRecords("issuer", servers["issuer"].logs().splitlines(),
                               sqlite_rows(dbs["issuer"])),
        "relay": PartyRecords("relay", servers["relay"].logs().splitlines(), []),
        "gateway": PartyRecords("gateway", servers["gateway"].logs().splitlines(),
                                sqlite_rows(dbs["gateway"])),
        "sticker": PartyRecords("sticker", servers["sticker"].logs().splitlines(),
                                sqlite_rows(dbs["spent"]) + sqlite_rows(dbs["stats"])),
    }
    yield result


def _run(servers: dict[str, LiveServer], credentials: dict[str, str]) -> Scenario:
    scenario = Scenario({}, credentials, {}, [], {}, [])
    clients: dict[str, StickerClient] = {}
    for name, address in ADDRESSES.items():
        session = RecordingSession(address, servers["issuer"].url)
        client = StickerClient(issuer_url=servers["issuer"].url, credential=credentials[name],
                               relay_url=servers["relay"].url, target_url=servers["sticker"].url,
                               batch_size=8, session=session)
        seen: list[Token] = []
        real_authorization_for = client.tokens.authorization_for

        def recording(challenge: str, _real: Any = real_authorization_for,
                      _seen: list[Token] = seen) -> str:
            value: str = _real(challenge)
            _seen.append(parse_authorization(value))
            scenario.authorizations.append(value)
            return value

        client.tokens.authorization_for = recording  # type: ignore[method-assign]
        clients[name] = client
        scenario.tokens[name] = seen
        scenario.issuer_traffic[name] = session.issuer_traffic
    # Interleaved searches, as two people would make them.
    for turn in range(len(QUERIES["alice"])):
        for name, client in clients.items():
            page = client.search(QUERIES[name][turn], limit=5)
            assert page.results, QUERIES[name][turn]
    # What a target behind the gateway receives, shown by the echo target.
    for name, client in clients.items():
        authorization = client.tokens.authorization_for(client.challenge())
        echoed = client.oblivious.request(
            "GET", servers["echo"].url + "/v1/search?q=" + QUERIES[name][0],
            headers={"Authorization": authorization})
        scenario.echo_views.append(echoed.json())
    # A token is accepted once: the same Authorization in two separate encapsulations.
    alice = clients["alice"]
    authorization = alice.tokens.authorization_for(alice.challenge())
    for _ in range(2):
        response = alice.oblivious.request(
            "GET", servers["sticker"].url + "/v1/search?q=kiwi",
            headers={"Authorization": authorization})
        scenario.reused_token_statuses.append(response.status)
    # A replayed encapsulated request: the same sealed bytes posted to the relay twice.
    fresh = alice.tokens.authorization_for(alice.challenge())
    inner = build_request("GET", servers["sticker"].url + "/v1/search?q=mango",
                          {"Authorization": fresh}, None)
    sealed, _context = encapsulate_request(alice.oblivious.key_config(), inner.to_bytes())
    for _ in range(2):
        posted = requests.post(servers["relay"].url + "/relay", data=sealed,
                               headers={"Content-Type": "message/ohttp-req"}, timeout=10)
        scenario.replay_statuses.append(posted.status_code)
    return scenario


def _identity_markers(scenario: Scenario) -> list[str]:
    return [*ADDRESSES, *ADDRESSES.values(), *scenario.credentials.values()]


def _queries() -> list[str]:
    return [q for queries in QUERIES.values() for q in queries]


def test_no_record_holds_both_who_searched_and_what(scenario: Scenario) -> None:
    identities = _identity_markers(scenario)
    queries = _queries()
    for party, records in scenario.records.items():
        for record in records.records():
            single = PartyRecords(party, [record], [])
            who = [m for m in identities if single.holding(m)]
            what = [q for q in queries if single.holding(q)]
            assert not (who and what), f"{party} record links identity and query"


def test_each_party_records_only_its_half(scenario: Scenario) -> None:
    records = scenario.records
    for query in _queries():
        for party in ("issuer", "relay", "gateway"):
            assert records[party].holding(query) == [], f"{party} recorded a query"
    for marker in _identity_markers(scenario):
        for party in ("relay", "gateway", "sticker"):
            assert records[party].holding(marker) == [], f"{party} recorded an identity"
    # Positive controls: the checks above can see what they look for.
    assert records["issuer"].holding("alice") and records["issuer"].holding("bob")
    assert all(records["sticker"].holding(q) for q in _queries())


def test_the_target_never_receives_the_client_address_or_account(scenario: Scenario) -> None:
    assert len(scenario.echo_views) == 2
    for view in scenario.echo_views:
        received = repr(view)
        assert view["remote_addr"] not in ADDRESSES.values()
        for marker in _identity_markers(scenario):
            assert marker not in received
        forwarded = {"x-forwarded-for", "forwarded", "x-real-ip", "cookie", "via"}
        assert not forwarded & set(view["headers"])


def test_a_token_is_accepted_once(scenario: Scenario) -> None:
    assert scenario.reused_token_statuses == [200, 401]
    accepted = sum("redemption accepted" in line
                   for line in scenario.records["sticker"].log_lines)
    # 8 searches + 1 first use of the reused token + 1 replayed-envelope search.
    assert accepted == len(_queries()) + 2


def test_a_replayed_encapsulated_request_is_rejected(scenario: Scenario) -> None:
    assert scenario.replay_statuses[0] == 200
    assert 400 <= scenario.replay_statuses[1] < 500
    assert any("event=replay_rejected" in line
               for line in scenario.records["gateway"].log_lines)


def test_tokens_are_unlinkable_to_their_issuance(scenario: Scenario) -> None:
    alice, bob = scenario.tokens["alice"], scenario.tokens["bob"]
    assert len(alice) >= 4 and len(bob) >= 4
    # Nothing in a token depends on the account: the same type, key and challenge for both.
    shapes = {(t.token_type, t.token_key_id, t.challenge_digest) for t in alice + bob}
    assert len(shapes) == 1
    nonces = [t.nonce for t in alice + bob]
    assert len(set(nonces)) == len(nonces)
    # What the issuer saw and stored at issuance never contains what the origin saw at
    # redemption (nonce, authenticator), and vice versa.
    issuer_side = [*scenario.issuer_traffic["alice"], *scenario.issuer_traffic["bob"]]
    assert sum(len(b) for b in issuer_side) > 0
    for token in alice + bob:
        for secret in (token.nonce, token.authenticator, token.token_input()[2:34]):
            assert not any(secret in blob for blob in issuer_side)
    issuer_records = scenario.records["issuer"].records()
    origin_values = [t.nonce for t in alice + bob] + [t.authenticator for t in alice + bob]
    assert find_leaks(issuer_records, origin_values) == []
    spent_rows = [" ".join(row) for table, row in scenario.records["sticker"].rows
                  if table == "spent_tokens"]
    assert len(spent_rows) >= len(_queries())
    assert find_leaks(spent_rows, [blob[:64] for blob in issuer_side if len(blob) >= 64]) == []


def test_no_log_line_holds_a_token_or_credential(scenario: Scenario) -> None:
    secrets: list[str | bytes] = [*scenario.credentials.values()]
    for tokens in scenario.tokens.values():
        secrets += [t.nonce for t in tokens] + [t.authenticator for t in tokens]
    secrets += [a.split("token=", 1)[1] for a in scenario.authorizations]
    for party, records in scenario.records.items():
        assert find_leaks(records.log_lines, secrets) == [], party
