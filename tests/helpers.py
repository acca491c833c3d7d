"""Helpers shared by tests (imported explicitly; fixtures live in conftest.py)."""

from __future__ import annotations

import argparse
import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from data.image_io import read_array
from experiment import TRAIN_OPTIONS, Experiment, saved_defaults_reader
from options.test_options import TestOptions
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


def demo_arrays(folder: Path, count: int | None = None, start: int = 0) -> np.ndarray:
    """The PNG crops of a demo folder, stacked as stored: (N, H, W) or (N, H, W, 3) uint8."""
    paths = sorted(Path(folder).glob("*.png"))[start : None if count is None else start + count]
    return np.stack([read_array(path) for path in paths])


def demo_batch(folder: Path, count: int, start: int = 0) -> torch.Tensor:
    """Demo crops as a model batch (N, C, H, W): images in [-1, 1], masks (``*_GT`` folders) in {0, 1}."""
    images = torch.from_numpy(demo_arrays(folder, count, start)).float()
    images = images[:, None] if images.ndim == 3 else images.permute(0, 3, 1, 2)
    return (images > 0).float() if Path(folder).name.endswith("_GT") else images / 127.5 - 1.0


def parse_test_options(argv: list[str]) -> argparse.Namespace:
    """Options of test.py as test.py parses them: the trained run's saved options as defaults, and the
    checkpoint's architecture adopted."""
    options = TestOptions(saved_defaults_reader(TRAIN_OPTIONS))
    opt = options.parse(argv)
    Experiment.of(opt).prepare_testing(opt, options.explicit)
    return opt


def losses_of(model: object) -> dict[str, float]:
    """The losses of a model's last step as floats, in its ``loss_names`` order (this synchronises)."""
    return {name: float(model.losses[name]) for name in model.loss_names if name in model.losses}


@functools.cache
def can_mount_tmpfs() -> bool:
    """True where a test may mount a small tmpfs in a private user and mount namespace (``unshare -rm``).

    That makes real faults: a full disk (a tmpfs of a few hundred KB) or a read-only file system.
    Machines that forbid user namespaces (some CI containers) skip those tests.
    """
    if shutil.which("unshare") is None:
        return False
    with tempfile.TemporaryDirectory() as folder:
        probe = subprocess.run(
            ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs '{folder}'"], capture_output=True
        )
    return probe.returncode == 0


def run_on_small_disk(
    mount_point: Path, script: str, size: str = "1m", read_only: bool = False, timeout: int = 300
) -> subprocess.CompletedProcess:
    """Run the shell ``script`` (in the repository root) with a fresh tmpfs of ``size`` mounted on ``mount_point``.

    The mount lives in a private namespace and vanishes with the script, so a script that wants
    its files checked afterwards copies them out itself. Returns the finished process (not checked).
    """
    mount_point.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o {options} tmpfs '{mount_point}' && {script}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
