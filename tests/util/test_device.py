"""CPU thread choice (util.device): leave room for the loader workers, obey the user."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import REPO_ROOT, train_arguments
from util.device import choose_compute_threads, configure_compute_threads


@pytest.mark.parametrize(
    ("cpus", "workers", "processes", "expected"),
    [
        (2, 2, 1, 1),  # this project's 2-core machine with make demo's default loader workers
        (2, 0, 1, 2),
        (16, 4, 1, 12),
        (16, 4, 4, 1),  # torchrun with 4 processes: 4 CPUs each, all taken by workers -> still 1
        (64, 4, 4, 12),
        (1, 4, 1, 1),
    ],
)
def test_the_default_is_the_share_of_cpus_less_the_loader_workers(
    cpus: int, workers: int, processes: int, expected: int
) -> None:
    threads, reason = choose_compute_threads(None, workers, processes, cpus=cpus, environment={})
    assert threads == expected
    assert f"{cpus} CPUs" in reason and f"{workers} loader worker(s)" in reason


def test_the_flag_wins_over_the_environment_which_wins_over_the_rule() -> None:
    assert choose_compute_threads(3, 2, cpus=2, environment={"OMP_NUM_THREADS": "5"}) == (3, "--compute_threads")
    assert choose_compute_threads(None, 2, cpus=2, environment={"OMP_NUM_THREADS": "5"}) == (5, "OMP_NUM_THREADS")
    # A value OpenMP would not take either is ignored, not obeyed.
    assert choose_compute_threads(None, 0, cpus=4, environment={"OMP_NUM_THREADS": "0"})[0] == 4
    assert choose_compute_threads(None, 0, cpus=4, environment={"OMP_NUM_THREADS": "many"})[0] == 4


def test_configure_sets_torch_and_logs_the_choice(caplog: pytest.LogCaptureFixture) -> None:
    before = torch.get_num_threads()
    try:
        with caplog.at_level(logging.INFO):
            assert configure_compute_threads(2, loader_workers=1) == 2
        assert torch.get_num_threads() == 2
        assert "2 compute thread(s) (--compute_threads" in caplog.text
    finally:
        torch.set_num_threads(before)


def test_train_py_logs_and_applies_its_thread_choice(small_root: Path, tmp_path: Path) -> None:
    """A real training process: the flag reaches torch (the log says so)."""
    arguments = train_arguments(small_root, tmp_path, "threads", "--n_epochs_decay", "0", "--compute_threads", "1")
    result = subprocess.run(
        [sys.executable, "train.py", *arguments], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "CPU: 1 compute thread(s) (--compute_threads" in result.stderr
    saved = json.loads((tmp_path / "threads" / "train_opt.json").read_text())
    assert "compute_threads" in saved  # recorded, but a resume does not inherit it (a machine's choice)
