"""Loss-curve figures. Built on matplotlib's ``Figure`` directly: no pyplot, so no GUI backend,
no global figure state, and it works on servers and in containers without a screen."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from util.atomic import atomic_path


def plot_loss_curves(rows: list[dict[str, str]], loss_names: list[str], path: Path, title: str) -> Path | None:
    """Draw one panel per loss against the fractional epoch and save a PNG.

    Each report is already a mean over many iterations; with many reports a running mean is
    drawn over them too, because GAN losses stay noisy. Returns None when there is nothing to draw.
    """
    names = [name for name in loss_names if any(row.get(name) for row in rows)]
    if not rows or not names:
        return None
    progress = np.array([float(row["progress"]) for row in rows])
    columns = min(4, len(names))
    grid_rows = math.ceil(len(names) / columns)
    figure = Figure(figsize=(3.2 * columns, 2.6 * grid_rows))
    axes = figure.subplots(grid_rows, columns, squeeze=False)
    for axis, name in zip(axes.flat, names, strict=False):
        values = np.array([float(row[name]) if row.get(name) else np.nan for row in rows])
        many = len(values) > 40
        axis.plot(
            progress, values, ".-" if not many else ".", color="tab:blue", alpha=0.35 if many else 0.8, markersize=3
        )
        if many:
            window = len(values) // 20
            smooth = np.convolve(np.nan_to_num(values), np.ones(window) / window, mode="valid")
            axis.plot(progress[window - 1 :], smooth, color="tab:red", linewidth=1.5)
        axis.set_title(name, fontsize=10)
        axis.set_xlabel("epoch", fontsize=8)
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(names) :]:
        axis.axis("off")
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=90, format="png")
    return Path(path)
