"""Bundle a trained, evaluated generator with the project, so that colorize.py can use it without training.

    python scripts/bundle_model.py --name demo_pretrained --dataroot datasets/demo \
        --output models/pretrained/demo_pretrained

Takes the epoch ``evaluation/Stain_Evaluation.py`` chose for ``checkpoints/<name>`` (refused when no
epoch passed its faithfulness guards) and writes into ``--output``, replacing it only once complete:

- ``<epoch>_net_G_A.pth``: that epoch's ``G_A`` with its stored architecture (colorize.py loads it
  for ``--epoch latest``, the default, as for ``--epoch <epoch>`` and ``--epoch best``);
- ``train_opt.json``: the training options; ``preparation.json``: the intensity rule of the training
  data (``--dataroot``), which colorize.py applies to raw frames;
- ``evaluation/selection.json`` and ``evaluation/scores.csv``: the evaluation's choice and scores;
- ``model.json`` (for programs: a summary line colorize.py logs, the epoch, the architecture, the
  test scores beside the baselines, the versions) and ``README.md`` (for people: what the model was
  trained on, its scores, what it is good for and what not).

``make pretrained`` trains the demo configuration, tests and evaluates every saved epoch, then runs this.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import platform
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project's packages, from any working folder

from data.preparation import SETTINGS_NAME, read_settings, staged_output
from experiment import SELECTION_FILE, Experiment, read_json
from models import checkpoint
from util.atomic import write_text_atomic
from util.cli import HelpFormatter, run_script
from util.errors import CheckpointError, DatasetError, EvaluationError
from util.log import setup_logging

logger = logging.getLogger("bundle_model")

#: The scores shown in the model card: (metric, its meaning, which way is better).
CARD_METRICS = (
    ("nucleus_f1", "nuclei stained where the mask has them (object F1)", "higher"),
    ("invented_area", "nucleus stain where the mask has none (fraction of the image)", "lower"),
    ("structure_spearman", "input lightness kept (rank correlation)", "higher"),
    ("lab_swd_regions", "colour distance from real H&E, nuclei and tissue apart (CIELAB)", "lower"),
    ("lab_swd", "colour distance from real H&E, all pixels (CIELAB)", "lower"),
)
#: The test rows shown beside the model's.
CARD_BASELINES = ("baseline: Beer-Lambert", "baseline: lookup table", "baseline: gray input")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter, allow_abbrev=False)
    parser.add_argument("--name", required=True, help="experiment to bundle: checkpoints/<name>")
    parser.add_argument("--checkpoints_dir", type=Path, default=Path("checkpoints"), help="where experiments are")
    parser.add_argument("--results_dir", type=Path, default=Path("results"), help="where its evaluation is")
    parser.add_argument("--dataroot", type=Path, required=True, help="the dataset it was trained on")
    parser.add_argument("--output", type=Path, required=True, help="the bundle folder to (re)write")
    return parser


def bundle(args: argparse.Namespace) -> Path:
    """Write the bundle (see the module docstring); return its folder."""
    experiment = Experiment(args.checkpoints_dir, args.name)
    evaluation = args.results_dir / args.name / "evaluation"
    record_file = evaluation / SELECTION_FILE
    selection = read_json(record_file, "run evaluation/Stain_Evaluation.py again") if record_file.is_file() else None
    if not isinstance(selection, dict):
        raise EvaluationError(
            f"{evaluation / SELECTION_FILE} is missing: evaluate the experiment first (evaluation/Stain_Evaluation.py "
            f"--results_dir {args.results_dir / args.name})"
        )
    epoch = selection.get("chosen")
    if not epoch:
        raise EvaluationError(
            f"no epoch of {args.name} passed the evaluation's faithfulness guards (closest: {selection.get('closest')}); "
            "a model that fails them is not bundled"
        )
    network_file = experiment.require_checkpoint(str(epoch))
    architecture = checkpoint.read_architecture(network_file)
    if architecture is None:
        raise CheckpointError(f"{network_file} holds bare weights without their architecture")
    settings = read_settings(args.dataroot)
    if not settings:
        raise DatasetError(f"{args.dataroot / SETTINGS_NAME} is missing: the bundle needs the data's intensity rule")
    options = experiment.saved_options()
    rows = read_json(evaluation / "scores.json", "run evaluation/Stain_Evaluation.py again")
    test_rows = {row["label"]: row for row in rows if isinstance(row, dict) and row.get("split") == "test"}
    scores = {
        label: {metric: test_rows[label].get(metric) for metric, _, _ in CARD_METRICS}
        for label in (str(epoch), *CARD_BASELINES)
        if label in test_rows
    }
    record = model_record(args, options, architecture, selection, str(epoch), scores)
    record["demo_data"] = settings.get("command") == "make_demo_dataset"
    with staged_output(args.output, overwrite=True) as staging:
        shutil.copyfile(network_file, staging / network_file.name)
        write_json(staging / "train_opt.json", options)
        write_json(staging / SETTINGS_NAME, settings)
        (staging / "evaluation").mkdir()
        shutil.copyfile(evaluation / SELECTION_FILE, staging / "evaluation" / SELECTION_FILE)
        if (evaluation / "scores.csv").is_file():
            shutil.copyfile(evaluation / "scores.csv", staging / "evaluation" / "scores.csv")
        write_json(staging / "model.json", record)
        write_text_atomic(staging / "README.md", model_card(record))
    size = sum(path.stat().st_size for path in args.output.rglob("*") if path.is_file())
    logger.info("bundled %s epoch %s in %s (%.1f MB): %s", args.name, epoch, args.output, size / 1e6, record["summary"])
    return args.output


def model_record(
    args: argparse.Namespace,
    options: dict[str, Any],
    architecture: dict[str, Any],
    selection: dict[str, Any],
    epoch: str,
    scores: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """What ``model.json`` says: what the model is, how it was made and chosen, how it scored."""
    epochs = int(options.get("n_epochs", 0)) + int(options.get("n_epochs_decay", 0))
    f1 = scores.get(epoch, {}).get("nucleus_f1")
    summary = (
        f"{options.get('model', '?')}, {architecture['netG']}, {architecture['ngf']} filters, epoch {epoch} of {epochs} "
        f"chosen by the evaluation; trained on {options.get('dataroot')}"
        + (f"; test nucleus F1 {f1:.2f}" if isinstance(f1, int | float) else "")
    )
    flags = ("model", "netG", "ngf", "ndf", "n_epochs", "n_epochs_decay", "save_epoch_freq", "seed")
    command = "python train.py --dataroot {} --name {} ".format(options.get("dataroot"), options.get("name"))
    command += " ".join(f"--{flag} {options[flag]}" for flag in flags if flag in options)
    return {
        "name": args.output.name,
        "summary": summary,
        "epoch": epoch,
        "epochs_trained": epochs,
        "model": options.get("model"),
        "architecture": architecture,
        "trained_on": str(options.get("dataroot")),
        "training_command": command,
        "chosen_on": selection.get("chosen_on"),
        "chosen_by": selection.get("realism_metric"),
        "guards": selection.get("guards"),
        "test_scores": scores,
        "made": {
            "date": datetime.date.today().isoformat(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "by": "make pretrained (scripts/bundle_model.py)",
        },
    }


#: The model card's account of the demo data (``scripts/make_demo_dataset.py``), and of any other dataset.
DEMO_DATA = """**What it was trained on.** `datasets/demo` (`scripts/make_demo_dataset.py`): 25 crops of 128x128 from
one 2018 Data Science Bowl fluorescence image of nuclei (16-bit, inverted so nuclei are dark, with
their masks) and 48 crops of one TCIA H&E image. `preparation.json` holds the intensity rule of those
crops (percentile stretch between the 0.5th and 99.5th percentile, inverted), which `colorize.py`
applies to raw frames.

**Test scores** (the demo's test split: 7 crops of another region of the same fluorescence image,
against 25 crops of a second, independent H&E image):"""
DEMO_USE = """**Good for:** trying `colorize.py`, its tiling, the OME-TIFF output and a slide viewer at once,
without training; a first look at fluorescence nuclei images like the demo frame (similar nucleus
size in pixels, nuclei bright in the raw frame, one nuclear channel).

**Not good for:** anything that matters. It learned from one fluorescence image and one H&E slide:
it knows one lab's stain and one cell line's nuclei at one scale; it paints nuclei on an even
background, with no cytoplasm or tissue structure (the input has none); other magnifications, other
stains, tissue sections and brightfield images are outside what it saw, and its colours on the
independent test slide are further from real H&E than on the slide it learned from. Train a model on
your own data (README: Preparing the real datasets) before drawing conclusions, and never use a
virtual stain for diagnosis."""
OTHER_DATA = """**What it was trained on.** `{dataroot}` (see its `manifest.csv`); `preparation.json` holds the
intensity rule of its crops, which `colorize.py` applies to raw frames.

**Test scores** (the test split of that dataset):"""
OTHER_USE = """**Good for:** images like those of its training data. **Not good for:** anything its test split does
not represent; never for diagnosis."""


def model_card(record: dict[str, Any]) -> str:
    """README.md of the bundle, from ``record``."""
    architecture = record["architecture"]
    epoch = record["epoch"]
    header = "| | " + " | ".join(f"{label}, {better} is better" for _, label, better in CARD_METRICS) + " |"
    lines = [header, "| --- |" + " --- |" * len(CARD_METRICS)]
    for label, values in record["test_scores"].items():
        shown = [
            f"{values[metric]:.3f}" if isinstance(values.get(metric), int | float) else ""
            for metric, _, _ in CARD_METRICS
        ]
        lines.append(f"| {'this model, epoch ' + label if label == epoch else label} | " + " | ".join(shown) + " |")
    table = "\n".join(lines)
    demo = record.get("demo_data", False)
    data = DEMO_DATA if demo else OTHER_DATA.format(dataroot=record["trained_on"])
    title = "the demo configuration, trained on the demo data" if demo else f"trained on {record['trained_on']}"
    return f"""# {record["name"]}: {title}

`python colorize.py --name {record["name"]} --input my_image.tif --output colorized/` uses it when
`checkpoints/` holds no experiment of that name. `make pretrained` regenerates the demo's.

**What it is.** `G_A` (gray to H&E) of a `{record["model"]}`: `{architecture["netG"]}`, {architecture["ngf"]} filters,
{architecture["norm"]} norm, {architecture["input_nc"]} input and {architecture["output_nc"]} output channels. Epoch {epoch} of
{record["epochs_trained"]}: the epoch the evaluation chose on the {record["chosen_on"]} split, the most realistic by
`{record["chosen_by"]}` among the epochs that passed the faithfulness guards. Made on {record["made"]["date"]}
(torch {record["made"]["torch"]}, {record["made"]["machine"]}) by

    {record["training_command"]}

then `test.py --epoch all`, `evaluation/Stain_Evaluation.py` and `scripts/bundle_model.py`.

{data}

{table}

{DEMO_USE if demo else OTHER_USE}
"""


def write_json(path: Path, value: Any) -> None:
    write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    args = build_parser().parse_args(argv)
    return run_script(lambda: bundle(args))


if __name__ == "__main__":
    sys.exit(main())
