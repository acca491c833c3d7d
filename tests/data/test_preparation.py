"""data.preparation: crop grids, seeded splits and output folders that never mix two runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data.preparation import SETTINGS_NAME, grid_boxes, read_settings, seeded_split, staged_output, write_settings
from util.errors import DatasetError


def test_grid_covers_the_image_without_padding() -> None:
    boxes = list(grid_boxes(300, 256, 128, 128))
    assert boxes == [(0, 0), (0, 128), (128, 0), (128, 128), (172, 0), (172, 128)]  # last row moved to the border
    covered = np.zeros((300, 256), bool)
    for y, x in boxes:
        covered[y : y + 128, x : x + 128] = True
    assert covered.all()
    assert list(grid_boxes(100, 500, 128, 64)) == []
    assert len(list(grid_boxes(256, 256, 128, 64))) == 9


def test_seeded_split_is_reproducible_and_sized() -> None:
    first = seeded_split(50, 0.2, seed=3)
    assert (first == "test").sum() == 10 and np.array_equal(first, seeded_split(50, 0.2, seed=3))
    assert not np.array_equal(first, seeded_split(50, 0.2, seed=4))
    with_val = seeded_split(50, 0.2, seed=3, val_fraction=0.1)
    assert (with_val == "val").sum() == 5 and np.array_equal(with_val == "test", first == "test")
    with pytest.raises(ValueError, match="test_fraction"):
        seeded_split(5, 1.0, seed=0)


def test_staged_output_replaces_only_on_success(tmp_path: Path) -> None:
    output = tmp_path / "out"
    output.mkdir()
    (output / "old.txt").write_text("old run")
    with pytest.raises(DatasetError, match="already holds data"), staged_output(output, overwrite=False):
        pass
    with pytest.raises(RuntimeError), staged_output(output, overwrite=True) as staging:
        (staging / "new.txt").write_text("half")
        raise RuntimeError("the run fails half way")
    assert [path.name for path in tmp_path.iterdir()] == ["out"] and (output / "old.txt").is_file()
    with staged_output(output, overwrite=True) as staging:
        write_settings(staging, {"size": 128})
    assert [path.name for path in output.iterdir()] == ["preparation.json"]
    assert read_settings(output) == {"size": 128} and read_settings(tmp_path) is None


def test_damaged_settings_are_one_line_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / SETTINGS_NAME).write_text('{"normalization": ', encoding="utf-8")
    with pytest.raises(DatasetError, match=rf"cannot read the preparation settings {tmp_path / SETTINGS_NAME} \("):
        read_settings(tmp_path)
    (tmp_path / SETTINGS_NAME).write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(DatasetError, match="are not what a preparation script writes"):
        read_settings(tmp_path)
