"""Loss-curve figures. Built on matplotlib's ``Figure`` directly: no pyplot, so no GUI backend,
no global figure state, and it works on servers and in containers without a screen.

matplotlib is imported inside the function: it takes most of a second, which ``train.py --help``
and every start-up would otherwise pay.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from util.atomic import atomic_path
from util.loss_log import LossGroup, LossWeight, group_losses

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Above this many reports a panel draws them faint and a running mean over them bold.
_MANY_POINTS = 40


def running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the finite values among each point and the ``window - 1`` before it (NaN where none are)."""
    finite = np.isfinite(values)
    sums = np.cumsum(np.where(finite, values, 0.0))
    counts = np.cumsum(finite)
    sums[window:] = sums[window:] - sums[:-window]
    counts[window:] = counts[window:] - counts[:-window]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _column(rows: list[dict[str, str]], name: str) -> np.ndarray:
    return np.array([float(row[name]) if row.get(name) else np.nan for row in rows])


def plot_loss_curves(
    rows: list[dict[str, str]],
    loss_names: list[str],
    path: Path,
    title: str,
    weights: Mapping[str, LossWeight] | None = None,
) -> Path | None:
    """Save :func:`loss_figure` as a PNG at ``path``; None (and no file) when there is nothing to draw.

    Nothing is drawn before the log has two reports: one report makes dots, not curves, and importing
    matplotlib and drawing takes about a second, which would make a short run noticeably slower.
    """
    if len(rows) < 2:
        return None
    figure = loss_figure(rows, loss_names, title, weights)
    if figure is None:
        return None
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=90, format="png")
    return Path(path)


def loss_figure(
    rows: list[dict[str, str]], loss_names: list[str], title: str, weights: Mapping[str, LossWeight] | None = None
) -> Figure | None:
    """Related losses drawn together (one panel per :data:`~util.loss_log.LOSS_GROUPS` entry, plus the
    learning rate) against the fractional epoch, from loss-log ``rows``; None when there is nothing to draw.

    Each report is already a mean over many iterations; with many reports a running mean is
    drawn over them too, because GAN losses stay noisy. A weighted term is labelled with its
    weight (``weights``, from :func:`~util.loss_log.loss_weights`): the values are what the
    generators minimise, not the bare distances.
    """
    names = [name for name in loss_names if any(row.get(name) for row in rows)]
    if not rows or not names:
        return None
    from matplotlib.figure import Figure  # lazy: see the module docstring
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator

    weights = weights or {}
    progress = _column(rows, "progress")
    panels: list[LossGroup | None] = [*group_losses(names)]
    if any(row.get("lr") for row in rows):
        panels.append(None)  # the learning rate
    columns = len(panels) if len(panels) <= 2 else 2 if len(panels) <= 4 else 3 if len(panels) <= 6 else 4
    grid_rows = -(-len(panels) // columns)
    figure = Figure(figsize=(4.8 * columns, 3.4 * grid_rows + 0.5), layout="constrained")
    axes = figure.subplots(grid_rows, columns, squeeze=False)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    for axis, group in zip(axes.flat, panels, strict=False):
        if group is None:
            axis.plot(progress, _column(rows, "lr"), color="tab:gray", linewidth=1.5)
            axis.set_title("learning rate", fontsize=11)
            axis.set_ylabel("learning rate", fontsize=10)
            axis.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
        else:
            for colour, name in zip(colours * 3, group.names, strict=False):
                values = _column(rows, name)
                label = f"{name} {weights[name].label()}" if name in weights else name
                if len(values) > _MANY_POINTS:
                    axis.plot(progress, values, color=colour, alpha=0.25, linewidth=0.8)
                    axis.plot(
                        progress, running_mean(values, len(values) // 20), color=colour, linewidth=1.8, label=label
                    )
                else:
                    axis.plot(progress, values, ".-", color=colour, markersize=4, linewidth=1.2, label=label)
            weighted = any(name in weights and weights[name].factor != 1 for name in group.names)
            axis.set_title(group.title, fontsize=11)
            axis.set_ylabel("weighted loss" if weighted else "loss", fontsize=10)
            axis.legend(fontsize=9, loc="best", framealpha=0.7)
        axis.set_xlabel("epoch", fontsize=10)
        axis.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
        axis.yaxis.set_major_locator(MaxNLocator(nbins=6))
        axis.tick_params(labelsize=9)
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(panels) :]:
        axis.set_visible(False)
    figure.suptitle(title, fontsize=12)
    return figure
