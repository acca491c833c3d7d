"""Helpers shared by tests (imported explicitly; fixtures live in conftest.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from options.train_options import TrainOptions

REPO_ROOT = Path(__file__).resolve().parents[1]

# Small networks keep every training test to seconds on two CPU cores.
TINY_MODEL = ["--netG", "resnet_6blocks", "--ngf", "4", "--ndf", "4", "--gpu_ids", "-1", "--num_threads", "0"]


def train_arguments(dataroot: Path, checkpoints: Path, name: str, *extra: str) -> list[str]:
    """Command-line arguments for a tiny, fast training run."""
    return [
        "--dataroot", str(dataroot), "--checkpoints_dir", str(checkpoints), "--name", name,
        *TINY_MODEL, "--crop_size", "32", "--n_epochs", "1", "--n_epochs_decay", "1", "--save_epoch_freq", "1",
        "--pool_size", "2", *extra,
    ]  # fmt: skip


def dataset_options(dataroot: Path, *extra: str) -> argparse.Namespace:
    """Training options for dataset tests on ``dataroot``; the checkpoint folder is never created."""
    unused_checkpoints = str(dataroot.parent / "unused_checkpoints")
    arguments = ["--dataroot", str(dataroot), "--checkpoints_dir", unused_checkpoints, "--gpu_ids", "-1"]
    return TrainOptions().parse([*arguments, "--num_threads", "0", *extra])
