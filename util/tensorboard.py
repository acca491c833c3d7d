"""TensorBoard event files of an experiment, in ``<experiment>/tensorboard/``: offline, no account.

Two runs, so ``tensorboard --logdir checkpoints/<name>/tensorboard`` shows both and
``--logdir checkpoints`` compares experiments:

- ``train/`` (``train.py --tensorboard``, main process only): the loss reports (``loss/<name>``),
  each epoch's mean losses, generator objective and learning rates (``epoch/...``), and the
  training page's sample images (``samples/<visual>``). Steps count iterations (batches of one
  process) from the start of training, so epoch N ends at step N x iterations per epoch.
  A resumed run opens the folder with ``purge_step`` at its first step: readers (TensorBoard's
  web page and :class:`EventAccumulator` alike) drop what an interrupted epoch had written, as
  the loss log drops its rows, and the curves show one history.
- ``evaluation/`` (evaluation/Stain_Evaluation.py, through :func:`write_evaluation_scores`): each
  epoch's scores per split (``evaluation/<split>/<metric>``, step = epoch), replaced by each
  evaluation, and only for experiments trained with ``--tensorboard``.

``torch.utils.tensorboard`` (and the tensorboard package under it) is imported only here, when a
writer is opened: it takes seconds, which runs without the flag do not pay.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from util.errors import OptionError
from util.loss_log import LossWeight

logger = logging.getLogger(__name__)

FOLDER = "tensorboard"
TRAIN_RUN = "train"
EVALUATION_RUN = "evaluation"
#: Keys of an evaluation record that are no per-epoch score.
_RECORD_KEYS = {"split", "label", "kind", "chosen", "passes_guards", "failed_guards"}


def _summary_writer(log_dir: Path, purge_step: int | None = None) -> Any:
    """A ``SummaryWriter`` on ``log_dir``; a missing tensorboard package is one line saying what to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # lazy: see the module docstring
    except ImportError as error:
        raise OptionError(
            f"--tensorboard needs the tensorboard package ({error}); install it with pip install -r requirements.txt"
        ) from None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step, flush_secs=60)


def run_folder(experiment: Path, run: str) -> Path:
    return Path(experiment) / FOLDER / run


class TrainingBoard:
    """Scalars and sample images of one training run (started or resumed) in ``<experiment>/tensorboard/train``."""

    def __init__(self, experiment: Path, first_epoch: int, iterations_per_epoch: int) -> None:
        self.iterations_per_epoch = max(1, iterations_per_epoch)
        self.first_step = self.step(first_epoch, 1)
        self.folder = run_folder(experiment, TRAIN_RUN)
        self.writer = _summary_writer(self.folder, purge_step=self.first_step)

    def step(self, epoch: int, iteration: int) -> int:
        """Iterations since the start of training at ``iteration`` (from 1) of ``epoch``: the x-axis of every scalar."""
        return (epoch - 1) * self.iterations_per_epoch + iteration

    def describe_losses(self, weights: Mapping[str, LossWeight]) -> None:
        """A text note (TensorBoard's Text tab) saying which logged losses are weighted, and by what."""
        lines = [f"- `{name}`: {weight.label()}" for name, weight in weights.items()]
        note = "Logged losses are the terms the generators minimise, weights included:\n\n" + "\n".join(lines)
        self.writer.add_text("losses", note if lines else "No logged loss carries a weight.", self.first_step)

    def log_losses(self, epoch: int, iteration: int, losses: Mapping[str, float], seconds_per_iteration: float) -> None:
        """One loss report: means since the previous one."""
        step = self.step(epoch, iteration)
        for name, value in losses.items():
            self.writer.add_scalar(f"loss/{name}", value, step)
        self.writer.add_scalar("time/seconds_per_iteration", seconds_per_iteration, step)

    def log_epoch(
        self,
        epoch: int,
        losses: Mapping[str, float],
        learning_rates: Mapping[str, float],
        images: Mapping[str, np.ndarray],
    ) -> None:
        """The epoch's mean losses and objective, the learning rate of each optimizer, and the sample images
        (uint8, (H, W) or (H, W, 3)), at the epoch's last step; then flush, so a crash loses nothing shown."""
        step = self.step(epoch + 1, 0)
        self.writer.add_scalar("epoch/epoch", epoch, step)
        for name, value in losses.items():
            self.writer.add_scalar(f"epoch/{name}", value, step)
        for name, value in learning_rates.items():
            self.writer.add_scalar(f"learning_rate/{name}", value, step)
        for name, image in images.items():
            self.writer.add_image(f"samples/{name}", image, step, dataformats="HW" if image.ndim == 2 else "HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def experiment_of_results(results_dir: Path) -> Path | None:
    """The experiment folder whose checkpoints test.py tested into ``results_dir`` (its ``test_opt.json``), or None."""
    try:
        options = json.loads((Path(results_dir) / "test_opt.json").read_text(encoding="utf-8"))
        folder = Path(options["checkpoints_dir"]) / options["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return folder if folder.is_dir() else None


def _score_row(row: Any) -> tuple[str, str, str, Mapping[str, Any]]:
    """(label, split, kind, scores) of an evaluation row: a ``scores.json`` record or an object with ``.scores``."""
    if isinstance(row, Mapping):
        return str(row.get("label", "")), str(row.get("split", "")), str(row.get("kind", "epoch")), row
    return str(row.label), str(row.split), str(getattr(row, "kind", "epoch")), row.scores


def write_evaluation_scores(rows: Iterable[Any], experiment: Path | None) -> Path | None:
    """Each numbered epoch's scores as ``evaluation/<split>/<metric>`` at step = epoch, in
    ``<experiment>/tensorboard/evaluation``, replacing an earlier evaluation's; return that folder.

    ``rows``: the records of ``scores.json`` (``split``, ``label``, ``kind`` and one number per
    metric) or objects with ``label``, ``split``, ``kind`` and a ``scores`` mapping. Baselines,
    named checkpoints, intervals, flags and NaN scores are left out. Nothing is written (None) when
    ``experiment`` is None or was not trained with ``--tensorboard``; a failure to write is a
    warning, never the evaluation's end.
    """
    if experiment is None or not (Path(experiment) / FOLDER).is_dir():
        return None
    folder = run_folder(experiment, EVALUATION_RUN)
    try:
        for old in folder.glob("events.out.tfevents.*"):
            old.unlink()  # an evaluation replaces the previous one: the same steps would show twice
        writer = _summary_writer(folder)
        try:
            for row in rows:
                label, split, kind, scores = _score_row(row)
                if kind != "epoch" or not label.isdigit():
                    continue
                for metric, value in scores.items():
                    if metric in _RECORD_KEYS or metric.endswith(("_ci_low", "_ci_high")) or isinstance(value, bool):
                        continue
                    if isinstance(value, int | float) and math.isfinite(value):
                        writer.add_scalar(f"evaluation/{split}/{metric}", float(value), int(label))
        finally:
            writer.close()
    except (OSError, OptionError) as error:
        logger.warning("the evaluation scores were not written for TensorBoard in %s: %s", folder, error)
        return None
    return folder
