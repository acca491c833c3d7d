import csv
from pathlib import Path

import numpy as np
import pytest

from data.image_io import read_array
from scripts.make_demo_dataset import FOLDERS, build_demo_dataset, main
from util.errors import DatasetError


def test_layout_sizes_and_counts(demo_root: Path) -> None:
    counts = {folder: len(list((demo_root / folder).glob("*.png"))) for folder in FOLDERS}
    assert counts == {
        "trainA": 25, "trainB": 48, "valA": 5, "valB": 5, "testA": 7, "testB": 25,
        "trainA_GT": 25, "valA_GT": 5, "testA_GT": 7,
    }  # fmt: skip
    for folder in FOLDERS:
        for path in (demo_root / folder).glob("*.png"):
            image = read_array(path)
            assert image.shape[:2] == (128, 128) and image.dtype == np.uint8
            assert image.ndim == (3 if folder.endswith("B") else 2)
    for split in ("train", "val", "test"):
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


def test_train_val_and_test_crops_share_no_pixel(demo_root: Path) -> None:
    with open(demo_root / "manifest.csv", newline="") as table:
        rows = list(csv.DictReader(table))
    assert len(rows) == 25 + 48 + 5 + 5 + 7 + 25

    def covered(split: str, domain: str) -> set[tuple[str, int, int]]:
        pixels = set()
        for row in rows:
            if row["split"] == split and row["domain"] == domain:
                top, left, size = int(row["top"]), int(row["left"]), int(row["size"])
                pixels |= {(row["source"], y, x) for y in range(top, top + size) for x in range(left, left + size)}
        return pixels

    for domain in ("A", "B"):
        train, val, test = covered("train", domain), covered("val", domain), covered("test", domain)
        assert train and val and test and not train & val and not train & test and not val & test
    # Domain B's test crops come from another H&E image than its training crops.
    sources = {(row["split"], row["source"]) for row in rows if row["domain"] == "B"}
    assert sources == {("train", "he_tcia/he.jpg"), ("val", "he_tcia/he.jpg"), ("test", "he_tiatoolbox/he.png")}


def test_existing_output_needs_overwrite(demo_root: Path, tmp_path: Path) -> None:
    output = tmp_path / "demo"
    build_demo_dataset(output)
    with pytest.raises(DatasetError, match="already holds data; pass --overwrite"):
        build_demo_dataset(output)
    assert main(["--output", str(output)]) == 1
    assert main(["--output", str(output), "--overwrite"]) == 0
    assert len(list((output / "testB").iterdir())) == 25
