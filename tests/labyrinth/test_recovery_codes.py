"""Recovery codes: format, homoglyphs, GF(32) check characters, correction of 1-3 errors."""

from __future__ import annotations

import itertools
import random

import pytest

from e2ee_core.labyrinth import recovery_codes as rc
from e2ee_core.labyrinth.consts import RECOVERY_ALPHABET, RECOVERY_PARITY_CHECK
from e2ee_core.labyrinth.errors import (
    InvalidLabel,
    InvalidRecoveryCode,
    RecoveryCodeAmbiguous,
    RecoveryCodeUncorrectable,
)
from e2ee_core.labyrinth.primitives import kdf

USER = "100012345678901"


def _damage(code: str, positions: list[int], rng: random.Random) -> str:
    chars = list(code)
    for position in positions:
        chars[position] = rng.choice([c for c in RECOVERY_ALPHABET if c != chars[position]])
    return "".join(chars)


def _registry(*codes: rc.RecoveryCode) -> set[bytes]:
    return {code.derive(USER).vdevice_id for code in codes}


def test_format_and_derivation_follow_the_whitepaper() -> None:
    code = rc.RecoveryCode.generate()
    assert len(code.text) == 40 and code.text[:2] == "20"
    assert set(code.text) <= set(RECOVERY_ALPHABET)
    secrets = code.derive(USER)
    expected = kdf(code.entropy.encode(), None, f"BackupRecoveryCode_v2_0_{USER}".encode(),
                   16, 32)
    assert (secrets.vdevice_id, secrets.decryption_key) == expected


def test_homoglyphs_case_and_separators_are_read_as_the_whitepaper_says() -> None:
    code = rc.RecoveryCode.from_entropy("8C10" + "A" * 30)
    typed = code.formatted().lower().replace("8", "b").replace("c", "g", 1).replace("1", "i")
    typed = typed.replace("-", " ").replace("0", "o")
    assert rc.RecoveryCode.parse(typed) == code


def test_parity_check_matrix_any_three_columns_independent() -> None:
    columns = list(zip(*RECOVERY_PARITY_CHECK, strict=True))
    assert len(columns) == 38
    for trio in itertools.combinations(range(38), 3):
        target = [0, 0, 0, 0]
        # Independent columns: the only solution of G[:, trio] x = 0 is x = 0.
        assert rc._solve(trio, target) == [0, 0, 0]
        for values in ([1, 0, 0], [0, 1, 0], [0, 0, 1]):
            image = [0, 0, 0, 0]
            for column, value in zip(trio, values, strict=True):
                if value:
                    image = [a ^ b for a, b in zip(image, columns[column], strict=True)]
            assert rc._solve(trio, image) == values


@pytest.mark.parametrize("wrong", [1, 2, 3])
def test_one_to_three_wrong_characters_are_corrected(wrong: int) -> None:
    rng = random.Random(wrong)
    for _ in range(4):
        code = rc.RecoveryCode.generate()
        other = rc.RecoveryCode.generate()  # a second code of the mailbox
        positions = rng.sample(range(2, 40), wrong)
        typed = _damage(code.text, positions, rng)
        with pytest.raises(InvalidRecoveryCode):
            rc.RecoveryCode.parse(typed)
        registered = _registry(code, other)
        assert rc.correct(typed, USER, registered.__contains__) == code


def test_four_wrong_characters_are_refused() -> None:
    rng = random.Random(4)
    for _ in range(4):
        code = rc.RecoveryCode.generate()
        typed = _damage(code.text, rng.sample(range(2, 40), 4), rng)
        with pytest.raises(RecoveryCodeUncorrectable):
            rc.correct(typed, USER, _registry(code).__contains__)


def test_exact_code_is_accepted_without_search_and_unregistered_refused() -> None:
    code = rc.RecoveryCode.generate()
    assert rc.correct(code.formatted(), USER, _registry(code).__contains__) == code
    with pytest.raises(RecoveryCodeUncorrectable):
        rc.correct(code.text, USER, _registry(rc.RecoveryCode.generate()).__contains__)


def test_two_registered_matches_are_ambiguous() -> None:
    rng = random.Random(7)
    code = rc.RecoveryCode.generate()
    typed = _damage(code.text, [5], rng)
    near = [c for d, c in rc.candidates(typed) if c != code and d <= 3]
    assert near  # other valid codes lie within three characters of a damaged one
    with pytest.raises(RecoveryCodeAmbiguous):
        rc.correct(typed, USER, _registry(code, near[0]).__contains__)


@pytest.mark.parametrize("text", [
    "", "2" * 39, "2" * 41, "30" + "A" * 38, "21" + "A" * 38, "20" + "A" * 37 + "!",
    "20" + "A" * 37 + "é", "x" * 500,
])
def test_malformed_codes_are_refused(text: str) -> None:
    with pytest.raises(InvalidRecoveryCode):
        rc.normalize(text) if len(text) != 40 else rc.RecoveryCode.parse(text)


def test_header_characters_are_not_corrected() -> None:
    code = rc.RecoveryCode.generate()
    with pytest.raises(InvalidRecoveryCode):
        rc.correct("3" + code.text[1:], USER, _registry(code).__contains__)


@pytest.mark.parametrize("user", ["", "a b", "x" * 65, "é"])
def test_user_id_must_be_printable_ascii(user: str) -> None:
    with pytest.raises(InvalidLabel):
        rc.RecoveryCode.generate().derive(user)


def test_repr_hides_the_code() -> None:
    code = rc.RecoveryCode.generate()
    assert code.entropy not in repr(code)
    assert code.derive(USER).decryption_key.hex() not in repr(code.derive(USER))
