"""The record of training losses: a text log for people and a CSV for programs and plots.

The models log each term as it enters the objective, that is multiplied by its weight
(``cycle_A`` is ``--lambda_A`` × the L1 distance): :func:`loss_weights` says by how much, so the
plots, the page and TensorBoard can say it too. :data:`LOSS_GROUPS` puts related terms together
(a plot panel, an entry of the progress bar).
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from util.atomic import write_text_atomic

_FIXED_COLUMNS = ["epoch", "iteration", "progress", "lr", "seconds_per_iteration"]


@dataclass(frozen=True)
class LossGroup:
    """Related loss terms: one panel of the loss plot, one entry (their sum) on the progress bar."""

    key: str  # short name, on the progress bar
    title: str  # what the terms measure, the panel title
    names: tuple[str, ...]


#: The groups of the CycleGAN, CUT and mask-guided terms; a loss not listed here gets a group of its own.
LOSS_GROUPS: tuple[LossGroup, ...] = (
    LossGroup("G", "generators: adversarial", ("G_A", "G_B")),
    LossGroup("D", "discriminators", ("D_A", "D_B")),
    LossGroup("cycle", "cycle consistency (L1)", ("cycle_A", "cycle_B")),
    LossGroup("NCE", "patch correspondence (PatchNCE, cross-entropy)", ("NCE", "NCE_idt")),
    LossGroup("idt", "identity (L1)", ("idt_A", "idt_B")),
    LossGroup("GT", "nucleus masks (GT, cross-entropy)", ("GT_fake", "GT_rec")),
    LossGroup("structure", "structure ((1 - SSIM) / 2)", ("structure_fake", "structure_rec")),
    LossGroup("color", "colour (sliced Wasserstein, CIELAB / 10)", ("color_fake",)),
)


def group_losses(loss_names: list[str]) -> list[LossGroup]:
    """The groups of ``loss_names`` that are present, each cut to its present names, in a stable order."""
    groups = []
    for group in LOSS_GROUPS:
        present = tuple(name for name in group.names if name in loss_names)
        if present:
            groups.append(LossGroup(group.key, group.title, present))
    known = {name for group in LOSS_GROUPS for name in group.names}
    groups += [LossGroup(name, name, (name,)) for name in loss_names if name not in known]
    return groups


@dataclass(frozen=True)
class LossWeight:
    """The factor a logged loss carries and the flags it comes from."""

    factor: float
    flags: str

    def label(self) -> str:
        return f"×{self.factor:g} ({self.flags})"


def loss_weights(options: Mapping[str, Any]) -> dict[str, LossWeight]:
    """The weight of every weighted term the models log, from the training options (``vars(opt)``).

    Mirrors ``generator_losses`` of models/cycle_gan_model.py and models/cut_model.py and the terms
    of models/mask_guidance.py (a test checks it against seg_cycle_gan). The adversarial terms carry
    no weight and are not listed; neither is a flag the options lack.
    """
    weights: dict[str, LossWeight] = {}

    def weigh(names: tuple[str, ...], flags: tuple[str, ...]) -> None:
        if all(isinstance(options.get(flag), int | float) for flag in flags):
            factor = 1.0
            for flag in flags:
                factor *= float(options[flag])
            weights.update({name: LossWeight(factor, " × ".join(f"--{flag}" for flag in flags)) for name in names})

    weigh(("cycle_A",), ("lambda_A",))
    weigh(("cycle_B",), ("lambda_B",))
    weigh(("idt_A",), ("lambda_identity", "lambda_B"))
    weigh(("idt_B",), ("lambda_identity", "lambda_A"))
    weigh(("GT_fake", "GT_rec"), ("lambda_gt",))
    weigh(("structure_fake", "structure_rec"), ("lambda_cv",))
    weigh(("color_fake",), ("lambda_color",))
    if isinstance(options.get("lambda_NCE"), int | float):  # CUT halves the weight when both NCE terms are on
        both = bool(options.get("nce_idt"))
        flags = "--lambda_NCE / 2 (with --nce_idt)" if both else "--lambda_NCE"
        factor = float(options["lambda_NCE"]) * (0.5 if both else 1.0)
        weights.update({name: LossWeight(factor, flags) for name in ("NCE", "NCE_idt")})
    return weights


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
