"""Shared fixtures: the real demo dataset (built once per session) and a tiny trained experiment."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

import train
from scripts.make_demo_dataset import FOLDERS, build_demo_dataset
from tests.helpers import can_mount_tmpfs, train_arguments


@pytest.fixture(autouse=True, scope="session")
def _single_thread_torch() -> None:
    """One intra-op thread per test process, and per process a test starts (the drivers' thread rule
    obeys OMP_NUM_THREADS): tests run in parallel processes on few cores."""
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo dataset of real crops, built from the bundled sources (read-only for tests)."""
    root = tmp_path_factory.mktemp("datasets") / "demo"
    build_demo_dataset(root)
    return root


@pytest.fixture(scope="session")
def small_root(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the demo dataset reduced to a few real crops per folder, for fast training."""
    root = tmp_path_factory.mktemp("datasets") / "small"
    for folder in FOLDERS:
        (root / folder).mkdir(parents=True)
        for path in sorted((demo_root / folder).glob("*.png"))[:3]:
            shutil.copy(path, root / folder / path.name)
    return root


@pytest.fixture(scope="session")
def trained_experiment(small_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A tiny cycle_gan trained for 2 epochs (checkpoints 1, 2, latest): (checkpoints_dir, name)."""
    checkpoints = tmp_path_factory.mktemp("checkpoints")
    assert train.main(train_arguments(small_root, checkpoints, "tiny")) == 0
    return checkpoints, "tiny"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Docker, network, distributed and small-disk tests are slow too: ``-m "not slow"`` leaves them all out.
    Small-disk tests are skipped where no tmpfs can be mounted (some CI containers forbid user namespaces)."""
    for item in items:
        if any(item.get_closest_marker(name) for name in ("docker", "network", "distributed", "small_disk")):
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("small_disk") and not can_mount_tmpfs():
            item.add_marker(pytest.mark.skip(reason="this machine cannot mount a tmpfs in a user namespace"))
