"""What the dataset-preparation scripts share: a safe output folder, crop grids, seeded splits, manifests.

``scripts/prepare_ctc.py`` (domain A), ``scripts/prepare_slide.py`` (domain B) and
``scripts/make_dataset.py`` (both into one dataroot) all write into folders of the CycleGAN
layout; they refuse to mix a new run into an old one and record where every crop came from.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from util.atomic import write_text_atomic
from util.errors import DatasetError
from util.grid import window_starts

MANIFEST_NAME = "manifest.csv"
#: Settings a preparation script used, for whoever reads the prepared data later (e.g. colorize.py).
SETTINGS_NAME = "preparation.json"


@contextlib.contextmanager
def staged_output(output: Path, overwrite: bool) -> Iterator[Path]:
    """Yield an empty folder beside ``output`` to write into; on success it becomes ``output``.

    A folder that already holds data is refused at once unless ``overwrite`` (two runs are never
    mixed); with ``overwrite`` the old contents are replaced only when the new run has finished,
    so a run that fails half way leaves ``output`` as it was and nothing half-written.
    """
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise DatasetError(f"output {output} exists and is not a folder; choose another --output")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise DatasetError(
            f"output folder {output} already holds data; choose an empty --output or pass --overwrite "
            "to replace its contents"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".incomplete", dir=output.parent))
    try:
        yield staging
        if output.is_dir():
            shutil.rmtree(output)
        os.replace(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def grid_boxes(height: int, width: int, size: int, stride: int) -> Iterator[tuple[int, int]]:
    """Top-left corners (y, x) of ``size`` x ``size`` crops on a grid of step ``stride`` inside the image.

    The last row and column are moved to end at the border (:func:`util.grid.window_starts`), so
    the whole image is covered without padding. An image smaller than a crop gives none.
    """
    if height < size or width < size:
        return
    for y in window_starts(height, size, stride):
        for x in window_starts(width, size, stride):
            yield y, x


def seeded_split(count: int, test_fraction: float, seed: int, val_fraction: float = 0.0) -> np.ndarray:
    """``"train"``, ``"val"`` or ``"test"`` for each of ``count`` items (a (count,) str array), drawn from ``seed``.

    ``round(count * test_fraction)`` items are test and ``round(count * val_fraction)`` validation;
    the test items do not depend on ``val_fraction``, so adding a validation split to a recipe
    keeps its test set.
    """
    if not (0.0 <= test_fraction < 1.0 and 0.0 <= val_fraction < 1.0 and test_fraction + val_fraction < 1.0):
        raise ValueError(
            f"test_fraction and val_fraction must be in [0, 1) with a sum below 1, got {test_fraction}, {val_fraction}"
        )
    order = np.random.default_rng(seed).permutation(count)
    test, val = round(count * test_fraction), round(count * val_fraction)
    splits = np.full(count, "train", dtype="<U5")
    splits[order[:test]] = "test"
    splits[order[test : test + val]] = "val"
    return splits


def write_manifest(output: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> Path:
    """``<output>/manifest.csv``: one row per written crop (where it came from, where it went)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path = Path(output) / MANIFEST_NAME
    write_text_atomic(path, buffer.getvalue())
    return path


def write_settings(output: Path, settings: dict[str, Any]) -> Path:
    """``<output>/preparation.json``: the command's settings, so later steps can apply the same ones."""
    path = Path(output) / SETTINGS_NAME
    write_text_atomic(path, json.dumps(settings, indent=2, default=str) + "\n")
    return path


def read_settings(folder: Path) -> dict[str, Any] | None:
    """The settings a preparation script wrote into ``folder``, or None when there are none."""
    path = Path(folder) / SETTINGS_NAME
    if not path.is_file():
        return None
    remedy = f"run the script that prepared {folder} again to write it"
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DatasetError(f"cannot read the preparation settings {path} ({error}); {remedy}") from error
    if not isinstance(settings, dict):
        raise DatasetError(f"the preparation settings {path} are not what a preparation script writes; {remedy}")
    return settings


def link_or_copy(source: Path, destination: Path) -> None:
    """A hard link when source and destination share a file system (no space used), else a copy."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)
