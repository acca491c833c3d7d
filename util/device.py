"""The one place that turns ``--gpu_ids`` into a torch device."""

from __future__ import annotations

import logging

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


def select_device(gpu_ids: str) -> torch.device:
    """The training/inference device for ``--gpu_ids`` (``auto`` takes GPU 0 when there is one)."""
    ids = parse_gpu_ids(gpu_ids)
    if ids is None:
        return torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    if not ids:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise OptionError(f"--gpu_ids {gpu_ids} asks for a GPU but PyTorch sees none; use --gpu_ids -1 for the CPU")
    if ids[0] >= torch.cuda.device_count():
        raise OptionError(f"--gpu_ids {gpu_ids}: there are only {torch.cuda.device_count()} GPU(s), numbered from 0")
    return torch.device(f"cuda:{ids[0]}")
