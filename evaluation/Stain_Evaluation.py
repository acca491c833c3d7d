"""Score every translated epoch of an experiment for realism and faithfulness, choose one on the
validation split, and report its test numbers beside the baselines.

    python evaluation/Stain_Evaluation.py --results_dir results/demo --dataroot datasets/demo

Reads the ``val_<epoch>`` and ``test_<epoch>`` folders written by ``test.py --epoch all``: each
``<image>_fake_B.png`` with its ``<image>_real_A.png`` and, from ``<dataroot>/<split>A_GT``, its
nucleus mask, paired by name. Every epoch of a split is scored on the same images, those all its
folders hold (a warning names what a folder lacks). Two axes, never averaged into one number:

- realism: how close the colours are to real H&E (``<dataroot>/valB`` or ``testB``), globally and
  region by region (nuclei against real nuclei, the rest against real tissue);
- faithfulness: whether the nuclei of the stain are the mask's (object F1), whether it invents
  nuclei, and whether its lightness follows the input's.

The epoch kept is the most realistic among those that pass the faithfulness guards, chosen on
the validation split; only that epoch is then scored on the test split (when none passes, the
closest one, marked as failing, for comparison). Baselines (gray input,
Beer-Lambert, a quantile lookup table fit on the training folders) and a sanity row (real H&E
tiles that ignore the input, which must fail the guards) are scored on both splits. The stain
model that says which colours are nuclear is estimated from ``<dataroot>/trainB`` (the stain the
model was asked to learn). Writes ``scores.csv``, ``scores.json``, ``per_image.csv``,
``selection.json``, ``metrics_vs_epoch.png``, ``realism_vs_faithfulness.png`` and ``report.html``
into ``--out`` (default ``<results_dir>/evaluation``). ``--compare results/<other>`` (repeatable) shows
another evaluated experiment's chosen epoch beside this one, on the same images and crops.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project's packages, from any working folder

import numpy as np

from data.preparation import SETTINGS_NAME, read_settings
from evaluation import inception, report, scoring, selection
from experiment import SELECTION_FILE, TEST_OPTIONS
from util.arg_types import float_in_range, positive_int
from util.atomic import write_text_atomic
from util.cli import HelpFormatter, exit_quickly, run_script
from util.disk import require_writable_folder, writing
from util.errors import EvaluationError
from util.log import setup_logging
from util.progress import progress_bar
from util.stain import StainEstimationError, StainModel, estimate_stain_model
from util.tensorboard import experiment_of_results, write_evaluation_scores

logger = logging.getLogger("Stain_Evaluation")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: The README's demo run, so that a bare ``python evaluation/Stain_Evaluation.py`` evaluates it.
DEFAULT_RESULTS = PROJECT_ROOT / "results" / "demo"
#: Keys under which a ``preparation.json`` may record the pixel size, in micrometres per pixel.
PIXEL_SIZE_KEYS = ("pixel_size_um", "microns_per_pixel", "mpp", "pixel_size")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter, allow_abbrev=False)
    parser.add_argument(
        "--results_dir", type=Path, default=DEFAULT_RESULTS, help="results/<name> folder written by test.py"
    )
    parser.add_argument(
        "--dataroot",
        type=Path,
        default=None,
        help="dataset folder with valA_GT, valB, testA_GT, testB, trainA, trainB (default: the one test.py used)",
    )
    parser.add_argument(
        "--reference_dir", type=Path, default=None, help="real H&E of the test split (default <dataroot>/testB)"
    )
    parser.add_argument(
        "--val_reference_dir",
        type=Path,
        default=None,
        help="real H&E of the validation split (default <dataroot>/valB)",
    )
    parser.add_argument(
        "--stain_reference",
        type=Path,
        default=None,
        help="real H&E the stain model is estimated from (default <dataroot>/trainB, else the validation "
        "reference, else the test reference, with a note)",
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (default <results_dir>/evaluation)")
    parser.add_argument(
        "--compare",
        type=Path,
        action="append",
        default=[],
        metavar="RESULTS_DIR",
        help="another experiment's results folder, already evaluated (its evaluation/selection.json): the report "
        "shows its chosen epoch's images and scores beside this one's, on the same images; repeat for more",
    )
    parser.add_argument(
        "--crops",
        type=positive_int,
        default=report.CROPS_SHOWN,
        help="crops the report shows (spread evenly over the images sorted by name)",
    )
    guards = parser.add_argument_group("faithfulness guards (an epoch must pass all to be chosen)")
    defaults = selection.Guards()
    guards.add_argument(
        "--guard_f1_margin",
        type=float_in_range(0.0, 1.0, include_minimum=True),
        default=defaults.f1_margin,
        help="nucleus F1 at least the Beer-Lambert baseline's minus this",
    )
    guards.add_argument(
        "--max_invented_area",
        type=float_in_range(0.0, 1.0, include_minimum=True),
        default=defaults.max_invented_area,
        help="invented nucleus area at most this fraction of the image",
    )
    guards.add_argument(
        "--min_structure",
        type=float_in_range(-1.0, 1.0, include_minimum=True),
        default=defaults.min_structure,
        help="structure rank correlation (input vs output lightness) at least this",
    )
    guards.add_argument(
        "--select_by",
        choices=selection.REALISM_CHOICES,
        default=selection.DEFAULT_REALISM,
        help="realism metric that ranks the epochs passing the guards",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=min(8, os.cpu_count() or 1),
        help="processes scoring epochs at the same time (1 = in this process)",
    )
    parser.add_argument(
        "--inception_weights",
        type=Path,
        default=None,
        help=f"{inception.WEIGHTS_NAME} (from {inception.WEIGHTS_URL}): adds FID and KID; without it they are skipped",
    )
    parser.add_argument(
        "--min_inception_images",
        type=positive_int,
        default=inception.MIN_IMAGES,
        help="FID/KID are computed only when both sides have at least this many images",
    )
    parser.add_argument(
        "--gpu_ids", default="auto", help="device of the Inception network: auto, -1 for the CPU, or a GPU index"
    )
    return parser


def resolve_dataroot(results_dir: Path, dataroot: Path | None) -> Path | None:
    """``--dataroot``, or the dataroot test.py recorded in ``test_opt.json``, or None."""
    if dataroot is not None:
        return dataroot
    options = Path(results_dir) / f"{TEST_OPTIONS}.json"
    if not options.is_file():
        return None
    damaged = (
        "re-run python test.py --name <experiment> --epoch all to write it again, or pass --dataroot "
        "(the file is then not read)"
    )
    try:
        recorded = json.loads(options.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise EvaluationError(f"cannot read the test options {options} ({error}); {damaged}") from None
    dataroot_value = recorded.get("dataroot") if isinstance(recorded, dict) else None
    if not isinstance(recorded, dict) or not isinstance(dataroot_value, str | None):
        raise EvaluationError(f"the test options {options} are not what test.py writes; {damaged}")
    if not dataroot_value:
        return None
    path = Path(dataroot_value)
    return path if path.is_absolute() or path.exists() else PROJECT_ROOT / path


def evaluate(args: argparse.Namespace) -> Path:
    """Score, choose and report; return the path of ``report.html``."""
    guards = selection.Guards(args.guard_f1_margin, args.max_invented_area, args.min_structure)
    results_dir = Path(args.results_dir)
    if not results_dir.is_dir():
        raise EvaluationError(
            f"results folder {results_dir} does not exist; run python test.py --name <experiment> --epoch all first"
        )
    dataroot = resolve_dataroot(results_dir, args.dataroot)
    others = [compared_epoch(other, results_dir) for other in args.compare]  # refused before the long scoring
    notes: list[str] = []
    choose_on, val_reference = choice_split(results_dir, dataroot, args.val_reference_dir, notes)
    test_reference = args.reference_dir or (dataroot / "testB" if dataroot else None)
    extractor = None
    if args.inception_weights is not None:  # checked before the long scoring, not after it
        extractor = inception.InceptionFeatures(args.inception_weights, args.gpu_ids)
    folders = scoring.epoch_folders(results_dir, choose_on)
    images = scoring.shared_images(folders)
    if not images.stems:
        raise images.error(choose_on, results_dir)
    out = require_writable_folder(args.out or results_dir / "evaluation", "--out")
    warn(images.warnings(choose_on), notes)
    references = {"val": val_reference, "test": test_reference}
    stain_model = load_stain_model(args.stain_reference, dataroot, references, notes)
    if references[choose_on] is None:
        raise EvaluationError(
            "no real H&E reference: pass --dataroot (with valB and testB folders) or --reference_dir <real H&E tiles>"
        )
    choice = scoring.load_split(
        choose_on, folders, images.stems, scoring.mask_paths(dataroot, choose_on), references[choose_on], stain_model
    )
    fitted = scoring.fit_baselines(dataroot, stain_model, notes)
    rows = score_split(choice, args.workers, notes)
    rows += score_baselines(choice, fitted)
    picked = selection.select(rows, guards, args.select_by)
    notes += picked.notes
    splits = {choose_on: choice}
    test_rows: list[scoring.Row] = []
    label = picked.reported.label if picked.reported else None
    if choose_on == "val" and label is not None:
        test_rows = score_test(results_dir, dataroot, test_reference, stain_model, label, fitted, picked, notes, splits)
    if extractor is not None:
        add_inception_scores(rows + test_rows, extractor, splits, fitted, args.min_inception_images, notes)
    else:
        notes.append(
            f"FID/KID not computed: they need the Inception weights ({inception.WEIGHTS_NAME}); pass --inception_weights PATH."
        )
    for note in notes:
        logger.info("%s", note)

    # The tables go to the console first: a write that fails below then costs no scores.
    print(report.format_table(rows, picked, f"{choose_on} split"))
    if test_rows:
        print()
        print(report.format_table(test_rows, picked, f"test split, epoch {label} and baselines"))
    print(f"\n{picked.verdict()}")
    all_rows = rows + test_rows
    kept = (
        f"Every file in {out} is whole (new, or the one from before); the scores are in the tables printed above. "
        "Free space or choose another --out, and run again."
    )
    with writing(f"the score tables (scores.csv, scores.json, per_image.csv) in {out}", kept):
        report.write_tables(all_rows, picked, out)
    # With a training run of --tensorboard, the per-epoch scores join its curves there.
    write_evaluation_scores(all_rows, experiment_of_results(results_dir))
    with writing(f"the choice {out / SELECTION_FILE}", kept):
        write_selection(out / SELECTION_FILE, picked, stain_model, test_rows, notes)
    with writing(f"the plots in {out}", kept):
        report.plot_metrics(rows, picked, out / "metrics_vs_epoch.png")
        report.plot_axes(rows, picked, out / "realism_vs_faithfulness.png")
    shown = splits.get("test") or splits[choose_on]
    gallery = report.Gallery(
        name=results_dir.resolve().name,
        epoch_folders=scoring.epoch_folders(results_dir, shown.name),
        comparisons=[compare_experiment(*other, shown, all_rows, guards, dataroot) for other in others],
        pixel_size=pixel_sizes(dataroot),
        crops=args.crops,
    )
    with writing(f"the report {out / 'report.html'} and its images", kept):
        page = report.write_html(all_rows, picked, splits, fitted, out, notes, gallery)
    logger.info("report: %s", page)
    return page


def compared_epoch(other: Path, results_dir: Path) -> tuple[Path, str, bool]:
    """The epoch another evaluated experiment reports (``--compare``): its chosen one (True), else its
    closest (False); a clear error when it was not evaluated."""
    other = Path(other)
    record_path = other / "evaluation" / SELECTION_FILE
    evaluate_it = f"evaluate it first: python evaluation/Stain_Evaluation.py --results_dir {other}"
    if other.resolve() == results_dir.resolve():
        raise EvaluationError(f"--compare {other} is the experiment being evaluated; pass another results folder")
    if not record_path.is_file():
        raise EvaluationError(f"--compare {other}: {record_path} does not exist; {evaluate_it}")
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise EvaluationError(f"--compare {other}: cannot read {record_path} ({error}); {evaluate_it}") from None
    label = (record.get("chosen") or record.get("closest")) if isinstance(record, dict) else None
    if not isinstance(label, str):
        raise EvaluationError(f"--compare {other}: {record_path} names no epoch; {evaluate_it}")
    return other, label, bool(record.get("chosen"))


def compare_experiment(
    other: Path,
    label: str,
    chosen: bool,
    split: scoring.SplitData,
    rows: list[scoring.Row],
    guards: selection.Guards,
    dataroot: Path | None,
) -> report.Comparison:
    """Another experiment's reported epoch scored on this run's ``split``: the images both have, with this run's
    masks, reference, stain model and guards, so that its row compares like with like."""
    name = other.resolve().name
    folder = other / f"{split.name}_{label}"
    if not (folder / "images").is_dir():
        rerun = f"python test.py --name {name} --epoch {label} --results_dir {other.parent}"
        return report.Comparison(name, other, label, chosen, None, None, [f"{folder} does not exist; run {rerun}"])
    notes = []
    theirs = resolve_dataroot(other, None)
    if dataroot is not None and theirs is not None and Path(theirs).resolve() != Path(dataroot).resolve():
        notes.append(
            f"it was translated from {theirs}, this run from {dataroot}: images of the same name are taken "
            "to be the same crops."
        )
    have = set(scoring.shared_images([(label, folder)]).stems)
    stems = [stem for stem in split.stems if stem in have]
    if len(stems) < len(split.stems):
        notes.append(
            f"{folder} holds {len(stems)} of this run's {len(split.stems)} {split.name} images; its scores are on "
            "those only."
        )
    samples, skipped = scoring.load_samples(folder, dataclasses.replace(split, stems=stems))
    for reason, skipped_stems in skipped.items():
        if reason != "without a mask":
            notes.append(f"{len(skipped_stems)} of its images were left out ({reason}): {', '.join(skipped_stems[:5])}")
    if not samples:
        notes.append("none of its images could be scored here.")
        return report.Comparison(name, other, label, chosen, folder, None, notes)
    differ = [sample.stem for sample in samples if not np.array_equal(sample.real_A, split.real_A[sample.stem][1])]
    if differ:
        notes.append(
            f"its inputs differ from this run's in {len(differ)} of {len(samples)} images (another intensity rule?); "
            "its structure score reads its own inputs."
        )
    row = scoring.score(label, "epoch", samples, split)
    baseline = next((item for item in rows if item.split == split.name and item.label == scoring.BEER_LAMBERT), None)
    f1_floor = baseline.scores["nucleus_f1"] - guards.f1_margin if baseline is not None else math.nan
    row.failed_guards = selection.failed_guards(row, guards, f1_floor)
    for note in notes:
        logger.warning("--compare %s: %s", other, note)
    return report.Comparison(name, other, label, chosen, folder, row, notes)


def pixel_sizes(dataroot: Path | None) -> report.PixelSize:
    """The micrometres per pixel of the inputs (side A) and of the real H&E (side B) that the dataset's
    ``preparation.json`` records, for the report's scale note; None where it records none."""
    if dataroot is None:
        return report.PixelSize()
    settings = read_settings(dataroot) or {}
    sides = {letter: settings.get(letter) for letter in "AB"}
    if any(isinstance(side, dict) for side in sides.values()):  # make_dataset: each side's own settings
        inputs, reference = (side if isinstance(side, dict) else {} for side in sides.values())
    elif settings.get("command") == "prepare_slide":  # H&E tiles only
        inputs, reference = {}, settings
    else:
        inputs, reference = settings, {}
    return report.PixelSize(_micrometres(inputs), _micrometres(reference), str(Path(dataroot) / SETTINGS_NAME))


def _micrometres(settings: dict) -> float | None:
    for key in PIXEL_SIZE_KEYS:
        value = settings.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
            return float(value)
    return None


def warn(lines: list[str], notes: list[str]) -> None:
    """Log ``lines`` as warnings and keep them for the report."""
    for line in lines:
        logger.warning("%s", line)
    notes.extend(lines)


def choice_split(
    results_dir: Path, dataroot: Path | None, val_reference: Path | None, notes: list[str]
) -> tuple[str, Path | None]:
    """``("val", its reference)`` when the results and the data have a validation split; else the
    documented fallback ``("test", None)`` with a note saying why and how to get one."""
    val_folders = scoring.epoch_folders(results_dir, "val")
    test_folders = scoring.epoch_folders(results_dir, "test")
    if not val_folders and not test_folders:
        raise EvaluationError(
            f"no val_<epoch>/images/*_fake_B.png or test_<epoch>/images/*_fake_B.png in {results_dir}; "
            "run python test.py --name <experiment> --epoch all first"
        )
    reference = val_reference or (dataroot / "valB" if dataroot and (dataroot / "valB").is_dir() else None)
    if val_folders and reference is not None:
        if dataroot is None or not (dataroot / "valA_GT").is_dir():
            notes.append("The validation split has no masks (valA_GT): the nucleus guards cannot be checked on it.")
        return "val", reference
    if not val_folders and dataroot is not None and (dataroot / "valA").is_dir():
        why = f"{results_dir} has no val_<epoch> folders; run python test.py --name <experiment> --epoch all again"
    elif val_folders:
        why = "the dataset has no valB folder of real H&E; pass --val_reference_dir"
    else:
        why = "the dataset has no validation split (valA, valA_GT, valB); rebuild it with a preparation script"
    notes.append(
        f"CHOSEN ON THE TEST SPLIT: {why}. The chosen epoch's test numbers are then optimistic, "
        "because the test data chose it."
    )
    logger.warning("no validation split: %s; the epoch is chosen on the test split", why)
    return "test", None


def load_stain_model(
    explicit: Path | None, dataroot: Path | None, references: dict[str, Path | None], notes: list[str]
) -> StainModel:
    """The stain model estimated from ``explicit``, else ``<dataroot>/trainB``, else the validation reference,
    else (with a note: the rule then saw the test split) the test reference: the first that exists."""
    candidates = (
        [explicit] if explicit is not None else [dataroot / "trainB" if dataroot else None, *references.values()]
    )
    folder = next((path for path in candidates if path is not None and Path(path).is_dir()), None)
    if explicit is None and folder is not None and folder == references.get("test"):
        notes.append(
            "The stain model was estimated from the test H&E (no trainB, no validation split): the nucleus rule "
            "has seen the test split; pass --stain_reference <training H&E tiles> to avoid that."
        )
    if folder is None:
        raise EvaluationError(
            "no real H&E to estimate the stain model from: pass --dataroot (with trainB) or --stain_reference <tiles>"
        )
    tiles, _ = scoring.load_reference(folder, "stain reference")
    try:
        model = estimate_stain_model(tiles, str(folder))
    except StainEstimationError as error:
        raise EvaluationError(f"{error}; pass --stain_reference <real H&E tiles>") from None
    notes.append(
        f"Stain model from {model.source}: nuclear where hematoxylin - 3 x |residual| > "
        f"{model.nucleus_threshold:.3f} OD."
    )
    return model


def score_split(split: scoring.SplitData, workers: int, notes: list[str]) -> list[scoring.Row]:
    """The rows of every epoch, all scored on the same images, with a progress bar and what was skipped logged.

    ``split.stems`` are the images every folder holds; an image one epoch cannot score (its
    ``fake_B`` of another size than the input) is then left out of every epoch, which are scored
    again without it, so that no epoch's scores change because of one file.
    """
    rows = dict(_scored_epochs(split, split.folders, workers))
    scored = {label: {str(item["image"]) for item in row.per_image} if row else set() for label, row in rows.items()}
    anywhere, kept = set().union(*scored.values()), set.intersection(*scored.values())
    short = {label: sorted(anywhere - images) for label, images in scored.items() if images != anywhere}
    if not kept:
        details = "; ".join(f"epoch {label} could not score {len(stems)}" for label, stems in short.items())
        rerun = ""
        if short:
            rerun = f"; re-run python test.py --name <experiment> --epoch <N> for {scoring.epochs_named(list(short))}"
        raise EvaluationError(
            f"no {split.name} image could be scored in every epoch folder in {split.folders[0][1].parent} "
            f"({details or 'see the warnings above'}){rerun}"
        )
    if short:
        warn(
            [
                f"epoch {label} ({split.name}) could not score {len(stems)} images the other epochs scored "
                f"({', '.join(stems[:5])}; see above); every epoch is scored on the {len(kept)} images all epochs "
                "could score"
                for label, stems in short.items()
            ],
            notes,
        )
        split.stems = [stem for stem in split.stems if stem in kept]
        again = [(label, folder) for label, folder in split.folders if scored[label] != kept]
        rows.update(_scored_epochs(split, again, workers))
    return [row for row in rows.values() if row is not None]


def _scored_epochs(
    split: scoring.SplitData, folders: list[tuple[str, Path]], workers: int
) -> Iterator[tuple[str, scoring.Row | None]]:
    """Score ``folders`` of ``split`` with a progress bar, logging the images skipped in each."""
    epochs = scoring.score_epochs(folders, split, workers)
    desc = f"scoring {split.name} epochs"
    for label, row, skipped in progress_bar(epochs, total=len(folders), desc=desc, unit="epoch"):
        for reason, stems in skipped.items():
            what = (
                f"images {reason}, scored without the nucleus metrics"
                if reason == "without a mask"
                else f"images skipped ({reason})"
            )
            logger.warning("%s epoch %s: %d %s: %s", split.name, label, len(stems), what, ", ".join(stems[:10]))
        yield label, row


def score_baselines(split: scoring.SplitData, fitted: scoring.FittedBaselines) -> list[scoring.Row]:
    """The baseline and sanity rows of ``split``, on the inputs and masks of its first epoch folder with images."""
    samples = next((found for _, folder in split.folders if (found := scoring.load_samples(folder, split)[0])), [])
    if not samples:
        raise EvaluationError(f"no image of the {split.name} epochs could be scored, so neither can the baselines")
    return [
        scoring.score(label, "sanity" if label == scoring.REAL_TILES else "baseline", colorized, split)
        for label, colorized in fitted.colorizations(samples).items()
    ]


def score_test(
    results_dir: Path,
    dataroot: Path | None,
    reference: Path | None,
    stain_model: StainModel,
    label: str,
    fitted: scoring.FittedBaselines,
    picked: selection.Selection,
    notes: list[str],
    splits: dict[str, scoring.SplitData],
) -> list[scoring.Row]:
    """The chosen epoch and the baselines on the test split (empty, with a note, when it cannot be scored)."""
    every = scoring.epoch_folders(results_dir, "test")
    folders = [item for item in every if item[0] == label]
    if not folders or reference is None:
        notes.append(f"No test_{label} folder or no test reference (testB): the chosen epoch has no test numbers.")
        return []
    images = scoring.shared_images(folders, every)
    if not images.stems:
        notes.append(
            f"test_{label} holds no image with both its fake_B and real_A: the chosen epoch has no test numbers; "
            f"re-run python test.py --name <experiment> --epoch {label}."
        )
        return []
    warn(images.warnings("test"), notes)
    masks = scoring.mask_paths(dataroot, "test")
    split = scoring.load_split("test", folders, images.stems, masks, reference, stain_model)
    splits["test"] = split
    row, _ = scoring.score_epoch(label, folders[0][1], split)
    if row is None:
        notes.append(f"No image of test_{label} could be scored: the chosen epoch has no test numbers.")
        return []
    rows = [row, *score_baselines(split, fitted)]
    selection.mark_guards(rows, picked.guards)
    return rows


def add_inception_scores(
    rows: list[scoring.Row],
    extractor: inception.InceptionFeatures,
    splits: dict[str, scoring.SplitData],
    fitted: scoring.FittedBaselines,
    min_images: int,
    notes: list[str],
) -> None:
    """Fill ``fid`` and ``kid`` of every row whose split has enough images on both sides; note the others."""
    for name, split in splits.items():
        split_rows = [row for row in rows if row.split == name]
        samples, _ = scoring.load_samples(split.folders[0][1], split)
        count = min(len(samples), len(split.reference))
        if count < min_images:
            notes.append(
                f"FID/KID not computed on the {name} split: {len(samples)} colorized and {len(split.reference)} real "
                f"images, at least {min_images} each needed (--min_inception_images)."
            )
            continue
        reference = inception.FeatureSummary.of(extractor(split.reference, f"Inception: {name} reference"))
        baseline_samples = fitted.colorizations(samples)
        folder_of = dict(split.folders)
        for row in progress_bar(split_rows, desc=f"FID/KID ({name})", unit="set"):
            images = (
                baseline_samples[row.label]
                if not row.is_epoch
                else scoring.load_samples(folder_of[row.label], split)[0]
            )
            features = extractor([sample.fake_B for sample in images], f"Inception: {row.label}")
            row.scores.update(inception.inception_distances(inception.FeatureSummary.of(features), reference))


def write_selection(
    path: Path, picked: selection.Selection, stain_model: StainModel, test_rows: list[scoring.Row], notes: list[str]
) -> None:
    """``selection.json``: the chosen epoch (what ``--epoch best`` loads), how it was chosen, and its test scores."""
    record = {
        "chosen": picked.chosen.label if picked.chosen else None,
        "closest": picked.closest.label if picked.closest else None,
        "chosen_on": picked.split,
        "realism_metric": picked.realism_metric,
        "guards": picked.guards.to_dict(),
        "nucleus_f1_floor": None if not np.isfinite(picked.f1_floor) else picked.f1_floor,
        "stain_model": stain_model.to_dict(),
        "test_epoch": next((row.label for row in test_rows if row.is_epoch), None),
        "test_scores": next(
            ({k: report.json_value(v) for k, v in row.scores.items()} for row in test_rows if row.is_epoch), None
        ),
        "notes": notes,
    }
    write_text_atomic(path, json.dumps(record, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: 0 on success, 1 on a problem the user can fix."""
    setup_logging()
    args = build_parser().parse_args(argv)
    return run_script(lambda: evaluate(args))


if __name__ == "__main__":
    exit_quickly(main())
