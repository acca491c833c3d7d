"""Time Stain_Evaluation on a results folder of many epochs built from real demo crops.

    python scripts/benchmark_evaluation.py [--epochs 50] [--images 500] [--workers N] [--json out.json]

Builds, in a temporary folder, what ``test.py --epoch all`` would leave for ``--epochs`` epochs
of ``--images`` test crops: every epoch's ``<image>_real_A.png`` is a real fluorescence crop,
its ``<image>_fake_B.png`` a real H&E crop with seeded noise (so each epoch differs), and the
dataroot holds the real nucleus masks and real H&E reference tiles of the demo dataset. Then it
runs the whole evaluation (scoring, baselines, tables, plot, report) as the command line does
and prints the wall time, once the folder is written (building it is not timed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
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
from util.log import setup_logging
from util.progress import progress_bar

logger = logging.getLogger("benchmark_evaluation")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--epochs", type=positive_int, default=50, help="tested epochs to score")
    parser.add_argument("--images", type=positive_int, default=500, help="test images per epoch")
    parser.add_argument(
        "--workers", type=positive_int, default=min(8, os.cpu_count() or 1), help="Stain_Evaluation --workers"
    )
    parser.add_argument("--dataroot", type=Path, default=None, help="demo dataset (default datasets/demo, or built)")
    parser.add_argument("--json", type=Path, default=None, help="also save the measurement as a JSON record")
    return parser


def build_results(root: Path, demo: Path, epochs: int, images: int) -> tuple[Path, Path]:
    """``root/results/test_<e>/images`` and ``root/data/{testA_GT,testB}`` as described above."""
    inputs = [read_array(path) for path in sorted((demo / "trainA").glob("*.png"))]
    masks = [read_array(path) for path in sorted((demo / "trainA_GT").glob("*.png"))]
    stains = [read_array(path) for path in sorted((demo / "trainB").glob("*.png"))]
    data = root / "data"
    for index in range(images):
        write_image(data / "testA_GT" / f"crop{index:05d}.png", masks[index % len(masks)])
    for path in sorted((demo / "testB").glob("*.png")):
        write_image(data / "testB" / path.name, read_array(path))
    rng = np.random.default_rng(0)
    first_inputs: dict[int, Path] = {}
    for epoch in progress_bar(range(1, epochs + 1), desc="writing epochs", unit="epoch"):
        folder = root / "results" / f"test_{epoch}" / "images"
        folder.mkdir(parents=True)
        for index in range(images):
            stain = stains[(index + epoch) % len(stains)]
            noisy = np.clip(stain.astype(np.int16) + rng.integers(-8, 9, stain.shape), 0, 255).astype(np.uint8)
            write_image(folder / f"crop{index:05d}_fake_B.png", noisy)
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
        "images_per_s": round(args.epochs * args.images / seconds, 1),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    print(
        f"\nStain_Evaluation: {args.epochs} epochs x {args.images} images scored in {seconds:.1f} s "
        f"({record['images_per_s']} images/s) with {args.workers} worker(s) on {os.cpu_count()} cores"
    )
    if args.json:
        write_text_atomic(args.json, json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
