"""Progress bars that suit a terminal, a Jupyter notebook and a log file, and the losses they show.

``tqdm.auto`` draws a widget in Jupyter (with ipywidgets) and a text bar elsewhere. A text bar is
redrawn often in a terminal or a notebook, but only every 30 s when stderr is a file or pipe
(batch jobs, CI), so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from util.loss_log import group_losses

if TYPE_CHECKING:  # torch is not imported for a bar: download and evaluation scripts use bars too
    from util.loss_window import LossWindow

#: Seconds between redraws of a text bar: terminal, notebook (no widgets), file or pipe.
TERMINAL_INTERVAL, NOTEBOOK_INTERVAL, FILE_INTERVAL = 0.1, 0.5, 30.0
#: The running losses are read from the device at most this often (and never more often than the bar redraws).
POSTFIX_INTERVAL = 1.0


def in_notebook() -> bool:
    """True inside a Jupyter kernel, whose stderr is no terminal but is shown live."""
    return "ipykernel.zmqshell" in sys.modules


def redraw_interval() -> float:
    """How often a text bar is redrawn where this process writes."""
    if sys.stderr.isatty():
        return TERMINAL_INTERVAL
    return NOTEBOOK_INTERVAL if in_notebook() else FILE_INTERVAL


def progress_bar(iterable: Iterable[Any] | None = None, **options: Any) -> tqdm:
    """A ``tqdm.auto`` bar, redrawn at :func:`redraw_interval` unless ``mininterval`` is given."""
    options.setdefault("dynamic_ncols", True)
    options.setdefault("mininterval", redraw_interval())
    return tqdm(iterable, **options)


class LossPostfix:
    """Running losses on a bar's postfix, summed by group (``G=G_A+G_B``, ``cycle=...``, as in the loss plot).

    :meth:`show` takes means already read (a loss report); between reports :meth:`maybe_show`
    reads the open loss window of this process (one host-device sync) at most every
    ``interval`` seconds, so the bar carries losses however long the epoch and whatever
    ``--print_freq``, and the device is not waited for at every step.
    """

    def __init__(
        self,
        bar: tqdm,
        loss_names: list[str],
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bar = bar
        self.groups = group_losses(loss_names)
        self.interval = max(POSTFIX_INTERVAL, float(getattr(bar, "mininterval", 0.0))) if interval is None else interval
        self.clock = clock
        self.last_shown = clock()

    def text(self, means: Mapping[str, float]) -> dict[str, str]:
        """``{group key: sum of its present means}``, three significant digits."""
        shown = {}
        for group in self.groups:
            values = [means[name] for name in group.names if name in means]
            if values:
                shown[group.key] = f"{sum(values):.3g}"
        return shown

    def show(self, means: Mapping[str, float], refresh: bool = False) -> None:
        if means:
            self.bar.set_postfix(self.text(means), refresh=refresh)
        self.last_shown = self.clock()

    def maybe_show(self, window: LossWindow) -> None:
        """Show the window's means so far if ``interval`` has passed since the last update."""
        if self.clock() - self.last_shown >= self.interval:
            self.show(window.peek())
