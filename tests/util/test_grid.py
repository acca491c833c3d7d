"""util.grid.window_starts: the one rule for crop grids and inference tiles."""

from __future__ import annotations

import pytest

from util.grid import window_starts


def test_windows_cover_the_length_and_the_last_ends_at_the_border() -> None:
    assert window_starts(300, 128, 128) == [0, 128, 172]
    assert window_starts(256, 128, 128) == [0, 128]
    assert window_starts(128, 128, 64) == [0]
    assert window_starts(100, 128, 64) == [0]  # shorter than a window: one window (the caller decides)


def test_size_and_step_must_be_positive() -> None:
    with pytest.raises(ValueError, match="size and step must be positive"):
        window_starts(100, 0, 10)
    with pytest.raises(ValueError, match="size and step must be positive"):
        window_starts(100, 10, 0)
