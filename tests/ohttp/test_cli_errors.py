"""``ohttp-gateway`` operator mistakes (issue #14): refused in one line before any state is
created, with their own exit status."""

from __future__ import annotations

from pathlib import Path

import pytest

from ohttp_relay.gateway_cli import main as gateway_main


def test_a_missing_folder_or_store_is_refused_before_anything_is_created(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no" / "such"
    assert gateway_main(["serve", "--db", str(missing / "gw.db")]) == 3
    assert gateway_main(["keys", "generate", "--db", str(missing / "gw.db")]) == 3
    assert not missing.parent.exists()
    typo = tmp_path / "typo.db"
    assert gateway_main(["keys", "list", "--db", str(typo)]) == 3
    assert gateway_main(["keys", "retire", "--db", str(typo)]) == 3
    assert not typo.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 5 and all(line.startswith("ohttp-gateway: ") for line in err)


def test_an_unreachable_database_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert gateway_main(["keys", "list", "--db", "postgresql://nobody@127.0.0.1:1/x"]) == 7
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nobody" not in err
