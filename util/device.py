"""The one place that turns ``--gpu_ids`` into a torch device."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys

import torch

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
