"""Kill training (SIGKILL) at random moments inside checkpoint saves, resume each time: nothing is lost."""

from __future__ import annotations

import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from models import checkpoint
from tests.helpers import REPO_ROOT, train_arguments

pytestmark = pytest.mark.slow

NETWORKS = ("G_A", "G_B", "D_A", "D_B")


def complete_epoch(experiment: Path) -> int:
    """The epoch a resume must start after: the committed save if one was interrupted, else latest's.

    A committed save's ``latest`` state is still staged, or already moved into place if the kill
    came after that move.
    """
    staging = experiment / checkpoint.STAGING_FOLDER
    state = checkpoint.training_state_path(experiment, "latest")
    if (staging / checkpoint.COMMIT_LIST).is_file() and (staging / state.name).is_file():
        state = staging / state.name
    return checkpoint.load_file(state)["epoch"] if state.is_file() else 0


def saving_since(experiment: Path, started_ns: int) -> bool:
    """True once a save started after ``started_ns`` (a staging folder left by an earlier kill is older)."""
    try:
        return (experiment / checkpoint.STAGING_FOLDER).stat().st_mtime_ns > started_ns
    except FileNotFoundError:
        return False


def test_sigkill_during_saves_then_resume_loses_nothing(small_root: Path, tmp_path: Path) -> None:
    rng = random.Random(20261130)
    experiment = tmp_path / "killed"
    arguments = train_arguments(small_root, tmp_path, "killed", "--n_epochs", "8", "--n_epochs_decay", "0")
    command = [sys.executable, str(REPO_ROOT / "tests" / "slow_disk_train.py"), *arguments]
    kills, before_commit, after_commit, resumed_from = 0, 0, 0, []
    for attempt in range(8):
        resume = ["--continue_train"] if complete_epoch(experiment) > 0 else []
        log = tmp_path / f"run{attempt}.log"
        with open(log, "w") as stderr:
            process = subprocess.Popen([*command, *resume], cwd=REPO_ROOT, stderr=stderr)
            # Start-up may tidy an earlier interrupted save; wait until training runs, then for a save.
            while "network D_B" not in log.read_text() and process.poll() is None:
                time.sleep(0.005)
            ready = time.time_ns()
            while not saving_since(experiment, ready) and process.poll() is None:
                time.sleep(0.001)
            # A save of 10 files takes about 0.2 s to write and 0.2 s to move on this slow disk; some kills
            # land before its commit, some while its files move, some after it (training goes on then).
            time.sleep(rng.uniform(0.0, 0.6))
            process.kill()
            process.wait(timeout=60)
        text = log.read_text()
        assert process.returncode == -9, text[-2000:]  # killed, not failed
        kills += 1
        staging = experiment / checkpoint.STAGING_FOLDER
        before_commit += staging.is_dir() and not (staging / checkpoint.COMMIT_LIST).exists()
        after_commit += (staging / checkpoint.COMMIT_LIST).exists()
        if resume:
            match = re.search(r"resumed from the end of epoch (\d+)", text)
            assert match, text[-2000:]
            resumed_from.append(int(match.group(1)))
        expected = complete_epoch(experiment)
        assert expected >= (resumed_from[-1] if resumed_from else 0)  # no finished epoch is ever lost

    resume = ["--continue_train"] if expected > 0 else []
    final = subprocess.run(
        [sys.executable, "train.py", *arguments, *resume], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert final.returncode == 0, final.stderr[-2000:]
    assert not resume or f"resumed from the end of epoch {expected}" in final.stderr
    assert resumed_from == sorted(resumed_from)
    assert checkpoint.saved_epochs(experiment, "G_A")[-1] == 8
    for label in ("latest", *map(str, checkpoint.saved_epochs(experiment, "G_A"))):
        epochs = {checkpoint.load_file(checkpoint.network_path(experiment, label, name))["epoch"] for name in NETWORKS}
        epochs.add(checkpoint.load_file(checkpoint.training_state_path(experiment, label))["epoch"])
        assert len(epochs) == 1, f"checkpoint {label} mixes epochs {epochs}"
        torch.load(checkpoint.network_path(experiment, label, "G_A"), weights_only=True)
    assert not (experiment / checkpoint.STAGING_FOLDER).exists()
    print(f"kills {kills}: {before_commit} before a commit, {after_commit} after it; resumed from {resumed_from}")
    assert before_commit >= 1 and after_commit >= 1, "the kills did not land inside saves"
