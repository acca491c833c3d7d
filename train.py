"""Train a translation model on unpaired images.

    python train.py --dataroot datasets/demo --name demo --model cycle_gan

Every epoch ends with a checkpoint (``latest``, and a numbered one every ``--save_epoch_freq``
epochs), a loss report and sample images on ``checkpoints/<name>/web/index.html``. An
interrupted run continues exactly where the last finished epoch left off with
``--continue_train``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, default_collate

from data import create_dataloader, create_dataset
from data.base_dataset import BaseDataset
from data.sampler import EpochSampler
from data.transforms import to_uint8_image
from experiment import TRAIN_OPTIONS, Experiment, TrainingReport, save_options, saved_defaults_reader
from models import create_model
from models.base_model import BaseModel
from options.train_options import TrainOptions
from util import distributed
from util.cli import exit_quickly, run_command
from util.disk import writing
from util.errors import TrainingError
from util.loss_log import LossReport
from util.loss_window import LossWindow, WindowSummary
from util.progress import LossPostfix, progress_bar
from util.reproducibility import seed_everything
from util.runtime import Runtime

logger = logging.getLogger("train")


def train(opt: argparse.Namespace, options_text: str = "") -> Path:
    """Run (or continue) the training described by ``opt``; return the experiment folder.

    The options are saved (``train_opt.json``, with ``options_text`` as ``train_opt.txt``) only
    once the model is built and any checkpoint to resume is loaded: options that fail are never
    recorded, so the next ``--continue_train`` reads the run as it really is.
    """
    seed_everything(opt.seed, opt.deterministic)
    dataset = create_dataset(opt)
    runtime = Runtime.from_options(opt)
    model = create_model(opt, runtime)
    model.calibrate(dataset)
    distributed.init_process_group(runtime.context, runtime.device)
    try:
        return train_model(opt, dataset, model, options_text)
    finally:
        distributed.destroy_process_group()


def train_model(opt: argparse.Namespace, dataset: BaseDataset, model: BaseModel, options_text: str = "") -> Path:
    """The epochs of :func:`train`, in every process; only the main one writes files."""
    context = model.runtime.context
    torch.backends.cudnn.benchmark = model.device.type == "cuda" and not opt.deterministic
    last_epoch = model.setup()
    loader, sampler = create_dataloader(dataset, opt, model.device)
    experiment = Experiment.of(opt).directory
    if context.is_main:
        save_options(experiment, TRAIN_OPTIONS, vars(opt), options_text)
    total_epochs = opt.n_epochs + opt.n_epochs_decay
    if last_epoch >= total_epochs:
        logger.info(
            "epoch %d of %d is already done; raise --n_epochs or --n_epochs_decay to train longer",
            last_epoch,
            total_epochs,
        )
        return experiment
    if context.is_distributed:
        logger.info(
            "%d processes: each trains on its own share of every epoch, with batches of %d (%d images per step "
            "in all); the learning rate is not scaled",
            context.world_size,
            opt.batch_size,
            opt.batch_size * context.world_size,
        )

    logger.info(
        "training on %s: %d images per epoch, %d iterations, epochs %d..%d",
        model.device,
        len(dataset),
        len(loader),
        last_epoch + 1,
        total_epochs,
    )
    report = TrainingReport(opt, model.loss_names, model.visual_names) if context.is_main else None
    if report is not None:
        with writing(f"the loss log in {experiment}", kept=saved_hint(last_epoch)):
            report.start(last_epoch + 1, len(loader))
    # The same sample every epoch makes the HTML page a film of the model's progress.
    preview_batch = default_collate([dataset[(0, opt.seed)]])

    try:
        for epoch in range(last_epoch + 1, total_epochs + 1):
            started = time.perf_counter()
            mean_objective = train_one_epoch(
                model, loader, sampler, epoch, total_epochs, report, opt.print_freq, opt.nan_policy
            )
            trained_rates = {name: optimizer.param_groups[0]["lr"] for name, optimizer in model.optimizers.items()}
            learning_rate = model.update_learning_rate(mean_objective)
            if report is not None:
                # The checkpoint first: on a disk that fills up, the weights matter more than the pictures.
                model.save(epoch, numbered=epoch % opt.save_epoch_freq == 0 or epoch == total_epochs)
                with writing(f"the training page and loss plot in {experiment}", kept=saved_hint(epoch)):
                    report.end_epoch(epoch, preview_images(model, preview_batch), trained_rates, mean_objective)
            logger.info(
                "epoch %d/%d done in %.1f s; generator objective %.3f; next learning rate %.2g",
                epoch,
                total_epochs,
                time.perf_counter() - started,
                mean_objective,
                learning_rate,
            )

        distributed.barrier(context)  # no process leaves before the last checkpoint is written
    finally:
        if report is not None:
            # Flushed on every way out: the curves up to a NaN stop, Ctrl-C or a failure explain it.
            with contextlib.suppress(OSError):
                report.close()
    if report is not None:
        logger.info("checkpoints: %s", experiment)
        logger.info("training page: %s", report.page_path)
        if report.plot_path.is_file():
            logger.info("loss curves: %s", report.plot_path)
        if opt.tensorboard:
            logger.info("TensorBoard: tensorboard --logdir %s", report.tensorboard_path)
    return experiment


def train_one_epoch(
    model: BaseModel,
    loader: DataLoader,
    sampler: EpochSampler,
    epoch: int,
    total_epochs: int,
    report: TrainingReport | None,
    print_freq: int,
    nan_policy: str = "stop",
) -> float:
    """Train one epoch and return the mean generator objective (over all processes).

    Each loss report is the mean over the iterations since the previous report (every
    ``print_freq`` iterations and at the end of the epoch), and over the processes. Losses are
    summed on the device and read only at reports, since reading a value makes the host wait
    for the device; the main process's progress bar also shows the running means about once a
    second (:class:`LossPostfix`). ``report`` is None in all processes but the main one.
    """
    context = model.runtime.context
    sampler.set_epoch(epoch)
    model.train_mode()
    iterations = len(loader)
    window = LossWindow(model.loss_names, model.device)
    objective = LossWindow(["objective"], model.device)
    last_report, last_report_iteration = time.perf_counter(), 0
    bar_options = dict(desc=f"epoch {epoch}/{total_epochs}", unit="batch", leave=False, disable=not context.is_main)
    with progress_bar(loader, **bar_options) as bar:
        postfix = LossPostfix(bar, model.loss_names) if context.is_main else None
        for iteration, batch in enumerate(bar, start=1):
            model.set_input(batch)
            model.optimize_parameters()
            window.add(model.losses, iteration)
            objective.add({"objective": model.generator_objective}, iteration)
            reporting = iteration % print_freq == 0 or iteration == iterations
            if postfix is not None and not reporting:
                postfix.maybe_show(window)  # a clock check; reads the device about once a second
            if reporting:
                summary = window.read(context)
                check_finite(summary, nan_policy, epoch, last_report_iteration + 1, iteration)
                now = time.perf_counter()
                seconds_per_iteration = (now - last_report) / (iteration - last_report_iteration)
                last_report, last_report_iteration = now, iteration
                if report is None:
                    continue
                losses = {name: summary.means[name] for name in model.loss_names if name in summary.means}
                if postfix is not None:
                    postfix.show(losses)  # drawn at the bar's next redraw
                with writing(f"the loss log (epoch {epoch})", kept=saved_hint(epoch - 1)):
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
    return objective.read(context).means["objective"]


def check_finite(
    summary: WindowSummary, nan_policy: str, epoch: int, first_iteration: int, last_iteration: int
) -> None:
    """Stop training on a NaN or infinite loss (``--nan_policy stop``), or warn about skipped steps (``skip``).

    Raised before the epoch's checkpoint is written, so the last checkpoint on disk is a good one.
    """
    if not summary.non_finite:
        return
    names = ", ".join(summary.non_finite)
    if nan_policy == "skip":
        logger.warning(
            "epoch %d, iterations %d-%d: %d step(s) skipped because %s was NaN or infinite",
            epoch, first_iteration, last_iteration, summary.skipped_steps, names,
        )  # fmt: skip
        return
    where = (
        f"iteration {summary.first_non_finite_iteration}"
        if summary.first_non_finite_iteration is not None
        else f"iterations {first_iteration}-{last_iteration}"
    )
    raise TrainingError(
        f"loss {names} became NaN or infinite at {where} of epoch {epoch}; training stopped before saving, so the "
        "last checkpoint on disk is the last good one. Resume it with --continue_train and a lower --lr (or "
        "--amp none), or pass --nan_policy skip to drop such steps."
    )


def saved_hint(epoch: int) -> str:
    """What a user keeps when a write fails after ``epoch`` was saved, and how to go on."""
    if epoch == 0:
        return "No epoch was finished yet; fix that, then start again."
    return f"The checkpoint of epoch {epoch} is saved and intact; fix that, then resume with --continue_train."


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
        TrainOptions(saved_defaults_reader(TRAIN_OPTIONS)),
        argv,
        train,
        prepare=lambda opt, explicit: Experiment.of(opt).prepare_training(opt, explicit),
        hold=lambda opt: Experiment.of(opt).lock(),
        interrupted_hint="interrupted; the last finished epoch is saved: resume with --continue_train",
    )


if __name__ == "__main__":
    exit_quickly(main())
