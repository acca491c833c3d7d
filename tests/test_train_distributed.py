"""train.py under torchrun: two gloo processes on the CPU train as one (DistributedDataParallel)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models import checkpoint
from tests.helpers import REPO_ROOT, train_arguments

pytestmark = pytest.mark.distributed


def run(command: list[str]) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished


@pytest.mark.parametrize("gan_mode", ["lsgan", "wgangp"])  # wgangp: a gradient penalty inside DDP's backward
def test_two_processes_end_with_identical_weights_and_one_set_of_checkpoints(
    small_root: Path, tmp_path: Path, gan_mode: str
) -> None:
    checkpoints, dumps = tmp_path / "checkpoints", tmp_path / "dumps"
    dumps.mkdir()
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(REPO_ROOT / "tests" / "distributed_worker.py"), str(dumps),
        *train_arguments(small_root, checkpoints, "ddp", "--print_freq", "1", "--gan_mode", gan_mode),
    ]  # fmt: skip
    finished = run(command)

    rank0, rank1 = (torch.load(dumps / f"rank{rank}.pt", weights_only=True) for rank in (0, 1))
    initial = {name: tensor.clone() for name, tensor in rank0["G_A"].items()}
    for name in ("G_A", "G_B", "D_A", "D_B"):
        for key, tensor in rank0[name].items():
            assert torch.equal(tensor, rank1[name][key]), f"{name}.{key} differs between the ranks"

    experiment = checkpoints / "ddp"
    assert checkpoint.saved_epochs(experiment, "G_A") == [1, 2]
    assert not list(experiment.glob(".*.tmp")), "a temporary file was left behind"
    saved = checkpoint.load_file(checkpoint.network_path(experiment, "latest", "G_A"))["state_dict"]
    assert all(torch.equal(saved[key], initial[key]) for key in initial)  # rank 0's final weights were saved
    assert "2 processes: each trains on its own share" in finished.stderr
    assert finished.stderr.count("loss curves:") == 1  # only rank 0 reports


def test_torchrun_train_py_writes_options_and_logs_once(small_root: Path, tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "train.py",
        *train_arguments(small_root, tmp_path, "cli", "--n_epochs_decay", "0", "--norm", "batch"),
    ]  # fmt: skip
    finished = run(command)
    assert finished.stderr.count("---------------- options ----------------") == 1
    assert finished.stderr.count("--norm batch on 2 CPU processes: batch statistics stay per process") == 1
    assert finished.stderr.count("epoch 1/1 done") == 1
    assert (tmp_path / "cli" / "train_opt.json").is_file()
    assert checkpoint.saved_epochs(tmp_path / "cli", "G_A") == [1]
