"""Time Stain_Evaluation on a results folder of many epochs built from real demo crops.

    python scripts/benchmark_evaluation.py [--epochs 50] [--images 500] [--workers N] [--json out.json]

Builds, in a temporary folder, what ``test.py --epoch all`` would leave for ``--epochs`` epochs
of ``--images`` crops in each of the validation and test splits: every ``<image>_real_A.png`` is
a real fluorescence crop, its ``<image>_fake_B.png`` the crop's real nucleus mask painted in the
mean colours of real nuclei and tissue with seeded noise (each epoch differs, and every epoch
passes the faithfulness guards, so the chosen one is scored on the test split too, as in a real
run). The dataroot holds the demo's real masks, training folders and H&E references. Then it runs
the whole evaluation (stain model, baselines, every validation epoch, the chosen epoch on test,
tables, plots, report) as the command line does and prints the wall time; building the folder is
not timed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project's packages, from any working folder

from data.image_io import read_array, write_image
from evaluation import Stain_Evaluation
from scripts.make_demo_dataset import DEFAULT_OUTPUT, build_demo_dataset
from util.arg_types import positive_int
from util.atomic import write_text_atomic
from util.cli import HelpFormatter
from util.log import setup_logging
from util.progress import progress_bar
from util.stain import estimate_stain_model

logger = logging.getLogger("benchmark_evaluation")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter, allow_abbrev=False)
    parser.add_argument("--epochs", type=positive_int, default=50, help="tested epochs to score")
    parser.add_argument("--images", type=positive_int, default=500, help="test images per epoch")
    parser.add_argument(
        "--workers", type=positive_int, default=min(8, os.cpu_count() or 1), help="Stain_Evaluation --workers"
    )
    parser.add_argument("--dataroot", type=Path, default=None, help="demo dataset (default datasets/demo, or built)")
    parser.add_argument("--json", type=Path, default=None, help="also save the measurement as a JSON record")
    return parser


def build_results(root: Path, demo: Path, epochs: int, images: int) -> tuple[Path, Path]:
    """``root/results/{val,test}_<e>/images`` and ``root/data`` (masks, references, training folders)."""
    data = root / "data"
    for folder in ("trainA", "trainB", "valB", "testB"):
        shutil.copytree(demo / folder, data / folder)
    tiles = np.stack([read_array(path) for path in sorted((demo / "trainB").glob("*.png"))])
    nuclear = estimate_stain_model(list(tiles)).nuclear(tiles)
    nucleus, tissue = tiles[nuclear].mean(axis=0), tiles[~nuclear].mean(axis=0)
    rng = np.random.default_rng(0)
    for split in ("val", "test"):
        inputs = [read_array(path) for path in sorted((demo / f"{split}A").glob("*.png"))]
        masks = [read_array(path) for path in sorted((demo / f"{split}A_GT").glob("*.png"))]
        for index in range(images):
            write_image(data / f"{split}A_GT" / f"crop{index:05d}.png", masks[index % len(masks)])
        first_inputs: dict[int, Path] = {}
        for epoch in progress_bar(range(1, epochs + 1), desc=f"writing {split} epochs", unit="epoch"):
            folder = root / "results" / f"{split}_{epoch}" / "images"
            folder.mkdir(parents=True)
            for index in range(images):
                mask = masks[index % len(masks)] > 0
                painted = np.where(mask[:, :, None], nucleus, tissue) + rng.normal(0, 8, (*mask.shape, 3))
                write_image(folder / f"crop{index:05d}_fake_B.png", np.clip(painted, 0, 255).round().astype(np.uint8))
                real_A = folder / f"crop{index:05d}_real_A.png"
                if index in first_inputs:  # the same input every epoch, as test.py writes it
                    os.link(first_inputs[index], real_A)
                else:
                    write_image(real_A, inputs[index % len(inputs)])
                    first_inputs[index] = real_A
    return root / "results", data


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="benchmark_evaluation_") as temporary:
        demo = args.dataroot or DEFAULT_OUTPUT
        if not (demo / "trainA").is_dir():
            demo = Path(temporary) / "demo"
            build_demo_dataset(demo)
        results, data = build_results(Path(temporary), demo, args.epochs, args.images)
        command = ["--results_dir", str(results), "--dataroot", str(data), "--workers", str(args.workers)]
        start = time.perf_counter()
        status = Stain_Evaluation.main(command)
        seconds = time.perf_counter() - start
    if status != 0:
        return status
    record = {
        "epochs": args.epochs,
        "images_per_epoch": args.images,
        "crop_size": 128,
        "workers": args.workers,
        "seconds": round(seconds, 2),
        "images_per_s": float(f"{args.epochs * args.images / seconds:.3g}"),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    print(
        f"\nStain_Evaluation: {args.epochs} epochs x {args.images} images (val; the chosen epoch on test too) scored in {seconds:.1f} s "
        f"({record['images_per_s']} images/s) with {args.workers} worker(s) on {os.cpu_count()} cores"
    )
    if args.json:
        write_text_atomic(args.json, json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
