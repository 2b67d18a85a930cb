"""``sticker-search`` and ``StickerClient`` as a person meets them when something is wrong
(issue #14): one-line errors with distinct exit codes, no traceback, no token spent on a query
the service would refuse, and a retired issuer key reported as the transient state it is."""

from __future__ import annotations

import argparse
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sticker_search import cli
from sticker_search.client import StickerClient
from sticker_search.errors import QueryError, ServiceUnavailable, TargetRefused
from tests.sticker.test_private_search import Stack

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("operator-errors"))
    try:
        running.start()
        yield running
    finally:
        running.stop()


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sticker_search.cli", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def _one_line(result: subprocess.CompletedProcess[str], status: int) -> str:
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sticker-search: "), result.stderr
    return lines[0]


def test_a_url_without_scheme_is_a_usage_error(stack: Stack) -> None:
    credential = stack.store.add_account("scheme")
    args = stack.cli_args(credential)
    target = args.index("--target") + 1
    args[target] = args[target].removeprefix("http://")
    line = _one_line(_run("query", "cat", *args), cli.EXIT_USAGE)
    assert "--target" in line


def test_a_target_the_gateway_does_not_forward_to_is_named_as_such(stack: Stack) -> None:
    client = StickerClient(issuer_url=stack.issuer.url, credential=stack.store.add_account("t"),
                           relay_url=stack.relay.url, target_url="http://127.0.0.1:1")
    with pytest.raises(TargetRefused):
        client.search("cat")
    credential = stack.store.add_account("target-cli")
    args = stack.cli_args(credential)
    args[args.index("--target") + 1] = "http://127.0.0.1:1"
    line = _one_line(_run("query", "cat", *args), cli.EXIT_TARGET_REFUSED)
    assert "allowlist" in line


def test_queries_the_service_would_refuse_spend_no_token(stack: Stack) -> None:
    client = stack.client("quota", batch_size=2)
    client.search("cat")
    assert client.cached_tokens() == 1
    for query, lang in (("cat", "xx"), ("one two three four five six seven eight nine", None)):
        with pytest.raises(QueryError) as caught:
            client.search(query, lang=lang)
        assert str(caught.value) in ("unknown language", "too many query words")
    assert client.cached_tokens() == 1
    credential = stack.store.add_account("lang-cli")
    line = _one_line(_run("query", "cat", "--lang", "xx", *stack.cli_args(credential)),
                     cli.EXIT_USAGE)
    assert "unknown language" in line


def test_the_service_refuses_a_bad_query_before_redeeming_the_token(stack: Stack) -> None:
    client = stack.client("server-side", batch_size=1)
    authorization = client.tokens.authorization_for(client.challenge())
    for url in (f"{stack.sticker.url}/v1/search?q=cat&lang=xx",
                f"{stack.sticker.url}/v1/search?q=one+two+three+four+five+six+seven+eight+nine"):
        refused = client.oblivious.request("GET", url, {"Authorization": authorization})
        assert refused.status == 400
    served = client.oblivious.request("GET", f"{stack.sticker.url}/v1/search?q=cat",
                                      {"Authorization": authorization})
    assert served.status == 200  # the token was still unspent


def test_a_retired_issuer_key_is_reported_as_transient(stack: Stack) -> None:
    client = stack.client("retire", batch_size=1)
    client.search("cat")  # the service's challenge (with the current key) is now known
    old = stack.store.list_keys()
    stack.store.generate_key()
    for key in old:
        stack.store.retire_key(key.key_id)
    fresh = stack.client("retire-2", batch_size=1)
    with pytest.raises(ServiceUnavailable, match="retired issuer key"):
        fresh.search("cat")


def test_serve_refuses_a_missing_folder_and_needs_a_spent_store(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    _one_line(_run("serve", "--issuer", "http://127.0.0.1:1", "--spent-db",
                   str(missing / "spent.db")), cli.EXIT_STORE)
    assert not missing.parent.exists()
    result = _run("serve", "--issuer", "http://127.0.0.1:1")
    assert result.returncode == cli.EXIT_USAGE and "--spent-db" in result.stderr
    assert not (REPO / "sticker-spent.sqlite3").exists()
    _one_line(_run("serve", "--issuer", "127.0.0.1:1", "--spent-db",
                   str(tmp_path / "s.db")), cli.EXIT_USAGE)
    _one_line(_run("serve", "--issuer", "http://127.0.0.1:1", "--spent-db",
                   "postgresql://nobody@127.0.0.1:1/none"), cli.EXIT_STORE)


def test_every_option_has_help() -> None:
    def walk(parser: argparse.ArgumentParser) -> list[str]:
        missing = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    missing += [f"{name} {m}" for m in walk(child)]
            elif not isinstance(action, argparse._HelpAction) and not action.help:
                missing.append(action.dest)
        return missing

    assert [m for m in walk(cli._parser()) if m.split()[0] in ("serve", "query", "stack")] == []


def test_stack_folder_is_private(tmp_path: Path) -> None:
    from sticker_search.stack import prepare_folder

    folder = tmp_path / "stack"
    prepare_folder(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
