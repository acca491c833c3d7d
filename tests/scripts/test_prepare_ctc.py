"""scripts/prepare_ctc.py on a small Cell Tracking Challenge layout built from a real fluorescence image."""

from __future__ import annotations

import csv
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

from data.image_io import read_array
from data.intensity import IntensityNormalization
from scripts.prepare_ctc import main

SOURCES = Path(__file__).resolve().parents[2] / "datasets" / "sources" / "fluo_nuclei_dsb2018"
NAME = "Fluo-N2DL-HeLa"


def write_tiff(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array)


def make_ctc(root: Path, frames: int = 3, gold: tuple[int, ...] = (1,)) -> Path:
    """``root/Fluo-N2DL-HeLa`` with sequences 01 and 02 of real 16-bit frames (shifted copies of one
    real image), silver truth for every frame and gold truth for the frames in ``gold``."""
    image = tifffile.imread(SOURCES / "image.tif")
    labels = tifffile.imread(SOURCES / "labels.tif")
    dataset = root / NAME
    for sequence_index, sequence in enumerate(("01", "02")):
        for frame in range(frames):
            shift = 7 * frame + 50 * sequence_index  # a moving field of view: every frame differs
            write_tiff(dataset / sequence / f"t{frame:03d}.tif", np.roll(image, shift, axis=1))
            rolled = np.roll(labels, shift, axis=1)
            write_tiff(dataset / f"{sequence}_ST" / "SEG" / f"man_seg{frame:03d}.tif", rolled)
            if frame in gold:
                write_tiff(dataset / f"{sequence}_GT" / "SEG" / f"man_seg{frame:03d}.tif", rolled)
    return dataset


def zip_folder(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                bundle.write(path, path.relative_to(folder.parent).as_posix())
    return archive


def manifest(output: Path) -> list[dict[str, str]]:
    with open(output / "manifest.csv", newline="") as table:
        return list(csv.DictReader(table))


@pytest.fixture(scope="module")
def ctc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_ctc(tmp_path_factory.mktemp("ctc"))


def test_crops_masks_and_manifest_from_a_folder(ctc: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    output = tmp_path / "A"
    assert main([str(ctc), "--output", str(output), "--truth", "silver", "--invert"]) == 0
    rows = manifest(output)
    # 512x512 frames, 128 grid: 16 crops a frame; frames 0-1 of 01 train, its last frame (a fifth of
    # three, rounded) validates, the 3 frames of 02 test.
    assert sum(row["split"] == "train" for row in rows) == 32 == len(list((output / "trainA").iterdir()))
    assert sum(row["split"] == "val" for row in rows) == 16 == len(list((output / "valA_GT").iterdir()))
    assert sum(row["split"] == "test" for row in rows) == 48 == len(list((output / "testA_GT").iterdir()))
    assert {row["sequence"] for row in rows if row["split"] in ("train", "val")} == {"01"}
    assert {row["frame"] for row in rows if row["split"] == "val"} == {"2"}
    labels = tifffile.imread(SOURCES / "labels.tif")
    frame = tifffile.imread(ctc / "02" / "t002.tif")
    normalised = IntensityNormalization(invert=True).apply(frame)
    row = next(row for row in rows if row["sequence"] == "02" and row["frame"] == "2" and row["y"] == "256")
    y, x = int(row["y"]), int(row["x"])
    crop, mask = read_array(output / row["file"]), read_array(output / row["file"].replace("testA", "testA_GT"))
    np.testing.assert_array_equal(crop, normalised[y : y + 128, x : x + 128])
    expected = np.roll(labels, 7 * 2 + 50, axis=1)[y : y + 128, x : x + 128] > 0
    np.testing.assert_array_equal(mask, np.where(expected, 255, 0))
    assert crop[mask > 0].mean() < crop[mask == 0].mean() - 50  # inverted: nuclei are dark
    assert "train: 32 crops" in caplog.text and "val: 16 crops" in caplog.text and "test: 48 crops" in caplog.text


def test_a_zip_gives_the_same_dataset_as_its_folder(ctc: Path, tmp_path: Path) -> None:
    archive = zip_folder(ctc, tmp_path / f"{NAME}.zip")
    assert main([str(ctc), "--output", str(tmp_path / "from_folder"), "--truth", "silver"]) == 0
    assert main([str(archive), "--output", str(tmp_path / "from_zip"), "--truth", "silver"]) == 0
    for split in ("trainA", "testA_GT"):
        names = sorted(path.name for path in (tmp_path / "from_folder" / split).iterdir())
        assert names == sorted(path.name for path in (tmp_path / "from_zip" / split).iterdir())
        for name in names[:5]:
            np.testing.assert_array_equal(
                read_array(tmp_path / "from_folder" / split / name), read_array(tmp_path / "from_zip" / split / name)
            )


def test_gold_truth_uses_only_annotated_frames_and_counts_the_rest(
    ctc: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert main([str(ctc), "--output", str(tmp_path / "A"), "--truth", "gold"]) == 0
    assert {(row["sequence"], row["frame"]) for row in manifest(tmp_path / "A")} == {("01", "1"), ("02", "1")}
    assert "sequence 01: 1 frames with truth, 2 without (skipped)" in caplog.text
    # One training frame cannot also validate: no valA, and the log says what that means.
    assert not (tmp_path / "A" / "valA").exists() and "no validation crops" in caplog.text


def test_val_frames_pick_the_validation_frames(ctc: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert main([str(ctc), "--output", str(tmp_path / "A"), "--truth", "silver", "--val_frames", "0-0"]) == 0
    rows = manifest(tmp_path / "A")
    assert {(row["sequence"], row["frame"]) for row in rows if row["split"] == "val"} == {("01", "0")}
    assert {(row["sequence"], row["frame"]) for row in rows if row["split"] == "train"} == {("01", "1"), ("01", "2")}
    output = str(tmp_path / "B")
    assert main([str(ctc), "--output", output, "--truth", "silver", "--val_frames", "0-2"]) == 1
    assert "leaves no frame for train" in caplog.text


def test_split_by_frames_never_shares_a_frame(ctc: Path, tmp_path: Path) -> None:
    arguments = ["--truth", "silver", "--split", "frames", "--test_frames", "2-2", "--min_foreground", "0.2"]
    assert main([str(ctc), "--output", str(tmp_path / "A"), *arguments]) == 0
    rows = manifest(tmp_path / "A")
    frames = {
        split: {(row["sequence"], row["frame"]) for row in rows if row["split"] == split} for split in ("train", "test")
    }
    assert frames["test"] == {("01", "2"), ("02", "2")} and not frames["train"] & frames["test"]
    assert all(float(row["foreground_fraction"]) >= 0.2 for row in rows)
    assert 0 < len(rows) < 6 * 16  # crops with little foreground were left out


def test_a_folder_that_is_not_a_ctc_dataset_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "photos").mkdir()
    tifffile.imwrite(tmp_path / "photos" / "cells.tif", np.zeros((8, 8), np.uint16))
    assert main([str(tmp_path / "photos"), "--output", str(tmp_path / "A")]) == 1
    assert "does not look like a Cell Tracking Challenge 2D dataset: expected frames 01/t000.tif" in caplog.text
    assert not (tmp_path / "A").exists()


def test_truth_of_another_size_names_the_frame_and_writes_nothing(
    ctc: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    damaged = tmp_path / NAME
    shutil.copytree(ctc, damaged)
    tifffile.imwrite(damaged / "02_ST" / "SEG" / "man_seg001.tif", np.zeros((256, 512), np.uint16))
    assert main([str(damaged), "--output", str(tmp_path / "A"), "--truth", "silver"]) == 1
    assert "sequence 02, frame 1" in caplog.text and "512x256" in caplog.text
    assert not (tmp_path / "A").exists()
    assert not list(tmp_path.glob(".A.*"))  # no half-written staging folder is left behind


def test_truth_with_nan_is_refused_naming_the_file(ctc: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    damaged = tmp_path / NAME
    shutil.copytree(ctc, damaged)
    labels = tifffile.imread(damaged / "01_ST" / "SEG" / "man_seg000.tif").astype(np.float32)
    labels[3, 4] = np.nan
    tifffile.imwrite(damaged / "01_ST" / "SEG" / "man_seg000.tif", labels)
    assert main([str(damaged), "--output", str(tmp_path / "A"), "--truth", "silver"]) == 1
    assert "01_ST/SEG/man_seg000.tif contains NaN or infinite values" in caplog.text
    assert not (tmp_path / "A").exists()


def test_an_output_that_holds_data_is_refused_unless_overwrite(
    ctc: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    output = tmp_path / "A"
    output.mkdir()
    (output / "notes.txt").write_text("keep me")
    assert main([str(ctc), "--output", str(output), "--truth", "gold"]) == 1
    assert "already holds data" in caplog.text and (output / "notes.txt").read_text() == "keep me"
    assert main([str(ctc), "--output", str(output), "--truth", "gold", "--overwrite"]) == 0
    assert not (output / "notes.txt").exists() and (output / "manifest.csv").is_file()


def test_leaking_or_impossible_splits_are_refused(ctc: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    output = str(tmp_path / "A")
    assert main([str(ctc), "--output", output, "--train_sequences", "01", "02", "--truth", "silver"]) == 1
    assert "cannot be in both" in caplog.text
    assert main([str(ctc), "--output", output, "--test_sequences", "03", "--truth", "silver"]) == 1
    assert "sequence(s) 03 have no frames with truth; available: 01, 02" in caplog.text
    assert main([str(ctc), "--output", output, "--split", "frames", "--truth", "silver"]) == 1
    assert "--split frames needs --test_frames" in caplog.text
    with pytest.raises(SystemExit):
        main([str(ctc), "--output", output, "--test_frames", "9-3"])


def test_with_frame_splits_the_validation_block_sits_on_one_side_of_the_test_range(tmp_path: Path) -> None:
    dataset = make_ctc(tmp_path / "ctc", frames=6)
    arguments = ["--truth", "silver", "--split", "frames", "--test_frames", "1-2", "--val_fraction", "0.5"]
    assert main([str(dataset), "--output", str(tmp_path / "A"), *arguments]) == 0
    rows = manifest(tmp_path / "A")
    frames = {split: {int(row["frame"]) for row in rows if row["split"] == split} for split in ("train", "val", "test")}
    # Training frames 0, 3, 4, 5: half of them (2) validate, from the frames after the test range only.
    assert frames == {"train": {0, 3}, "val": {4, 5}, "test": {1, 2}}
