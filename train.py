"""Train a translation model on unpaired images.

    python train.py --dataroot datasets/demo --name demo --model cycle_gan

Every epoch ends with a checkpoint (``latest``, and a numbered one every ``--save_epoch_freq``
epochs), a loss report and sample images on ``checkpoints/<name>/web/index.html``. An
interrupted run continues exactly where the last finished epoch left off with
``--continue_train``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, default_collate

from data import create_dataloader, create_dataset
from data.sampler import EpochSampler
from data.transforms import to_uint8_image
from models import create_model
from models.base_model import BaseModel
from options.train_options import TrainOptions
from util.cli import run_command
from util.loss_log import LossReport
from util.progress import progress_bar
from util.reproducibility import seed_everything
from util.training_report import TrainingReport

logger = logging.getLogger("train")


def train(opt: argparse.Namespace) -> Path:
    """Run (or continue) the training described by ``opt``; return the experiment folder."""
    seed_everything(opt.seed, opt.deterministic)
    dataset = create_dataset(opt)
    model = create_model(opt)
    last_epoch = model.setup()
    loader, sampler = create_dataloader(dataset, opt, model.device)
    experiment = Path(opt.checkpoints_dir) / opt.name
    total_epochs = opt.n_epochs + opt.n_epochs_decay
    if last_epoch >= total_epochs:
        logger.info(
            "epoch %d of %d is already done; raise --n_epochs or --n_epochs_decay to train longer",
            last_epoch,
            total_epochs,
        )
        return experiment

    logger.info(
        "training on %s: %d images per epoch, %d iterations, epochs %d..%d",
        model.device,
        len(dataset),
        len(loader),
        last_epoch + 1,
        total_epochs,
    )
    report = TrainingReport(opt, model.loss_names, model.visual_names)
    report.start(last_epoch + 1)
    # The same sample every epoch makes the HTML page a film of the model's progress.
    preview_batch = default_collate([dataset[(0, opt.seed)]])

    for epoch in range(last_epoch + 1, total_epochs + 1):
        started = time.perf_counter()
        mean_objective = train_one_epoch(model, loader, sampler, epoch, total_epochs, report, opt.print_freq)
        learning_rate = model.update_learning_rate(mean_objective)
        report.end_epoch(epoch, preview_images(model, preview_batch))
        model.save(epoch, numbered=epoch % opt.save_epoch_freq == 0 or epoch == total_epochs)
        logger.info(
            "epoch %d/%d done in %.1f s; generator objective %.3f; next learning rate %.2g",
            epoch,
            total_epochs,
            time.perf_counter() - started,
            mean_objective,
            learning_rate,
        )

    logger.info("checkpoints: %s", experiment)
    logger.info("training page: %s", report.page_path)
    logger.info("loss curves: %s", report.plot_path)
    return experiment


def train_one_epoch(
    model: BaseModel,
    loader: DataLoader,
    sampler: EpochSampler,
    epoch: int,
    total_epochs: int,
    report: TrainingReport,
    print_freq: int,
) -> float:
    """Train one epoch and return the mean generator objective.

    Each loss report is the mean over the iterations since the previous report (every
    ``print_freq`` iterations and at the end of the epoch). Losses are summed on the device and
    read only at reports, since reading a value makes the host wait for the device.
    """
    sampler.set_epoch(epoch)
    model.train_mode()
    iterations = len(loader)
    objective_sum: Any = 0.0
    loss_sums: dict[str, Any] = {}
    last_report, last_report_iteration = time.perf_counter(), 0
    with progress_bar(loader, desc=f"epoch {epoch}/{total_epochs}", unit="batch", leave=False) as bar:
        for iteration, batch in enumerate(bar, start=1):
            model.set_input(batch)
            model.optimize_parameters()
            objective_sum = objective_sum + model.generator_objective
            for name, value in model.losses.items():
                loss_sums[name] = loss_sums.get(name, 0.0) + value
            if iteration % print_freq == 0 or iteration == iterations:
                steps = iteration - last_report_iteration
                losses = {name: float(loss_sums[name]) / steps for name in model.loss_names if name in loss_sums}
                loss_sums.clear()
                now = time.perf_counter()
                seconds_per_iteration = (now - last_report) / steps
                last_report, last_report_iteration = now, iteration
                bar.set_postfix({name: f"{value:.3f}" for name, value in losses.items()}, refresh=False)
                report.log_losses(
                    LossReport(
                        epoch=epoch,
                        iteration=iteration,
                        progress=epoch - 1 + iteration / iterations,
                        learning_rate=model.learning_rate(),
                        seconds_per_iteration=seconds_per_iteration,
                        losses=losses,
                    )
                )
    return float(objective_sum) / max(1, iterations)


def preview_images(model: BaseModel, batch: dict[str, Any]) -> dict[str, np.ndarray]:
    """Translate the preview batch in evaluation mode; its first item's images as uint8 arrays."""
    model.eval_mode()
    model.set_input(batch)
    model.test()
    images = {name: to_uint8_image(tensor[0]) for name, tensor in model.current_visuals().items()}
    model.train_mode()
    return images


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 success, 1 user error, 130 interrupted)."""
    return run_command(
        TrainOptions(),
        argv,
        train,
        options_folder=lambda opt: Path(opt.checkpoints_dir) / opt.name,
        options_stem="train_opt",
        interrupted_hint="interrupted; the last finished epoch is saved: resume with --continue_train",
    )


if __name__ == "__main__":
    sys.exit(main())
