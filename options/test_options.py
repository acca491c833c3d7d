"""Flags of ``test.py``."""

from __future__ import annotations

import argparse
from typing import Any

from options.base_options import BaseOptions
from util.arg_types import positive_int

#: What a test run takes from the training run's saved options (besides the architecture,
#: which comes from the checkpoint file itself).
_INHERITED = ("model", "dataroot", "direction")


class TestOptions(BaseOptions):
    """Inference flags. The model type, dataset folder and architecture come from the trained
    experiment, so ``test.py --name X --epoch all`` needs nothing else."""

    is_train = False
    description = "Translate test images with a trained model, for one, the latest or every saved epoch."
    epoch_help = "which checkpoint to test: an epoch number, 'latest', or 'all' (every numbered epoch)"

    def initialize(self, parser: argparse.ArgumentParser) -> None:
        super().initialize(parser)
        parser.set_defaults(
            dataset_mode="single", preprocess="none", no_flip=True, serial_batches=True, num_threads=0, epoch="latest"
        )
        testing = parser.add_argument_group("testing")
        testing.add_argument(
            "--results_dir", default="results", help="results go to <results_dir>/<name>/<phase>_<epoch>/"
        )
        testing.add_argument("--phase", default="test", help="data subfolder to translate: <dataroot>/<phase>A")
        testing.add_argument(
            "--num_test", type=positive_int, default=None, help="translate at most this many images (default all)"
        )
        testing.add_argument(
            "--eval", action="store_true", help="evaluation mode (batch norm uses running statistics, no dropout)"
        )

    def saved_defaults(self, known: argparse.Namespace) -> dict[str, Any]:
        """The trained run's model type, dataset folder and direction (``--model test`` without them)."""
        saved = super().saved_defaults(known)
        defaults = {key: saved[key] for key in _INHERITED if key in saved}
        defaults.setdefault("model", "test")
        return defaults
