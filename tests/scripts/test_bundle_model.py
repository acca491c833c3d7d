"""scripts/bundle_model.py: the chosen epoch bundled with its records, and colorize.py finding the bundle by name."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

import colorize
from data.image_io import read_array
from models import checkpoint
from scripts import bundle_model
from tests.helpers import REPO_ROOT

SOURCE = REPO_ROOT / "datasets" / "sources" / "fluo_nuclei_dsb2018" / "image.tif"
RULE = {"low_percentile": 0.5, "high_percentile": 99.5, "invert": True}


def evaluated(results: Path, name: str, chosen: str | None) -> None:
    """What Stain_Evaluation.py leaves for ``name``: its choice and a test row per epoch and baseline."""
    folder = results / name / "evaluation"
    folder.mkdir(parents=True)
    selection = {"chosen": chosen, "closest": "1", "chosen_on": "val", "realism_metric": "lab_swd_regions"}
    (folder / "selection.json").write_text(json.dumps(selection))
    rows = [
        {"label": "2", "split": "test", "nucleus_f1": 0.81, "lab_swd_regions": 3.0},
        {"label": "baseline: Beer-Lambert", "split": "test", "nucleus_f1": 0.57, "lab_swd_regions": 11.4},
    ]
    (folder / "scores.json").write_text(json.dumps(rows))
    (folder / "scores.csv").write_text("label,split\n2,test\n")


def test_the_chosen_epoch_is_bundled_and_colorize_finds_it_by_name(
    trained_experiment: tuple[Path, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    checkpoints, name = trained_experiment
    dataroot = tmp_path / "data"
    dataroot.mkdir()
    (dataroot / "preparation.json").write_text(json.dumps({"command": "test", "normalization": RULE}))
    evaluated(tmp_path / "results", name, "2")
    bundles = tmp_path / "pretrained"
    arguments = ["--name", name, "--checkpoints_dir", str(checkpoints), "--results_dir", str(tmp_path / "results")]
    assert bundle_model.main([*arguments, "--dataroot", str(dataroot), "--output", str(bundles / "tinybundle")]) == 0

    bundle = bundles / "tinybundle"
    assert sorted(path.relative_to(bundle).as_posix() for path in bundle.rglob("*") if path.is_file()) == [
        "2_net_G_A.pth", "README.md", "evaluation/scores.csv", "evaluation/selection.json", "model.json",
        "preparation.json", "train_opt.json",
    ]  # fmt: skip
    original = checkpoint.network_path(checkpoints / name, "2", "G_A").read_bytes()
    assert (bundle / "2_net_G_A.pth").read_bytes() == original  # G_A alone, as trained
    record = json.loads((bundle / "model.json").read_text())
    assert record["epoch"] == "2" and record["test_scores"]["2"]["nucleus_f1"] == 0.81
    assert record["test_scores"]["baseline: Beer-Lambert"]["nucleus_f1"] == 0.57
    assert "epoch 2 of 2 chosen by the evaluation" in record["summary"]
    assert "| this model, epoch 2 | 0.810 |" in (bundle / "README.md").read_text()
    assert json.loads((bundle / "preparation.json").read_text())["normalization"] == RULE

    # colorize.py: no experiment of that name in --checkpoints_dir, so the bundle is used, with its own rule.
    monkeypatch.setattr(colorize, "BUNDLED_MODELS", bundles)
    image = tmp_path / "frame.tif"
    tifffile.imwrite(image, tifffile.imread(SOURCE)[:80, :96])
    empty = tmp_path / "no_checkpoints"
    common = ["--gpu_ids", "-1", "--input", str(image), "--checkpoints_dir", str(empty)]
    for epoch in ("latest", "best", "2"):
        output = tmp_path / f"bundled_{epoch}"
        assert colorize.main(["--name", "tinybundle", "--epoch", epoch, *common, "--output", str(output)]) == 0
        assert (
            f"no experiment 'tinybundle' in --checkpoints_dir {empty}: using the bundled model {bundle}" in caplog.text
        )
    own_flags = ["--low_percentile", "0.5", "--high_percentile", "99.5", "--invert"]  # the recorded rule, by hand
    direct = ["--name", name, "--checkpoints_dir", str(checkpoints), "--epoch", "2", "--gpu_ids", "-1"]
    assert colorize.main([*direct, "--input", str(image), "--output", str(tmp_path / "own"), *own_flags]) == 0
    expected = read_array(tmp_path / "own" / "frame.png")
    for epoch in ("latest", "best", "2"):
        assert np.array_equal(read_array(tmp_path / f"bundled_{epoch}" / "frame.png"), expected)


def test_a_run_without_an_epoch_that_passed_the_guards_is_not_bundled(
    trained_experiment: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoints, name = trained_experiment
    evaluated(tmp_path / "results", name, None)
    output = tmp_path / "bundle"
    arguments = ["--name", name, "--checkpoints_dir", str(checkpoints), "--results_dir", str(tmp_path / "results")]
    assert bundle_model.main([*arguments, "--dataroot", str(tmp_path), "--output", str(output)]) == 1
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == [
        f"no epoch of {name} passed the evaluation's faithfulness guards (closest: 1); a model that fails them is not "
        "bundled"
    ]
    assert not output.exists()
    shutil.rmtree(tmp_path / "results")
    assert bundle_model.main([*arguments, "--dataroot", str(tmp_path), "--output", str(output)]) == 1
    assert "selection.json is missing: evaluate the experiment first" in caplog.text
