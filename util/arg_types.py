"""Argument types for argparse flags: numbers with a range, refused with a message saying the range.

Shared by the option classes and by models and datasets declaring their own flags.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text}")
    return value


def nonnegative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def nonnegative_float(text: str) -> float:
    value = float(text)
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def float_in_range(
    minimum: float, maximum: float, *, include_minimum: bool = False, include_maximum: bool = True
) -> Callable[[str], float]:
    """An argparse type for a number between ``minimum`` and ``maximum``, e.g. (0, 1]."""
    interval = f"{'[' if include_minimum else '('}{minimum:g}, {maximum:g}{']' if include_maximum else ')'}"

    def parse(text: str) -> float:
        value = float(text)
        above = value >= minimum if include_minimum else value > minimum
        below = value <= maximum if include_maximum else value < maximum
        if not (above and below):
            raise argparse.ArgumentTypeError(f"must be a number in {interval}, got {text}")
        return value

    parse.__name__ = f"number in {interval}"  # argparse names the type in its messages
    return parse
