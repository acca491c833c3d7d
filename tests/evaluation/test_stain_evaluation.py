"""evaluation/Stain_Evaluation.py end to end on synthetic epochs built from real demo crops."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from data.image_io import read_array, write_image
from evaluation import Stain_Evaluation as stain_evaluation

Colorizer = Callable[[np.ndarray, np.ndarray], np.ndarray]


def he_colours(demo_root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Mean colours of the darkest and of the lightest half of real H&E pixels: nucleus, background."""
    pixels = np.concatenate([read_array(path).reshape(-1, 3) for path in sorted((demo_root / "testB").glob("*.png"))])
    luma = pixels @ np.array([0.299, 0.587, 0.114])
    dark, light = luma < np.quantile(luma, 0.2), luma > np.quantile(luma, 0.5)
    return pixels[dark].mean(axis=0), pixels[light].mean(axis=0)


def painted(mask: np.ndarray, nucleus: np.ndarray, background: np.ndarray) -> np.ndarray:
    """An H&E-coloured image: ``nucleus`` colour on the mask, ``background`` elsewhere."""
    return np.where(mask[:, :, None], nucleus, background).round().astype(np.uint8)


def make_results(root: Path, demo_root: Path, epochs: dict[str, Colorizer]) -> Path:
    """``root/test_<label>/images/<stem>_{real_A,fake_B}.png`` for every demo test crop."""
    for label, colorize in epochs.items():
        images = root / f"test_{label}" / "images"
        images.mkdir(parents=True)
        for path in sorted((demo_root / "testA").glob("*.png")):
            real_A = read_array(path)
            mask = read_array(demo_root / "testA_GT" / path.name) > 0
            write_image(images / f"{path.stem}_real_A.png", real_A)
            write_image(images / f"{path.stem}_fake_B.png", colorize(real_A, mask))
    return root


@pytest.fixture(scope="module")
def three_epochs(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Epoch 1: gray, no colour. Epoch 2: H&E colours exactly on the mask. Epoch 3: the same colours, nuclei misplaced."""
    nucleus, background = he_colours(demo_root)
    epochs: dict[str, Colorizer] = {
        "1": lambda real_A, mask: np.repeat(real_A[:, :, None], 3, axis=2),
        "2": lambda real_A, mask: painted(mask, nucleus, background),
        "3": lambda real_A, mask: painted(np.roll(mask, (40, 50), axis=(0, 1)), nucleus, background),
    }
    return make_results(tmp_path_factory.mktemp("results") / "synthetic", demo_root, epochs)


def run(results: Path, demo_root: Path, out: Path, *extra: str) -> int:
    arguments = ["--results_dir", str(results), "--dataroot", str(demo_root), "--out", str(out)]
    return stain_evaluation.main([*arguments, *extra])


def test_the_epoch_built_to_be_best_is_picked(
    three_epochs: Path, demo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(three_epochs, demo_root, tmp_path) == 0
    scores = json.loads((tmp_path / "scores.json").read_text())
    labels = [row["label"] for row in scores]
    assert labels == ["1", "2", "3", "baseline: gray input", "baseline: Beer-Lambert"]
    by_label = {row["label"]: row for row in scores}
    assert [row["label"] for row in scores if row["best"]] == ["2"]
    assert by_label["2"]["dice"] > 0.95 and by_label["3"]["dice"] < 0.5
    assert by_label["2"]["hsv_correlation"] > by_label["1"]["hsv_correlation"]
    printed = capsys.readouterr().out
    assert "best epoch: 2" in printed and "* 2" in printed


def test_every_output_is_written_and_the_report_links_real_files(
    three_epochs: Path, demo_root: Path, tmp_path: Path
) -> None:
    assert run(three_epochs, demo_root, tmp_path) == 0
    with open(tmp_path / "scores.csv", newline="") as table:
        rows = list(csv.DictReader(table))
    assert len(rows) == 5 and rows[1]["best"] == "True" and float(rows[1]["composite_rank"]) >= 1.0
    with open(tmp_path / "per_image.csv", newline="") as table:
        per_image = list(csv.DictReader(table))
    assert len(per_image) == 5 * 7 and {row["label"] for row in per_image} >= {"1", "2", "3"}
    assert read_array(tmp_path / "metrics_vs_epoch.png").ndim == 3
    page = (tmp_path / "report.html").read_text()
    assert "Epoch 2 is the best epoch" in page and "metrics_vs_epoch.png" in page
    linked = [part.split('"')[0] for part in page.split('src="')[1:]]
    assert len(linked) > 10 and all((tmp_path / link).is_file() for link in linked)
    assert any(link.endswith("_outline.png") for link in linked)


def test_missing_test_folders_say_to_run_test_py(
    tmp_path: Path, demo_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "results").mkdir()
    assert run(tmp_path / "results", demo_root, tmp_path / "out") == 1
    assert "test.py --name <experiment> --epoch all" in caplog.text


def test_images_without_input_or_of_another_size_are_skipped_and_counted(
    three_epochs: Path, demo_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    results = tmp_path / "results"
    shutil.copytree(three_epochs, results)
    images = results / "test_2" / "images"
    stems = sorted(path.name.removesuffix("_real_A.png") for path in images.glob("*_real_A.png"))
    (images / f"{stems[0]}_real_A.png").unlink()
    write_image(images / f"{stems[1]}_fake_B.png", np.zeros((64, 64, 3), np.uint8))
    assert run(results, demo_root, tmp_path / "out") == 0
    assert "epoch 2: 1 images skipped (no real_A)" in caplog.text
    assert "epoch 2: 1 images skipped (size differs)" in caplog.text
    with open(tmp_path / "out" / "per_image.csv", newline="") as table:
        assert sum(row["label"] == "2" for row in csv.DictReader(table)) == 5


def test_bad_reference_folders_are_refused(
    three_epochs: Path, demo_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(three_epochs, demo_root, tmp_path / "out", "--reference_dir", str(empty)) == 1
    assert "contains no images" in caplog.text
    gray = tmp_path / "gray"
    gray.mkdir()
    shutil.copy(sorted((demo_root / "testA").glob("*.png"))[0], gray / "tile.png")
    assert run(three_epochs, demo_root, tmp_path / "out", "--reference_dir", str(gray)) == 1
    assert "is not RGB" in caplog.text


def test_weights_change_the_choice_and_bad_weights_are_refused(
    three_epochs: Path, demo_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    colour_only = "dice=0,ssim=0,lab_swd=0,hematoxylin_w1=0,eosin_w1=0,hsv_correlation=1"
    assert run(three_epochs, demo_root, tmp_path / "out", "--weights", colour_only) == 0
    scores = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert [row["label"] for row in scores if row["best"]] == ["2"]  # 2 and 3 share their colours: the tie goes low
    assert run(three_epochs, demo_root, tmp_path / "bad", "--weights", "sharpness=2") == 1
    assert "unknown metric 'sharpness'" in caplog.text


def test_images_without_a_mask_are_scored_without_nuclei_metrics(
    three_epochs: Path, demo_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dataroot = tmp_path / "data"
    shutil.copytree(demo_root / "testA_GT", dataroot / "testA_GT")
    shutil.copytree(demo_root / "testB", dataroot / "testB")
    missing = sorted((dataroot / "testA_GT").glob("*.png"))[0]
    missing.unlink()
    assert run(three_epochs, dataroot, tmp_path / "out") == 0
    assert "epoch 2: 1 images skipped (no mask)" not in caplog.text  # counted, but not skipped:
    assert "epoch 2: 1 images without a mask" in caplog.text
    with open(tmp_path / "out" / "per_image.csv", newline="") as table:
        rows = [row for row in csv.DictReader(table) if row["label"] == "2"]
    assert len(rows) == 7
    assert [row["dice"] for row in rows if row["image"] == missing.stem] == [""]


def test_scores_do_not_depend_on_the_number_of_workers(three_epochs: Path, demo_root: Path, tmp_path: Path) -> None:
    assert run(three_epochs, demo_root, tmp_path / "one", "--workers", "1") == 0
    assert run(three_epochs, demo_root, tmp_path / "two", "--workers", "2") == 0
    assert (tmp_path / "one" / "scores.json").read_text() == (tmp_path / "two" / "scores.json").read_text()


def test_inception_weights_add_fid_and_kid_to_every_row(
    three_epochs: Path,
    demo_root: Path,
    random_inception_weights: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    results = tmp_path / "results"
    for label in ("1", "2"):  # two epochs keep the CPU Inception passes short
        shutil.copytree(three_epochs / f"test_{label}", results / f"test_{label}")
    extra = ("--inception_weights", str(random_inception_weights), "--gpu_ids", "-1", "--workers", "1")
    assert run(results, demo_root, tmp_path / "out", *extra) == 0
    scores = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert len(scores) == 4
    for row in scores:
        assert np.isfinite(row["fid"]) and row["fid"] >= 0 and np.isfinite(row["kid"]), row
    fid = {row["label"]: row["fid"] for row in scores}
    assert fid["1"] == fid["baseline: gray input"]  # epoch 1 is the gray input itself: the same images
    assert len({fid["1"], fid["2"], fid["baseline: Beer-Lambert"]}) == 3
    header = capsys.readouterr().out.splitlines()[0]
    assert "fid" in header and "kid" in header


def test_without_inception_weights_fid_is_a_note_and_bad_weights_fail_first(
    three_epochs: Path, demo_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert run(three_epochs, demo_root, tmp_path / "out") == 0
    assert "FID/KID not computed" in caplog.text and "--inception_weights PATH" in caplog.text
    scores = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert all(row["fid"] is None and row["kid"] is None for row in scores)
    assert "fid" not in (tmp_path / "out" / "report.html").read_text().split("<table")[1].split("</tr>")[0]
    missing = tmp_path / "nowhere.pth"
    assert run(three_epochs, demo_root, tmp_path / "bad", "--inception_weights", str(missing)) == 1
    assert f"Inception weights {missing} not found" in caplog.text
    assert not (tmp_path / "bad").exists()  # refused before any scoring
