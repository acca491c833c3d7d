"""experiment.py: damaged records read in one line, and the lock that keeps one training per experiment."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from experiment import SELECTION_FILE, Experiment
from models import checkpoint
from tests.helpers import REPO_ROOT
from util.errors import BusyError, CheckpointError
from util.lock import LOCK_FILE, is_locked


def test_a_damaged_evaluation_record_is_one_line_naming_the_file_and_the_remedy(tmp_path: Path) -> None:
    record = tmp_path / "results" / "run" / "evaluation" / SELECTION_FILE
    record.parent.mkdir(parents=True)
    record.write_text('{"chosen": "1', encoding="utf-8")  # cut short by a crash
    with pytest.raises(CheckpointError, match=rf"cannot read {record}: .*the file is damaged: run evaluation"):
        Experiment(tmp_path / "checkpoints", "run").chosen_epoch("best", tmp_path / "results")
    record.write_text('{"chosen": "7"}', encoding="utf-8")
    assert Experiment(tmp_path / "checkpoints", "run").chosen_epoch("best", tmp_path / "results") == "7"


def test_damaged_saved_options_are_one_line(tmp_path: Path) -> None:
    experiment = Experiment(tmp_path, "run")
    experiment.directory.mkdir()
    (experiment.directory / "train_opt.json").write_bytes(b"\xff\xfe not json")
    with pytest.raises(CheckpointError, match=r"train_opt.json: .*the file is damaged: restore it"):
        experiment.saved_options()
    (experiment.directory / "train_opt.json").write_text(json.dumps(["a list"]), encoding="utf-8")
    with pytest.raises(CheckpointError, match="hold no options"):
        experiment.saved_options()


def test_the_lock_refuses_a_second_holder_naming_the_first_and_is_free_after(tmp_path: Path) -> None:
    experiment = Experiment(tmp_path, "run")
    with experiment.lock():
        assert is_locked(experiment.directory)
        holder = json.loads((experiment.directory / LOCK_FILE).read_text())
        second = experiment.lock()
        with pytest.raises(BusyError, match=rf"experiment 'run' is in use by process {holder['pid']} on host "):
            second.__enter__()
    assert not is_locked(experiment.directory)
    with experiment.lock():  # free again
        pass


def test_a_reader_finishes_a_save_whose_training_died_while_it_waited(tmp_path: Path) -> None:
    experiment = Experiment(tmp_path, "run")
    staging = experiment.directory / checkpoint.STAGING_FOLDER
    staging.mkdir(parents=True)
    (staging / "latest_net_G_A.pth").write_bytes(b"new weights")
    (staging / checkpoint.COMMIT_LIST).write_text("latest_net_G_A.pth\n")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK.format(folder=str(experiment.directory))],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "locked"
    killer = threading.Timer(1.0, holder.kill)  # the training dies in the middle of moving its files
    killer.start()
    started = time.monotonic()
    experiment.settle_interrupted_save(wait_seconds=30)
    holder.wait()
    assert time.monotonic() - started < 10  # not the whole wait: the lock ended with its holder
    assert (experiment.directory / "latest_net_G_A.pth").read_bytes() == b"new weights" and not staging.exists()


HOLD_THE_LOCK = """
import time
from util.lock import exclusive_lock
with exclusive_lock({folder!r}, "experiment", "wait"):
    print("locked", flush=True)
    time.sleep(120)
"""
