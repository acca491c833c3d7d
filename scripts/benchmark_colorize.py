"""Time colorize.py at scale: a 10000x10000 16-bit frame to pyramidal OME-TIFF, and a folder under torchrun.

    python scripts/benchmark_colorize.py --work /tmp/colorize_bench --json colorize_bench.json

Makes its inputs from the bundled fluorescence frame (``datasets/sources/fluo_nuclei_dsb2018``),
mirrored out to size (real nuclei, repeated; no noise), then runs ``colorize.py`` as a separate process
for each measurement and reads its peak resident memory (``wait4``: the process and the processes it
waited for, so under torchrun the largest worker) and its wall time:

1. the ``--size`` square frame (default 10000) to ``--format ome-tiff`` with ``--pixel_size_um 0.5``,
   with ``--threads`` compute threads, then OpenSlide reads the file back (vendor, levels,
   dimensions, mpp) and, with ``--compare_png``, the same frame is colorized to PNG and OpenSlide's
   level 0 compared with it pixel for pixel;
2. ``--images`` frames of ``--image_size`` pixels (default 8 of 1024) to PNG, once by one process
   with ``OMP_NUM_THREADS=--threads`` and once by ``torchrun --nproc_per_node 2`` with one thread each.

The load average (1 minute) is noted before and after each run: on a shared machine it says how
busy the cores were. Uses the bundled ``demo_pretrained`` model unless ``--name`` says otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project's packages, from any working folder

from data.image_io import read_array
from util.cli import HelpFormatter, run_script
from util.log import setup_logging

logger = logging.getLogger("benchmark_colorize")
ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "datasets" / "sources" / "fluo_nuclei_dsb2018" / "image.tif"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter, allow_abbrev=False)
    parser.add_argument("--work", type=Path, required=True, help="folder for the inputs and outputs (gigabytes)")
    parser.add_argument("--name", default="demo_pretrained", help="the model (--name of colorize.py)")
    parser.add_argument("--checkpoints_dir", default="/nonexistent", help="default: none, so the bundled model")
    parser.add_argument("--size", type=int, default=10000, help="side of the large frame in pixels")
    parser.add_argument("--images", type=int, default=8, help="frames of the folder run")
    parser.add_argument("--image_size", type=int, default=1024, help="side of each frame of the folder run")
    parser.add_argument("--threads", type=int, default=2, help="compute threads of the one-process runs")
    parser.add_argument("--compare_png", action="store_true", help="also colorize the large frame to PNG and compare")
    parser.add_argument("--skip_large", action="store_true", help="only the folder run")
    parser.add_argument("--json", type=Path, default=None, help="write every number here")
    return parser


def mirrored(height: int, width: int, top: int = 0, left: int = 0) -> np.ndarray:
    """The real 16-bit frame mirrored out to cover (top + height, left + width), cut there."""
    frame = tifffile.imread(SOURCE)
    padded = np.pad(frame, ((0, max(0, top + height - 512)), (0, max(0, left + width - 512))), mode="symmetric")
    return np.ascontiguousarray(padded[top : top + height, left : left + width])


def measure(command: list[str], threads: int, label: str) -> dict[str, Any]:
    """Run ``command``; its wall time, peak resident memory and the load average around it."""
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    before = os.getloadavg()[0]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = process.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{label} failed: {stderr[-2000:]}")
    result = {
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # KiB on Linux
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),  # all its processes, less what others took
        "load_before": before,
        "load_after": os.getloadavg()[0],
    }
    logger.info("%s: %s", label, result)
    return result


def colorize_command(args: argparse.Namespace, *flags: str) -> list[str]:
    return [
        sys.executable, str(ROOT / "colorize.py"), "--name", args.name, "--checkpoints_dir", args.checkpoints_dir,
        "--gpu_ids", "-1", "--max_megapixels", "0", "--overwrite", *flags,
    ]  # fmt: skip


def large_frame(args: argparse.Namespace) -> dict[str, Any]:
    import openslide  # only this measurement needs it

    frame = args.work / "large" / f"frame{args.size}.tif"
    if not frame.is_file():
        frame.parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(frame, mirrored(args.size, args.size))
    megapixels = args.size * args.size / 1e6
    output = args.work / "large_ome"
    flags = ("--input", str(frame), "--output", str(output), "--format", "ome-tiff", "--pixel_size_um", "0.5")
    result = measure(colorize_command(args, *flags), args.threads, "large frame to OME-TIFF")
    result["megapixels_per_second"] = round(megapixels / result["seconds"], 3)
    written = output / f"{frame.stem}.ome.tif"
    slide = openslide.OpenSlide(written)
    result["openslide"] = {
        "vendor": slide.properties["openslide.vendor"],
        "levels": slide.level_count,
        "dimensions": [list(size) for size in slide.level_dimensions],
        "mpp_x": slide.properties.get("openslide.mpp-x"),
        "file_mb": round(written.stat().st_size / 1e6, 1),
    }
    if args.compare_png:
        png = args.work / "large_png"
        flags = ("--input", str(frame), "--output", str(png))
        result["png"] = measure(colorize_command(args, *flags), args.threads, "large frame to PNG")
        result["png"]["megapixels_per_second"] = round(megapixels / result["png"]["seconds"], 3)
        reference = read_array(png / f"{frame.stem}.png")
        width, height = slide.level_dimensions[0]
        equal = all(
            np.array_equal(
                np.asarray(slide.read_region((0, top), 0, (width, min(1000, height - top))))[:, :, :3],
                reference[top : top + 1000],
            )
            for top in range(0, height, 1000)
        )
        result["openslide"]["level0_equals_png"] = equal
    slide.close()
    return result


def folder_runs(args: argparse.Namespace) -> dict[str, Any]:
    folder = args.work / "folder"
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(args.images):
        path = folder / f"frame{index}.tif"
        if not path.is_file():
            tifffile.imwrite(path, mirrored(args.image_size, args.image_size, top=97 * index, left=61 * index))
    megapixels = args.images * args.image_size**2 / 1e6
    flags = ("--input", str(folder))
    one = measure(colorize_command(args, *flags, "--output", str(args.work / "one")), args.threads, "one process")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command = torchrun + colorize_command(args, *flags, "--output", str(args.work / "two"))[1:]
    two = measure(command, 1, "two processes")
    for result in (one, two):
        result["megapixels_per_second"] = round(megapixels / result["seconds"], 3)
    same = all(
        np.array_equal(read_array(path), read_array(args.work / "two" / path.name))
        for path in sorted((args.work / "one").glob("*.png"))
    )
    return {
        "images": args.images,
        "image_size": args.image_size,
        "one_process": one,
        "two_processes": two,
        "same_pixels": same,
    }


def benchmark(args: argparse.Namespace) -> None:
    args.work.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "model": args.name,
        "threads": args.threads,
    }
    if not args.skip_large:
        record["large"] = large_frame(args)
    record["folder"] = folder_runs(args)
    text = json.dumps(record, indent=2)
    logger.info("results:\n%s", text)
    if args.json is not None:
        args.json.write_text(text + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    args = build_parser().parse_args(argv)
    return run_script(lambda: benchmark(args))


if __name__ == "__main__":
    sys.exit(main())
