"""models/pretrained: the bundled demo model is complete, small, consistent with its records, and stains."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile

import colorize
from data.image_io import read_array
from models import checkpoint
from tests.helpers import REPO_ROOT

BUNDLE = REPO_ROOT / "models" / "pretrained" / "demo_pretrained"
SOURCE = REPO_ROOT / "datasets" / "sources" / "fluo_nuclei_dsb2018" / "image.tif"


def test_the_bundle_holds_one_small_generator_and_the_records_of_how_it_was_made() -> None:
    record = json.loads((BUNDLE / "model.json").read_text())
    selection = json.loads((BUNDLE / "evaluation" / "selection.json").read_text())
    epoch = record["epoch"]
    assert selection["chosen"] == epoch and checkpoint.saved_epochs(BUNDLE, "G_A") == [int(epoch)]
    assert [path.name for path in BUNDLE.glob("*.pth")] == [f"{epoch}_net_G_A.pth"]  # G_A only
    payload = checkpoint.load_file(BUNDLE / f"{epoch}_net_G_A.pth")
    assert str(payload["epoch"]) == epoch and payload["architecture"] == record["architecture"]
    assert sum(path.stat().st_size for path in BUNDLE.rglob("*") if path.is_file()) < 4_000_000
    options = json.loads((BUNDLE / "train_opt.json").read_text())
    assert (options["model"], options["netG"], options["ngf"], options["ndf"]) == (
        "seg_cycle_gan",
        "resnet_6blocks",
        16,
        16,
    )
    assert (options["n_epochs"], options["n_epochs_decay"]) == (10, 10)  # the Makefile's DEMO_SCHEDULE
    rule = json.loads((BUNDLE / "preparation.json").read_text())["normalization"]
    assert rule == {"low_percentile": 0.5, "high_percentile": 99.5, "invert": True}  # make_demo_dataset.py's rule
    scores = record["test_scores"]
    assert scores[epoch]["nucleus_f1"] > scores["baseline: Beer-Lambert"]["nucleus_f1"]  # it passed the guards
    assert "Good for" in (BUNDLE / "README.md").read_text() and "Not good for" in (BUNDLE / "README.md").read_text()


def test_colorize_uses_the_bundled_model_without_training(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    raw = tifffile.imread(SOURCE)[256:384, 200:360]  # real 16-bit fluorescence, nuclei bright
    tifffile.imwrite(tmp_path / "frame.tif", raw)
    empty = tmp_path / "no_checkpoints"
    arguments = ["--name", "demo_pretrained", "--checkpoints_dir", str(empty), "--gpu_ids", "-1"]
    assert colorize.main([*arguments, "--input", str(tmp_path / "frame.tif"), "--output", str(tmp_path / "out")]) == 0
    assert f"using the bundled model {BUNDLE}" in caplog.text and not empty.exists()
    stained = read_array(tmp_path / "out" / "frame.png").astype(np.float64)
    red, green, blue = stained.reshape(-1, 3).mean(axis=0)
    assert red > green + 20 and blue > green + 20, (red, green, blue)  # H&E's pink and purple, not gray
    nuclei = raw > np.percentile(raw, 90)  # the brightest tenth of the raw frame: nuclei
    lightness = stained.mean(axis=2)
    assert lightness[nuclei].mean() < lightness[~nuclei].mean() - 30  # the bundle's inversion: nuclei dark
