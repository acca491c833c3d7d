"""Progress bars that suit both a terminal and a log file."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm


def progress_bar(iterable: Iterable[Any] | None = None, **options: Any) -> tqdm:
    """A tqdm bar; redrawn often in a terminal, only every 30 s when stderr is a file or pipe
    (batch jobs, CI), so logs stay readable."""
    options.setdefault("dynamic_ncols", True)
    options.setdefault("mininterval", 0.1 if sys.stderr.isatty() else 30.0)
    return tqdm(iterable, **options)
