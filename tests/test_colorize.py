"""colorize.py end to end with a tiny trained experiment: sizes, 16-bit, TIFF stacks, bad input, failing disks."""

from __future__ import annotations

import logging
import resource
import shlex
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile

import colorize
from data.image_io import MAX_PIXELS, read_array, write_image
from tests.helpers import run_on_small_disk

SOURCE = Path(__file__).resolve().parents[1] / "datasets" / "sources" / "fluo_nuclei_dsb2018" / "image.tif"


def run(experiment: tuple[Path, str], *arguments: str) -> int:
    checkpoints, name = experiment
    return colorize.main(["--name", name, "--checkpoints_dir", str(checkpoints), "--gpu_ids", "-1", *arguments])


def command_line(experiment: tuple[Path, str], *arguments: str | Path) -> str:
    """colorize.py as a shell command, for runs on a tmpfs mounted in a private namespace."""
    checkpoints, name = experiment
    words = [sys.executable, "colorize.py", "--name", name, "--checkpoints_dir", checkpoints, "--gpu_ids", "-1"]
    return shlex.join(str(word) for word in [*words, *arguments])


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The ERROR lines of the run, each checked to be one line (no traceback)."""
    lines = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert all("\n" not in line and "Traceback" not in line for line in lines), lines
    return lines


def gray8(rows: int, columns: int, offset: int = 0) -> np.ndarray:
    """A real crop of the fluorescence frame as 8-bit gray."""
    frame = tifffile.imread(SOURCE)[offset : offset + rows, :columns].astype(np.float64)
    return np.round(255 * (frame - frame.min()) / np.ptp(frame)).astype(np.uint8)


def write_bomb(path: Path, width: int, height: int) -> None:
    """A valid 8x8 PNG whose header (IHDR, CRC mended) declares ``width`` x ``height`` pixels."""
    write_image(path, np.zeros((8, 8), np.uint8))
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


def test_16_bit_frames_stacks_and_odd_sizes_keep_their_size(
    trained_experiment: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frame = tifffile.imread(SOURCE)  # real 16-bit fluorescence
    inputs = tmp_path / "in"
    inputs.mkdir()
    tifffile.imwrite(inputs / "odd.tif", frame[:389, : 517 - 5])
    tifffile.imwrite(inputs / "stack.tif", np.stack([frame[:200, :300], frame[200:400, :300]]))
    write_image(inputs / "gray_as_rgb.png", np.stack([frame[:64, :64].astype(np.uint8)] * 3, axis=2))
    colour = np.stack([frame[:64, :64].astype(np.uint8), frame[64:128, :64].astype(np.uint8), frame[:64, :64] // 256])
    write_image(inputs / "colour.png", np.moveaxis(colour, 0, -1).astype(np.uint8))
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
    assert read_array(output / "gray_as_rgb.png").shape == (64, 64, 3)  # equal channels: gray saved as RGB
    assert not (output / "colour.png").exists()  # channels that differ are never mixed into luma
    assert (
        f"skipped: {inputs / 'colour.png'} has 3 different channels (0 'red', 1 'green', 2 'blue'); pass --channel "
        "with the one that shows the nuclei (its number or name): a mix of fluorescence channels is not a nucleus image"
    ) in errors(caplog)
    assert "skipped: cannot read image" in caplog.text and "broken.png" in caplog.text
    assert "2 input image(s) could not be colorized and were skipped" in caplog.text


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


def test_a_decompression_bomb_is_skipped_in_small_memory_and_the_limit_can_be_set(
    trained_experiment: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_bomb(inputs / "bomb.png", 60000, 60000)  # 3.6 gigapixels declared by a file of a few hundred bytes
    assert (inputs / "bomb.png").stat().st_size < 4096
    tifffile.imwrite(inputs / "frame.tif", tifffile.imread(SOURCE)[:48, :40])
    output = tmp_path / "out"
    peak, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.monotonic()
    assert run(trained_experiment, "--input", str(inputs), "--output", str(output)) == 1
    assert time.monotonic() - start < 60
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 300_000  # KiB: far below the 3.6 GB declared
    assert errors(caplog) == [
        f"skipped: image {inputs / 'bomb.png'} declares 60000x60000 pixels, more than {MAX_PIXELS}; its header is "
        "corrupt or the image is too large to read whole. If the image is real, raise --max_megapixels (now "
        "178.957; 0: no limit): the whole image is held in memory"
    ]
    assert f"1 input image(s) could not be colorized and were skipped: {inputs / 'bomb.png'}" in caplog.text
    assert [path.name for path in output.iterdir()] == ["frame.png"]
    assert read_array(output / "frame.png").shape == (48, 40, 3)

    caplog.clear()
    frame = str(inputs / "frame.tif")
    assert (
        run(trained_experiment, "--input", frame, "--output", str(tmp_path / "low"), "--max_megapixels", "0.001") == 1
    )
    assert "declares 40x48 pixels, more than 1000" in caplog.text and "(now 0.001; 0: no limit)" in caplog.text
    assert run(trained_experiment, "--input", frame, "--output", str(tmp_path / "any"), "--max_megapixels", "0") == 0


def test_output_names_are_planned_once_and_never_collide() -> None:
    inputs = [
        (Path("x.png"), Path(), 1),
        (Path("X.tif"), Path(), 1),  # differs in case only: one file on macOS and Windows
        (Path("x_2.png"), Path(), 1),  # keeps its own name, so X.tif becomes X_3
        (Path("x_preview.png"), Path(), 1),  # its name is x.png's preview
        (Path("s.tif"), Path(), 2),  # pages s_p000, s_p001
        (Path("s_p001.jpg"), Path(), 1),
        (Path("s.png"), Path("sub"), 1),
    ]
    plan = colorize.plan_outputs(inputs, "png", preview=True)
    assert [(job.folder / job.stem).as_posix() for job in plan] == [
        "x", "X_3", "x_2", "x_preview_2", "s", "s_p001_2", "sub/s",
    ]  # fmt: skip
    assert [job.page_stem(1) for job in plan if job.pages == 2] == ["s_p001"]
    assert [job.stem for job in colorize.plan_outputs(inputs, "png", preview=False)][3] == "x_preview"


def test_inputs_that_share_a_name_get_outputs_of_their_own(
    trained_experiment: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inputs = tmp_path / "in"
    (inputs / "sub").mkdir(parents=True)
    # Their widths tell which output came from which input.
    write_image(inputs / "x.png", gray8(40, 40))
    tifffile.imwrite(inputs / "x.tif", gray8(40, 48))
    write_image(inputs / "sub" / "x.png", gray8(40, 56))
    tifffile.imwrite(inputs / "y.tif", np.stack([gray8(40, 32), gray8(40, 32, offset=40)]))
    write_image(inputs / "y_p000.png", gray8(40, 64))
    output = tmp_path / "out"
    arguments = ("--input", str(inputs), "--output", str(output))
    assert run(trained_experiment, *arguments) == 0
    expected = {"x.png": 40, "x_2.png": 48, "sub/x.png": 56, "y_p000.png": 32, "y_p001.png": 32, "y_p000_2.png": 64}
    widths = {path.relative_to(output).as_posix(): read_array(path).shape[1] for path in output.rglob("*.png")}
    assert widths == expected
    assert "6 colorized image(s)" in caplog.text
    assert f"{inputs / 'x.tif'} is written as x_2.png, since x.png is the output of {inputs / 'x.png'}" in caplog.text
    assert f"{inputs / 'y_p000.png'} is written as y_p000_2.png, since y_p000.png is the output of" in caplog.text

    # Again without --overwrite: refused before anything is written, counting every output there.
    stamps = {name: (output / name).stat().st_mtime_ns for name in expected}
    caplog.clear()
    assert run(trained_experiment, *arguments) == 1
    assert errors(caplog) == [
        f"6 output file(s) exist already in {output} (e.g. {output / 'sub' / 'x.png'}); choose another --output or "
        "pass --overwrite"
    ]
    assert {name: (output / name).stat().st_mtime_ns for name in expected} == stamps
    assert run(trained_experiment, *arguments, "--overwrite") == 0
    assert sorted(path.relative_to(output).as_posix() for path in output.rglob("*.png")) == sorted(expected)

    # An output that would replace its own input is refused, even with --overwrite.
    caplog.clear()
    assert run(trained_experiment, "--input", str(inputs / "x.png"), "--output", str(inputs), "--overwrite") == 1
    assert errors(caplog) == [
        f"every image of --input {inputs / 'x.png'} lies in --output {inputs}; choose another --output"
    ]

    # An --output inside the input folder: a rerun does not take the first run's outputs as inputs.
    caplog.clear()
    nested = ["--input", str(inputs), "--output", str(inputs / "colorized"), "--overwrite"]
    assert run(trained_experiment, *nested) == 0 and run(trained_experiment, *nested) == 0
    assert "6 image(s) in --output" in caplog.text and not (inputs / "colorized" / "colorized").exists()


def test_nan_pages_are_skipped_and_the_rest_is_written(
    trained_experiment: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frame = tifffile.imread(SOURCE)[:40, :48].astype(np.float32)
    spoiled = frame.copy()
    spoiled[10:15, 20:25] = np.nan  # 25 NaN pixels
    inputs = tmp_path / "in"
    inputs.mkdir()
    tifffile.imwrite(inputs / "stack.tif", np.stack([frame, spoiled, frame + 1]), photometric="minisblack")
    tifffile.imwrite(inputs / "single.tif", spoiled)
    tifffile.imwrite(inputs / "good.tif", frame)
    output = tmp_path / "out"
    assert run(trained_experiment, "--input", str(inputs), "--output", str(output)) == 1
    assert sorted(path.name for path in output.iterdir()) == ["good.png", "stack_p000.png", "stack_p002.png"]
    assert errors(caplog) == [
        f"skipped: image {inputs / 'single.tif'} contains NaN or infinite values (25 of 1920 samples), which have "
        "no intensity; replace them (e.g. by 0) or leave the image out",
        f"skipped page 1: image {inputs / 'stack.tif'} contains NaN or infinite values (25 of 1920 samples), which "
        "have no intensity; replace them (e.g. by 0) or leave the image out",
    ]
    assert "2 input image(s) could not be colorized and were skipped" in caplog.text
    assert "3 colorized image(s)" in caplog.text


def test_images_of_one_and_a_few_pixels_are_colorized_at_their_size(
    trained_experiment: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_image(inputs / "dot.png", np.array([[200]], np.uint8))
    write_image(inputs / "strip.png", np.array([[10, 90], [130, 170], [210, 250]], np.uint8))  # 2 wide, 3 high
    write_image(inputs / "normal.png", gray8(40, 40))
    output = tmp_path / "out"
    for statistics in ("image", "tile"):
        arguments = ("--input", str(inputs), "--output", str(output), "--preview", "--norm_statistics", statistics)
        assert run(trained_experiment, *arguments, "--overwrite") == 0
        assert read_array(output / "dot.png").shape == (1, 1, 3)
        assert read_array(output / "strip.png").shape == (3, 2, 3)
        assert read_array(output / "strip_preview.png").shape == (3, 4, 3)
        assert read_array(output / "normal.png").shape == (40, 40, 3)
        assert not errors(caplog) and "3 colorized image(s)" in caplog.text
        caplog.clear()


def test_an_output_under_a_file_is_refused_before_the_model_is_loaded(
    trained_experiment: tuple[Path, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setattr(colorize.Experiment, "load_generator", lambda *_: pytest.fail("the model was loaded"))
    output = tmp_path / "file" / "out"
    assert run(trained_experiment, "--input", str(SOURCE), "--output", str(output)) == 1
    assert errors(caplog) == [
        f"--output {output}: cannot write there: a part of the path is a file, not a folder; choose another --output"
    ]


@pytest.mark.small_disk
def test_a_read_only_output_is_one_line_for_real(trained_experiment: tuple[Path, str], tmp_path: Path) -> None:
    mount = tmp_path / "ro"
    script = command_line(trained_experiment, "--input", SOURCE, "--output", mount / "out")
    finished = run_on_small_disk(mount, script, read_only=True)
    assert finished.returncode == 1, finished.stderr
    assert "Traceback" not in finished.stderr
    assert (
        f"ERROR --output {mount / 'out'}: cannot write there: the file system is read-only; choose another --output"
        in finished.stderr.splitlines()
    )


@pytest.mark.small_disk
def test_a_disk_that_fills_up_ends_the_run_in_one_line_keeping_what_was_written(
    trained_experiment: tuple[Path, str], tmp_path: Path
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_image(inputs / "a.png", gray8(24, 24))
    write_image(inputs / "b.png", gray8(24, 24, offset=24))
    write_image(inputs / "c.png", np.random.default_rng(0).integers(0, 256, (512, 512), dtype=np.uint8))
    mount, kept = tmp_path / "small", tmp_path / "kept"
    output = mount / "out"
    script = (
        f"{command_line(trained_experiment, '--input', inputs, '--output', output)}; echo status $?; "
        f"cp -r {shlex.quote(str(output))} {shlex.quote(str(kept))}"
    )
    finished = run_on_small_disk(mount, script, size="64k")
    assert "status 1" in finished.stdout, finished.stderr
    assert "Traceback" not in finished.stderr
    assert (
        f"ERROR cannot write {output / 'c.png'}: the disk is full. The partial file was removed; 2 of 3 colorized "
        f"image(s) were written to {output} and are complete. Free some space or choose another --output, and run "
        "again (--overwrite redoes them)"
    ) in finished.stderr.splitlines()
    assert sorted(path.name for path in kept.iterdir()) == ["a.png", "b.png"]  # no half-written c.png, no temporary
    assert read_array(kept / "a.png").shape == read_array(kept / "b.png").shape == (24, 24, 3)
