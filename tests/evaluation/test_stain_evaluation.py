"""evaluation/Stain_Evaluation.py end to end on synthetic epochs built from real demo crops."""

from __future__ import annotations

import csv
import json
import logging
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from data.image_io import read_array, write_image
from evaluation import Stain_Evaluation as stain_evaluation
from evaluation.baselines import real_tiles_ignoring_input
from evaluation.scoring import REAL_TILES
from tests.helpers import demo_arrays, run_on_small_disk
from util.stain import estimate_stain_model

Colorizer = Callable[[str, np.ndarray, np.ndarray], np.ndarray]
SPLITS = ("val", "test")


def he_colors(demo_root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Mean colours of real nuclear and of real non-nuclear H&E pixels (by the stain model)."""
    tiles = demo_arrays(demo_root / "trainB")
    nuclear = estimate_stain_model(list(tiles)).nuclear(tiles)
    return tiles[nuclear].mean(axis=0), tiles[~nuclear].mean(axis=0)


def painted(mask: np.ndarray, nucleus: np.ndarray, background: np.ndarray) -> np.ndarray:
    """An H&E-coloured image: ``nucleus`` colour on the mask, ``background`` elsewhere."""
    return np.where(mask[:, :, None], nucleus, background).round().astype(np.uint8)


def make_results(root: Path, demo_root: Path, epochs: dict[str, Colorizer]) -> Path:
    """``root/<split>_<label>/images/<stem>_{real_A,fake_B}.png`` for every demo val and test crop."""
    for split in SPLITS:
        for label, colorize in epochs.items():
            images = root / f"{split}_{label}" / "images"
            images.mkdir(parents=True)
            for path in sorted((demo_root / f"{split}A").glob("*.png")):
                real_A = read_array(path)
                mask = read_array(demo_root / f"{split}A_GT" / path.name) > 0
                write_image(images / f"{path.stem}_real_A.png", real_A)
                write_image(images / f"{path.stem}_fake_B.png", colorize(path.stem, real_A, mask))
    return root


@pytest.fixture(scope="module")
def four_epochs(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1: gray. 2: real nucleus colour exactly on the mask (faithful, realistic). 3: real H&E that
    ignores the input (only realistic). 4: epoch 2's colours with the nuclei moved."""
    nucleus, background = he_colors(demo_root)
    tiles = list(demo_arrays(demo_root / "trainB"))
    epochs: dict[str, Colorizer] = {
        "1": lambda stem, real_A, mask: np.repeat(real_A[:, :, None], 3, axis=2),
        "2": lambda stem, real_A, mask: painted(mask, nucleus, background),
        "3": lambda stem, real_A, mask: real_tiles_ignoring_input([f"other {stem}"], [real_A.shape], tiles)[0],
        "4": lambda stem, real_A, mask: painted(np.roll(mask, (40, 50), axis=(0, 1)), nucleus, background),
    }
    return make_results(tmp_path_factory.mktemp("results") / "synthetic", demo_root, epochs)


def run(results: Path, dataroot: Path, out: Path, *extra: str) -> int:
    arguments = ["--results_dir", str(results), "--dataroot", str(dataroot), "--out", str(out), "--workers", "1"]
    return stain_evaluation.main([*arguments, *extra])


def scores_by(out: Path) -> dict[tuple[str, str], dict]:
    return {(row["split"], row["label"]): row for row in json.loads((out / "scores.json").read_text())}


@pytest.fixture(scope="module")
def evaluated(four_epochs: Path, demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("evaluation")
    assert run(four_epochs, demo_root, out) == 0
    return out


def test_the_faithful_and_realistic_epoch_beats_the_only_realistic_one(evaluated: Path) -> None:
    scores = scores_by(evaluated)
    assert {label for (split, label), row in scores.items() if row["chosen"]} == {"2"}
    realistic_only, faithful = scores[("val", "3")], scores[("val", "2")]
    assert realistic_only["lab_swd"] < faithful["lab_swd"]  # it IS more realistic...
    assert not realistic_only["passes_guards"] and "nucleus F1" in realistic_only["failed_guards"]
    assert faithful["passes_guards"] and faithful["nucleus_f1"] > 0.95
    assert not scores[("val", "4")]["passes_guards"] and not scores[("val", "1")]["passes_guards"]
    selection = json.loads((evaluated / "selection.json").read_text())
    assert selection["chosen"] == "2" and selection["chosen_on"] == "val"
    assert selection["test_scores"]["nucleus_f1"] == scores[("test", "2")]["nucleus_f1"]
    assert set(selection["stain_model"]) >= {"hematoxylin", "eosin", "nucleus_threshold"}


def test_the_input_ignoring_row_fails_the_guards_on_every_split(evaluated: Path) -> None:
    scores = scores_by(evaluated)
    for split in SPLITS:
        sanity = scores[(split, REAL_TILES)]
        assert not sanity["passes_guards"]
        assert sanity["nucleus_f1"] < 0.1 and sanity["invented_area"] > 0.1 and sanity["structure_spearman"] < 0.2
        assert sanity["hsv_correlation"] > 0.5  # while looking like real H&E


def test_only_the_chosen_epoch_is_scored_on_test(evaluated: Path) -> None:
    scores = scores_by(evaluated)
    test_rows = sorted(label for split, label in scores if split == "test")
    assert test_rows == sorted(
        ["2", "baseline: gray input", "baseline: Beer-Lambert", "baseline: lookup table", REAL_TILES]
    )
    assert {label for split, label in scores if split == "val"} >= {"1", "2", "3", "4"}


def test_per_image_metrics_have_intervals_and_per_image_rows(evaluated: Path) -> None:
    with open(evaluated / "scores.csv", newline="") as table:
        rows = list(csv.DictReader(table))
    epoch_3 = next(row for row in rows if row["split"] == "val" and row["label"] == "3")
    low, value, high = (
        float(epoch_3[key]) for key in ("invented_area_ci_low", "invented_area", "invented_area_ci_high")
    )
    assert low <= value <= high and high > low
    with open(evaluated / "per_image.csv", newline="") as table:
        per_image = list(csv.DictReader(table))
    assert sum(row["split"] == "val" and row["label"] == "2" for row in per_image) == 5
    assert sum(row["split"] == "test" and row["label"] == "2" for row in per_image) == 7


def test_the_report_shows_both_axes_the_guards_and_real_files(evaluated: Path) -> None:
    page = (evaluated / "report.html").read_text()
    assert "Epoch 2 is chosen on the val split" in page
    assert "Realism: do the colours look like real H&amp;E?" in page and "Faithfulness guards" in page
    assert "Faithfulness: does the stain follow the input?" in page
    assert "realism_vs_faithfulness.png" in page and "lookup table" in page
    linked = [part.split('"')[0] for part in page.split('src="')[1:]]
    assert len(linked) > 20 and all((evaluated / link).is_file() for link in linked)
    for plot in ("realism_vs_faithfulness.png", "metrics_vs_epoch.png"):
        assert read_array(evaluated / plot).ndim == 3


@pytest.mark.slow
def test_scores_do_not_depend_on_the_number_of_workers(
    four_epochs: Path, demo_root: Path, evaluated: Path, tmp_path: Path
) -> None:
    assert run(four_epochs, demo_root, tmp_path / "two", "--workers", "2") == 0
    assert (tmp_path / "two" / "scores.json").read_text() == (evaluated / "scores.json").read_text()


@pytest.mark.slow
def test_renaming_and_reordering_the_files_keeps_the_choice(four_epochs: Path, demo_root: Path, tmp_path: Path) -> None:
    """Every stem renamed so that the listing order reverses, in the results and the masks alike."""
    data, results = tmp_path / "data", tmp_path / "results"
    shutil.copytree(demo_root, data)
    shutil.copytree(four_epochs, results)
    for split in SPLITS:
        stems = sorted(path.stem for path in (data / f"{split}A_GT").glob("*.png"))
        renamed = {stem: f"{len(stems) - index:03d}_{stem}" for index, stem in enumerate(stems)}
        for stem, new in renamed.items():
            (data / f"{split}A_GT" / f"{stem}.png").rename(data / f"{split}A_GT" / f"{new}.png")
            for folder in results.glob(f"{split}_*/images"):
                for visual in ("real_A", "fake_B"):
                    (folder / f"{stem}_{visual}.png").rename(folder / f"{new}_{visual}.png")
    assert run(results, data, tmp_path / "out") == 0
    scores = scores_by(tmp_path / "out")
    assert {label for (split, label), row in scores.items() if row["chosen"]} == {"2"}
    assert scores[("val", "2")]["nucleus_f1"] == 1.0


@pytest.mark.slow
def test_without_a_validation_split_the_choice_falls_back_to_test_and_says_so(
    four_epochs: Path, demo_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data, results = tmp_path / "data", tmp_path / "results"
    for folder in ("trainA", "trainB", "testA", "testA_GT", "testB"):  # a layout from before the val split
        shutil.copytree(demo_root / folder, data / folder)
    for folder in four_epochs.glob("test_*"):
        shutil.copytree(folder, results / folder.name)
    assert run(results, data, tmp_path / "out") == 0
    assert "CHOSEN ON THE TEST SPLIT" in caplog.text and "no validation split" in caplog.text
    selection = json.loads((tmp_path / "out" / "selection.json").read_text())
    assert selection["chosen"] == "2" and selection["chosen_on"] == "test"
    assert "CHOSEN ON THE TEST SPLIT" in (tmp_path / "out" / "report.html").read_text()


@pytest.mark.slow
def test_results_without_val_folders_but_data_with_them_ask_to_rerun_test_py(
    four_epochs: Path, demo_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    results = tmp_path / "results"
    for folder in four_epochs.glob("test_*"):
        shutil.copytree(folder, results / folder.name)
    assert run(results, demo_root, tmp_path / "out") == 0
    assert "has no val_<epoch> folders; run python test.py --name <experiment> --epoch all again" in caplog.text


@pytest.mark.slow
def test_val_masks_missing_or_mismatched_are_named(
    four_epochs: Path, demo_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    shutil.copytree(demo_root, data)
    masks = sorted((data / "valA_GT").glob("*.png"))
    masks[0].unlink()
    write_image(masks[1], np.zeros((64, 64), np.uint8))
    assert run(four_epochs, data, tmp_path / "out") == 0
    assert f"val epoch 2: 1 images without a mask, scored without the nucleus metrics: {masks[0].stem}" in caplog.text
    assert f"val epoch 2: 1 images skipped (size differs): {masks[1].stem}" in caplog.text
    shutil.rmtree(data / "valA_GT")
    assert run(four_epochs, data, tmp_path / "none") == 0
    assert "The validation split has no masks (valA_GT)" in caplog.text


@pytest.mark.parametrize("flag", ["--guard_f1_margin", "--max_invented_area", "--min_structure"])
def test_guards_out_of_range_are_refused_by_the_command_line(
    four_epochs: Path, demo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(four_epochs, demo_root, tmp_path / "out", flag, "1.5")
    assert exit_info.value.code == 2 and flag in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_bad_reference_folders_are_refused(
    four_epochs: Path, demo_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(four_epochs, demo_root, tmp_path / "out", "--val_reference_dir", str(empty)) == 1
    assert "contains no images" in caplog.text
    gray = tmp_path / "gray"
    gray.mkdir()
    shutil.copy(sorted((demo_root / "testA").glob("*.png"))[0], gray / "tile.png")
    assert run(four_epochs, demo_root, tmp_path / "out", "--val_reference_dir", str(gray)) == 1
    assert "is not RGB" in caplog.text
    gray_rgb = tmp_path / "gray_rgb"
    write_image(gray_rgb / "tile.png", np.repeat(read_array(gray / "tile.png")[:, :, None], 3, axis=2))
    assert run(four_epochs, demo_root, tmp_path / "out", "--stain_reference", str(gray_rgb)) == 1
    assert "cannot estimate stain vectors" in caplog.text and "--stain_reference" in caplog.text


def test_missing_results_say_to_run_test_py(tmp_path: Path, demo_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "results").mkdir()
    assert run(tmp_path / "results", demo_root, tmp_path / "out") == 1
    assert "test.py --name <experiment> --epoch all" in caplog.text


@pytest.mark.slow
def test_fid_and_kid_need_enough_images_and_never_cost_the_other_scores(
    four_epochs: Path,
    demo_root: Path,
    random_inception_weights: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    results = tmp_path / "results"
    for split in SPLITS:
        for label in ("1", "2"):  # two epochs keep the CPU Inception passes short
            shutil.copytree(four_epochs / f"{split}_{label}", results / f"{split}_{label}")
    weights = ("--inception_weights", str(random_inception_weights), "--gpu_ids", "-1")
    assert run(results, demo_root, tmp_path / "few", *weights) == 0
    assert "FID/KID not computed on the val split: 5 colorized and 5 real images, at least 50" in caplog.text
    few = scores_by(tmp_path / "few")
    assert all(row["fid"] is None for row in few.values()) and few[("val", "2")]["nucleus_f1"] == 1.0
    assert run(results, demo_root, tmp_path / "out", *weights, "--min_inception_images", "5") == 0
    scores = scores_by(tmp_path / "out")
    for (split, label), row in scores.items():
        assert np.isfinite(row["fid"]) and row["fid"] >= 0 and np.isfinite(row["kid"]), (split, label)
    assert scores[("val", "1")]["fid"] == pytest.approx(scores[("val", "baseline: gray input")]["fid"])


def test_bad_inception_weights_fail_before_any_scoring(
    four_epochs: Path, demo_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "nowhere.pth"
    assert run(four_epochs, demo_root, tmp_path / "bad", "--inception_weights", str(missing)) == 1
    assert f"Inception weights {missing} not found" in caplog.text
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_when_no_epoch_passes_the_closest_is_named_and_shown_on_test_as_failing(
    four_epochs: Path, demo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    for split in SPLITS:
        for label in ("1", "3", "4"):  # gray, input-ignoring, misplaced: none is faithful and coloured
            shutil.copytree(four_epochs / f"{split}_{label}", results / f"{split}_{label}")
    assert run(results, demo_root, tmp_path / "out") == 0
    selection = json.loads((tmp_path / "out" / "selection.json").read_text())
    assert selection["chosen"] is None and selection["closest"] == selection["test_epoch"] in ("1", "3", "4")
    scores = scores_by(tmp_path / "out")
    reported = scores[("test", selection["closest"])]
    assert not reported["chosen"] and not reported["passes_guards"]
    assert "No epoch passes the faithfulness guards" in capsys.readouterr().out
    assert "FAILS the guards; for comparison only" in (tmp_path / "out" / "report.html").read_text()


# -- faults: missing images, unwritable --out, damaged JSON (issue 18) -------------------------------
def the_error(caplog: pytest.LogCaptureFixture) -> str:
    """The one ERROR line a failed run logged, checked to carry no traceback."""
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1, [record.getMessage() for record in errors]
    message = errors[0].getMessage()
    assert errors[0].exc_info is None and "\n" not in message and "Traceback" not in caplog.text
    return message


def per_image_rows(out: Path, split: str) -> dict[tuple[str, str], dict[str, str]]:
    with open(out / "per_image.csv", newline="") as table:
        return {(row["label"], row["image"]): row for row in csv.DictReader(table) if row["split"] == split}


def split_scores(out: Path, split: str) -> dict[tuple[str, str], dict]:
    return {key: row for key, row in scores_by(out).items() if key[0] == split}


def listing(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_every_epoch_is_scored_on_the_images_all_epochs_have(
    four_epochs: Path, demo_root: Path, evaluated: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One epoch lacks a fake_B, one a real_A, one has a fake_B it cannot score: every epoch is scored on the
    images all have, each paired by name with its input and mask, with the numbers those images had before."""
    stems = sorted(path.stem for path in (demo_root / "valA").glob("*.png"))
    results = tmp_path / "results"
    shutil.copytree(four_epochs, results)
    (results / "val_3" / "images" / f"{stems[0]}_fake_B.png").unlink()  # the first: pairing by position would shift
    (results / "val_1" / "images" / f"{stems[1]}_real_A.png").unlink()
    resized = results / "val_4" / "images" / f"{stems[2]}_fake_B.png"
    write_image(resized, read_array(resized)[:64, :64])
    test_stem = sorted(path.stem for path in (demo_root / "testA").glob("*.png"))[0]
    (results / "test_2" / "images" / f"{test_stem}_fake_B.png").unlink()  # the epoch that will be chosen
    assert run(results, demo_root, tmp_path / "out") == 0
    assert (
        f"epoch 1 (val) lacks 1 of 5 images ({stems[1]}_real_A.png); every epoch is scored on the 3 images all "
        "epochs have" in caplog.text
    )
    assert f"epoch 3 (val) lacks 1 of 5 images ({stems[0]}_fake_B.png); every epoch is scored" in caplog.text
    assert (
        f"epoch 4 (val) could not score 1 images the other epochs scored ({stems[2]}; see above); every epoch is "
        "scored on the 2 images all epochs could score" in caplog.text
    )
    assert "lacks 1 of 5 images" in (tmp_path / "out" / "report.html").read_text()
    kept, before = per_image_rows(tmp_path / "out", "val"), per_image_rows(evaluated, "val")
    assert {image for _, image in kept} == set(stems[3:])
    assert {label for label, _ in kept} == {label for label, _ in before}  # every epoch and baseline
    assert kept == {key: before[key] for key in kept}  # image by image, the numbers of the full run
    assert (
        f"epoch 2 (test) lacks 1 of 7 images ({test_stem}_fake_B.png); it and the baselines are scored on the 6 "
        "images it has" in caplog.text
    )
    tested = per_image_rows(tmp_path / "out", "test")
    assert tested == {key: row for key, row in per_image_rows(evaluated, "test").items() if key[1] != test_stem}
    # The scores, and so the ranking, are those of the same images missing from every epoch.
    everywhere = tmp_path / "everywhere"
    shutil.copytree(four_epochs, everywhere)
    for folder in everywhere.glob("val_*/images"):
        for stem in stems[:3]:
            for visual in ("real_A", "fake_B"):
                (folder / f"{stem}_{visual}.png").unlink()
    assert run(everywhere, demo_root, tmp_path / "out_everywhere") == 0
    assert split_scores(tmp_path / "out", "val") == split_scores(tmp_path / "out_everywhere", "val")


def test_epochs_that_share_no_image_are_refused_naming_the_epochs_to_translate_again(
    four_epochs: Path, demo_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    results = tmp_path / "results"
    for name in ("val_1", "val_2", "test_1", "test_2"):
        shutil.copytree(four_epochs / name, results / name)
    stems = sorted(path.stem for path in (demo_root / "valA").glob("*.png"))
    for stem in stems[:2]:
        (results / "val_2" / "images" / f"{stem}_fake_B.png").unlink()
    for stem in stems[2:]:
        (results / "val_1" / "images" / f"{stem}_fake_B.png").unlink()
    files = listing(results)
    assert run(results, demo_root, tmp_path / "out") == 1
    assert the_error(caplog) == (
        f"the val epoch folders in {results} share no image with both its fake_B and real_A (epoch 1 lacks 3 of 5 "
        f"({', '.join(f'{stem}_fake_B.png' for stem in stems[2:])}); epoch 2 lacks 2 of 5 "
        f"({', '.join(f'{stem}_fake_B.png' for stem in stems[:2])})); re-run python test.py --name <experiment> "
        "--epoch <N> for epochs 1, 2 (it rewrites val_<N>), or move the folders of epochs you do not need out of "
        "the results folder"
    )
    assert listing(results) == files and not (tmp_path / "out").exists()


def test_an_epoch_that_can_score_no_shared_image_is_refused_by_name(
    four_epochs: Path, demo_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    results = tmp_path / "results"
    for name in ("val_1", "val_2"):
        shutil.copytree(four_epochs / name, results / name)
    for fake in (results / "val_2" / "images").glob("*_fake_B.png"):
        write_image(fake, read_array(fake)[:32, :32])
    assert run(results, demo_root, tmp_path / "out") == 1
    assert the_error(caplog) == (
        f"no val image could be scored in every epoch folder in {results} (epoch 2 could not score 5); re-run "
        "python test.py --name <experiment> --epoch <N> for epoch 2"
    )


def test_an_out_folder_under_a_file_is_refused_before_any_scoring(
    four_epochs: Path,
    demo_root: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_scoring(*args: object, **kwargs: object) -> None:
        raise AssertionError("scoring started")

    monkeypatch.setattr(stain_evaluation.scoring, "load_split", no_scoring)
    (tmp_path / "file").write_text("kept")
    out = tmp_path / "file" / "evaluation"
    assert run(four_epochs, demo_root, out) == 1
    assert the_error(caplog) == (
        f"--out {out}: cannot write there: a part of the path is a file, not a folder; choose another --out"
    )
    assert (tmp_path / "file").read_text() == "kept"


@pytest.mark.small_disk
def test_a_read_only_out_folder_is_refused_in_one_line(four_epochs: Path, demo_root: Path, tmp_path: Path) -> None:
    mount = tmp_path / "ro"
    command = (
        f"{sys.executable} evaluation/Stain_Evaluation.py --results_dir '{four_epochs}' --dataroot '{demo_root}' "
        f"--out '{mount / 'evaluation'}' --workers 1"
    )
    files = listing(four_epochs)
    finished = run_on_small_disk(mount, command, read_only=True)
    assert finished.returncode == 1, finished.stderr
    errors = [line for line in finished.stderr.splitlines() if line.startswith("ERROR")]
    assert errors == [
        f"ERROR --out {mount / 'evaluation'}: cannot write there: the file system is read-only; choose another --out"
    ]
    assert "Traceback" not in finished.stderr and "scoring" not in finished.stderr
    assert listing(four_epochs) == files


def test_a_failed_write_after_scoring_is_one_line_and_keeps_what_was_written(
    four_epochs: Path,
    demo_root: Path,
    evaluated: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "images").write_text("a file where the report's image folder goes")
    assert run(four_epochs, demo_root, out) == 1
    assert the_error(caplog) == (
        f"cannot write the report {out / 'report.html'} and its images: a file of that name stands where a folder "
        f"is needed. Every file in {out} is whole (new, or the one from before); the scores are in the tables "
        "printed above. Free space or choose another --out, and run again."
    )
    for name in ("scores.json", "scores.csv", "per_image.csv", "selection.json"):
        assert (out / name).read_text() == (evaluated / name).read_text(), name
    assert (out / "metrics_vs_epoch.png").is_file() and not (out / "report.html").exists()
    assert not list(out.glob(".*.tmp")) and (out / "images").read_text().startswith("a file")
    printed = capsys.readouterr().out
    assert "val split" in printed and "Epoch 2 is chosen on the val split" in printed


@pytest.mark.slow
@pytest.mark.small_disk
def test_a_full_disk_after_scoring_keeps_the_tables_written(
    four_epochs: Path, demo_root: Path, evaluated: Path, tmp_path: Path
) -> None:
    mount, copy = tmp_path / "small", tmp_path / "copy"
    command = (
        f"{sys.executable} evaluation/Stain_Evaluation.py --results_dir '{four_epochs}' --dataroot '{demo_root}' "
        f"--out '{mount / 'evaluation'}' --workers 1; status=$?; cp -r '{mount / 'evaluation'}' '{copy}'; exit $status"
    )
    finished = run_on_small_disk(mount, command, size="64k")  # the tables fit (about 30 KB), the plots do not
    assert finished.returncode == 1, finished.stderr
    errors = [line for line in finished.stderr.splitlines() if line.startswith("ERROR")]
    assert errors == [
        f"ERROR cannot write the plots in {mount / 'evaluation'}: the disk is full. Every file in "
        f"{mount / 'evaluation'} is whole (new, or the one from before); the scores are in the tables printed above. "
        "Free space or choose another --out, and run again."
    ]
    assert "Traceback" not in finished.stderr and "Epoch 2 is chosen" in finished.stdout
    for name in ("scores.json", "selection.json"):
        kept = json.loads((copy / name).read_text())
        expected = json.loads((evaluated / name).read_text().replace(str(evaluated), str(mount)))
        assert same_numbers(kept, expected), name  # whole files; floats may differ in the last digits (BLAS threads)
    assert sorted(path.name for path in copy.iterdir()) == [
        "per_image.csv",
        "scores.csv",
        "scores.json",
        "selection.json",
    ]


def test_damaged_test_options_are_one_line_naming_the_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    results = tmp_path / "results"
    results.mkdir()
    options = results / "test_opt.json"
    remedy = "re-run python test.py --name <experiment> --epoch all to write it again, or pass --dataroot (the file is then not read)"
    for content, problem in [
        ('{"dataroot": "datasets/de', "(Unterminated string starting at: line 1 column 14 (char 13))"),
        (b"\xff\xfe\x00garbage", None),
        ('["a list"]', None),
    ]:
        caplog.clear()
        options.write_bytes(content if isinstance(content, bytes) else content.encode())
        assert stain_evaluation.main(["--results_dir", str(results), "--out", str(tmp_path / "out")]) == 1
        message = the_error(caplog)
        assert str(options) in message and message.endswith(remedy)
        if problem:
            assert message == f"cannot read the test options {options} {problem}; {remedy}"
        assert options.read_bytes() == (content if isinstance(content, bytes) else content.encode())
    assert not (tmp_path / "out").exists()


def test_damaged_preparation_settings_are_one_line_naming_the_file(
    four_epochs: Path, demo_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for folder in demo_root.iterdir():
        if folder.is_dir():
            (data / folder.name).symlink_to(folder)
    (data / "preparation.json").write_text('{"normalization": ')
    assert run(four_epochs, data, tmp_path / "out") == 1
    assert the_error(caplog) == (
        f"cannot read the preparation settings {data / 'preparation.json'} (Expecting value: line 1 column 19 "
        f"(char 18)); run the script that prepared {data} again to write it"
    )
    assert (data / "preparation.json").read_text() == '{"normalization": ' and not any((tmp_path / "out").iterdir())


def same_numbers(first: object, second: object) -> bool:
    """Equal JSON values, floats within 1e-9 relative (another thread count rounds sums differently)."""
    if isinstance(first, dict) and isinstance(second, dict):
        return first.keys() == second.keys() and all(same_numbers(first[key], second[key]) for key in first)
    if isinstance(first, list) and isinstance(second, list):
        return len(first) == len(second) and all(same_numbers(a, b) for a, b in zip(first, second, strict=True))
    if isinstance(first, float) and isinstance(second, float):
        return first == pytest.approx(second, rel=1e-9, nan_ok=True)
    return first == second
