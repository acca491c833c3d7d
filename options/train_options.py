"""Flags of ``train.py``."""

from __future__ import annotations

import argparse
import importlib.util
import logging
from typing import Any

from models.networks import GAN_MODES, LR_POLICIES
from options.base_options import BaseOptions
from util.arg_types import float_in_range, nonnegative_int, positive_float, positive_int
from util.errors import OptionError

logger = logging.getLogger(__name__)

#: Options that belong to one invocation, not to the experiment: never taken from a saved run.
_PER_INVOCATION = {
    "continue_train",
    "epoch",
    "gpu_ids",
    "num_threads",
    "compute_threads",
    "verbose",
    "display_id",
    "display_server",
    "display_port",
    "display_env",
    "print_freq",
    "is_train",
    "rank",
    "local_rank",
    "world_size",
}


class TrainOptions(BaseOptions):
    """Training flags. With ``--continue_train`` the saved run's options become the defaults,
    so ``train.py --name X --continue_train`` resumes with the same settings; a flag given
    again overrides them, except architecture flags, which must match the checkpoint."""

    is_train = True
    description = "Train an unpaired image-to-image translation model (CycleGAN family)."
    epoch_help = "the checkpoint --continue_train resumes from: an epoch number or 'latest'"

    def initialize(self, parser: argparse.ArgumentParser) -> None:
        super().initialize(parser)
        parser.set_defaults(model="cycle_gan")
        training = parser.add_argument_group("training")
        training.add_argument("--phase", default="train", help="data subfolders to use: <phase>A, <phase>B")
        training.add_argument(
            "--n_epochs", type=nonnegative_int, default=100, help="epochs at the initial learning rate"
        )
        training.add_argument(
            "--n_epochs_decay", type=nonnegative_int, default=100, help="epochs of learning-rate decay after that"
        )
        training.add_argument("--lr", type=positive_float, default=0.0002, help="initial Adam learning rate")
        training.add_argument(
            "--beta1",
            type=float_in_range(0.0, 1.0, include_minimum=True, include_maximum=False),
            default=0.5,
            help="Adam momentum term",
        )
        training.add_argument("--gan_mode", choices=GAN_MODES, default="lsgan", help="adversarial loss")
        training.add_argument("--lr_policy", choices=LR_POLICIES, default="linear", help="learning-rate schedule")
        training.add_argument(
            "--lr_step_size", type=positive_int, default=50, help="epochs between x0.1 steps with --lr_policy step"
        )
        training.add_argument(
            "--nan_policy",
            choices=("stop", "skip"),
            default="stop",
            help="on a NaN or infinite loss: stop before saving, or skip that step's update (costs a sync per step)",
        )
        training.add_argument(
            "--continue_train", action="store_true", help="resume the experiment from --epoch (default latest)"
        )

        output = parser.add_argument_group("progress and saving")
        output.add_argument("--print_freq", type=positive_int, default=100, help="iterations between loss reports")
        output.add_argument(
            "--save_epoch_freq", type=positive_int, default=5, help="keep a numbered checkpoint every this many epochs"
        )
        output.add_argument("--display_id", type=int, default=0, help="visdom window id; > 0 turns on the live display")
        output.add_argument("--display_server", default="http://localhost", help="visdom server address")
        output.add_argument("--display_port", type=positive_int, default=8097, help="visdom server port")
        output.add_argument("--display_env", default="main", help="visdom environment")
        output.add_argument(
            "--tensorboard",
            action=argparse.BooleanOptionalAction,
            default=False,
            help="also write losses, learning rates and sample images for TensorBoard into "
            "<checkpoints_dir>/<name>/tensorboard/ (a resumed run keeps it on unless --no-tensorboard)",
        )

    def saved_defaults(self, known: argparse.Namespace) -> dict[str, Any]:
        """With ``--continue_train``, the resumed run's options (but those of one invocation)."""
        if not known.continue_train:
            return {}
        saved = {key: value for key, value in super().saved_defaults(known).items() if key not in _PER_INVOCATION}
        return _from_older_runs(saved)

    def validate(self, opt: argparse.Namespace) -> None:
        super().validate(opt)
        if opt.n_epochs + opt.n_epochs_decay < 1:
            raise OptionError("--n_epochs + --n_epochs_decay must be at least 1")
        if opt.tensorboard and importlib.util.find_spec("tensorboard") is None:  # looked up, not imported
            raise OptionError("--tensorboard needs the tensorboard package: pip install -r requirements.txt")


def _from_older_runs(saved: dict[str, Any]) -> dict[str, Any]:
    """Saved options of a ``seg_cycle_gan`` run from before the stain model (it has ``gt_polarity``), as they
    read now: ``lambda_hsv`` is ``lambda_color``; ``gt_threshold`` was a darkness, which now would be read
    as an optical density, so it is dropped and the threshold is calibrated on trainB."""
    if "gt_polarity" not in saved:
        return saved
    saved = dict(saved)
    if "lambda_hsv" in saved:
        saved.setdefault("lambda_color", saved.pop("lambda_hsv"))
    if saved.pop("gt_threshold", None) is not None:
        logger.warning(
            "this run was saved before the stain model: its --gt_threshold was a darkness (0..1), not a "
            "hematoxylin score, so the threshold is calibrated on trainB instead; its colour loss is the new one"
        )
    return saved
