"""get_marker_versions: AKD's unit-test cases (akd_core/src/utils.rs) and the vector's counts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from e2ee_core.keytrans.history import get_marker_versions
from e2ee_core.keytrans.lookup import marker_version


@pytest.mark.parametrize("args,past,future", [
    ((65, 65, 128), [16, 64], [66, 68, 72, 80, 96, 128]),
    ((85, 85, 65537), [16, 64, 80, 84], [86, 88, 96, 128, 256, 65536]),
    ((1, 5, 33), [], [6, 8, 16]),
    ((2, 5, 33), [], [6, 8, 16]),
    ((3, 5, 33), [2], [6, 8, 16]),
    ((6, 12, 128), [4], [13, 14, 16]),
    ((6, 12, 256), [4], [13, 14, 16, 256]),
    ((130, 130, 256), [16, 128], [131, 132, 136, 144, 160, 192, 256]),
    # the WhatsApp v1 vector: complete (1..3) and most recent 1 (3..3) at epoch 49
    ((1, 3, 49), [], [4, 16]),
    ((3, 3, 49), [2], [4, 16]),
])
def test_akd_cases(args: tuple[int, int, int], past: list[int], future: list[int]) -> None:
    assert get_marker_versions(*args) == (past, future)


@given(start=st.integers(1, 2**64 - 1), span=st.integers(0, 2**20), ahead=st.integers(0, 2**20))
def test_markers_lie_outside_the_proved_range(start: int, span: int, ahead: int) -> None:
    end = start + span
    epoch = end + ahead
    past, future = get_marker_versions(start, end, epoch)
    assert all(0 < v < start for v in past)
    assert all(end < v <= epoch for v in future)
    assert past == sorted(set(past)) and future == sorted(set(future))
    assert len(past) <= 70 and len(future) <= 140


def test_lookup_marker_is_the_largest_power_of_two_below() -> None:
    assert [marker_version(v) for v in (1, 2, 3, 4, 5, 48, 64, 65)] == [1, 2, 2, 4, 4, 32, 64, 64]
