"""scripts/make_dataset.py: assemble a dataroot from two prepared sides, and check layouts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from data.image_io import write_image
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
    assert f"1 file(s) have no partner in {a_side / 'testA_GT'}: {missing.stem}" in caplog.text
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
    assert "mixes image sizes" not in caplog.text and "holds gray images; domain B must be colour" in caplog.text
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
