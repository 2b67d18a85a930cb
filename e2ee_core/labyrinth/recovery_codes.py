"""Recovery codes (Protocol: Recovery Codes): format, GF(32) check characters, correction.

A code is 40 characters of ``ACDEFHJKLMNPQRSTUVWXYZ0123456789`` (B, G, I, O typed are read as
8, C, 1, 0): version "2", identifier "0", 34 entropy characters, 4 check characters with
G * (entropy || check) = 0 over GF(32) (G in consts). As the whitepaper says, this is an
erasure code: wrong characters are found by trying every set of three positions, solving for
their values, and keeping the candidates whose derived vdeviceId is registered for the
mailbox. Any three columns of G are independent, so up to three wrong characters are always
recovered; four are refused (no registered candidate), never silently "corrected".

    (vdeviceId[16], vdeviceDecryptionKey[32]) = kdf(entropy, null,
        "BackupRecoveryCode_v<version>_<identifier>_<userId>")
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .consts import (
    GF32_POLYNOMIAL,
    RECOVERY_ALPHABET,
    RECOVERY_CHECK_CHARS,
    RECOVERY_CODE_LEN,
    RECOVERY_ENTROPY_CHARS,
    RECOVERY_HOMOGLYPHS,
    RECOVERY_IDENTIFIER,
    RECOVERY_MAX_CORRECTED,
    RECOVERY_MAX_INPUT_LEN,
    RECOVERY_PARITY_CHECK,
    RECOVERY_VERSION,
    USER_ID_MAX_LEN,
    VDEVICE_ID_LEN,
    VDEVICE_KEY_LEN,
)
from .errors import (
    InvalidLabel,
    InvalidRecoveryCode,
    RecoveryCodeAmbiguous,
    RecoveryCodeUncorrectable,
)
from .primitives import kdf

_SYMBOLS = RECOVERY_ENTROPY_CHARS + RECOVERY_CHECK_CHARS  # 38 symbols under the code
_HEADER = 2  # version and identifier characters, outside the code
_VALUE = {char: index for index, char in enumerate(RECOVERY_ALPHABET)}
_SEPARATORS = frozenset(" -\t")

# GF(32) log/antilog tables over the primitive polynomial.
_EXP = [0] * 62
_LOG = [0] * 32
_x = 1
for _i in range(31):
    _EXP[_i] = _EXP[_i + 31] = _x
    _LOG[_x] = _i
    _x <<= 1
    if _x & 32:
        _x ^= GF32_POLYNOMIAL


def _mul(a: int, b: int) -> int:
    return 0 if a == 0 or b == 0 else _EXP[_LOG[a] + _LOG[b]]


def _inv(a: int) -> int:
    return _EXP[(31 - _LOG[a]) % 31]


def _solve(columns: Sequence[int], target: Sequence[int]) -> list[int] | None:
    """Solve G[:, columns] * x = target over GF(32); None when inconsistent or singular."""
    rows = [[RECOVERY_PARITY_CHECK[r][c] for c in columns] + [target[r]] for r in range(4)]
    width = len(columns)
    pivot_row = 0
    for col in range(width):
        pivot = next((r for r in range(pivot_row, 4) if rows[r][col]), None)
        if pivot is None:
            return None
        rows[pivot_row], rows[pivot] = rows[pivot], rows[pivot_row]
        scale = _inv(rows[pivot_row][col])
        rows[pivot_row] = [_mul(scale, v) for v in rows[pivot_row]]
        for r in range(4):
            factor = rows[r][col]
            if r != pivot_row and factor:
                rows[r] = [a ^ _mul(factor, b) for a, b in zip(rows[r], rows[pivot_row],
                                                                strict=True)]
        pivot_row += 1
    if any(rows[r][width] for r in range(pivot_row, 4)):
        return None  # the remaining equations do not hold: no solution on these positions
    return [rows[r][width] for r in range(width)]


def _syndrome(symbols: Sequence[int]) -> list[int]:
    out = []
    for row in RECOVERY_PARITY_CHECK:
        acc = 0
        for coefficient, value in zip(row, symbols, strict=True):
            acc ^= _mul(coefficient, value)
        out.append(acc)
    return out


def check_characters(entropy: str) -> str:
    """The four check characters for 34 entropy characters."""
    if len(entropy) != RECOVERY_ENTROPY_CHARS or any(c not in _VALUE for c in entropy):
        raise InvalidRecoveryCode("entropy must be 34 characters of the recovery alphabet")
    data = [_VALUE[c] for c in entropy] + [0] * RECOVERY_CHECK_CHARS
    check = _solve(range(RECOVERY_ENTROPY_CHARS, _SYMBOLS), _syndrome(data))
    assert check is not None  # the check columns are independent (tested)
    return "".join(RECOVERY_ALPHABET[v] for v in check)


def normalize(text: str) -> str:
    """Upper-case, drop spaces and dashes, read B/G/I/O as 8/C/1/0; 40 alphabet characters."""
    if len(text) > RECOVERY_MAX_INPUT_LEN:
        raise InvalidRecoveryCode("recovery code too long")
    out = []
    for typed in text.upper():
        if typed in _SEPARATORS:
            continue
        char = RECOVERY_HOMOGLYPHS.get(typed, typed)
        if char not in _VALUE:
            raise InvalidRecoveryCode("recovery code has a character outside its alphabet")
        out.append(char)
    if len(out) != RECOVERY_CODE_LEN:
        raise InvalidRecoveryCode("recovery code must have 40 characters")
    if out[0] != RECOVERY_VERSION or out[1] != RECOVERY_IDENTIFIER:
        raise InvalidRecoveryCode("unsupported recovery code version or identifier")
    return "".join(out)


def _check_user_id(user_id: str) -> bytes:
    if (not 1 <= len(user_id) <= USER_ID_MAX_LEN
            or not all(0x21 <= ord(c) <= 0x7E for c in user_id)):
        raise InvalidLabel("user id must be 1..64 printable ASCII characters")
    return user_id.encode("ascii")


@dataclass(frozen=True, slots=True)
class VirtualDeviceSecrets:
    """What a recovery code derives: the virtual device's id and decryption key."""

    vdevice_id: bytes
    decryption_key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class RecoveryCode:
    """A well-formed recovery code (check characters verified), in canonical characters."""

    text: str = field(repr=False)

    def __post_init__(self) -> None:
        if normalize(self.text) != self.text:
            raise InvalidRecoveryCode("recovery code is not in canonical form")
        if any(_syndrome([_VALUE[c] for c in self.text[_HEADER:]])):
            raise InvalidRecoveryCode("recovery code check characters do not match")

    @classmethod
    def from_entropy(cls, entropy: str) -> RecoveryCode:
        """The code for 34 given entropy characters (vectors and tests)."""
        return cls(RECOVERY_VERSION + RECOVERY_IDENTIFIER + entropy + check_characters(entropy))

    @classmethod
    def generate(cls) -> RecoveryCode:
        """A new code: 34 characters from ``secrets``, then its check characters."""
        return cls.from_entropy("".join(secrets.choice(RECOVERY_ALPHABET)
                                        for _ in range(RECOVERY_ENTROPY_CHARS)))

    @classmethod
    def parse(cls, text: str) -> RecoveryCode:
        """A code typed exactly (modulo case, separators, homoglyphs); no correction."""
        return cls(normalize(text))

    @property
    def entropy(self) -> str:
        """The 34 entropy characters."""
        return self.text[_HEADER:_HEADER + RECOVERY_ENTROPY_CHARS]

    def formatted(self) -> str:
        """The code in ten groups of four characters, for display."""
        return "-".join(self.text[i:i + 4] for i in range(0, RECOVERY_CODE_LEN, 4))

    def derive(self, user_id: str) -> VirtualDeviceSecrets:
        """(vdeviceId, vdeviceDecryptionKey) for this code and account."""
        label = (f"BackupRecoveryCode_v{self.text[0]}_{self.text[1]}_".encode("ascii")
                 + _check_user_id(user_id))
        vdevice_id, key = kdf(self.entropy.encode("ascii"), None, label, VDEVICE_ID_LEN,
                              VDEVICE_KEY_LEN)
        return VirtualDeviceSecrets(vdevice_id, key)


def candidates(text: str) -> list[tuple[int, RecoveryCode]]:
    """Every valid code within three changed characters of ``text``, with its distance.

    Sorted by distance, then text; the typed code itself (distance 0) comes first if valid.
    """
    typed = normalize(text)
    header, body = typed[:_HEADER], [_VALUE[c] for c in typed[_HEADER:]]
    syndrome = _syndrome(body)
    found: dict[str, int] = {}
    if not any(syndrome):
        found[typed] = 0
    else:
        for positions in itertools.combinations(range(_SYMBOLS), RECOVERY_MAX_CORRECTED):
            error = _solve(positions, syndrome)
            if error is None:
                continue
            fixed = list(body)
            for position, value in zip(positions, error, strict=True):
                fixed[position] ^= value
            code = header + "".join(RECOVERY_ALPHABET[v] for v in fixed)
            found.setdefault(code, sum(1 for value in error if value))
    ordered = sorted(found.items(), key=lambda item: (item[1], item[0]))
    return [(distance, RecoveryCode(code)) for code, distance in ordered]


def correct(text: str, user_id: str, is_registered: Callable[[bytes], bool]) -> RecoveryCode:
    """The one code within three corrected characters whose vdeviceId is registered.

    ``is_registered(vdevice_id)`` answers whether the mailbox has that virtual device.
    Raises :class:`RecoveryCodeUncorrectable` when none is, :class:`RecoveryCodeAmbiguous`
    when several are.
    """
    options = candidates(text)
    if options and options[0][0] == 0:
        if is_registered(options[0][1].derive(user_id).vdevice_id):
            return options[0][1]
        options = []  # a valid code that is not registered: more than 3 characters are wrong
    matches = [code for _, code in options if is_registered(code.derive(user_id).vdevice_id)]
    if not matches:
        raise RecoveryCodeUncorrectable("no registered recovery code within 3 characters")
    if len(matches) > 1:
        raise RecoveryCodeAmbiguous("several registered recovery codes match")
    return matches[0]
