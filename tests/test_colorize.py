"""colorize.py end to end with a tiny trained experiment: sizes, 16-bit, TIFF stacks, channels, pyramidal OME-TIFF,
pixel sizes, bad input, failing disks."""

from __future__ import annotations

import logging
import resource
import shlex
import struct
import sys
import time
import xml.etree.ElementTree as ElementTree
import zlib
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile

import colorize
from data.image_io import MAX_PIXELS, read_array, write_image
from data.image_layout import read_layout
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
@pytest.mark.parametrize(
    ("output_format", "extension", "large", "disk"),
    [("png", "png", (512, 512), "64k"), ("ome-tiff", "ome.tif", (600, 700), "256k")],  # mid-pyramid for OME-TIFF
)
def test_a_disk_that_fills_up_ends_the_run_in_one_line_keeping_what_was_written(
    trained_experiment: tuple[Path, str],
    tmp_path: Path,
    output_format: str,
    extension: str,
    large: tuple[int, int],
    disk: str,
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_image(inputs / "a.png", gray8(24, 24))
    write_image(inputs / "b.png", gray8(24, 24, offset=24))
    write_image(inputs / "c.png", np.random.default_rng(0).integers(0, 256, large, dtype=np.uint8))
    mount, kept = tmp_path / "small", tmp_path / "kept"
    output = mount / "out"
    run = command_line(trained_experiment, "--input", inputs, "--output", output, "--format", output_format)
    script = f"{run}; echo status $?; cp -r {shlex.quote(str(output))} {shlex.quote(str(kept))}"
    finished = run_on_small_disk(mount, script, size=disk)
    assert "status 1" in finished.stdout, finished.stderr
    assert "Traceback" not in finished.stderr
    assert (
        f"ERROR cannot write {output / f'c.{extension}'}: the disk is full. The partial file was removed; 2 of 3 colorized "
        f"image(s) were written to {output} and are complete. Free some space or choose another --output, and run "
        "again (--overwrite redoes them)"
    ) in finished.stderr.splitlines()
    # No half-written c, no temporary file, no pyramid spool.
    assert sorted(path.name for path in kept.iterdir()) == [f"a.{extension}", f"b.{extension}"]
    # The files written before the disk filled are whole and readable (an OME-TIFF as a pyramid).
    if output_format == "ome-tiff":
        assert openslide.OpenSlide(kept / "a.ome.tif").level_dimensions == ((24, 24),)
    else:
        assert read_array(kept / "a.png").shape == read_array(kept / "b.png").shape == (24, 24, 3)


# -- pyramidal OME-TIFF, channels, pixel sizes ------------------------------------------------------


def mosaic16(height: int, width: int) -> np.ndarray:
    """The real 16-bit frame mirrored out to ``height`` x ``width``."""
    frame = tifffile.imread(SOURCE)
    return np.pad(frame, ((0, max(0, height - 512)), (0, max(0, width - 512))), mode="symmetric")[:height, :width]


def level_region(slide: openslide.OpenSlide, level: int) -> np.ndarray:
    width, height = slide.level_dimensions[level]
    return np.asarray(slide.read_region((0, 0), level, (width, height)))[:, :, :3]


def ome_pixel_size(path: Path) -> tuple[str | None, str | None]:
    with tifffile.TiffFile(path) as tiff:
        pixels = next(item for item in ElementTree.fromstring(tiff.ome_metadata).iter() if item.tag.endswith("Pixels"))
    return pixels.get("PhysicalSizeX"), pixels.get("PhysicalSizeY")


def test_ome_tiff_output_is_a_calibrated_pyramid_that_openslide_reads_as_the_png(
    trained_experiment: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    image = tmp_path / "mosaic.ome.tif"
    tifffile.imwrite(image, mosaic16(600, 1100), metadata={"axes": "YX", "PhysicalSizeX": 0.65, "PhysicalSizeY": 0.65})
    arguments = ("--input", str(image), "--tile", "256", "--overlap", "32")
    assert run(trained_experiment, *arguments, "--output", str(tmp_path / "png")) == 0
    assert (
        run(trained_experiment, *arguments, "--output", str(tmp_path / "ome"), "--format", "ome-tiff", "--preview") == 0
    )
    written = tmp_path / "ome" / "mosaic.ome.tif"
    assert sorted(path.name for path in (tmp_path / "ome").iterdir()) == [written.name, "mosaic_preview.png"]

    slide = openslide.OpenSlide(written)  # a reader that is not ours
    assert slide.properties["openslide.vendor"] == "generic-tiff"
    assert slide.level_count == 3 and slide.level_dimensions == ((1100, 600), (550, 300), (275, 150))
    assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.65)
    assert np.array_equal(level_region(slide, 0), read_array(tmp_path / "png" / "mosaic.png"))
    slide.close()
    assert ome_pixel_size(written) == ("0.65", "0.65")
    assert read_array(tmp_path / "ome" / "mosaic_preview.png").shape == (150, 550, 3)  # thumbnail-sized
    assert f"{image}: pixel size 0.65 um (OME PhysicalSizeX/Y)" in caplog.text


def test_the_pixel_size_is_given_or_its_absence_said(
    trained_experiment: tuple[Path, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture,
) -> None:
    image = tmp_path / "frame.tif"
    tifffile.imwrite(image, tifffile.imread(SOURCE)[:64, :80])  # no resolution unit: no physical size
    output = tmp_path / "out"
    assert run(trained_experiment, "--input", str(image), "--output", str(output), "--format", "ome-tiff") == 0
    assert ome_pixel_size(output / "frame.ome.tif") == (None, None)
    assert (
        f"{image} records no pixel size: its output carries none (viewers show pixels, no scale bar); give one with "
        "--pixel_size_um"
    ) in caplog.text
    arguments = ("--input", str(image), "--output", str(output), "--overwrite")
    assert run(trained_experiment, *arguments, "--format", "ome-tiff", "--pixel_size_um", "0.5") == 0
    assert ome_pixel_size(output / "frame.ome.tif") == ("0.5", "0.5")
    assert run(trained_experiment, *arguments, "--format", "tif", "--pixel_size_um", "0.25") == 0
    assert read_layout(output / "frame.tif").pixel_size.x_um == pytest.approx(0.25)  # resolution tags in cm

    for bad in ("0", "-1", "nan"):
        with pytest.raises(SystemExit):
            colorize.build_parser().parse_args(["--name", "x", "--input", "y", "--output", "z", "--pixel_size_um", bad])
        assert f"argument --pixel_size_um: must be a finite number > 0, got {bad}" in capsys.readouterr().err


def test_the_nuclear_channel_of_a_multichannel_file_is_colorized_as_the_channel_alone(
    trained_experiment: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    nuclei = tifffile.imread(SOURCE)[:96, :128]
    other = np.flipud(nuclei) // 3 + 7  # another stain: the output must not depend on it
    inputs, alone = tmp_path / "in", tmp_path / "alone"
    inputs.mkdir()
    alone.mkdir()
    tifffile.imwrite(
        inputs / "cells.ome.tif",
        np.stack([other, nuclei]),
        metadata={"axes": "CYX", "Channel": {"Name": ["GFP", "DAPI"]}},
    )
    tifffile.imwrite(alone / "cells.tif", nuclei)
    assert run(trained_experiment, "--input", str(alone), "--output", str(tmp_path / "expected")) == 0
    expected = read_array(tmp_path / "expected" / "cells.png")
    for channel in ("DAPI", "1"):
        output = tmp_path / f"by_{channel}"
        assert run(trained_experiment, "--input", str(inputs), "--output", str(output), "--channel", channel) == 0
        assert np.array_equal(read_array(output / "cells.png"), expected)
    assert f"{inputs / 'cells.ome.tif'}: OME-TIFF, C 2 (channel); channel 1 'DAPI' is colorized" in caplog.text

    caplog.clear()
    path = inputs / "cells.ome.tif"
    for flags, message in (
        ((), f"skipped: OME-TIFF {path} has 2 channels (0 'GFP', 1 'DAPI'); pass --channel with the one that shows the nuclei (its number or name)"),
        (("--channel", "2"), f"skipped: --channel 2 is out of range for OME-TIFF {path}, which has 2 channel(s): 0 'GFP', 1 'DAPI'"),
        (("--channel", "Hoechst"), f"skipped: --channel 'Hoechst': OME-TIFF {path} has no channel of that name; its channels: 0 'GFP', 1 'DAPI'"),
    ):  # fmt: skip
        assert run(trained_experiment, "--input", str(inputs), "--output", str(tmp_path / "refused"), *flags) == 1
        assert errors(caplog) == [message]
        caplog.clear()
    assert not list((tmp_path / "refused").glob("*.png"))


def test_a_time_series_of_z_stacks_is_colorized_image_by_image_and_its_axes_told(
    trained_experiment: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frame = tifffile.imread(SOURCE)[:48, :40]
    data = np.stack(
        [np.stack([np.stack([frame + 50 * (3 * time + depth), frame // 2]) for depth in range(3)]) for time in range(2)]
    )
    path = tmp_path / "series.ome.tif"
    tifffile.imwrite(path, data, metadata={"axes": "TZCYX", "Channel": {"Name": ["DAPI", "GFP"]}})
    output = tmp_path / "out"
    assert run(trained_experiment, "--input", str(path), "--output", str(output), "--channel", "DAPI") == 0
    assert sorted(item.name for item in output.iterdir()) == [f"series_p{index:03d}.png" for index in range(6)]
    assert (
        f"{path}: OME-TIFF, T 2 (time) x Z 3 (depth) x C 2 (channel); 6 images (channel 0 'DAPI' of each) colorized "
        "as series_p000.png ... series_p005.png in T, Z order"
    ) in caplog.text


def test_an_ome_tiff_whose_declared_size_disagrees_with_its_data_is_named_and_skipped(
    trained_experiment: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    tifffile.imwrite(inputs / "good.tif", tifffile.imread(SOURCE)[:32, :32])
    tifffile.imwrite(inputs / "bad.ome.tif", tifffile.imread(SOURCE)[:32, :48], metadata={"axes": "YX"})
    tifffile.tiffcomment(
        inputs / "bad.ome.tif", tifffile.tiffcomment(inputs / "bad.ome.tif").replace('SizeY="32"', 'SizeY="3200"')
    )
    output = tmp_path / "out"
    assert run(trained_experiment, "--input", str(inputs), "--output", str(output), "--format", "ome-tiff") == 1
    assert errors(caplog) == [
        f"skipped: OME-TIFF {inputs / 'bad.ome.tif'} declares 48x3200 pixels in 1 plane(s) (Z 1, C 1, T 1) in its "
        "OME-XML, but its TIFF data hold 1 page(s), the first 48x32: the metadata disagrees with the pixel data (a "
        "truncated file, or metadata edited by hand); export the image again"
    ]
    assert [item.name for item in output.iterdir()] == ["good.ome.tif"]
