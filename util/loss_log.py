"""The record of training losses: a text log for people and a CSV for programs and plots."""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path

from util.atomic import write_text_atomic

_FIXED_COLUMNS = ["epoch", "iteration", "progress", "lr", "seconds_per_iteration"]


@dataclass(frozen=True)
class LossReport:
    """Mean losses over the iterations since the previous report."""

    epoch: int
    iteration: int  # within the epoch, counted from 1
    progress: float  # fractional epoch: 2.5 = half way through epoch 3
    learning_rate: float
    seconds_per_iteration: float
    losses: dict[str, float]

    def text_line(self) -> str:
        losses = " ".join(f"{name}: {value:.3f}" for name, value in self.losses.items())
        return (
            f"(epoch: {self.epoch}, iters: {self.iteration}, lr: {self.learning_rate:.3g}, "
            f"time/iter: {self.seconds_per_iteration:.3f}s) {losses}"
        )


class LossLog:
    """Appends loss reports to ``loss_log.txt`` and ``loss_log.csv`` in ``directory``.

    Each row is a :class:`LossReport`: losses averaged since the previous report, at a
    fractional epoch (``progress``, the x-axis of the loss plots). On resume, :meth:`start` drops CSV rows of epochs that were not
    finished, so the curves show exactly the history of the weights being trained.
    """

    def __init__(self, directory: Path, loss_names: list[str]) -> None:
        self.text_path = Path(directory) / "loss_log.txt"
        self.csv_path = Path(directory) / "loss_log.csv"
        self.columns = _FIXED_COLUMNS + list(loss_names)

    def start(self, first_epoch: int) -> None:
        """Begin logging at ``first_epoch``: keep earlier rows, write the CSV header if needed."""
        kept = [row for row in self.read() if int(float(row["epoch"])) < first_epoch]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, extrasaction="ignore", restval="")
        writer.writeheader()
        writer.writerows(kept)
        write_text_atomic(self.csv_path, buffer.getvalue())
        verb = "started" if first_epoch == 1 else f"resumed at epoch {first_epoch}"
        with open(self.text_path, "a", encoding="utf-8") as text:
            text.write(f"================ training {verb} ({time.strftime('%Y-%m-%d %H:%M:%S')}) ================\n")

    def record(self, report: LossReport) -> str:
        """Append one report to both files and return its text line."""
        row = {
            "epoch": report.epoch,
            "iteration": report.iteration,
            "progress": f"{report.progress:.4f}",
            "lr": f"{report.learning_rate:.3g}",
            "seconds_per_iteration": f"{report.seconds_per_iteration:.4f}",
            **{name: f"{value:.5f}" for name, value in report.losses.items()},
        }
        with open(self.csv_path, "a", encoding="utf-8", newline="") as table:
            csv.DictWriter(table, fieldnames=self.columns, extrasaction="ignore", restval="").writerow(row)
        line = report.text_line()
        with open(self.text_path, "a", encoding="utf-8") as text:
            text.write(line + "\n")
        return line

    def read(self) -> list[dict[str, str]]:
        """All CSV rows so far (empty if there is no log yet)."""
        if not self.csv_path.is_file():
            return []
        with open(self.csv_path, encoding="utf-8", newline="") as table:
            return list(csv.DictReader(table))
