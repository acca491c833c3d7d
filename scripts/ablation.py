"""Train, test and evaluate the demo configuration of cycle_gan, seg_cycle_gan, seg_cycle_gan with each
loss off, and the one-sided cut and seg_cut, for several seeds; write the table and the image grid that
README.md and docs/results.md show.

    python scripts/ablation.py [--seeds 0 1] [--configurations all] [--jobs 2] [--threads 1]

Every number of the README's results table comes from this command (``make results``). Each run
is ``train.py`` with the demo flags of the Makefile (ResNet-6, 16 filters, 20 epochs of the demo
data), ``test.py --epoch all`` and ``evaluation/Stain_Evaluation.py``, which chooses each run's
epoch on the validation split; the table gives the chosen epoch's test-split numbers, the mean
over seeds and the range of the seeds. A run whose evaluation is already there is not redone
(``--force`` redoes it). Runs go to ``checkpoints/ablation/`` and ``results/ablation/``; the table
to ``docs/results.md`` and ``docs/results.json``, the grid to ``docs/images/ablation_grid.jpg``, the
first ``seg_cycle_gan`` run's stain of the whole demo frame to ``docs/images/colorized_frame.jpg``,
and the table into README.md between its ``results`` markers.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project's packages, from any working folder

from data.image_io import read_array
from evaluation.scoring import METRIC_BY_NAME
from experiment import SELECTION_FILE
from util.arg_types import positive_int
from util.atomic import atomic_path, write_text_atomic
from util.cli import HelpFormatter, run_script
from util.errors import CellCycleGANError
from util.log import setup_logging

logger = logging.getLogger("ablation")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: The Makefile's demo model and schedule (tests/scripts/test_ablation.py checks they agree).
DEMO_FLAGS = (
    "--netG", "resnet_6blocks", "--ngf", "16", "--ndf", "16",
    "--n_epochs", "10", "--n_epochs_decay", "10", "--save_epoch_freq", "5",
)  # fmt: skip
#: Each configuration's own flags.
CONFIGURATIONS = {
    "cycle_gan": ("--model", "cycle_gan"),
    "seg_cycle_gan": ("--model", "seg_cycle_gan"),
    "seg_cycle_gan without GT": ("--model", "seg_cycle_gan", "--lambda_gt", "0"),
    "seg_cycle_gan without structure": ("--model", "seg_cycle_gan", "--lambda_cv", "0"),
    "seg_cycle_gan without colour": ("--model", "seg_cycle_gan", "--lambda_color", "0"),
    "cut": ("--model", "cut"),
    "seg_cut": ("--model", "seg_cut"),
}
#: The table's columns: the realism axis, then the faithfulness axis.
COLUMNS = ("lab_swd_regions", "lab_swd", "hsv_correlation", "nucleus_f1", "invented_area", "structure_spearman")
BASELINES = ("baseline: gray input", "baseline: Beer-Lambert", "baseline: lookup table")
#: The splits reported: the test split (the numbers to quote) and the validation split (where the choice is made).
SPLITS = ("test", "val")
README_BEGIN, README_END = "<!-- results:begin -->", "<!-- results:end -->"


class AblationError(CellCycleGANError):
    """A run of the ablation failed."""


@dataclass(frozen=True)
class Run:
    """One configuration at one seed, and where its files go."""

    configuration: str
    seed: int
    checkpoints: Path
    results: Path

    @property
    def name(self) -> str:
        return f"{self.configuration.replace(' ', '_')}_seed{self.seed}"

    @property
    def evaluation(self) -> Path:
        return self.results / self.name / "evaluation"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter, allow_abbrev=False)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds of every configuration")
    parser.add_argument(
        "--configurations", nargs="+", choices=(*CONFIGURATIONS, "all"), default=["all"], help="which to run"
    )
    parser.add_argument("--dataroot", type=Path, default=PROJECT_ROOT / "datasets" / "demo", help="the demo dataset")
    parser.add_argument("--checkpoints_dir", type=Path, default=PROJECT_ROOT / "checkpoints" / "ablation")
    parser.add_argument("--results_dir", type=Path, default=PROJECT_ROOT / "results" / "ablation")
    parser.add_argument("--docs", type=Path, default=PROJECT_ROOT / "docs", help="where results.md and the grid go")
    parser.add_argument(
        "--readme", type=Path, default=PROJECT_ROOT / "README.md", help="README whose table is replaced"
    )
    parser.add_argument("--jobs", type=positive_int, default=2, help="runs at the same time")
    parser.add_argument("--threads", type=positive_int, default=1, help="CPU threads of each run (OMP_NUM_THREADS)")
    parser.add_argument("--force", action="store_true", help="delete every run's files and train it again")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more train.py flags, for every run")
    return parser


def run_one(run: Run, dataroot: Path, threads: int, force: bool, extra: Sequence[str]) -> Run:
    """Train, test and evaluate ``run`` (each step a subprocess), unless its evaluation exists."""
    if force:  # start over: a finished run would otherwise only be continued
        for folder in (run.checkpoints / run.name, run.results / run.name):
            shutil.rmtree(folder, ignore_errors=True)
        (run.results / f"{run.name}.log").unlink(missing_ok=True)
    elif (run.evaluation / SELECTION_FILE).is_file():
        logger.info("%s: evaluated already", run.name)
        return run
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    experiment = ["--name", run.name, "--checkpoints_dir", str(run.checkpoints)]
    resume = ["--continue_train"] if (run.checkpoints / run.name / "latest_net_G_A.pth").is_file() else []
    steps = [
        ["train.py", "--dataroot", str(dataroot), *experiment, *DEMO_FLAGS, *CONFIGURATIONS[run.configuration],
         "--seed", str(run.seed), "--num_threads", "0", *extra, *resume],
        ["test.py", *experiment, "--results_dir", str(run.results), "--epoch", "all"],
        ["evaluation/Stain_Evaluation.py", "--results_dir", str(run.results / run.name), "--dataroot", str(dataroot),
         "--workers", "1"],
    ]  # fmt: skip
    log = run.results / f"{run.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as output:
        for step in steps:
            logger.info("%s: %s", run.name, step[0])
            command = [sys.executable, str(PROJECT_ROOT / step[0]), *step[1:]]
            status = subprocess.run(command, cwd=PROJECT_ROOT, env=environment, stdout=output, stderr=output)
            if status.returncode != 0:
                raise AblationError(f"{run.name}: {step[0]} failed (exit {status.returncode}); see {log}")
    return run


@dataclass
class Outcome:
    """What the evaluation of one run says: the reported epoch, whether it passed, and by split
    (``val``, ``test``) its scores and the baselines'."""

    run: Run
    epoch: str | None
    passed: bool
    scores: dict[str, dict[str, float]]
    baselines: dict[str, dict[str, dict[str, float]]]


def read_outcome(run: Run) -> Outcome:
    selection = json.loads((run.evaluation / SELECTION_FILE).read_text(encoding="utf-8"))
    rows = json.loads((run.evaluation / "scores.json").read_text(encoding="utf-8"))
    epoch = selection.get("test_epoch")
    scores, baselines = {}, {}
    for split in SPLITS:
        by_label = {row["label"]: row for row in rows if row["split"] == split}
        scores[split] = {name: _number(by_label[epoch][name]) for name in COLUMNS} if epoch in by_label else {}
        baselines[split] = {
            label: {name: _number(by_label[label][name]) for name in COLUMNS}
            for label in BASELINES
            if label in by_label
        }
    return Outcome(run, epoch, selection.get("chosen") is not None, scores, baselines)


def _number(value: object) -> float:
    return math.nan if value is None else float(value)


def summarize(outcomes: list[Outcome], split: str) -> list[dict[str, object]]:
    """One record per configuration on ``split`` (mean and range over seeds), then the baselines of the first run."""
    records = []
    for configuration in dict.fromkeys(outcome.run.configuration for outcome in outcomes):
        mine = [outcome for outcome in outcomes if outcome.run.configuration == configuration]
        record: dict[str, object] = {
            "configuration": configuration,
            "seeds": [outcome.run.seed for outcome in mine],
            "epochs": [outcome.epoch for outcome in mine],
            "passed": [outcome.passed for outcome in mine],
        }
        for name in COLUMNS:
            values = np.array([outcome.scores[split].get(name, math.nan) for outcome in mine], dtype=float)
            finite = values[np.isfinite(values)]
            record[name] = {
                "mean": float(finite.mean()) if len(finite) else None,
                "min": float(finite.min()) if len(finite) else None,
                "max": float(finite.max()) if len(finite) else None,
                "per_seed": [None if math.isnan(value) else float(value) for value in values],
            }
        records.append(record)
    baselines = outcomes[0].baselines[split] if outcomes else {}
    for label, scores in baselines.items():
        records.append({"configuration": label, **{name: {"mean": scores[name]} for name in COLUMNS}})
    return records


def markdown_table(records: list[dict[str, object]]) -> str:
    """The results as a Markdown table: mean over seeds with the seeds' range in brackets."""
    header = ["", "epochs (guards)", *[f"{METRIC_BY_NAME[name].title} {_arrow(name)}" for name in COLUMNS]]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for record in records:
        cells = [f"`{record['configuration']}`" if "epochs" in record else str(record["configuration"])]
        if "epochs" in record:
            cells.append(
                ", ".join(
                    f"{epoch} ({'pass' if ok else 'FAIL'})"
                    for epoch, ok in zip(record["epochs"], record["passed"], strict=True)
                )
            )
        else:
            cells.append("")
        for name in COLUMNS:
            value = record[name]
            mean = value.get("mean")
            cell = "-" if mean is None else f"{mean:.3f}" if abs(mean) < 10 else f"{mean:.1f}"
            if value.get("min") is not None and len(value.get("per_seed", [])) > 1:
                cell += f" ({value['min']:.3f}-{value['max']:.3f})"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _arrow(name: str) -> str:
    return "↑" if METRIC_BY_NAME[name].higher_is_better else "↓"


def image_grid(outcomes: list[Outcome], dataroot: Path, path: Path, crops: int = 3) -> Path:
    """Test crops as rows; columns: input, mask, each configuration's reported epoch (first seed), the
    lookup-table baseline, and a real H&E test tile (not paired: for colour)."""
    first = {}
    for outcome in outcomes:
        first.setdefault(outcome.run.configuration, outcome)
    stems = sorted(path.stem for path in (dataroot / "testA").glob("*.png"))[:crops]
    references = sorted((dataroot / "testB").glob("*.png"))
    columns = ["input", "mask", *first, "lookup table", "real H&E (test)"]
    figure = Figure(figsize=(1.9 * len(columns), 2.0 * len(stems) + 0.5))
    axes = figure.subplots(len(stems), len(columns), squeeze=False)
    for row, stem in enumerate(stems):
        images = [read_array(dataroot / "testA" / f"{stem}.png"), read_array(dataroot / "testA_GT" / f"{stem}.png")]
        for outcome in first.values():
            folder = outcome.run.results / outcome.run.name / f"test_{outcome.epoch}" / "images"
            images.append(read_array(folder / f"{stem}_fake_B.png"))
        images_folder = first[next(iter(first))].run.evaluation / "images"
        # The report's layout (images/test/<crop>/lookup_table.png), or its earlier flat one.
        candidates = (
            images_folder / "test" / stem / "lookup_table.png",
            images_folder / f"test_{stem}_lookup_table.png",
        )
        lookup_file = next((candidate for candidate in candidates if candidate.is_file()), None)
        images.append(read_array(lookup_file) if lookup_file else np.zeros((128, 128, 3), np.uint8))
        images.append(read_array(references[row % len(references)]))
        for column, image in enumerate(images):
            axis = axes[row, column]
            axis.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                title = columns[column]
                outcome = first.get(title)
                if outcome is not None:
                    title = f"{title.replace('seg_cycle_gan ', '')}\nepoch {outcome.epoch}{'' if outcome.passed else ' (fails)'}"
                axis.set_title(title, fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100, format="jpg", pil_kwargs={"quality": 88})
    return path


def colorized_frame(outcome: Outcome, path: Path) -> Path:
    """The full demo fluorescence frame beside ``outcome``'s stain of it (``colorize.py --preview``), as a JPEG."""
    frame = PROJECT_ROOT / "datasets" / "sources" / "fluo_nuclei_dsb2018" / "image.tif"
    output = outcome.run.results / outcome.run.name / "colorized_frame"
    command = [
        sys.executable, str(PROJECT_ROOT / "colorize.py"), "--name", outcome.run.name,
        "--checkpoints_dir", str(outcome.run.checkpoints), "--epoch", str(outcome.epoch), "--input", str(frame),
        "--output", str(output), "--preview", "--overwrite",
    ]  # fmt: skip
    status = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
    if status.returncode != 0:
        raise AblationError(f"colorize.py failed on {frame}: {status.stderr.strip().splitlines()[-1:]}")
    preview = read_array(output / f"{frame.stem}_preview.png")
    with atomic_path(path) as temporary:
        Image.fromarray(preview).save(temporary, format="JPEG", quality=88)
    return path


def write_documents(records: dict[str, list[dict[str, object]]], args: argparse.Namespace, grid: Path) -> None:
    """docs/results.md and .json, and the README's tables between its markers."""
    seeds = ", ".join(str(seed) for seed in args.seeds)
    provenance = (
        f"Regenerated by `python scripts/ablation.py` (`make results`) on {datetime.now(UTC):%Y-%m-%d}: "
        f"{platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}, seeds {seeds}, "
        f"{args.threads} thread(s) per run. Demo data: train, validation and test crops of domain A are disjoint "
        "regions of one fluorescence image (not independent images); the validation H&E is a region of the "
        "training H&E image, the test H&E a second, independent image. Each run's epoch is chosen on the "
        "validation split. Mean over the seeds, their range in brackets; FAIL: no epoch passed the faithfulness "
        "guards, and the closest one is shown."
    )
    tables = (
        f"**Test split** (the numbers to quote):\n\n{markdown_table(records['test'])}\n\n"
        f"**Validation split** (where each run's epoch was chosen; its H&E is the training image's):\n\n"
        f"{markdown_table(records['val'])}"
    )
    relative_grid = grid.relative_to(args.docs).as_posix()
    document = "\n\n".join(
        [
            "# Results on the demo data",
            provenance,
            tables,
            f"![Test crops: input, mask, each configuration, lookup table, real H&E]({relative_grid})",
            "Columns: see the evaluation section of the README. Per-run reports: "
            "`results/ablation/<run>/evaluation/report.html`.",
        ]
    )
    write_text_atomic(args.docs / "results.md", document + "\n")
    write_text_atomic(args.docs / "results.json", json.dumps(records, indent=2) + "\n")
    readme = args.readme.read_text(encoding="utf-8")
    if README_BEGIN in readme and README_END in readme:
        before, rest = readme.split(README_BEGIN, 1)
        _, after = rest.split(README_END, 1)
        image = (Path("docs") / relative_grid).as_posix()
        block = (
            f"{README_BEGIN}\n{provenance}\n\n{tables}\n\n![Test crops of each configuration]({image})\n{README_END}"
        )
        write_text_atomic(args.readme, before + block + after)
    else:
        logger.warning("%s has no %s ... %s markers: its table was not replaced", args.readme, README_BEGIN, README_END)


def ablation(args: argparse.Namespace) -> None:
    configurations = list(CONFIGURATIONS) if "all" in args.configurations else args.configurations
    if not (args.dataroot / "valA").is_dir():
        raise AblationError(
            f"{args.dataroot} has no validation split; build it with python scripts/make_demo_dataset.py --overwrite"
        )
    runs = [
        Run(configuration, seed, args.checkpoints_dir, args.results_dir)
        for configuration in configurations
        for seed in args.seeds
    ]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        finished = list(pool.map(lambda run: run_one(run, args.dataroot, args.threads, args.force, args.extra), runs))
    outcomes = [read_outcome(run) for run in finished]
    records = {split: summarize(outcomes, split) for split in SPLITS}
    grid = image_grid(outcomes, args.dataroot, args.docs / "images" / "ablation_grid.jpg")
    seg_outcome = next((outcome for outcome in outcomes if outcome.run.configuration == "seg_cycle_gan"), None)
    if seg_outcome is not None and seg_outcome.epoch is not None:
        colorized_frame(seg_outcome, args.docs / "images" / "colorized_frame.jpg")
    write_documents(records, args, grid)
    print(markdown_table(records["test"]))
    logger.info("written: %s, %s, %s", args.docs / "results.md", grid, args.readme)


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    args = build_parser().parse_args(argv)
    return run_script(lambda: ablation(args))


if __name__ == "__main__":
    sys.exit(main())
