import csv
from pathlib import Path

import numpy as np
import pytest

from data.image_io import read_array
from scripts.make_demo_dataset import FOLDERS, build_demo_dataset, main
from util.errors import DatasetError


def test_layout_sizes_and_counts(demo_root: Path) -> None:
    counts = {folder: len(list((demo_root / folder).glob("*.png"))) for folder in FOLDERS}
    assert counts == {"trainA": 35, "trainB": 48, "testA": 7, "testB": 5, "trainA_GT": 35, "testA_GT": 7}
    for folder in FOLDERS:
        for path in (demo_root / folder).glob("*.png"):
            image = read_array(path)
            assert image.shape[:2] == (128, 128) and image.dtype == np.uint8
            assert image.ndim == (3 if folder.endswith("B") else 2)
    for split in ("train", "test"):
        images = sorted(path.name for path in (demo_root / f"{split}A").iterdir())
        assert images == sorted(path.name for path in (demo_root / f"{split}A_GT").iterdir())


def test_fluorescence_is_inverted_and_masks_are_binary(demo_root: Path) -> None:
    for path in (demo_root / "trainA_GT").glob("*.png"):
        mask = read_array(path)
        image = read_array(demo_root / "trainA" / path.name)
        assert set(np.unique(mask)) <= {0, 255}
        if mask.any() and not mask.all():
            # Nuclei (mask 255) are darker than background after inversion.
            assert image[mask == 255].mean() + 40 < image[mask == 0].mean()
    assert np.mean([read_array(path).mean() for path in (demo_root / "trainA").glob("*.png")]) > 150


def test_test_crops_do_not_overlap_training_crops(demo_root: Path) -> None:
    with open(demo_root / "manifest.csv", newline="") as table:
        rows = list(csv.DictReader(table))
    assert len(rows) == 35 + 48 + 7 + 5

    def covered(split: str, domain: str) -> set[tuple[int, int]]:
        pixels = set()
        for row in rows:
            if row["split"] == split and row["domain"] == domain:
                top, left, size = int(row["top"]), int(row["left"]), int(row["size"])
                pixels |= {(y, x) for y in range(top, top + size) for x in range(left, left + size)}
        return pixels

    for domain in ("A", "B"):
        train, test = covered("train", domain), covered("test", domain)
        assert train and test and not train & test


def test_existing_output_needs_overwrite(demo_root: Path, tmp_path: Path) -> None:
    output = tmp_path / "demo"
    build_demo_dataset(output)
    with pytest.raises(DatasetError, match="already holds data; pass --overwrite"):
        build_demo_dataset(output)
    assert main(["--output", str(output)]) == 1
    assert main(["--output", str(output), "--overwrite"]) == 0
    assert len(list((output / "testB").iterdir())) == 5
