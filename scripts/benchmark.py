"""Time a training iteration and inference of cycle_gan, seg_cycle_gan, cut and seg_cut, with the peak memory
of training, and the three extra losses of seg_cycle_gan alone.

    python scripts/benchmark.py [--netG resnet_6blocks --ngf 16 --ndf 16] [--gpu_ids -1] [--json results.json]
    python scripts/benchmark.py --amp none bf16 fp16 --channels_last off on --compile off on --no_losses
    python scripts/benchmark.py --threads auto 1 2 --busy 0 1 --netG resnet_6blocks --ngf 16 --ndf 16 --no_losses

Every combination of ``--amp``, ``--channels_last``, ``--compile``, ``--threads`` and ``--busy``
values is timed in one run.

Every model runs at the same configuration (generator, filters, batch, crop) on one fixed batch of
real demo crops (data loading is not timed): ``set_input`` + ``optimize_parameters`` for training,
``G_A`` under ``torch.no_grad`` in eval mode for inference. After ``--warmup`` calls,
``--repeats`` runs of ``--iterations`` calls are timed and the median run is reported, so one
disturbed run (the CPU shared with another job) does not move the result. ``cut`` and ``seg_cut``
sample ``--num_patches`` places per layer (at most (crop_size / 4)^2). Each model but
``cycle_gan`` also gets its time and memory as a ratio to ``cycle_gan``'s. Two untimed steps of the
first model first warm the process up, so the first model measured pays no more than the others.

Peak memory of training (the warm-up and timed iterations) is measured where it is honest:
on a GPU, ``torch.cuda.max_memory_allocated`` (every tensor: weights, gradients, optimizer state,
activations); on a Linux CPU, the peak resident memory of the process (``VmHWM``, reset through
``/proc/self/clear_refs`` before the first iteration) less the resident memory then, after glibc
has returned its free heap (``malloc_trim``): what the iterations add (gradients, optimizer state,
activations, the allocator's slack), not the weights or PyTorch itself. Elsewhere it is not
measured (null). A second table times the losses of
:mod:`models.improved_losses` against the NumPy/OpenCV reference of
:mod:`scripts.reference_losses`, on ``--loss_batch_size`` real crops: ``fake`` = H&E crops,
``real`` = other H&E crops, ``gray`` = fluorescence crops, ``mask`` = their nucleus masks.

``--threads`` sets PyTorch's compute threads; ``auto`` is what ``train.py`` chooses with its
default ``--num_threads`` (its share of the CPUs less the loader workers, see
:func:`util.device.choose_compute_threads`). ``--busy N`` keeps N other processes spinning on the
CPU while timing, as another job on a shared machine would: OpenMP threads that outnumber the free
cores wait on each other at every operation, which can slow a step several-fold. Each record keeps
the load average, and a CPU already busy before the run is warned about.

Without ``--dataroot`` the bundled ``datasets/demo`` is used, or built into a temporary folder
if it is missing. Nothing is written to the repository; ``--json`` saves every measurement
with the device, torch version and date, for comparing runs.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import itertools
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import default_collate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project's packages, from any working folder

from data import create_dataset
from models import create_model, improved_losses
from models.networks import GENERATOR_TYPES
from options.train_options import TrainOptions
from scripts.make_demo_dataset import DEFAULT_OUTPUT, build_demo_dataset
from scripts.reference_losses import (
    reference_color_variation_loss,
    reference_gt_loss,
    reference_hsv_loss,
    reference_hsv_loss_numpy,
)
from util.arg_types import nonnegative_int, positive_int
from util.atomic import write_text_atomic
from util.cli import HelpFormatter, run_script
from util.device import choose_compute_threads
from util.errors import DatasetError
from util.log import setup_logging
from util.reproducibility import seed_everything
from util.runtime import AMP_MODES

logger = logging.getLogger("benchmark")

MODELS = ("cycle_gan", "seg_cycle_gan", "cut", "seg_cut")
#: The models whose PatchNCE samples ``--num_patches`` places per layer.
CONTRASTIVE_MODELS = ("cut", "seg_cut")
SWITCH = ("off", "on")
#: The keys every model record of the JSON output has (tests and comparisons rely on them).
REQUIRED_KEYS = (
    "kind",
    "model",
    "device",
    "device_name",
    "torch",
    "date",
    "netG",
    "ngf",
    "ndf",
    "batch_size",
    "crop_size",
    "amp",
    "channels_last",
    "compile",
    "seconds_per_iteration",
    "train_images_per_s",
    "infer_seconds_per_batch",
    "infer_images_per_s",
    "train_peak_memory_mb",
    "memory_measure",
)


@dataclass(frozen=True)
class BenchmarkConfig:
    """What to measure; the defaults are the project's default architecture on one 128x128 crop."""

    dataroot: Path
    models: tuple[str, ...] = MODELS
    netG: str = "resnet_9blocks"
    ngf: int = 64
    ndf: int = 64
    batch_size: int = 1
    crop_size: int = 128
    iterations: int = 10
    warmup: int = 2
    repeats: int = 3
    gpu_ids: str = "auto"
    loss_batch_size: int = 4
    loss_iterations: int | None = None  # None: --iterations
    losses: bool = True
    amp: str = "none"
    channels_last: bool = False
    compile: bool = False
    threads: int = 1
    busy: int = 0
    num_patches: int = 256


# -- timing ---------------------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a timer read afterwards includes it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(
    step: Callable[[], object], device: torch.device, iterations: int, warmup: int, repeats: int
) -> float:
    """Median over ``repeats`` runs of the mean seconds per ``step()`` call, after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    runs = []
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        for _ in range(iterations):
            step()
        synchronize(device)
        runs.append((time.perf_counter() - started) / iterations)
    return statistics.median(runs)


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model (the number that makes two CPU timings comparable)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def load_average() -> float | None:
    """The 1-minute load average of the machine (None where unknown): a busy CPU makes timings slow and noisy."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


class PeakMemory:
    """The peak memory of the code run inside ``with`` (``bytes``; None where it cannot be measured honestly).

    GPU: the peak of ``torch.cuda.max_memory_allocated`` (all live tensors). Linux CPU: the peak resident
    memory (``VmHWM``) above the resident memory at the start, after ``malloc_trim`` gave the free heap
    back, so memory freed earlier and kept by the allocator is not counted as free. ``measure`` says which.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.bytes: int | None = None
        self.measure = "not measured (no GPU, and no /proc/self/clear_refs to reset the peak resident memory)"
        self._start: int | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.measure = "peak CUDA memory of tensors (torch.cuda.max_memory_allocated)"
        elif _reset_peak_resident_memory():
            self._start = _status_bytes("VmRSS")
            self.measure = "peak resident memory above the start (Linux VmHWM - VmRSS, after malloc_trim)"
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device)
        elif self._start is not None:
            peak = _status_bytes("VmHWM")
            self.bytes = None if peak is None else max(0, peak - self._start)


def _status_bytes(field: str) -> int | None:
    """A memory field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in bytes; None where there is none."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_peak_resident_memory() -> bool:
    """Give glibc's free heap back to the system, then set the peak resident memory to the current one (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
    except OSError:
        return False
    return _status_bytes("VmHWM") is not None and _status_bytes("VmRSS") is not None


# -- models ---------------------------------------------------------------------------------------
def model_options(config: BenchmarkConfig, model: str, checkpoints: Path, batch_size: int) -> argparse.Namespace:
    """The training options of ``model`` at the benchmark's configuration, through the project's own parser."""
    argv = [
        "--model", model, "--name", model, "--dataroot", str(config.dataroot), "--checkpoints_dir", str(checkpoints),
        "--gpu_ids", config.gpu_ids, "--num_threads", "0", "--netG", config.netG, "--ngf", str(config.ngf),
        "--ndf", str(config.ndf), "--batch_size", str(batch_size), "--crop_size", str(config.crop_size),
        "--compute_threads", str(config.threads), "--amp", config.amp,
        *(["--channels_last"] if config.channels_last else []),
        *(["--compile"] if config.compile else []),
        *(["--num_patches", str(config.num_patches)] if model in CONTRASTIVE_MODELS else []),
    ]  # fmt: skip
    return TrainOptions().parse(argv)


def real_batch(opt: argparse.Namespace, size: int, seed_offset: int = 0) -> dict[str, Any]:
    """``size`` real samples of the training data, the same ones on every run."""
    dataset = create_dataset(opt)
    return default_collate([dataset[(index, seed_offset + index)] for index in range(size)])


def warm_up_process(config: BenchmarkConfig, model_name: str, checkpoints: Path) -> None:
    """A few untimed training steps before the first measured model, so that what a process pays once (thread
    pools, kernel caches, the allocator's first arenas) is not counted in the first model's time and memory."""
    opt = model_options(config, model_name, checkpoints, config.batch_size)
    batch = real_batch(opt, config.batch_size)
    model = create_model(opt)
    model.calibrate(create_dataset(opt))
    model.setup()
    model.train_mode()
    for _ in range(2):
        model.set_input(batch)
        model.optimize_parameters()
    synchronize(model.device)


def time_model(config: BenchmarkConfig, model_name: str, checkpoints: Path) -> dict[str, Any]:
    """One model's training-iteration and inference timings, as a JSON record (calibration not timed)."""
    opt = model_options(config, model_name, checkpoints, config.batch_size)
    batch = real_batch(opt, config.batch_size)
    seed_everything(opt.seed)  # both models start from the same weights
    model = create_model(opt)
    model.calibrate(create_dataset(opt))
    model.setup()
    device = model.device
    counts = dict(iterations=config.iterations, warmup=config.warmup, repeats=config.repeats)

    def train_step() -> None:
        model.set_input(batch)
        model.optimize_parameters()

    logger.info("timing %s training on %s", model_name, device)
    model.train_mode()
    with PeakMemory(device) as memory:
        train_seconds = median_seconds(train_step, device, **counts)

    generator = model.networks["G_A"]
    real_A = model.to_device(batch["A"])

    def infer_step() -> None:
        with torch.no_grad(), model.runtime.autocast():
            generator(real_A)

    logger.info("timing %s inference on %s", model_name, device)
    model.eval_mode()
    infer_seconds = median_seconds(infer_step, device, **counts)
    return {
        "kind": "train",
        "model": model_name,
        **common_fields(config, device),
        "netG": config.netG,
        "ngf": config.ngf,
        "ndf": config.ndf,
        "batch_size": config.batch_size,
        "seconds_per_iteration": train_seconds,
        "train_images_per_s": config.batch_size / train_seconds,
        "infer_seconds_per_batch": infer_seconds,
        "infer_images_per_s": config.batch_size / infer_seconds,
        "train_peak_memory_mb": None if memory.bytes is None else memory.bytes / 2**20,
        "memory_measure": memory.measure,
        **counts,
    }


def common_fields(config: BenchmarkConfig, device: torch.device) -> dict[str, Any]:
    """What every record says about where and how it was measured."""
    return {
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "busy_processes": config.busy,
        "load_average": load_average(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "crop_size": config.crop_size,
        "amp": config.amp,
        "channels_last": config.channels_last,
        "compile": config.compile,
    }


# -- losses ---------------------------------------------------------------------------------------
def time_losses(config: BenchmarkConfig, checkpoints: Path) -> list[dict[str, Any]]:
    """Our three losses (forward + backward, forward) against the seed's forms (forward), on real crops."""
    opt = model_options(config, "seg_cycle_gan", checkpoints, config.loss_batch_size)
    model = create_model(opt)
    model.calibrate(create_dataset(opt))  # the stain model and real colours the GT and colour losses read
    device = model.device
    size = config.loss_batch_size
    first, second = real_batch(opt, size), real_batch(opt, size, seed_offset=size)
    fake, real = first["B"].to(device), second["B"].to(device)
    gray, mask = first["A"].to(device), first["A_GT"].to(device)
    inverse, threshold = model.stain_inverse, model.nucleus_threshold
    colors = model.color_reference
    losses: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], float]]] = {
        "gt": (
            lambda x: improved_losses.gt_loss(x, mask, stain_inverse=inverse, threshold=threshold),
            lambda x: reference_gt_loss(x, mask),
        ),
        "structure": (
            lambda x: improved_losses.structure_loss(x, gray),
            lambda x: reference_color_variation_loss(x, gray),
        ),
        "color": (lambda x: improved_losses.color_loss(x, mask, colors), lambda x: reference_hsv_loss(x, real)),
        "color (numpy ref.)": (
            lambda x: improved_losses.color_loss(x, mask, colors),
            lambda x: reference_hsv_loss_numpy(x, real),
        ),
    }
    counts = dict(iterations=config.loss_iterations or config.iterations, warmup=config.warmup, repeats=config.repeats)
    records = []
    for name, (ours, reference) in losses.items():
        leaf = fake.clone().requires_grad_(True)

        def forward_backward(ours: Callable[[torch.Tensor], torch.Tensor] = ours, leaf: torch.Tensor = leaf) -> None:
            leaf.grad = None
            ours(leaf).backward()

        def forward(ours: Callable[[torch.Tensor], torch.Tensor] = ours) -> None:
            with torch.no_grad():
                ours(fake)

        logger.info("timing loss %s on %s", name, device)
        ours_backward_s = median_seconds(forward_backward, device, **counts)
        ours_forward_s = median_seconds(forward, device, **counts)
        started = time.perf_counter()
        reference_value = reference(fake)
        # A reference slower than a fifth of a second per call is timed one call at a time.
        slow = time.perf_counter() - started > 0.2
        reference_counts = dict(counts, iterations=1, warmup=0) if slow else counts
        reference_s = median_seconds(lambda reference=reference: reference(fake), device, **reference_counts)
        with torch.no_grad():
            ours_value = float(ours(fake))
        records.append(
            {
                "kind": "loss",
                "loss": name,
                **common_fields(config, device),
                "batch_size": size,
                "ours_forward_backward_s": ours_backward_s,
                "ours_forward_s": ours_forward_s,
                "reference_forward_s": reference_s,
                "speedup_forward": reference_s / ours_forward_s,
                "speedup_forward_backward": reference_s / ours_backward_s,
                "ours_value": ours_value,
                "reference_value": reference_value,
                **counts,
            }
        )
    return records


# -- the whole run --------------------------------------------------------------------------------
def busy_processes(count: int) -> ExitStack:
    """``count`` processes that keep one CPU each busy until the returned stack closes (another job's load)."""
    with ExitStack() as stack:  # if one fails to start, those already running are stopped
        for _ in range(count):
            process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            stack.callback(process.wait)
            stack.callback(process.kill)
        return stack.pop_all()


def default_threads() -> int:
    """The compute threads train.py chooses with its default ``--num_threads`` loader workers."""
    workers = TrainOptions().build_parser(["--dataroot", "."]).get_default("num_threads")
    return choose_compute_threads(None, workers)[0]


def run_benchmark(config: BenchmarkConfig) -> list[dict[str, Any]]:
    """Every measurement of ``config`` as JSON-ready records: kind "train" per model, kind "loss" per loss.

    Raises :class:`DatasetError` when ``config.dataroot`` is not a dataset folder.
    """
    if not Path(config.dataroot).is_dir():
        raise DatasetError(
            f"--dataroot {config.dataroot} does not exist; omit --dataroot to use (or build) the demo dataset"
        )
    load, cores = load_average(), os.cpu_count() or 1
    if load is not None and load > cores / 2 and not config.busy:
        logger.warning(
            "the CPU is busy before the benchmark starts (load %.1f on %d cores): timings will be slow and noisy; "
            "--threads 1 avoids the worst of the thread contention",
            load,
            cores,
        )
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="benchmark_") as checkpoints, busy_processes(config.busy):
        if config.models:
            warm_up_process(config, config.models[0], Path(checkpoints))
        for model_name in config.models:
            records.append(time_model(config, model_name, Path(checkpoints)))
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # the previous model's memory, before the next one is built
        add_ratios_to_cycle_gan(records)
        if config.losses:
            records.extend(time_losses(config, Path(checkpoints)))
    return records


def add_ratios_to_cycle_gan(records: list[dict[str, Any]]) -> None:
    """Each model's training time, inference time and training memory as a ratio to cycle_gan's (same config)."""
    cycle = next((record for record in records if record["model"] == "cycle_gan"), None)
    if cycle is None:
        return
    for record in records:
        if record is cycle:
            continue
        record["train_time_ratio_to_cycle_gan"] = record["seconds_per_iteration"] / cycle["seconds_per_iteration"]
        record["infer_time_ratio_to_cycle_gan"] = record["infer_seconds_per_batch"] / cycle["infer_seconds_per_batch"]
        memory, reference = record["train_peak_memory_mb"], cycle["train_peak_memory_mb"]
        record["train_memory_ratio_to_cycle_gan"] = memory / reference if memory and reference else None


def ratio_label(model: str) -> str:
    """The row of a model's ratios to cycle_gan: ``seg/cycle``, ``cut/cycle``, ``seg_cut/cycle``."""
    return f"{model.removesuffix('_cycle_gan')}/cycle"


# -- reporting ------------------------------------------------------------------------------------
def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned: the first to the left, the (numeric) others to the right."""
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        return "  ".join(
            [first.ljust(widths[0]), *(cell.rjust(width) for cell, width in zip(rest, widths[1:], strict=True))]
        )

    return "\n".join([line(header), *(line(row) for row in rows)])


def _number(value: float, digits: int = 4) -> str:
    return f"{value:.{digits}g}" if math.isfinite(value) else str(value)


def format_report(config: BenchmarkConfig, records: Sequence[dict[str, Any]]) -> str:
    """The two tables (models, losses) with a header line each saying where and how they were measured."""
    sections = []
    models = [record for record in records if record["kind"] == "train"]
    if models:
        first = models[0]
        sections.append(
            f"# {first['device']} ({first['device_name']}), torch {first['torch']}, "
            f"load {first['load_average']} before the first run; "
            f"netG {config.netG}, ngf {config.ngf}, ndf {config.ndf}, batch {config.batch_size}, "
            f"crop {config.crop_size}; median of {config.repeats} x {config.iterations} "
            f"iterations after {config.warmup} warm-up"
        )
        rows = [
            [
                record["model"],
                record["amp"],
                "on" if record["channels_last"] else "off",
                "on" if record["compile"] else "off",
                str(record["threads"]),
                str(record["busy_processes"]),
                _number(record["seconds_per_iteration"] * 1000),
                _number(record["train_images_per_s"]),
                _number(record["infer_seconds_per_batch"] * 1000),
                _number(record["infer_images_per_s"]),
                "-" if record["train_peak_memory_mb"] is None else f"{record['train_peak_memory_mb']:.1f}",
            ]
            for record in models
        ]
        for other in [record for record in models if "train_time_ratio_to_cycle_gan" in record]:
            train_ratio, infer_ratio = other["train_time_ratio_to_cycle_gan"], other["infer_time_ratio_to_cycle_gan"]
            memory_ratio = other["train_memory_ratio_to_cycle_gan"]
            rows.append(
                [
                    ratio_label(other["model"]),
                    other["amp"],
                    "on" if other["channels_last"] else "off",
                    "on" if other["compile"] else "off",
                    str(other["threads"]),
                    str(other["busy_processes"]),
                    f"{train_ratio:.3f}x",
                    f"{1 / train_ratio:.3f}x",
                    f"{infer_ratio:.3f}x",
                    f"{1 / infer_ratio:.3f}x",
                    "-" if memory_ratio is None else f"{memory_ratio:.3f}x",
                ]
            )
        header = [
            "model", "amp", "channels_last", "compile", "threads", "busy", "train ms/iter", "train img/s",
            "infer ms/batch", "infer img/s", "train peak MB",
        ]  # fmt: skip
        sections.append(format_table(header, rows))
        measures = sorted({record["memory_measure"] for record in models})
        sections.append("# train peak MB: " + "; ".join(measures))
    losses = [record for record in records if record["kind"] == "loss"]
    if losses:
        first = losses[0]
        sections.append(
            f"# losses on {first['device']} ({first['device_name']}), torch {first['torch']}: "
            f"{first['batch_size']} real crops of {config.crop_size}x{config.crop_size}; median of "
            f"{first['repeats']} x {first['iterations']} calls after {first['warmup']} warm-up; "
            "reference = NumPy/OpenCV, no gradient"
        )
        rows = [
            [
                record["loss"],
                _number(record["ours_forward_backward_s"] * 1000),
                _number(record["ours_forward_s"] * 1000),
                _number(record["reference_forward_s"] * 1000),
                f"{record['speedup_forward']:.1f}x",
                f"{record['speedup_forward_backward']:.1f}x",
                f"{record['ours_value']:.4f}",
                f"{record['reference_value']:.4f}",
            ]
            for record in losses
        ]
        header = [
            "loss",
            "ours fwd+bwd ms",
            "ours fwd ms",
            "reference ms",
            "speed-up fwd",
            "speed-up fwd+bwd",
            "ours value",
            "reference value",
        ]
        sections.append(format_table(header, rows))
    return "\n\n".join(sections)


# -- command line ---------------------------------------------------------------------------------
def thread_count(text: str) -> int | str:
    """A ``--threads`` value: a positive number, or ``auto``."""
    return text if text == "auto" else positive_int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter, allow_abbrev=False)
    parser.add_argument(
        "--dataroot", type=Path, default=None, help=f"dataset folder (default {DEFAULT_OUTPUT}, built if missing)"
    )
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="models to time")
    parser.add_argument(
        "--netG", choices=GENERATOR_TYPES, default="resnet_9blocks", help="generator architecture (as in train.py)"
    )
    parser.add_argument("--ngf", type=positive_int, default=64, help="generator filters in the first conv layer")
    parser.add_argument("--ndf", type=positive_int, default=64, help="discriminator filters in the first conv layer")
    parser.add_argument("--batch_size", type=positive_int, default=1, help="images per training iteration")
    parser.add_argument("--crop_size", type=positive_int, default=128, help="image size in pixels")
    parser.add_argument("--iterations", type=positive_int, default=10, help="timed iterations per run")
    parser.add_argument("--warmup", type=nonnegative_int, default=2, help="untimed iterations first")
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed runs; the median is reported")
    parser.add_argument("--gpu_ids", default="auto", help="'auto' (GPU 0 if present), '-1' for the CPU, or a GPU index")
    parser.add_argument(
        "--threads",
        nargs="+",
        type=thread_count,
        default=["auto"],
        help="compute threads to time (each one): a number, or auto (train.py's default choice)",
    )
    parser.add_argument(
        "--busy",
        nargs="+",
        type=nonnegative_int,
        default=[0],
        help="other processes spinning on the CPU while timing (each count), as on a shared machine",
    )
    parser.add_argument(
        "--num_patches",
        type=positive_int,
        default=256,
        help="places PatchNCE samples per layer in cut and seg_cut (the paper's 256; at most (crop_size / 4)^2)",
    )
    parser.add_argument("--loss_batch_size", type=positive_int, default=4, help="real crops per loss call")
    parser.add_argument(
        "--loss_iterations", type=positive_int, default=None, help="timed loss calls per run (default --iterations)"
    )
    parser.add_argument(
        "--amp", nargs="+", choices=AMP_MODES, default=["none"], help="mixed-precision modes to time (each one)"
    )
    parser.add_argument(
        "--channels_last", nargs="+", choices=SWITCH, default=["off"], help="memory layouts to time: off, on or both"
    )
    parser.add_argument(
        "--compile", nargs="+", choices=SWITCH, default=["off"], help="time eager (off), compiled (on) or both"
    )
    parser.add_argument("--no_losses", action="store_true", help="skip the loss table")
    parser.add_argument("--json", type=Path, default=None, help="also write every measurement to this JSON file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: print the tables; 0 on success, 1 on a user error."""
    setup_logging()
    args = build_parser().parse_args(argv)

    def job() -> None:
        with ExitStack() as stack:
            dataroot = args.dataroot
            if dataroot is None:
                dataroot = DEFAULT_OUTPUT
                if not (dataroot / "trainA").is_dir():
                    dataroot = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="demo_"))) / "demo"
                    logger.info("%s is missing; building the demo dataset in %s", DEFAULT_OUTPUT, dataroot)
                    build_demo_dataset(dataroot)
            base = BenchmarkConfig(
                dataroot=dataroot,
                models=tuple(dict.fromkeys(args.models)),
                netG=args.netG,
                ngf=args.ngf,
                ndf=args.ndf,
                batch_size=args.batch_size,
                crop_size=args.crop_size,
                iterations=args.iterations,
                warmup=args.warmup,
                repeats=args.repeats,
                gpu_ids=args.gpu_ids,
                loss_batch_size=args.loss_batch_size,
                loss_iterations=args.loss_iterations,
                losses=not args.no_losses,
                num_patches=args.num_patches,
            )
            threads = [default_threads() if value == "auto" else value for value in args.threads]
            settings = itertools.product(
                dict.fromkeys(args.amp),
                dict.fromkeys(args.channels_last),
                dict.fromkeys(args.compile),
                dict.fromkeys(threads),
                dict.fromkeys(args.busy),
            )
            configs = [  # the loss table is measured once, with the first setting
                dataclasses.replace(
                    base,
                    amp=amp,
                    channels_last=layout == "on",
                    compile=compiled == "on",
                    threads=thread_setting,
                    busy=busy,
                    losses=base.losses and not index,
                )
                for index, (amp, layout, compiled, thread_setting, busy) in enumerate(settings)
            ]
            records = [record for config in configs for record in run_benchmark(config)]
        print(format_report(base, records))
        if args.json is not None:
            write_text_atomic(args.json, json.dumps(records, indent=2) + "\n")
            logger.info("measurements written to %s", args.json)

    return run_script(job)


if __name__ == "__main__":
    sys.exit(main())
