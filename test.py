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
import sys
from collections.abc import Sequence
from pathlib import Path

from torch.utils.data import DataLoader

from data import create_dataloader, create_dataset
from data.image_io import write_image
from data.transforms import to_uint8_image
from models import checkpoint, create_model
from models.base_model import BaseModel
from options.test_options import TestOptions
from util.cli import run_command
from util.html import HTMLPage
from util.progress import progress_bar
from util.reproducibility import seed_everything

logger = logging.getLogger("test")


def epochs_to_test(directory: Path, requested: str) -> list[str]:
    """Checkpoint labels for ``--epoch``: ``all`` means every numbered epoch, ascending."""
    if requested != "all":
        checkpoint.require_checkpoint(directory, requested, "G_A")
        return [requested]
    numbered = [str(epoch) for epoch in checkpoint.saved_epochs(directory, "G_A")]
    if numbered:
        return numbered
    checkpoint.require_checkpoint(directory, "latest", "G_A")
    return ["latest"]


def run_test(opt: argparse.Namespace) -> list[Path]:
    """Translate the test images for every requested epoch; return the HTML pages written."""
    seed_everything(opt.seed, opt.deterministic)
    experiment = Path(opt.checkpoints_dir) / opt.name
    labels = epochs_to_test(experiment, opt.epoch)
    model = create_model(opt)
    model.setup()
    loaders = {}
    for phase in phases_to_translate(opt):
        phase_opt = argparse.Namespace(**{**vars(opt), "phase": phase})
        loaders[phase], _ = create_dataloader(create_dataset(phase_opt), phase_opt, model.device)
    results = Path(opt.results_dir) / opt.name
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
    folders = sorted((path.parent.name for path in results.glob("*/index.html")), key=_epoch_folder_order)
    page = HTMLPage(f"Results: {name}")
    for folder in folders:
        page.add_link(folder, f"{folder}/index.html")
    return page.save(results / "index.html")


def _epoch_folder_order(folder: str) -> tuple[int, int, str]:
    """``test_2`` before ``test_10``; named labels such as ``test_latest`` after the numbers."""
    suffix = folder.rsplit("_", 1)[-1]
    return (0, int(suffix), folder) if suffix.isdigit() else (1, 0, folder)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 success, 1 user error)."""
    return run_command(
        TestOptions(),
        argv,
        run_test,
        options_folder=lambda opt: Path(opt.results_dir) / opt.name,
        options_stem="test_opt",
    )


if __name__ == "__main__":
    sys.exit(main())
