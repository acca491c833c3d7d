"""Translate test images with a trained model, for one epoch or for every saved epoch.

    python test.py --name demo --epoch all

writes ``results/<name>/test_<epoch>/images/<image>_<visual>.png`` (``real_A``, ``fake_B``,
``rec_A``, ...) and an ``index.html`` per epoch, plus ``results/<name>/index.html`` linking
them. When the dataset has a validation split (``<dataroot>/valA``), its images are translated
too, into ``val_<epoch>``: Stain_Evaluation chooses the epoch on them, never on the test images.
The model, data folder and architecture are read from the experiment's checkpoints.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from torch.utils.data import DataLoader

from data import create_dataloader, create_dataset
from data.image_io import write_image
from data.transforms import to_uint8_image
from experiment import TEST_OPTIONS, TRAIN_OPTIONS, Experiment, epoch_order, save_options, saved_defaults_reader
from models import create_model
from models.base_model import BaseModel
from options.test_options import TestOptions
from util.cli import exit_quickly, run_command
from util.disk import require_writable_folder
from util.html import HTMLPage
from util.progress import progress_bar
from util.reproducibility import seed_everything
from util.runtime import Runtime

logger = logging.getLogger("test")


def run_test(opt: argparse.Namespace, options_text: str = "") -> list[Path]:
    """Translate the test images for every requested epoch; return the HTML pages written.

    Raw source frames are prepared by the intensity rule of the data the model was trained on
    (:func:`data.intensity.prepare_source`), as in training and in colorize.py. The options are
    saved into the results folder (``test_opt.*``, ``options_text`` for people) once the model is built.
    """
    seed_everything(opt.seed, opt.deterministic)
    results = require_writable_folder(Path(opt.results_dir) / opt.name, "--results_dir")
    experiment = Experiment.of(opt)
    labels = experiment.labels_to_test(opt.epoch)
    model = create_model(opt, Runtime.from_options(opt))
    model.setup()
    save_options(results, TEST_OPTIONS, vars(opt), options_text)
    normalization = experiment.training_normalization()
    loaders = {}
    for phase in phases_to_translate(opt):
        phase_opt = argparse.Namespace(**{**vars(opt), "phase": phase})
        dataset = create_dataset(phase_opt, normalization)
        loaders[phase], _ = create_dataloader(dataset, phase_opt, model.device)
    pages = []
    for label in progress_bar(labels, desc="epochs", unit="epoch", disable=len(labels) == 1):
        model.load_networks(label)
        if opt.eval:
            model.eval_mode()
        for phase, loader in loaders.items():
            pages.append(translate_epoch(model, loader, results / f"{phase}_{label}", f"{label} ({phase})", opt))
    index = write_index(results, opt.name)
    logger.info("results: %s (epochs %s)", index, ", ".join(labels))
    return pages


def phases_to_translate(opt: argparse.Namespace) -> list[str]:
    """``--phase``, preceded by ``val`` when it is the default ``test`` and the dataset has a ``valA``."""
    side = "A" if opt.direction == "AtoB" else "B"
    if opt.phase == "test" and (Path(opt.dataroot) / f"val{side}").is_dir():
        return ["val", "test"]
    return [opt.phase]


def translate_epoch(model: BaseModel, loader: DataLoader, output: Path, label: str, opt: argparse.Namespace) -> Path:
    """Translate the test images with the loaded epoch; write PNGs and the epoch's HTML page."""
    limit = opt.num_test or len(loader.dataset)
    page = HTMLPage(f"{opt.name}: epoch {label}")
    used_stems: set[str] = set()
    written = 0
    with progress_bar(total=min(limit, len(loader.dataset)), desc=f"epoch {label}", unit="image", leave=False) as bar:
        for batch in loader:
            if written >= limit:
                break
            model.set_input(batch)
            model.test()
            visuals = model.current_visuals()
            for item, source in enumerate(model.image_paths):
                if written >= limit:
                    break
                stem = unique_stem(Path(source).stem, used_stems)
                row = []
                for name, images in visuals.items():
                    relative = f"images/{stem}_{name}.png"
                    write_image(output / relative, to_uint8_image(images[item]))
                    row.append((relative, f"{stem} {name}"))
                page.add_images(row, opt.display_winsize)
                written += 1
                bar.update()
    return page.save(output / "index.html")


def unique_stem(stem: str, used: set[str]) -> str:
    """``stem``, or ``stem_2``, ``stem_3``... if images in different subfolders share a name."""
    candidate, number = stem, 1
    while candidate in used:
        number += 1
        candidate = f"{stem}_{number}"
    used.add(candidate)
    return candidate


def write_index(results: Path, name: str) -> Path:
    """``results/<name>/index.html`` linking every epoch page there, numbered epochs in order."""
    folders = sorted(
        (path.parent.name for path in results.glob("*/index.html")),
        key=lambda folder: (epoch_order(folder.rsplit("_", 1)[-1]), folder),
    )
    page = HTMLPage(f"Results: {name}")
    for folder in folders:
        page.add_link(folder, f"{folder}/index.html")
    return page.save(results / "index.html")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 success, 1 user error)."""
    return run_command(
        TestOptions(saved_defaults_reader(TRAIN_OPTIONS)),
        argv,
        run_test,
        prepare=lambda opt, explicit: Experiment.of(opt).prepare_testing(opt, explicit),
    )


if __name__ == "__main__":
    exit_quickly(main())
