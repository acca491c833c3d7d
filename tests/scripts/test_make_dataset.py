"""scripts/make_dataset.py: assemble a dataroot from two prepared sides, and check layouts."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from data.image_io import list_images, write_image
from scripts.make_dataset import main


def copy_side(demo_root: Path, destination: Path, folders: tuple[str, ...]) -> Path:
    for folder in folders:
        shutil.copytree(demo_root / folder, destination / folder)
    return destination


@pytest.fixture
def sides(demo_root: Path, tmp_path: Path) -> tuple[Path, Path]:
    a_side = copy_side(demo_root, tmp_path / "A", ("trainA", "valA", "testA", "trainA_GT", "valA_GT", "testA_GT"))
    (a_side / "preparation.json").write_text(json.dumps({"command": "prepare_ctc", "size": 128}))
    (a_side / "manifest.csv").write_text("file,split\n")
    b_side = copy_side(demo_root, tmp_path / "B", ("trainB", "valB", "testB"))
    return a_side, b_side


def test_both_sides_become_one_checked_dataroot(
    sides: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_side, b_side = sides
    output = tmp_path / "dataroot"
    assert main(["--a_side", str(a_side), "--b_side", str(b_side), "--output", str(output)]) == 0
    for folder, side in (("trainA", a_side), ("testA_GT", a_side), ("valA_GT", a_side), ("valB", b_side)):
        names = sorted(path.name for path in (side / folder).iterdir())
        assert sorted(path.name for path in (output / folder).iterdir()) == names
        assert (output / folder / names[0]).read_bytes() == (side / folder / names[0]).read_bytes()
    settings = json.loads((output / "preparation.json").read_text())
    assert settings["A"] == {"command": "prepare_ctc", "size": 128} and settings["B"] is None
    assert (output / "manifest_A.csv").is_file() and not (output / "manifest_B.csv").exists()
    table = capsys.readouterr().out
    assert "trainA_GT" in table and "128x128" in table
    assert main(["--check", str(output)]) == 0


def test_sides_without_a_validation_split_still_assemble_with_a_warning(
    sides: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a_side, b_side = sides
    shutil.rmtree(b_side / "valB")
    output = tmp_path / "dataroot"
    assert main(["--a_side", str(a_side), "--b_side", str(b_side), "--output", str(output)]) == 0
    assert "no complete validation split" in caplog.text and (output / "valA").is_dir()
    shutil.rmtree(a_side / "valA_GT")
    assert main(["--a_side", str(a_side), "--b_side", str(b_side), "--output", str(tmp_path / "two")]) == 1
    assert "valA has no masks" in caplog.text


def test_a_missing_mask_is_listed_and_nothing_is_written(
    sides: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a_side, b_side = sides
    missing = sorted((a_side / "testA_GT").iterdir())[0]
    missing.unlink()
    assert main(["--a_side", str(a_side), "--b_side", str(b_side), "--output", str(tmp_path / "out")]) == 1
    image = next((a_side / "testA").glob(f"{missing.stem}.*"))
    assert f"{image} has no mask in {a_side / 'testA_GT'}" in caplog.text
    assert not (tmp_path / "out").exists()


def test_wrong_colours_and_mixed_sizes_are_refused(
    sides: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a_side, b_side = sides
    write_image(b_side / "testB" / "gray.png", np.zeros((128, 128), np.uint8))
    assert main(["--check", str(b_side.parent / "B")]) == 1  # a B folder alone lacks the A folders
    assert "trainA is missing or holds no images" in caplog.text
    arguments = ["--a_side", str(a_side), "--b_side", str(b_side), "--output", str(tmp_path / "out")]
    assert main(arguments) == 1
    assert "mixes image sizes" not in caplog.text
    assert f"{b_side / 'testB' / 'gray.png'} is gray; domain B must be color H&E tiles" in caplog.text
    (b_side / "testB" / "gray.png").unlink()
    write_image(a_side / "trainA" / "small.png", np.zeros((64, 64), np.uint8))
    assert main(arguments) == 1
    assert "mixes image sizes" in caplog.text and "small.png is 64x64" in caplog.text


def test_an_output_that_holds_data_is_refused(
    sides: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a_side, b_side = sides
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.png").write_bytes(b"old")
    arguments = ["--a_side", str(a_side), "--b_side", str(b_side), "--output", str(tmp_path / "out")]
    assert main(arguments) == 1 and "already holds data" in caplog.text
    assert main([*arguments, "--overwrite"]) == 0 and not (tmp_path / "out" / "old.png").exists()
    with pytest.raises(SystemExit):
        main(["--a_side", str(a_side)])


def test_check_reads_every_image_and_lists_every_bad_file_in_one_summary(
    demo_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file cut short deep inside trainB and a mask of the wrong size: both listed with their reasons, exit 1."""
    root = copy_side(demo_root, tmp_path / "root", tuple(path.name for path in demo_root.iterdir() if path.is_dir()))
    assert main(["--check", str(root)]) == 0  # the clean demo dataroot passes
    assert "trainA_GT" in capsys.readouterr().out and "ERROR" not in caplog.text
    images = list_images(root)
    corrupt = sorted((root / "trainB").glob("*.png"))[-1]  # the last one read of its folder
    corrupt.write_bytes(corrupt.read_bytes()[: corrupt.stat().st_size // 2])
    mask = sorted((root / "valA_GT").glob("*.png"))[2]
    write_image(mask, np.zeros((64, 64), np.uint8))
    caplog.clear()
    assert main(["--check", str(root)]) == 1
    errors = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1 and "Traceback" not in caplog.text  # one summary, no traceback
    summary = errors[0].splitlines()
    assert summary[0] == (
        f"2 problem(s) in the dataset ({len(images)} images read); fix or remove these files, then check again:"
    )
    corrupt_line, mask_line = sorted(line.strip() for line in summary[1:])
    assert corrupt_line.startswith(f"cannot read image {corrupt}: the PNG file ends at byte ")
    image = root / "valA" / mask.name
    assert mask_line == (
        f"mask {mask} is 64x64 but its image {image} is 128x128; a mask must have exactly the size of its image"
    )
