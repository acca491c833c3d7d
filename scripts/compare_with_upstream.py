"""Time a whole short ``train.py`` process against the original CycleGAN repository's, in alternating pairs.

    python scripts/compare_with_upstream.py --upstream ~/src/pytorch-CycleGAN-and-pix2pix --pairs 5

What a user of a short run waits for is the whole process: imports, set-up, one epoch of 8 images,
the checkpoint and pages, and exit. Both programs train ``cycle_gan`` with a ResNet-6 generator of
16 filters on the CPU with one compute thread (``OMP_NUM_THREADS=1``), gray input to RGB output,
128x128 crops without resizing, no identity loss (the upstream code cannot apply it between a
1-channel and a 3-channel domain), on the same 8 + 8 demo crops. The runs alternate (ours first in
odd pairs), so a machine that gets busier or quieter affects both sides alike; each pair's ratio and
the medians are printed, with the load average before each pair. Wall time, CPU time (user +
system) and peak memory (RSS) come from the operating system's accounting of each child process
(``os.wait4``).

``--upstream`` is a checkout of https://github.com/junyanz/pytorch-CycleGAN-and-pix2pix that you
provide (nothing is downloaded). Its ``util/visualizer.py`` imports ``wandb`` unconditionally:
when that package is missing, an empty stand-in module is put on its path (never used, since
wandb logging is off), which if anything favours the upstream side. ``--help`` of both is timed too.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project's packages, from any working folder

from scripts.make_demo_dataset import build_demo_dataset
from util.arg_types import positive_int
from util.atomic import write_text_atomic
from util.cli import HelpFormatter, run_script
from util.errors import OptionError
from util.log import setup_logging

logger = logging.getLogger("compare_with_upstream")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: The run both sides make (flags both programs accept).
COMMON = [
    "--model", "cycle_gan", "--netG", "resnet_6blocks", "--ngf", "16", "--ndf", "16", "--n_epochs", "1",
    "--n_epochs_decay", "0", "--num_threads", "0", "--lambda_identity", "0",
]  # fmt: skip
#: What the upstream program needs to read our data as we do: gray A, RGB B, crops without resizing.
UPSTREAM_ONLY = [
    "--dataset_mode", "unaligned", "--input_nc", "1", "--output_nc", "3", "--preprocess", "crop",
    "--load_size", "128", "--crop_size", "128",
]  # fmt: skip
IMAGES = 8


def measure(command: list[str], folder: Path, environment: dict[str, str]) -> dict[str, float]:
    """Run ``command`` in ``folder``; its wall seconds, CPU seconds and peak RSS (MiB). Output goes to a log."""
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=folder, env=environment, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            log.seek(0)
            tail = log.read()[-1500:].decode(errors="replace")
            raise OptionError(f"{' '.join(command[1:3])} in {folder} failed ({process.returncode}):\n{tail}")
    # ru_maxrss is in KiB on Linux.
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mib": usage.ru_maxrss / 1024}


def small_dataset(folder: Path) -> Path:
    """The first 8 crops of each demo domain (built from the bundled sources) in ``folder``."""
    demo = folder / "demo"
    build_demo_dataset(demo)
    data = folder / "data8"
    for domain in ("trainA", "trainB"):
        (data / domain).mkdir(parents=True)
        for path in sorted((demo / domain).glob("*.png"))[:IMAGES]:
            shutil.copy(path, data / domain / path.name)
    return data


def compare(upstream: Path, pairs: int, work: Path) -> dict[str, list[dict[str, float]]]:
    """Alternating pairs of both programs' training and ``--help``; the measurements of each."""
    if not (upstream / "train.py").is_file() or not (upstream / "models" / "cycle_gan_model.py").is_file():
        raise OptionError(f"--upstream {upstream} is not a checkout of pytorch-CycleGAN-and-pix2pix (no train.py)")
    data = small_dataset(work)
    ours_environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    upstream_environment = dict(ours_environment)
    if subprocess.run([sys.executable, "-c", "import wandb"], capture_output=True).returncode != 0:
        stubs = work / "stubs"
        stubs.mkdir()
        (stubs / "wandb.py").write_text('"""An empty stand-in: upstream imports wandb, our runs never use it."""\n')
        upstream_environment["PYTHONPATH"] = str(stubs)
    results: dict[str, list[dict[str, float]]] = {"train": [], "help": []}
    for pair in range(1, pairs + 1):
        load = os.getloadavg()[0]
        runs = {
            "ours": lambda tag: measure(
                [sys.executable, "train.py", "--dataroot", str(data), *COMMON, "--gpu_ids", "-1",
                 "--name", f"ours{tag}", "--checkpoints_dir", str(work / "ours")],
                PROJECT_ROOT, ours_environment,
            ),
            "upstream": lambda tag: measure(
                [sys.executable, "train.py", "--dataroot", str(data), *COMMON, *UPSTREAM_ONLY,
                 "--name", f"up{tag}", "--checkpoints_dir", str(work / "upstream")],
                upstream, upstream_environment,
            ),
        }  # fmt: skip
        order = ["ours", "upstream"] if pair % 2 else ["upstream", "ours"]
        train = {side: runs[side](pair) for side in order}
        helps = {
            "ours": measure([sys.executable, "train.py", "--help"], PROJECT_ROOT, ours_environment),
            "upstream": measure([sys.executable, "train.py", "--help"], upstream, upstream_environment),
        }
        for kind, measured in (("train", train), ("help", helps)):
            results[kind].append(
                {"pair": pair, "load": load, **{f"{s}_{k}": v for s in measured for k, v in measured[s].items()}}
            )
        logger.info(
            "pair %d (load %.1f): training %.1f s (ours) / %.1f s (upstream) wall, %.1f / %.1f s CPU",
            pair, load, train["ours"]["wall_s"], train["upstream"]["wall_s"], train["ours"]["cpu_s"],
            train["upstream"]["cpu_s"],
        )  # fmt: skip
    return results


def summary(results: dict[str, list[dict[str, float]]]) -> str:
    """Per kind: the median of each measure for both sides and the ratio ours / upstream, and each pair's ratio."""
    lines = []
    for kind, rows in results.items():
        lines.append(
            f"{kind} ({len(rows)} pairs; load {min(r['load'] for r in rows):.1f}-{max(r['load'] for r in rows):.1f})"
        )
        for measure_name in ("wall_s", "cpu_s", "peak_rss_mib"):
            ours = statistics.median(row[f"ours_{measure_name}"] for row in rows)
            upstream = statistics.median(row[f"upstream_{measure_name}"] for row in rows)
            ratios = [row[f"ours_{measure_name}"] / row[f"upstream_{measure_name}"] for row in rows]
            lines.append(
                f"  {measure_name:13} ours {ours:8.2f}  upstream {upstream:8.2f}  ratio of medians "
                f"{ours / upstream:.2f}  pair ratios {min(ratios):.2f}-{max(ratios):.2f}"
            )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter, allow_abbrev=False)
    parser.add_argument("--upstream", type=Path, required=True, help="a checkout of pytorch-CycleGAN-and-pix2pix")
    parser.add_argument("--pairs", type=positive_int, default=5, help="alternating pairs of runs")
    parser.add_argument("--json", type=Path, default=None, help="also write every measurement to this JSON file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    args = build_parser().parse_args(argv)

    def job() -> None:
        with tempfile.TemporaryDirectory(prefix="upstream_comparison_") as work:
            results = compare(args.upstream.resolve(), args.pairs, Path(work))
        print(summary(results))
        if args.json is not None:
            write_text_atomic(args.json, json.dumps(results, indent=2) + "\n")

    return run_script(job)


if __name__ == "__main__":
    sys.exit(main())
