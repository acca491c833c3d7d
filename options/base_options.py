"""Flags shared by training and testing, and the parsing machinery.

The options layer declares, parses and validates flags; it reads no files. Defaults from an
earlier run (``--continue_train``, or the trained model ``test.py`` tests) come in through a
callable the driver gives (see :mod:`experiment`), and the driver reconciles the parsed options
with a checkpoint afterwards, using :attr:`BaseOptions.explicit`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import data
import models
from data.transforms import PREPROCESS_MODES
from models.networks import DISCRIMINATOR_TYPES, GENERATOR_TYPES, INIT_TYPES, NORM_TYPES
from util.arg_types import nonnegative_int, positive_float, positive_int
from util.cli import HelpFormatter
from util.device import add_compute_threads_argument, parse_gpu_ids
from util.distributed import context_from_environment
from util.errors import OptionError
from util.runtime import AMP_MODES

logger = logging.getLogger(__name__)

#: Reads the options an earlier run saved, given the partly parsed ones (``--name``, ...).
SavedOptionsReader = Callable[[argparse.Namespace], dict[str, Any]]


class BaseOptions:
    """Build, parse, check and save the options of a driver.

    Subclasses add their flags in :meth:`initialize` and choose, in :meth:`saved_defaults`, which
    options of a saved run (read by ``saved_options``) become defaults.
    """

    is_train = False
    description = "Cell CycleGAN"
    #: What ``--epoch`` means to this driver.
    epoch_help = "which checkpoint to load: an epoch number or 'latest'"

    def __init__(self, saved_options: SavedOptionsReader | None = None) -> None:
        self.saved_options = saved_options
        #: Every option's default (after model, dataset and saved-run defaults), for reports.
        self.defaults: dict[str, Any] = {}
        #: The options typed on the command line in the last :meth:`parse` (a checkpoint may not contradict them).
        self.explicit: set[str] = set()

    # -- flags -----------------------------------------------------------------------------------
    def initialize(self, parser: argparse.ArgumentParser) -> None:
        experiment = parser.add_argument_group("experiment")
        experiment.add_argument("--dataroot", help="dataset folder: trainA/ trainB/ for training, testA/ for testing")
        experiment.add_argument(
            "--name", default="experiment", help="experiment name: files go to <checkpoints_dir>/<name>"
        )
        experiment.add_argument(
            "--checkpoints_dir", default="checkpoints", help="where experiments keep their checkpoints"
        )
        experiment.add_argument(
            "--gpu_ids", default="auto", help="'auto' (GPU 0 if present), '-1' for the CPU, or a GPU index"
        )
        experiment.add_argument("--epoch", default="latest", help=self.epoch_help)
        experiment.add_argument("--seed", type=int, default=0, help="seed for weights, data order and augmentation")
        experiment.add_argument(
            "--deterministic", action="store_true", help="deterministic kernels: repeatable runs, a little slower"
        )
        experiment.add_argument("--verbose", action="store_true", help="log debugging details")

        model = parser.add_argument_group("model")
        model.add_argument("--model", choices=models.model_names(), help="model to use")
        model.add_argument(
            "--input_nc", type=int, choices=(1, 3), default=1, help="channels of source images (1 gray, 3 RGB)"
        )
        model.add_argument(
            "--output_nc", type=int, choices=(1, 3), default=3, help="channels of target images (1 gray, 3 RGB)"
        )
        model.add_argument("--ngf", type=positive_int, default=64, help="generator filters in the first conv layer")
        model.add_argument("--ndf", type=positive_int, default=64, help="discriminator filters in the first conv layer")
        model.add_argument("--netG", choices=GENERATOR_TYPES, default="resnet_9blocks", help="generator architecture")
        model.add_argument(
            "--netD", choices=DISCRIMINATOR_TYPES, default="basic", help="discriminator: basic = 70x70 PatchGAN"
        )
        model.add_argument(
            "--n_layers_D", type=positive_int, default=3, help="discriminator depth with --netD n_layers"
        )
        model.add_argument("--norm", choices=NORM_TYPES, default="instance", help="normalization layers")
        model.add_argument("--init_type", choices=INIT_TYPES, default="normal", help="weight initialisation")
        model.add_argument("--init_gain", type=positive_float, default=0.02, help="scale of the initialisation")
        model.add_argument("--no_dropout", action="store_true", help="no dropout in the generator")

        dataset = parser.add_argument_group("data")
        dataset.add_argument(
            "--dataset_mode", choices=data.dataset_names(), default="unaligned", help="how images are loaded"
        )
        dataset.add_argument(
            "--direction", choices=("AtoB", "BtoA"), default="AtoB", help="AtoB translates folder A into B"
        )
        dataset.add_argument("--serial_batches", action="store_true", help="take images in order instead of shuffling")
        dataset.add_argument(
            "--num_threads",
            type=nonnegative_int,
            default=min(4, os.cpu_count() or 1),
            help="data loading processes (0 = main process)",
        )
        dataset.add_argument("--batch_size", type=positive_int, default=1, help="images per batch")
        dataset.add_argument(
            "--load_size", type=positive_int, default=143, help="resize to this size (resize/scale_width modes)"
        )
        dataset.add_argument("--crop_size", type=positive_int, default=128, help="then crop to this size")
        dataset.add_argument(
            "--max_dataset_size", type=positive_int, default=None, help="use at most this many images per domain"
        )
        dataset.add_argument(
            "--preprocess", choices=PREPROCESS_MODES, default="crop", help="resizing and cropping at load time"
        )
        dataset.add_argument("--no_flip", action="store_true", help="no random horizontal flips")
        dataset.add_argument(
            "--cache",
            action="store_true",
            help="decode every image once into memory (if it fits) instead of each epoch",
        )
        dataset.add_argument(
            "--display_winsize", type=positive_int, default=256, help="width of images in the HTML pages"
        )

        speed = parser.add_argument_group("speed (see docs/performance.md)")
        speed.add_argument(
            "--amp",
            choices=AMP_MODES,
            default="none",
            help="mixed precision: bf16 or fp16 (with loss scaling) autocast; for GPUs, slow on CPUs",
        )
        speed.add_argument("--channels_last", action="store_true", help="NHWC memory layout (faster on tensor cores)")
        speed.add_argument(
            "--compile", action="store_true", help="torch.compile the networks (first iterations compile, ~1 min)"
        )
        add_compute_threads_argument(speed, workers=True)

    def saved_defaults(self, known: argparse.Namespace) -> dict[str, Any]:
        """Defaults taken from a saved run: all of its options here; subclasses choose."""
        return self.saved_options(known) if self.saved_options is not None else {}

    # -- parsing ---------------------------------------------------------------------------------
    def parse(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        """Parse ``argv`` (default: the command line) into checked options."""
        argv = list(sys.argv[1:] if argv is None else argv)
        parser = self.build_parser(argv)
        opt = parser.parse_args(argv)
        opt.is_train = self.is_train
        # Set by torchrun (see util/distributed.py); a plain run is rank 0 of a world of one.
        context = context_from_environment()
        opt.rank, opt.local_rank, opt.world_size = context.rank, context.local_rank, context.world_size
        self.explicit = self._explicit_options(argv)
        self.validate(opt)
        return opt

    @staticmethod
    def _explicit_options(argv: list[str]) -> set[str]:
        """The options typed on the command line (``--ngf 8`` or ``--ngf=8`` -> ``ngf``).

        Every flag is a long option named like its destination, and abbreviations are off,
        so the tokens themselves say which options were given.
        """
        return {token[2:].split("=", 1)[0] for token in argv if token.startswith("--") and len(token) > 2}

    def build_parser(self, argv: list[str]) -> argparse.ArgumentParser:
        """A parser with the base flags, the driver's flags, and those of the chosen model and dataset.

        Defaults from a saved run (see :meth:`saved_defaults`) are re-applied after each pass,
        since the model and dataset may add flags or change defaults.
        """
        parser = argparse.ArgumentParser(
            description=self.description, formatter_class=HelpFormatter, allow_abbrev=False
        )
        self.initialize(parser)
        # The early passes only find the model and dataset; --help waits for the full parser.
        probe = [token for token in argv if token not in ("-h", "--help")]
        saved = self.saved_defaults(parser.parse_known_args(probe)[0])

        def parse_known_with_saved_defaults() -> argparse.Namespace:
            names = vars(parser.parse_known_args(probe)[0])
            parser.set_defaults(**{key: value for key, value in saved.items() if key in names})
            return parser.parse_known_args(probe)[0]

        known = parse_known_with_saved_defaults()
        if known.model is None:
            raise OptionError(f"--model is required; valid values: {', '.join(models.model_names())}")
        models.get_option_setter(known.model)(parser, self.is_train)
        known = parse_known_with_saved_defaults()
        data.get_option_setter(known.dataset_mode)(parser, self.is_train)
        known = parse_known_with_saved_defaults()
        self.defaults = {key: parser.get_default(key) for key in vars(known)}
        return parser

    def validate(self, opt: argparse.Namespace) -> None:
        """Checks that span several options, with messages saying what to change."""
        if not opt.dataroot:
            raise OptionError(
                "--dataroot is required: the dataset folder (e.g. datasets/demo, built by python scripts/make_demo_dataset.py)"
            )
        if Path(opt.name).name != opt.name or opt.name in ("", ".", ".."):
            raise OptionError(f"--name {opt.name!r} must be a plain folder name, without '/' or '..'")
        parse_gpu_ids(opt.gpu_ids)
        if opt.preprocess == "resize_and_crop" and opt.crop_size > opt.load_size:
            raise OptionError(
                f"--crop_size {opt.crop_size} is larger than --load_size {opt.load_size}: the crop must fit in the resized image"
            )

    # -- reporting -------------------------------------------------------------------------------
    def format_options(self, opt: argparse.Namespace) -> str:
        """One line per option; values that differ from the default show the default."""
        lines = ["---------------- options ----------------"]
        for key, value in sorted(vars(opt).items()):
            default = self.defaults.get(key, value)
            note = f"  [default: {default}]" if value != default else ""
            lines.append(f"{key:>22}: {value}{note}")
        lines.append("-----------------------------------------")
        return "\n".join(lines)
