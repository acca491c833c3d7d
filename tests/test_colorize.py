"""colorize.py end to end with a tiny trained experiment: sizes, 16-bit, TIFF stacks, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

import colorize
from data.image_io import read_array, write_image

SOURCE = Path(__file__).resolve().parents[1] / "datasets" / "sources" / "fluo_nuclei_dsb2018" / "image.tif"


def run(experiment: tuple[Path, str], *arguments: str) -> int:
    checkpoints, name = experiment
    return colorize.main(["--name", name, "--checkpoints_dir", str(checkpoints), "--gpu_ids", "-1", *arguments])


def test_16_bit_frames_stacks_and_odd_sizes_keep_their_size(
    trained_experiment: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frame = tifffile.imread(SOURCE)  # real 16-bit fluorescence
    inputs = tmp_path / "in"
    inputs.mkdir()
    tifffile.imwrite(inputs / "odd.tif", frame[:389, : 517 - 5])
    tifffile.imwrite(inputs / "stack.tif", np.stack([frame[:200, :300], frame[200:400, :300]]))
    write_image(inputs / "colour.png", np.stack([frame[:64, :64].astype(np.uint8)] * 3, axis=2))
    (inputs / "broken.png").write_bytes(b"not an image")
    output = tmp_path / "out"
    assert (
        run(
            trained_experiment,
            "--input",
            str(inputs),
            "--output",
            str(output),
            "--tile",
            "96",
            "--overlap",
            "16",
            "--preview",
        )
        == 1
    )
    assert read_array(output / "odd.png").shape == (389, 512, 3)
    assert read_array(output / "stack_p000.png").shape == read_array(output / "stack_p001.png").shape == (200, 300, 3)
    assert read_array(output / "stack_p000_preview.png").shape == (200, 600, 3)
    assert read_array(output / "colour.png").shape == (64, 64, 3)
    assert "converted to gray" in caplog.text
    assert "skipped: cannot read image" in caplog.text and "broken.png" in caplog.text
    assert "1 file(s) could not be read" in caplog.text


def test_existing_outputs_are_not_overwritten_silently(
    trained_experiment: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    image = tmp_path / "frame.tif"
    tifffile.imwrite(image, tifffile.imread(SOURCE)[:64, :64])
    output = tmp_path / "out"
    output.mkdir()
    (output / "frame.tif").write_bytes(b"mine")
    assert run(trained_experiment, "--input", str(image), "--output", str(output), "--format", "tif") == 1
    assert "exist already" in caplog.text and (output / "frame.tif").read_bytes() == b"mine"
    assert (
        run(trained_experiment, "--input", str(image), "--output", str(output), "--format", "tif", "--overwrite") == 0
    )
    assert tifffile.imread(output / "frame.tif").shape == (64, 64, 3)


def test_missing_epochs_and_inputs_are_explained(
    trained_experiment: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    arguments = ["--input", str(SOURCE), "--output", str(tmp_path / "out")]
    assert run(trained_experiment, "--epoch", "7", *arguments) == 1
    assert "no checkpoint for epoch '7'" in caplog.text and ": 1, 2, latest" in caplog.text
    assert run(trained_experiment, "--epoch", "best", "--results_dir", str(tmp_path), *arguments) == 1
    assert "--epoch best needs" in caplog.text and "Stain_Evaluation.py" in caplog.text
    assert run(trained_experiment, "--input", str(tmp_path / "*.png"), "--output", str(tmp_path / "out")) == 1
    assert "names no image file" in caplog.text
    assert not (tmp_path / "out").exists()
