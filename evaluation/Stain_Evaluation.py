"""Score every tested epoch of an experiment against real H&E, beside two baselines, and pick the best epoch.

    python evaluation/Stain_Evaluation.py --results_dir results/demo --dataroot datasets/demo

Reads the ``test_<epoch>`` folders written by ``test.py --epoch all``: each ``<image>_fake_B.png``
with its ``<image>_real_A.png`` and, when ``<dataroot>/testA_GT`` has it, the nucleus mask. The
real target distribution is ``<dataroot>/testB`` (or ``--reference_dir``). Two baselines computed
from the inputs alone are scored the same way: the gray input itself, and the Beer-Lambert
false-colour H&E of Giacomelli et al. 2016. Writes ``scores.csv``, ``scores.json``,
``per_image.csv``, ``metrics_vs_epoch.png`` and ``report.html`` into ``--out``
(default ``<results_dir>/evaluation``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project's packages, from any working folder

import numpy as np

from evaluation import inception, metrics, report, scoring
from util.arg_types import positive_int
from util.cli import run_script
from util.errors import EvaluationError
from util.log import setup_logging
from util.progress import progress_bar

logger = logging.getLogger("Stain_Evaluation")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: The README's demo run, so that a bare ``python evaluation/Stain_Evaluation.py`` evaluates it.
DEFAULT_RESULTS = PROJECT_ROOT / "results" / "demo"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument(
        "--results_dir", type=Path, default=DEFAULT_RESULTS, help="results/<name> folder written by test.py"
    )
    parser.add_argument(
        "--dataroot",
        type=Path,
        default=None,
        help="dataset folder with testA_GT and testB (default: the one test.py used, from test_opt.json)",
    )
    parser.add_argument(
        "--reference_dir", type=Path, default=None, help="real H&E tiles to compare with (default <dataroot>/testB)"
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (default <results_dir>/evaluation)")
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
        "--gpu_ids", default="auto", help="device of the Inception network: auto, -1 for the CPU, or a GPU index"
    )
    parser.add_argument(
        "--weights",
        default="",
        help="composite weights as name=value pairs, e.g. 'dice=3,ssim=0.5'; defaults: "
        + ", ".join(f"{name}={value:g}" for name, value in scoring.DEFAULT_WEIGHTS.items()),
    )
    return parser


def parse_weights(text: str) -> dict[str, float]:
    """``'dice=3,ssim=0.5'`` on top of the default weights; unknown names or bad numbers are refused."""
    weights = dict(scoring.DEFAULT_WEIGHTS)
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        if name not in weights:
            raise EvaluationError(f"--weights: unknown metric {name!r}; valid names: {', '.join(scoring.METRIC_NAMES)}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise EvaluationError(f"--weights: {item!r} is not name=number") from None
        if weights[name] < 0:
            raise EvaluationError(f"--weights: {name} must be >= 0, got {value}")
    return weights


def resolve_dataroot(results_dir: Path, dataroot: Path | None) -> Path | None:
    """``--dataroot``, or the dataroot test.py recorded in ``test_opt.json``, or None."""
    if dataroot is not None:
        return dataroot
    options = Path(results_dir) / "test_opt.json"
    if options.is_file():
        recorded = json.loads(options.read_text(encoding="utf-8")).get("dataroot")
        if recorded:
            path = Path(recorded)
            return path if path.is_absolute() or path.exists() else PROJECT_ROOT / path
    return None


def evaluate(args: argparse.Namespace) -> Path:
    """Score, rank and report; return the path of ``report.html``."""
    weights = parse_weights(args.weights)
    results_dir = Path(args.results_dir)
    folders = scoring.epoch_folders(results_dir)
    dataroot = resolve_dataroot(results_dir, args.dataroot)
    reference_dir = args.reference_dir or (dataroot / "testB" if dataroot else None)
    if reference_dir is None:
        raise EvaluationError(
            "no real H&E reference: pass --dataroot (with a testB folder) or --reference_dir <real H&E tiles>"
        )
    reference = scoring.load_reference(reference_dir)
    extractor = None
    if args.inception_weights is not None:  # checked before the long scoring, not after it
        extractor = inception.InceptionFeatures(args.inception_weights, args.gpu_ids)
    inputs = scoring.load_test_inputs(folders[0][1], scoring.mask_paths(dataroot))
    notes = [f"Reference: {len(reference)} real H&E images from {reference_dir}."]
    if not inputs.masks:
        notes.append("No testA_GT masks found: nuclei Dice and IoU are not computed.")
    if extractor is None:
        notes.append(
            f"FID/KID not computed: they need the Inception weights ({inception.WEIGHTS_NAME}); "
            "pass --inception_weights PATH."
        )
    for note in notes:
        logger.info("%s", note)

    folder_of = dict(folders)
    reference_summary = metrics.summarise_colours(reference)
    rows = score_epochs(folders, inputs, reference_summary, args.workers)
    first_samples, _ = scoring.load_samples(folder_of[rows[0].label], inputs)
    baseline_samples = {
        name: scoring.baseline_samples(first_samples, colorize) for name, colorize in scoring.BASELINES.items()
    }
    rows += [scoring.score(name, samples, reference_summary, True) for name, samples in baseline_samples.items()]
    if extractor is not None:
        add_inception_scores(rows, extractor, reference, folder_of, inputs, baseline_samples)

    scoring.rank(rows, weights)
    best = scoring.best_epoch(rows)
    out = Path(args.out) if args.out else results_dir / "evaluation"
    out.mkdir(parents=True, exist_ok=True)
    report.write_tables(rows, best, out)
    report.plot_metrics(rows, best, out / "metrics_vs_epoch.png")
    best_samples, _ = scoring.load_samples(folder_of[best.label], inputs)
    page = report.write_html(rows, best, best_samples, reference, out, notes)

    print(report.format_table(rows, best))
    winners = scoring.metric_winners(rows)
    print("\nbest per metric: " + ", ".join(f"{name}: {label}" for name, label in winners.items()))
    print(f"\nbest epoch: {best.label} (composite rank {best.composite:.2f}). {report.verdict(rows, best)}")
    logger.info("report: %s", page)
    return page


def score_epochs(
    folders: list[tuple[str, Path]], inputs: scoring.SharedInputs, reference: metrics.ColourSummary, workers: int
) -> list[scoring.Row]:
    """The rows of every epoch that has an image to score, with a progress bar and what was skipped logged."""
    rows = []
    epochs = scoring.score_epochs(folders, inputs, reference, workers)
    for label, row, skipped in progress_bar(epochs, total=len(folders), desc="scoring epochs", unit="epoch"):
        for reason, stems in skipped.items():
            what = (
                f"images {reason}, scored without Dice/IoU"
                if reason == "without a mask"
                else f"images skipped ({reason})"
            )
            logger.warning("epoch %s: %d %s: %s", label, len(stems), what, ", ".join(stems[:10]))
        if row is None:
            logger.warning("epoch %s: no image could be scored; left out", label)
        else:
            rows.append(row)
    if not rows:
        raise EvaluationError(f"no epoch in {folders[0][1].parent} has an image that could be scored")
    return rows


def add_inception_scores(
    rows: list[scoring.Row],
    extractor: inception.InceptionFeatures,
    reference: list[np.ndarray],
    folder_of: dict[str, Path],
    inputs: scoring.SharedInputs,
    baseline_samples: dict[str, list[scoring.Sample]],
) -> None:
    """Fill ``fid`` and ``kid`` of every row: Inception features of its colorizations against the reference's.

    A baseline's images are in memory; an epoch's are read again from its folder.
    """
    reference_features = inception.FeatureSummary.of(extractor(reference, "Inception: reference"))
    for row in progress_bar(rows, desc="FID/KID", unit="set"):
        if row.is_baseline:
            samples = baseline_samples[row.label]
        else:
            samples, _ = scoring.load_samples(folder_of[row.label], inputs)
        features = extractor([sample.fake_B for sample in samples], f"Inception: {row.label}")
        row.scores.update(inception.inception_distances(inception.FeatureSummary.of(features), reference_features))


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: 0 on success, 1 on a problem the user can fix."""
    setup_logging()
    args = build_parser().parse_args(argv)
    return run_script(lambda: evaluate(args))


if __name__ == "__main__":
    sys.exit(main())
