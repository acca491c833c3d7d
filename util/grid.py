"""Where windows go along one axis: the one rule for crop grids (dataset preparation) and tiles (colorize)."""

from __future__ import annotations


def window_starts(length: int, size: int, step: int) -> list[int]:
    """Start offsets of ``size``-pixel windows every ``step`` pixels that cover ``length`` without padding.

    The last window is moved to end at the border, so it overlaps its neighbour more when ``step``
    does not divide the rest. A length not longer than ``size`` gives one window, at 0.
    """
    if size < 1 or step < 1:
        raise ValueError(f"size and step must be positive, got {size} and {step}")
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, step))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts
