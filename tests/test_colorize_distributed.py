"""colorize.py under torchrun: two gloo processes on the CPU share the files, write each once and report once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

import colorize
from data.image_io import read_array, write_image
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.distributed

SOURCE = REPO_ROOT / "datasets" / "sources" / "fluo_nuclei_dsb2018" / "image.tif"


def test_two_processes_share_the_files_write_each_once_and_count_all(
    trained_experiment: tuple[Path, str], tmp_path: Path
) -> None:
    frame = tifffile.imread(SOURCE)
    inputs = tmp_path / "in"
    (inputs / "sub").mkdir(parents=True)
    sizes = [(96, 80), (64, 64), (120, 40), (48, 100), (72, 72)]
    for index, (height, width) in enumerate(sizes):
        folder = inputs / "sub" if index == 4 else inputs
        tifffile.imwrite(folder / f"frame{index}.tif", frame[index * 60 : index * 60 + height, :width])
    tifffile.imwrite(inputs / "stack.tif", np.stack([frame[:40, :50], frame[40:80, :50]]))  # 2 images
    spoiled = frame[:40, :40].astype(np.float32)
    spoiled[5, 5] = np.nan
    tifffile.imwrite(inputs / "spoiled.tif", spoiled)  # fails while its process works
    (inputs / "broken.png").write_bytes(b"not an image")  # fails in planning, counted once

    checkpoints, name = trained_experiment
    common = ["--name", name, "--checkpoints_dir", str(checkpoints), "--gpu_ids", "-1", "--input", str(inputs)]
    assert colorize.main([*common, "--output", str(tmp_path / "one")]) == 1  # one process, for comparison

    records = tmp_path / "records"
    records.mkdir()
    output = tmp_path / "two"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(REPO_ROOT / "tests" / "colorize_distributed_worker.py"), str(records), *common, "--output", str(output),
    ]  # fmt: skip
    finished = subprocess.run(
        command, cwd=REPO_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 1, finished.stderr[-3000:]  # two inputs failed, in all

    shares = [(records / f"rank{rank}.txt").read_text().split() for rank in (0, 1)]
    assert all(shares), "each process colorizes a share"
    written = [Path(path).relative_to(output).as_posix() for share in shares for path in share]
    assert len(written) == len(set(written)) == 7, "no file is written twice"
    expected = sorted(path.relative_to(tmp_path / "one").as_posix() for path in (tmp_path / "one").rglob("*.png"))
    assert sorted(written) == expected == sorted(path.relative_to(output).as_posix() for path in output.rglob("*.png"))
    for name_ in expected:  # the same pixels as one process: a failed file in one process loses nothing else
        assert np.array_equal(read_array(output / name_), read_array(tmp_path / "one" / name_)), name_

    log = finished.stderr
    assert log.count("7 colorized image(s) in") == 1
    assert f"7 colorized image(s) in {output}, by 2 processes; 2 input image(s) could not be colorized" in log
    assert log.count("skipped: cannot read image") == 1 and log.count("contains NaN or infinite values") == 1
    assert log.count("G_A of ") == 1  # only the first process describes the run
    ours = log.split(" failed (exitcode: ")[0]  # what follows is torchrun's own report of the exit statuses
    assert "Traceback" not in ours and "ChildFailedError" in log


def test_a_rerun_under_torchrun_refuses_existing_outputs_before_any_write(
    trained_experiment: tuple[Path, str], tmp_path: Path
) -> None:
    inputs, output = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for index in range(3):
        write_image(inputs / f"x{index}.png", (tifffile.imread(SOURCE)[:32, :32] // 2).astype(np.uint8))
    output.mkdir()
    (output / "x1.png").write_bytes(b"mine")
    checkpoints, name = trained_experiment
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "colorize.py",
        "--name", name, "--checkpoints_dir", str(checkpoints), "--gpu_ids", "-1", "--input", str(inputs),
        "--output", str(output),
    ]  # fmt: skip
    finished = subprocess.run(
        command, cwd=REPO_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 1
    assert "1 output file(s) exist already in" in finished.stderr
    assert sorted(path.name for path in output.iterdir()) == ["x1.png"] and (output / "x1.png").read_bytes() == b"mine"
