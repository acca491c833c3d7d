"""train.py on a failing machine and a busy experiment: a full disk, an unwritable folder, two processes
on one experiment, a resume that changes the model. Each fault is made for real where the machine allows
(a tmpfs of a few MB, a read-only mount, a second process); each answer is one line, and nothing is lost."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import train
from tests.helpers import REPO_ROOT, run_on_small_disk, train_arguments
from util.lock import LOCK_FILE


def command(arguments: list[str]) -> str:
    """``python train.py ...`` as one shell command line."""
    return " ".join([sys.executable, "train.py", *(f"'{argument}'" for argument in arguments)])


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("ERROR")]


def epoch_of(path: Path) -> int:
    return torch.load(path, weights_only=True)["epoch"]


@pytest.mark.small_disk
def test_a_full_disk_at_a_checkpoint_is_one_line_and_the_last_checkpoint_survives(
    small_root: Path, tmp_path: Path
) -> None:
    # One epoch's checkpoint (numbered and latest) takes about 2.4 MB here: the second does not fit in 3 MB.
    disk, kept = tmp_path / "disk", tmp_path / "kept"
    arguments = train_arguments(small_root, disk, "full", "--n_epochs", "2", "--n_epochs_decay", "0")
    finished = run_on_small_disk(
        disk, f"{command(arguments)}; status=$?; cp -a '{disk}/.' '{kept}'; exit $status", "3m"
    )
    assert finished.returncode == 1, finished.stderr
    assert "Traceback" not in finished.stderr
    assert error_lines(finished.stderr) == [
        f"ERROR cannot save checkpoint files in {disk / 'full'}: the disk is full. Nothing was replaced: the previous "
        "checkpoint is intact. Free some space, then resume with --continue_train."
    ]
    experiment = kept / "full"
    assert not (experiment / ".saving").exists()  # the half-written staging folder does not keep the disk full
    assert not (experiment / "2_net_G_A.pth").exists()
    for network in ("G_A", "G_B", "D_A", "D_B"):
        assert epoch_of(experiment / f"1_net_{network}.pth") == epoch_of(experiment / f"latest_net_{network}.pth") == 1
    assert json.loads((experiment / "train_opt.json").read_text())["n_epochs"] == 2


@pytest.mark.small_disk
def test_a_full_disk_at_the_training_page_is_one_line_after_the_checkpoint_is_saved(
    small_root: Path, tmp_path: Path
) -> None:
    # The sample images go to web/, here a 4 KB file system of its own: full at the first image.
    checkpoints, kept = tmp_path / "checkpoints", tmp_path / "kept"
    web = checkpoints / "page" / "web"
    arguments = train_arguments(small_root, checkpoints, "page", "--n_epochs", "1", "--n_epochs_decay", "0")
    finished = run_on_small_disk(
        web, f"{command(arguments)}; status=$?; cp -a '{checkpoints}/.' '{kept}'; exit $status", "4k"
    )
    assert finished.returncode == 1, finished.stderr
    assert "Traceback" not in finished.stderr
    [line] = error_lines(finished.stderr)
    assert line.startswith(
        f"ERROR cannot write the training page and loss plot in {checkpoints / 'page'}: the disk is full."
    )
    assert line.endswith("The checkpoint of epoch 1 is saved and intact; fix that, then resume with --continue_train.")
    assert epoch_of(kept / "page" / "latest_net_G_A.pth") == 1


def test_a_checkpoints_dir_under_a_file_is_refused_before_any_work(
    small_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "a_file").write_text("not a folder")
    assert train.main(train_arguments(small_root, tmp_path / "a_file", "x")) == 1
    [error] = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert error == (
        f"--checkpoints_dir {tmp_path / 'a_file' / 'x'}: cannot write there: a part of the path is a file, "
        "not a folder; choose another --checkpoints_dir"
    )


@pytest.mark.small_disk
def test_a_read_only_checkpoints_dir_is_refused_before_any_work(small_root: Path, tmp_path: Path) -> None:
    disk = tmp_path / "read_only"
    finished = run_on_small_disk(disk, command(train_arguments(small_root, disk, "x")), read_only=True)
    assert finished.returncode == 1 and "Traceback" not in finished.stderr
    assert error_lines(finished.stderr) == [
        f"ERROR --checkpoints_dir {disk / 'x'}: cannot write there: the file system is read-only; "
        "choose another --checkpoints_dir"
    ]


@pytest.mark.slow
def test_a_second_training_of_a_running_experiment_is_refused_and_a_killed_ones_lock_is_taken_over(
    small_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoints = tmp_path / "checkpoints"
    arguments = train_arguments(small_root, checkpoints, "busy", "--n_epochs", "200", "--n_epochs_decay", "0")
    # With loader worker processes: forked, they inherit the lock file, and must not hold it after a kill -9.
    first = subprocess.Popen(
        [sys.executable, "train.py", *arguments, "--num_threads", "2"], cwd=REPO_ROOT, stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    try:
        wait_for(lambda: (checkpoints / "busy" / "latest_net_G_A.pth").is_file(), first)  # epoch 1 is saved
        log_before = (checkpoints / "busy" / "loss_log.csv").read_text()
        options_before = (checkpoints / "busy" / "train_opt.json").read_bytes()

        assert train.main([*arguments, "--continue_train"]) == 1
        [error] = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
        assert error.startswith(f"experiment 'busy' is in use by process {first.pid} on host ")
        assert error.endswith("wait for it to finish or stop it, or choose another --name")
        assert (checkpoints / "busy" / "train_opt.json").read_bytes() == options_before
        assert (checkpoints / "busy" / "loss_log.csv").read_text().startswith(log_before)  # only the first writes
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()

    caplog.clear()
    resumed = [*arguments[:-4], "--n_epochs", str(epoch_of(checkpoints / "busy" / "latest_net_G_A.pth") + 1)]
    assert train.main([*resumed, "--n_epochs_decay", "0", "--continue_train"]) == 0
    assert f"left locked by process {first.pid} on host" in caplog.text and "taken over" in caplog.text
    assert (checkpoints / "busy" / LOCK_FILE).read_text() == ""  # released cleanly
    epochs = [int(row.split(",")[0]) for row in (checkpoints / "busy" / "loss_log.csv").read_text().splitlines()[1:]]
    assert epochs == sorted(epochs) and len(epochs) == len(set(epochs))  # one report per epoch, no interleaving


def wait_for(condition: object, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, "the first training ended early"
        assert time.monotonic() < deadline, "the first training did not save epoch 1 in time"
        time.sleep(0.1)


def test_a_resume_that_changes_the_model_is_refused_and_the_recorded_options_stay(
    trained_experiment: tuple[Path, str], small_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source, name = trained_experiment
    shutil.copytree(source / name, tmp_path / name)
    options = (tmp_path / name / "train_opt.json").read_bytes()
    resume = train_arguments(small_root, tmp_path, name, "--n_epochs", "3", "--continue_train")

    assert train.main([*resume, "--model", "seg_cycle_gan"]) == 1
    assert train.main([*resume, "--dataroot", str(tmp_path / "absent")]) == 1
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert errors[0] == (
        f"--model seg_cycle_gan contradicts experiment '{name}', which was trained as cycle_gan; resume it "
        "without --model, or train a seg_cycle_gan under another --name"
    )
    assert "absent" in errors[1]
    assert (tmp_path / name / "train_opt.json").read_bytes() == options  # validated first, written last
