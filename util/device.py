"""The one place that turns ``--gpu_ids`` into a torch device, and chooses the CPU threads of a process."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shutil
import sys
from collections.abc import Mapping

import torch

from util.arg_types import positive_int
from util.errors import OptionError

logger = logging.getLogger(__name__)


def parse_gpu_ids(text: str) -> list[int] | None:
    """``"auto"`` -> None, ``"-1"`` -> [] (CPU), ``"0"`` -> [0]; anything else is an error."""
    text = text.strip().lower()
    if text == "auto":
        return None
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise OptionError(
            f"--gpu_ids {text!r} is not valid: use 'auto', '-1' for the CPU, or a GPU index such as '0'"
        ) from None
    if any(gpu_id < 0 for gpu_id in ids):
        return []
    if len(ids) > 1:
        raise OptionError(
            f"--gpu_ids {text!r} names several GPUs; one process trains on one device. Pass a single index such as '0'."
        )
    return ids


def select_device(gpu_ids: str, local_rank: int = 0) -> torch.device:
    """The training/inference device for ``--gpu_ids`` (``auto`` takes GPU 0 when there is one).

    Under ``torchrun`` each process of a machine takes the GPU of its ``local_rank`` instead.
    """
    ids = parse_gpu_ids(gpu_ids)
    if ids is not None and not ids:
        return torch.device("cpu")
    if ids is None and not torch.cuda.is_available():
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise OptionError(f"--gpu_ids {gpu_ids} asks for a GPU but PyTorch sees none; use --gpu_ids -1 for the CPU")
    index = local_rank if local_rank > 0 or ids is None else ids[0]
    if index >= torch.cuda.device_count():
        raise OptionError(
            f"GPU {index} was asked for (--gpu_ids {gpu_ids}, local rank {local_rank}) but there are only "
            f"{torch.cuda.device_count()} GPU(s), numbered from 0; start at most that many processes per machine"
        )
    return torch.device(f"cuda:{index}")


def compile_unavailable_reason(device: torch.device) -> str | None:
    """Why ``torch.compile`` cannot work on ``device`` here, or None if it can be tried."""
    if not torch._dynamo.is_dynamo_supported():
        return f"torch.compile does not support Python {sys.version.split()[0]} in torch {torch.__version__}"
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        return "compiling for a GPU needs the triton package (pip install triton)"
    if device.type == "cpu" and not any(
        shutil.which(name) for name in (os.environ.get("CXX", "g++"), "c++", "clang++")
    ):
        return "compiling for the CPU needs a C++ compiler (e.g. apt install g++)"
    return None


def add_compute_threads_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup, workers: bool) -> None:
    """The ``--compute_threads`` flag; ``workers``: the command has ``--num_threads`` loader workers."""
    share = "this process's share of the CPUs less the --num_threads loader workers" if workers else "the CPUs"
    parser.add_argument(
        "--compute_threads",
        type=positive_int,
        default=None,
        help=f"CPU threads of PyTorch's operations (default: OMP_NUM_THREADS if set, which torchrun sets to 1 "
        f"when it starts several processes, else {share} this process may use, at least 1)",
    )


def available_cpus() -> int:
    """The CPUs this process may run on: its affinity mask (a container's, Slurm's or taskset's share),
    not every CPU of the machine."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def choose_compute_threads(
    requested: int | None,
    loader_workers: int,
    processes_per_machine: int = 1,
    cpus: int | None = None,
    environment: Mapping[str, str] = os.environ,
) -> tuple[int, str]:
    """The number of PyTorch compute threads (intra-op) of one process, and why, in words.

    ``--compute_threads`` wins, then ``OMP_NUM_THREADS`` (set by the user, or by torchrun). Otherwise
    each process of the machine gets its share of the CPUs minus its ``loader_workers`` (at least
    one): PyTorch's default of one thread per core, on top of the loader workers and other jobs,
    leaves more runnable threads than cores, and OpenMP threads that wait on each other at every
    operation then slow a step several-fold (docs/performance.md).
    """
    if requested is not None:
        return requested, "--compute_threads"
    variable = environment.get("OMP_NUM_THREADS", "").strip()
    if variable.isdigit() and int(variable) > 0:
        return int(variable), "OMP_NUM_THREADS"
    cpus = available_cpus() if cpus is None else cpus
    share = max(1, cpus // max(1, processes_per_machine))
    threads = max(1, share - loader_workers)
    processes = f" shared by {processes_per_machine} processes" if processes_per_machine > 1 else ""
    return threads, f"{cpus} CPUs{processes}, less {loader_workers} loader worker(s) (--num_threads)"


def configure_compute_threads(requested: int | None, loader_workers: int, processes_per_machine: int = 1) -> int:
    """Set PyTorch's compute threads as :func:`choose_compute_threads` says, log the choice, return it."""
    threads, reason = choose_compute_threads(requested, loader_workers, processes_per_machine)
    torch.set_num_threads(threads)
    logger.info("CPU: %d compute thread(s) (%s; change with --compute_threads)", threads, reason)
    return threads
