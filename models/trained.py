"""A trained generator ready for inference, shared by ``colorize.py`` and ``scripts/export_model.py``.

Both need the same three answers: which epoch ``best`` means, how to rebuild ``G_A`` from its
checkpoint (the architecture is stored with the weights), and which intensity normalisation the
training data were prepared with. Keeping them here gives each one place.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from data.intensity import IntensityNormalisation
from data.preparation import read_settings
from models import checkpoint, networks
from util.errors import CheckpointError, OptionError


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that pick a trained model: ``--name``, ``--checkpoints_dir``, ``--results_dir``, ``--epoch``."""
    parser.add_argument("--name", required=True, help="experiment name: checkpoints/<name>")
    parser.add_argument("--checkpoints_dir", type=Path, default=Path("checkpoints"))
    parser.add_argument("--results_dir", type=Path, default=Path("results"), help="where --epoch best is looked up")
    parser.add_argument("--epoch", default="latest", help="a saved epoch number, latest, or best")


def resolve_epoch(epoch: str, results_dir: Path, name: str) -> str:
    """``epoch`` as a checkpoint label; ``best`` is the epoch the evaluation chose (``selection.json``)."""
    if epoch != "best":
        return epoch
    record = Path(results_dir) / name / "evaluation" / "selection.json"
    if not record.is_file():
        raise OptionError(
            f"--epoch best needs {record}; run python evaluation/Stain_Evaluation.py --results_dir "
            f"{Path(results_dir) / name} first, or pass an epoch number"
        )
    selection = json.loads(record.read_text(encoding="utf-8"))
    if not selection.get("chosen"):
        raise OptionError(
            f"{record}: no epoch passed the evaluation's faithfulness guards (closest: epoch "
            f"{selection.get('closest')}); pass an epoch number to use one anyway"
        )
    return str(selection["chosen"])


def load_generator(
    directory: Path, label: str, device: torch.device, network_name: str = "G_A"
) -> tuple[nn.Module, dict[str, Any]]:
    """The generator ``<label>_net_<network_name>.pth`` in eval mode, built from its stored architecture."""
    path = checkpoint.require_checkpoint(directory, label, network_name)
    architecture = checkpoint.read_architecture(path)
    if architecture is None:
        raise CheckpointError(f"{path} holds bare weights without their architecture; a file of train.py is needed")
    generator = networks.define_generator(
        architecture["netG"], architecture["input_nc"], architecture["output_nc"], architecture["ngf"],
        architecture["norm"], not architecture["no_dropout"], "normal", 0.02,
    )  # fmt: skip
    checkpoint.load_network(path, generator, architecture, device)
    return generator.to(device).eval(), architecture


def training_normalisation(directory: Path, overrides: dict[str, Any] | None = None) -> IntensityNormalisation | None:
    """The percentile stretch the training data were prepared with, updated by ``overrides``; None if neither.

    Read from the ``preparation.json`` of the dataroot named in ``<directory>/train_opt.json``
    (written by ``scripts/prepare_ctc.py``); ``overrides`` holds flags the user gave
    (``low_percentile``, ``high_percentile``, ``invert``), None values ignored.
    """
    recorded = None
    options = Path(directory) / "train_opt.json"
    if options.is_file():
        dataroot = json.loads(options.read_text(encoding="utf-8")).get("dataroot")
        settings = read_settings(Path(dataroot)) if dataroot and Path(dataroot).is_dir() else None
        if settings:
            recorded = settings.get("normalisation") or (settings.get("A") or {}).get("normalisation")
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    if recorded is None and not given:
        return None
    return IntensityNormalisation.from_dict({**(recorded or {}), **given})
